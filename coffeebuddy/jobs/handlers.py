"""One handler per job kind. Delivery is at-least-once, so each handler first checks what
was already sent (the message timestamps stored on the run) and sends only what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from coffeebuddy import db, events, logs
from coffeebuddy.db import Database
from coffeebuddy.domain.fairness import RULE_SUMMARY
from coffeebuddy.domain.models import RunStatus
from coffeebuddy.jobs import timing
from coffeebuddy.metrics import REMINDER_LATENESS
from coffeebuddy.service import home, inbox
from coffeebuddy.service.closing import close_locked_run
from coffeebuddy.service.effects import refresh_run_message as refresh_run_message_job
from coffeebuddy.service.runs import RunService
from coffeebuddy.slack import home_blocks, run_blocks, summary_blocks
from coffeebuddy.slack.api import PERMANENT_ERRORS, call
from coffeebuddy.slack.gateway import WebSlackGateway
from coffeebuddy.slack.response_url import ResponseUrlPolicy, post_ephemeral
from coffeebuddy.store import queue
from coffeebuddy.store.queue import Job
from coffeebuddy.store.runs import RunRecord, load_run

log = logging.getLogger(__name__)

# Slack message metadata on everything we post for a run (see `_post_once`).
MESSAGE_EVENT_TYPE = "coffeebuddy_message"
# How far back a retried post looks for its message: 200 messages a page.
HISTORY_PAGES = 5


@dataclass(frozen=True)
class Context:
    database: Database
    slack: WebClient
    response_timeout: float = 3.0
    # Where a job may POST an interaction's response_url (see slack/response_url.py).
    response_urls: ResponseUrlPolicy = field(default_factory=lambda: ResponseUrlPolicy(()))
    # Whether retried channel posts may read the channel's history (see config.py).
    channel_history: bool = False
    # How long a cached profile is trusted (Config.profile_ttl_seconds).
    profile_ttl_seconds: int = 24 * 3600
    # Applies the actions the web acknowledged through the inbox.
    runs: RunService | None = None


Handler = Callable[[Context, Job], None]


class NotYet(Exception):
    """Raised by a handler whose job must wait for others; the worker requeues it after
    `delay_seconds` without counting an attempt."""

    def __init__(self, delay_seconds: float) -> None:
        super().__init__(f"not yet; again in {delay_seconds}s")
        self.delay_seconds = delay_seconds


def _load(ctx: Context, job: Job) -> RunRecord | None:
    with ctx.database.transaction() as conn:
        return load_run(conn, job.payload["run_id"])


def post_run_message(ctx: Context, job: Job) -> None:
    record = _load(ctx, job)
    # A failed run (say a retried dead job) has nothing left to show.
    if record is None or record.view.status is RunStatus.FAILED:
        return
    if record.message_ts:
        # Posted by an attempt that died before it stored the link.
        if record.view.message_permalink is None:
            _store_permalink(ctx, record, record.message_ts, "message")
        return
    text, body = run_blocks.run_message(record.view)
    ts = _post_once(ctx, job, record, record.view.slack_channel_id, "run_message", text, body)
    with ctx.database.transaction() as conn:
        posted = db.one(conn, "set_run_message_ts", {"run_id": record.view.run_id, "ts": ts})
        timing.run_message_posted(posted)
    _store_permalink(ctx, record, ts, "message")
    with ctx.database.transaction() as conn:
        # Orders that arrived while we posted were rendered by nobody: refresh once more.
        latest = load_run(conn, record.view.run_id)
        # (Its own link, just stored, is not something the message shows.)
        if latest is not None and replace(latest.view, message_permalink=None) != replace(
            record.view, message_permalink=None
        ):
            queue.enqueue(
                conn,
                queue.REFRESH_RUN_MESSAGE,
                {"run_id": record.view.run_id},
                run_id=record.view.run_id,
                correlation_id=job.correlation_id,
                dedupe_key=f"refresh:{record.view.run_id}",
            )


def _store_permalink(ctx: Context, record: RunRecord, ts: str, which: str) -> str | None:
    """Fetch and store the link to a message we posted in the run's channel ("message" or
    "summary"). Answers link to it when Slack gives one; without it they still make sense,
    so a failure here never fails the job (chat.getPermalink needs no extra scope)."""
    try:
        answer = call(
            ctx.slack, "chat.getPermalink", channel=record.view.slack_channel_id, message_ts=ts
        )
    except SlackApiError as exc:
        log.warning("permalink_unavailable", extra={"slack_error": exc.response.get("error")})
        return None
    permalink = str(answer.get("permalink") or "")[:1000] or None
    if permalink is not None:
        with ctx.database.transaction() as conn:
            db.run(
                conn,
                "set_permalinks",
                {
                    "run_id": record.view.run_id,
                    "message": permalink if which == "message" else None,
                    "summary": permalink if which == "summary" else None,
                },
            )
    return permalink


def _update_message(
    ctx: Context, channel: str, ts: str, text: str, body: list[dict[str, Any]], what: str
) -> None:
    """chat.update of a message we posted; one someone deleted is simply gone."""
    try:
        call(ctx.slack, "chat.update", channel=channel, ts=ts, text=text, blocks=body)
    except SlackApiError as exc:
        if exc.response.get("error") in ("message_not_found", "cant_update_message"):
            log.warning(f"{what}_gone", extra={"slack_error": exc.response.get("error")})
            return
        raise


def _send_dm(
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
    opened = call(ctx.slack, "conversations.open", users=user)
    channel = str(opened["channel"]["id"])
    return channel, _post_once(ctx, job, record, channel, f"{part}:{user}", text, body)


def _post_once(
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
        found = _find_posted(ctx, channel, record, payload, thread_ts=thread_ts)
        if found is not None:
            log.info("message_already_posted", extra={"event_type": part.split(":")[0]})
            return found
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


def _find_posted(
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
        try:
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


def refresh_run_message(ctx: Context, job: Job) -> None:
    record = _load(ctx, job)
    if record is None or not record.message_ts:
        # Not posted yet: the post renders the latest state (and refreshes if it changed).
        return
    text, body = run_blocks.run_message(record.view)
    _update_message(ctx, record.view.slack_channel_id, record.message_ts, text, body, "run_message")


def post_summary(ctx: Context, job: Job) -> None:
    record = _load(ctx, job)
    if record is None or record.summary_ts or record.view.status is not RunStatus.CLOSED:
        return
    text, body = summary_blocks.summary_message(record.view)
    ts = _post_once(ctx, job, record, record.view.slack_channel_id, "summary", text, body)
    with ctx.database.transaction() as conn:
        posted = db.one(conn, "set_summary_ts", {"run_id": record.view.run_id, "ts": ts})
        timing.close_part_delivered(posted)
    if _store_permalink(ctx, record, ts, "summary") is not None:
        # The closed run message links to the summary instead of saying "below".
        with ctx.database.transaction() as conn:
            refresh_run_message_job(conn, record.view.run_id, job.correlation_id, delay_seconds=0)


def dm_runner(ctx: Context, job: Job) -> None:
    record = _load(ctx, job)
    if (
        record is None
        or record.runner_dm_ts
        or record.view.status is not RunStatus.CLOSED
        or not record.view.runner_slack_id
    ):
        return
    text, body = summary_blocks.runner_dm(record.view)
    dm_channel, ts = _send_dm(
        ctx, job, record, record.view.runner_slack_id, "runner_dm", text, body
    )
    with ctx.database.transaction() as conn:
        posted = db.one(
            conn,
            "set_runner_dm",
            {"run_id": record.view.run_id, "dm_channel": dm_channel, "ts": ts},
        )
        timing.close_part_delivered(posted)


def update_summary(ctx: Context, job: Job) -> None:
    """Render the channel summary again in place: "I can't go" changed the runner."""
    record = _load(ctx, job)
    if record is None or record.view.status is not RunStatus.CLOSED:
        return
    if not record.summary_ts:
        with ctx.database.transaction() as conn:
            pending = db.one(conn, "swap_summary_pending", {"run_id": record.view.run_id})
        if pending is not None and pending["n"]:
            # A post in flight may show the old runner: update it once it is there.
            raise NotYet(0.5)
        return
    text, body = summary_blocks.summary_message(record.view)
    _update_message(ctx, record.view.slack_channel_id, record.summary_ts, text, body, "summary")


def post_runner_change(ctx: Context, job: Job) -> None:
    """A reply in the summary's thread when "I can't go" changed the runner: the channel
    learns it without anyone being notified (plain names, no mentions)."""
    record = _load(ctx, job)
    if record is None or record.view.status is not RunStatus.CLOSED:
        return
    if not record.summary_ts:
        with ctx.database.transaction() as conn:
            pending = db.one(conn, "swap_summary_pending", {"run_id": record.view.run_id})
        if pending is not None and pending["n"]:
            raise NotYet(0.5)  # the thread starts with the summary
        return
    new, old = job.payload["new_runner"], job.payload["old_runner"]
    with ctx.database.transaction() as conn:
        names = {
            r["slack_user_id"]: r["display_name"]
            for r in db.all_rows(conn, "user_names", {"slack_user_ids": [new, old]})
        }
    text = summary_blocks.runner_changed_text(names.get(new) or new, names.get(old) or old)
    _post_once(
        ctx,
        job,
        record,
        record.view.slack_channel_id,
        f"runner_change:{old}",
        text,
        None,
        thread_ts=record.summary_ts,
    )


def remind_new_runner(ctx: Context, job: Job) -> None:
    """The runner reminder for whoever took a run over after its reminder had gone out
    (the swap cleared `reminder_ts`); sent once, after their "you're the runner" DM."""
    run_id = job.payload["run_id"]
    with ctx.database.transaction() as conn:
        run = db.one(conn, "lock_run", {"run_id": run_id})
        if run is None or run["reminder_ts"] or run["status"] != RunStatus.CLOSED:
            return
        if not run["reminders_enabled"]:
            return
        pending = db.one(conn, "pending_close_jobs", {"run_id": run_id})
    if pending is not None and pending["n"]:
        raise NotYet(0.5)
    record = _load(ctx, job)
    if record is None or not record.view.runner_slack_id:
        return
    runner = record.view.runner_slack_id
    text, body = summary_blocks.reminder_dm(record.view)
    _, ts = _send_dm(ctx, job, record, runner, "reminder", text, body)
    with ctx.database.transaction() as conn:
        marked = db.one(
            conn,
            "swap_mark_reminder_sent",
            {"run_id": run_id, "ts": ts, "runner": runner},
        )
        if marked is not None:
            events.record(
                conn,
                "reminder_sent",
                run_id=run_id,
                channel_id=record.view.slack_channel_id,
                correlation_id=run["correlation_id"],
                kind="runner_reminder",
                runner=runner,
                after_swap=True,
            )


def replace_message(ctx: Context, job: Job) -> None:
    """Replace a message we posted with plain text (its buttons go with it)."""
    p = job.payload
    _update_message(ctx, p["channel"], p["ts"], p["text"], [], "message")


def notify_user(ctx: Context, job: Job) -> None:
    tell(ctx, job.payload, job.payload["text"])


def tell(ctx: Context, who: dict[str, Any], text: str) -> None:
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


def runner_reminder(ctx: Context, job: Job) -> None:
    """At pickup minus the channel's offset: remind the runner. A run still open then is
    closed first (runner chosen fairly, summary posted); a canceled run gets nothing; with
    reminders turned off for the channel at firing time nothing is sent."""
    run_id = job.payload["run_id"]
    outcome = None
    if ctx.runs is not None:
        # The reminder may close the run: orders acknowledged before it count.
        ctx.runs.drain_inbox(run_id)
    with ctx.database.transaction() as conn:
        run = db.one(conn, "lock_run", {"run_id": run_id})
        if run is None or run["reminder_ts"] or run["reminder_at"] is None:
            return
        if run["status"] not in (RunStatus.OPEN, RunStatus.CLOSED):
            return
        if not run["reminders_enabled"]:
            log.info("reminder_skipped", extra={"reason": "reminders_disabled"})
            return
        if run["reminder_at"] > datetime.now(UTC) + timedelta(seconds=1):
            # The pickup moved later while this job waited; its replacement is queued.
            return
        due_at = run["reminder_at"].isoformat()
        # Once per reminder, however often this job is retried or deferred.
        if not db.one(conn, "reminder_due_recorded", {"run_id": run_id, "due_at": due_at}):
            events.record(
                conn,
                "reminder_due",
                run_id=run_id,
                channel_id=run["slack_channel_id"],
                correlation_id=run["correlation_id"],
                kind="runner_reminder",
                due_at=due_at,
            )
        if run["status"] == RunStatus.OPEN:
            outcome = close_locked_run(conn, run, closed_by=None)
    if outcome is not None:
        outcome.count()
        if outcome.status is not RunStatus.CLOSED:
            return
    with ctx.database.transaction() as conn:
        pending = db.one(conn, "pending_close_jobs", {"run_id": run_id})
    if pending is not None and pending["n"]:
        # The summary and "you're the runner" DM go first; the reminder follows them.
        raise NotYet(0.5)
    record = _load(ctx, job)
    if (
        record is None
        or not record.view.runner_slack_id
        or record.view.status is not RunStatus.CLOSED
    ):
        return
    text, body = summary_blocks.reminder_dm(record.view)
    _, ts = _send_dm(ctx, job, record, record.view.runner_slack_id, "reminder", text, body)
    with ctx.database.transaction() as conn:
        marked = db.one(conn, "mark_reminder_sent", {"run_id": run_id, "ts": ts})
        if marked is not None:
            lateness = (marked["reminder_sent_at"] - marked["reminder_at"]).total_seconds()
            REMINDER_LATENESS.observe(max(lateness, 0.0))
            events.record(
                conn,
                "reminder_sent",
                run_id=run_id,
                channel_id=record.view.slack_channel_id,
                correlation_id=run["correlation_id"],
                kind="runner_reminder",
                runner=record.view.runner_slack_id,
                lateness_seconds=round(lateness, 3),
            )
            log.info("reminder_sent", extra={"latency_ms": round(lateness * 1000, 1)})


def last_call(ctx: Context, job: Job) -> None:
    """The optional last call to the channel before the run closes."""
    run_id = job.payload["run_id"]
    with ctx.database.transaction() as conn:
        run = db.one(conn, "lock_run", {"run_id": run_id})
        if run is None or run["status"] != RunStatus.OPEN or run["last_call_ts"]:
            return
        if not run["last_call_enabled"] or not run["reminders_enabled"]:
            return
        minutes = int(run["last_call_minutes"])
    record = _load(ctx, job)
    if record is None:
        return
    text, body = summary_blocks.last_call_message(record.view, minutes)
    ts = _post_once(ctx, job, record, record.view.slack_channel_id, "last_call", text, body)
    with ctx.database.transaction() as conn:
        db.run(conn, "mark_last_call_sent", {"run_id": run_id, "ts": ts})


def publish_home(ctx: Context, job: Job) -> None:
    """The person's App Home tab, rendered fresh from what we hold about them."""
    user = job.payload["user"]
    with ctx.database.transaction() as conn:
        channels = home.home_channels(conn, user)
    view = home_blocks.home_view(channels, RULE_SUMMARY)
    call(ctx.slack, "views.publish", user_id=user, view=view)


