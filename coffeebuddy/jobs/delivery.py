"""Sending to Slack for a run, at least once without repeats: a post that a retried job
does not make twice (`post_once`, found again by its message metadata), a DM, an update of a
message we posted, and the ephemeral answer to the person who acted (`send_ephemeral`; the
service queues it with `coffeebuddy.service.effects.queue_ephemeral`)."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from coffeebuddy.jobs.context import Context
from coffeebuddy.slack.api import PERMANENT_ERRORS, call
from coffeebuddy.slack.budget import spend
from coffeebuddy.slack.response_url import post_ephemeral
from coffeebuddy.store.queue import Job
from coffeebuddy.store.runs import RunRecord

log = logging.getLogger(__name__)

# Slack message metadata on everything we post for a run (see `post_once`).
MESSAGE_EVENT_TYPE = "coffeebuddy_message"
# How far back a retried post looks for its message: 200 messages a page.
HISTORY_PAGES = 5


def update_message(
    ctx: Context,
    channel: str,
    ts: str,
    text: str,
    body: list[dict[str, Any]],
    what: str,
    *,
    low: bool = False,
) -> None:
    """chat.update of a message we posted; one someone deleted is simply gone. `low` for a
    refresh nobody waits for (the run message's count): it goes last under pressure."""
    try:
        with spend(ctx.budget, "chat.update", low=low):
            call(ctx.slack, "chat.update", channel=channel, ts=ts, text=text, blocks=body)
    except SlackApiError as exc:
        if exc.response.get("error") in ("message_not_found", "cantupdate_message"):
            log.warning(f"{what}_gone", extra={"slack_error": exc.response.get("error")})
            return
        raise


def send_dm(
    ctx: Context,
    job: Job,
    record: RunRecord,
    user: str,
    part: str,
    text: str,
    body: list[dict[str, Any]],
) -> tuple[str, str]:
    """A direct message to `user` (at most once per run and `part`); returns its
    (DM channel, ts)."""
    with spend(ctx.budget, "conversations.open"):
        opened = call(ctx.slack, "conversations.open", users=user)
    channel = str(opened["channel"]["id"])
    return channel, post_once(ctx, job, record, channel, f"{part}:{user}", text, body)


def post_once(
    ctx: Context,
    job: Job,
    record: RunRecord,
    channel: str,
    part: str,
    text: str,
    body: list[dict[str, Any]] | None,
    *,
    thread_ts: str | None = None,
) -> str:
    """chat.postMessage that a retried job does not repeat; returns the message's ts.

    Every message we post for a run carries Slack message metadata naming the run and
    the part. A job on its second or later attempt may have died after Slack accepted
    its message but before the ts was stored (a SIGKILL, a timeout whose request did
    arrive), so it first looks for that message in the channel's history (or, for a
    reply, in its thread) and adopts it.
    """
    payload = {"run_id": record.view.run_id, "part": part}
    metadata = {"event_type": MESSAGE_EVENT_TYPE, "event_payload": payload}
    # The runner's DM ("D…") is the bot's own read-only conversation (im:history); a
    # channel's history (and a thread in it) is only read when the operator opted in.
    if job.attempts > 1 and (channel.startswith("D") or ctx.channel_history):
        found = find_posted(ctx, channel, record, payload, thread_ts=thread_ts)
        if found is not None:
            log.info("message_already_posted", extra={"event_type": part.split(":")[0]})
            return found
    with spend(ctx.budget, "chat.postMessage", channel=channel):
        answer = call(
            ctx.slack,
            "chat.postMessage",
            channel=channel,
            text=text,
            blocks=body or None,
            metadata=metadata,
            thread_ts=thread_ts,
        )
    return str(answer["ts"])


def find_posted(
    ctx: Context,
    channel: str,
    record: RunRecord,
    payload: dict[str, str],
    *,
    thread_ts: str | None = None,
) -> str | None:
    """The ts of a message we posted in `channel` (in the thread of `thread_ts` when
    given) since the run started whose metadata is `payload`; None when there is none (or
    we may not read the history: then posting again is the lesser harm than never
    posting)."""
    oldest = f"{record.view.started_at.timestamp() - 1:.6f}"
    cursor = None
    for _ in range(HISTORY_PAGES):
        page_args = {
            "channel": channel, "oldest": oldest, "limit": 200,
            "include_all_metadata": True, "cursor": cursor,
        }  # fmt: skip
        method = "conversations.replies" if thread_ts else "conversations.history"
        try:
            with spend(ctx.budget, method):
                if thread_ts:
                    page = call(ctx.slack, "conversations.replies", ts=thread_ts, **page_args)
                else:
                    page = call(ctx.slack, "conversations.history", **page_args)
        except SlackApiError as exc:
            if exc.response.get("error") in PERMANENT_ERRORS:
                log.warning("history_unreadable", extra={"slack_error": exc.response.get("error")})
                return None
            raise
        for message in page.get("messages") or []:
            meta = message.get("metadata") or {}
            if meta.get("event_type") == MESSAGE_EVENT_TYPE and meta.get("event_payload") == (
                payload
            ):
                return str(message["ts"])
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not page.get("has_more") or not cursor:
            return None
    return None


def send_ephemeral(ctx: Context, who: dict[str, Any], text: str) -> None:
    """An ephemeral message to the person who acted: through the interaction's
    response_url when there is one (it works even where the bot can't post), else
    chat.postEphemeral in the channel."""
    response_url = who.get("response_url")
    body = who.get("blocks") or None
    if response_url and post_ephemeral(
        response_url, text, timeout=ctx.response_timeout, policy=ctx.response_urls, blocks=body
    ):
        return
    if who.get("channel") and who.get("user"):
        try:
            with spend(ctx.budget, "chat.postEphemeral"):
                call(
                    ctx.slack,
                    "chat.postEphemeral",
                    channel=who["channel"],
                    user=who["user"],
                    text=text,
                    blocks=body,
                )
        except SlackApiError as exc:
            # The person left the channel or it is gone: nobody to tell, nothing to retry.
            if exc.response.get("error") in (
                "user_not_in_channel",
                "channel_not_found",
                "not_in_channel",
                "is_archived",
            ):
                log.warning("notify_dropped", extra={"slack_error": exc.response.get("error")})
                return
            raise
