"""One handler per job kind. Delivery is at-least-once, so each handler first checks what
was already sent (the message timestamps stored on the run) and sends only what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from coffeebuddy import db
from coffeebuddy.db import Database
from coffeebuddy.domain.models import RunStatus
from coffeebuddy.jobs import queue
from coffeebuddy.jobs.queue import Job
from coffeebuddy.slack import blocks
from coffeebuddy.slack.api import call
from coffeebuddy.slack.response_url import post_ephemeral
from coffeebuddy.store import RunRecord, load_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    database: Database
    slack: WebClient
    response_timeout: float = 3.0


Handler = Callable[[Context, Job], None]


def _load(ctx: Context, job: Job) -> RunRecord | None:
    with ctx.database.transaction() as conn:
        return load_run(conn, job.payload["run_id"])


def post_run_message(ctx: Context, job: Job) -> None:
    record = _load(ctx, job)
    if record is None or record.message_ts:
        return
    text, body = blocks.run_message(record.view)
    answer = call(
        ctx.slack, "chat.postMessage", channel=record.view.slack_channel_id, text=text, blocks=body
    )
    with ctx.database.transaction() as conn:
        db.run(conn, "set_run_message_ts", {"run_id": record.view.run_id, "ts": answer["ts"]})
        # Orders that arrived while we posted were rendered by nobody: refresh once more.
        latest = load_run(conn, record.view.run_id)
        if latest is not None and latest.view != record.view:
            queue.enqueue(
                conn,
                queue.REFRESH_RUN_MESSAGE,
                {"run_id": record.view.run_id},
                run_id=record.view.run_id,
                correlation_id=job.correlation_id,
                dedupe_key=f"refresh:{record.view.run_id}",
            )


def refresh_run_message(ctx: Context, job: Job) -> None:
    record = _load(ctx, job)
    if record is None or not record.message_ts:
        # Not posted yet: the post renders the latest state (and refreshes if it changed).
        return
    text, body = blocks.run_message(record.view)
    try:
        call(
            ctx.slack,
            "chat.update",
            channel=record.view.slack_channel_id,
            ts=record.message_ts,
            text=text,
            blocks=body,
        )
    except SlackApiError as exc:
        # Someone deleted the run message; there is nothing left to update.
        if exc.response.get("error") in ("message_not_found", "cant_update_message"):
            log.warning("run_message_gone", extra={"slack_error": exc.response.get("error")})
            return
        raise


def post_summary(ctx: Context, job: Job) -> None:
    record = _load(ctx, job)
    if record is None or record.summary_ts or record.view.status is not RunStatus.CLOSED:
        return
    text, body = blocks.summary_message(record.view)
    answer = call(
        ctx.slack, "chat.postMessage", channel=record.view.slack_channel_id, text=text, blocks=body
    )
    with ctx.database.transaction() as conn:
        db.run(conn, "set_summary_ts", {"run_id": record.view.run_id, "ts": answer["ts"]})


def dm_runner(ctx: Context, job: Job) -> None:
    record = _load(ctx, job)
    if (
        record is None
        or record.runner_dm_ts
        or record.view.status is not RunStatus.CLOSED
        or not record.view.runner_slack_id
    ):
        return
    opened = call(ctx.slack, "conversations.open", users=record.view.runner_slack_id)
    dm_channel = opened["channel"]["id"]
    text, body = blocks.runner_dm(record.view)
    answer = call(ctx.slack, "chat.postMessage", channel=dm_channel, text=text, blocks=body)
    with ctx.database.transaction() as conn:
        db.run(
            conn,
            "set_runner_dm",
            {"run_id": record.view.run_id, "dm_channel": dm_channel, "ts": answer["ts"]},
        )


def notify_user(ctx: Context, job: Job) -> None:
    tell(ctx, job.payload, job.payload["text"])


def tell(ctx: Context, who: dict[str, Any], text: str) -> None:
    """An ephemeral message to the person who acted: through the interaction's
    response_url when there is one (it works even where the bot can't post), else
    chat.postEphemeral in the channel."""
    response_url = who.get("response_url")
    if response_url and post_ephemeral(response_url, text, timeout=ctx.response_timeout):
        return
    if who.get("channel") and who.get("user"):
        try:
            call(
                ctx.slack, "chat.postEphemeral", channel=who["channel"], user=who["user"], text=text
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


HANDLERS: dict[str, Handler] = {
    queue.POST_RUN_MESSAGE: post_run_message,
    queue.REFRESH_RUN_MESSAGE: refresh_run_message,
    queue.POST_SUMMARY: post_summary,
    queue.DM_RUNNER: dm_runner,
    queue.NOTIFY_USER: notify_user,
}