def apply_action(ctx: Context, job: Job) -> None:
    """An action the web acknowledged through the inbox: the ticket to apply its run's
    next batch, in arrival order, in one transaction (see `coffeebuddy.service.inbox`),
    with the same confirmations the web would have sent."""
    if ctx.runs is None:
        raise RuntimeError("this worker was built without a RunService")
    run_id = job.run_id or str(job.payload["run_id"])
    with logs.context(run=run_id):
        outcome = inbox.apply_batch(ctx.runs, run_id, job.id, str(job.payload.get("user_id")))
        log.info(
            "inbox_batch",
            extra={"applied": outcome.applied, "failed": outcome.failed, "held": outcome.held},
        )
    if outcome.wait_seconds is not None:
        # This action itself was not in the batch: claimed again once it may go.
        raise NotYet(outcome.wait_seconds)


def warm_profile(ctx: Context, job: Job) -> None:
    """users.info for someone the web saw without a fresh profile; cached for the web."""
    user = job.payload["user"]
    with ctx.database.transaction() as conn:
        row = db.one(conn, "get_user_by_slack_id", {"slack_user_id": user})
    fresh_after = datetime.now(UTC) - timedelta(seconds=ctx.profile_ttl_seconds)
    if row is None or (row["profile_fetched_at"] and row["profile_fetched_at"] > fresh_after):
        return  # forgotten since (forget me), or fetched meanwhile
    profile = WebSlackGateway(ctx.slack).user_profile(user)
    with ctx.database.transaction() as conn:
        # Only for someone still on record: a "forget me" in between must stay forgotten.
        db.one(
            conn,
            "refresh_user_profile",
            {
                "slack_user_id": user,
                "display_name": profile.display_name,
                "tz": profile.tz,
                "is_workspace_admin": profile.is_workspace_admin,
            },
        )


HANDLERS: dict[str, Handler] = {
    queue.POST_RUN_MESSAGE: post_run_message,
    queue.REFRESH_RUN_MESSAGE: refresh_run_message,
    queue.POST_SUMMARY: post_summary,
    queue.DM_RUNNER: dm_runner,
    queue.NOTIFY_USER: notify_user,
    queue.REPLACE_MESSAGE: replace_message,
    queue.UPDATE_SUMMARY: update_summary,
    queue.REMIND_NEW_RUNNER: remind_new_runner,
    queue.POST_RUNNER_CHANGE: post_runner_change,
    queue.PUBLISH_HOME: publish_home,
    queue.WARM_PROFILE: warm_profile,
    queue.APPLY_ACTION: apply_action,
    queue.RUNNER_REMINDER: runner_reminder,
    queue.LAST_CALL: last_call,
}
