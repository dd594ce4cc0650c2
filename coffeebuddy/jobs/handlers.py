"""The handlers of the jobs that post and keep up a run's messages, and of the small
per-person jobs (App Home, profiles, inboxed actions). Delivery is at-least-once, so each
handler first checks what was already sent (the message timestamps stored on the run) and
sends only what is missing (see `coffeebuddy.jobs.delivery`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from slack_sdk.errors import SlackApiError

from coffeebuddy import db, logs
from coffeebuddy.domain.fairness import RULE_SUMMARY
from coffeebuddy.domain.models import RunStatus
from coffeebuddy.jobs import bot_step_times
from coffeebuddy.jobs.context import Context, NotYet, load_job_run
from coffeebuddy.jobs.delivery import post_once, send_dm, send_ephemeral, update_message
from coffeebuddy.service import home, inbox
from coffeebuddy.service.effects import refresh_run_message as refresh_run_message_job
from coffeebuddy.slack import home_blocks, run_blocks, summary_blocks
from coffeebuddy.slack.api import call
from coffeebuddy.slack.budget import spend
from coffeebuddy.slack.gateway import WebSlackGateway
from coffeebuddy.store import people, queue
from coffeebuddy.store.queue import Job
from coffeebuddy.store.runs import RunRecord, load_run

log = logging.getLogger(__name__)


def post_run_message(ctx: Context, job: Job) -> None:
    record = load_job_run(ctx, job)
    # A failed run (say a retried dead job) has nothing left to show.
    if record is None or record.view.status is RunStatus.FAILED:
        return
    if record.message_ts:
        # Posted by an attempt that died before it stored the link.
        if record.view.message_permalink is None:
            _store_permalink(ctx, record, record.message_ts, "message")
        return
    text, body = run_blocks.run_message(record.view)
    ts = post_once(ctx, job, record, record.view.slack_channel_id, "run_message", text, body)
    with ctx.database.transaction() as conn:
        posted = db.one(conn, "set_run_message_ts", {"run_id": record.view.run_id, "ts": ts})
        bot_step_times.run_message_posted(posted)
        # Orders that arrived while we posted were rendered by nobody: refresh once more.
        # (Before the link: a link over budget puts this job back, and its next attempt
        # only fetches the link.)
        latest = load_run(conn, record.view.run_id)
        # (A link is not something the message shows.)
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
    _store_permalink(ctx, record, ts, "message")


def _store_permalink(ctx: Context, record: RunRecord, ts: str, which: str) -> str | None:
    """Fetch and store the link to a message we posted in the run's channel ("message" or
    "summary"). Answers link to it when Slack gives one; without it they still make sense,
    so a failure here never fails the job (chat.getPermalink needs no extra scope)."""
    try:
        # Nobody waits for a link: it goes after everything a person waits for, and when
        # it has to wait, the job is put back and its next attempt fetches only the link.
        with spend(ctx.budget, "chat.getPermalink", low=True):
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


def refresh_run_message(ctx: Context, job: Job) -> None:
    record = load_job_run(ctx, job)
    if record is None or not record.message_ts:
        # Not posted yet: the post renders the latest state (and refreshes if it changed).
        return
    text, body = run_blocks.run_message(record.view)
    # Rendered now, from the run as it is now: a refresh that waited shows the latest count.
    # Only an open run's count refresh (or one adding just a link) goes last; the message
    # of a closed or canceled run tells everyone the outcome (who is going): they wait for it.
    count_only = record.view.status is RunStatus.OPEN or bool(job.payload.get("link_only"))
    update_message(
        ctx,
        record.view.slack_channel_id,
        record.message_ts,
        text,
        body,
        "run_message",
        low=count_only,
    )


def post_summary(ctx: Context, job: Job) -> None:
    record = load_job_run(ctx, job)
    if record is None or record.view.status is not RunStatus.CLOSED:
        return
    if record.summary_ts:
        if record.view.summary_permalink is not None:
            return
        # Posted by an attempt that was put back before the link (over budget), or died.
        ts = record.summary_ts
    else:
        text, body = summary_blocks.summary_message(record.view)
        ts = post_once(ctx, job, record, record.view.slack_channel_id, "summary", text, body)
        with ctx.database.transaction() as conn:
            posted = db.one(conn, "set_summary_ts", {"run_id": record.view.run_id, "ts": ts})
            bot_step_times.close_part_delivered(posted)
    if _store_permalink(ctx, record, ts, "summary") is not None:
        # The closed run message links to the summary instead of saying "below".
        with ctx.database.transaction() as conn:
            refresh_run_message_job(
                conn, record.view.run_id, job.correlation_id, delay_seconds=0, link_only=True
            )


def dm_runner(ctx: Context, job: Job) -> None:
    record = load_job_run(ctx, job)
    if (
        record is None
        or record.runner_dm_ts
        or record.view.status is not RunStatus.CLOSED
        or not record.view.runner_slack_id
    ):
        return
    text, body = summary_blocks.runner_dm(record.view)
    dm_channel, ts = send_dm(ctx, job, record, record.view.runner_slack_id, "runner_dm", text, body)
    with ctx.database.transaction() as conn:
        posted = db.one(
            conn,
            "set_runner_dm",
            {"run_id": record.view.run_id, "dm_channel": dm_channel, "ts": ts},
        )
        bot_step_times.close_part_delivered(posted)


def _summary_ts(ctx: Context, record: RunRecord) -> str | None:
    """The ts of the run's summary in the channel; NotYet while its post is still queued or
    running, None when it never will be."""
    if record.summary_ts:
        return record.summary_ts
    with ctx.database.transaction() as conn:
        pending = db.one(conn, "swap_summary_pending", {"run_id": record.view.run_id})
    if pending is not None and pending["n"]:
        raise NotYet(0.5)
    return None


def update_summary(ctx: Context, job: Job) -> None:
    """Render the channel summary again in place: "I can't go" changed the runner."""
    record = load_job_run(ctx, job)
    if record is None or record.view.status is not RunStatus.CLOSED:
        return
    # A post in flight may show the old runner: update it once it is there.
    summary_ts = _summary_ts(ctx, record)
    if summary_ts is None:
        return
    text, body = summary_blocks.summary_message(record.view)
    update_message(ctx, record.view.slack_channel_id, summary_ts, text, body, "summary")


def post_runner_change(ctx: Context, job: Job) -> None:
    """A reply in the summary's thread when "I can't go" changed the runner: the channel
    learns it without anyone being notified (plain names, no mentions)."""
    record = load_job_run(ctx, job)
    if record is None or record.view.status is not RunStatus.CLOSED:
        return
    summary_ts = _summary_ts(ctx, record)  # the thread starts with the summary
    if summary_ts is None:
        return
    new, old = job.payload["new_runner"], job.payload["old_runner"]
    with ctx.database.transaction() as conn:
        names = people.names(conn, [new, old])
    text = summary_blocks.runner_changed_text(names.get(new) or new, names.get(old) or old)
    post_once(
        ctx,
        job,
        record,
        record.view.slack_channel_id,
        f"runner_change:{old}",
        text,
        None,
        thread_ts=summary_ts,
    )


def replace_message(ctx: Context, job: Job) -> None:
    """Replace a message we posted with plain text (its buttons go with it)."""
    p = job.payload
    update_message(ctx, p["channel"], p["ts"], p["text"], [], "message")


def notify_user(ctx: Context, job: Job) -> None:
    send_ephemeral(ctx, job.payload, job.payload["text"])


def publish_home(ctx: Context, job: Job) -> None:
    """The person's App Home tab, rendered fresh from what we hold about them."""
    user = job.payload["user"]
    with ctx.database.transaction() as conn:
        channels = home.home_channels(conn, user)
    view = home_blocks.home_view(channels, RULE_SUMMARY)
    with spend(ctx.budget, "views.publish"):
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
        person = people.find(conn, user)
    fresh_after = datetime.now(UTC) - timedelta(seconds=ctx.profile_ttl_seconds)
    fetched = person.profile_fetched_at if person is not None else None
    if person is None or (fetched and fetched > fresh_after):
        return  # forgotten since (forget me), or fetched meanwhile
    # Ahead of need: it goes after the calls people wait for.
    with spend(ctx.budget, "users.info", low=True):
        profile = WebSlackGateway(ctx.slack).user_profile(user)
    with ctx.database.transaction() as conn:
        # Only for someone still on record: a "forget me" in between must stay forgotten.
        people.refresh_profile(conn, profile)
