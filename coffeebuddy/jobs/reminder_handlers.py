"""The handlers of the reminder jobs: the runner's reminder before pickup (which closes a
run still open), the reminder for a runner who took over after it had gone out, and the
optional last call to the channel (see `coffeebuddy.service.reminders`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from coffeebuddy.db import Conn
from coffeebuddy.domain.models import RunStatus
from coffeebuddy.jobs.context import Context, NotYet, load_job_run
from coffeebuddy.jobs.delivery import post_once, send_dm
from coffeebuddy.metrics import REMINDER_LATENESS
from coffeebuddy.service.closing import close_locked_run
from coffeebuddy.slack import summary_blocks
from coffeebuddy.store import outbox, reminders, runs
from coffeebuddy.store.queue import Job
from coffeebuddy.store.runs import RunRecord, RunRow

log = logging.getLogger(__name__)


def _after_close_jobs(ctx: Context, run_id: str) -> None:
    """The summary and "you're the runner" DM go first; a reminder follows them."""
    with ctx.database.transaction() as conn:
        pending = reminders.close_jobs_pending(conn, run_id)
    if pending:
        raise NotYet(0.5)


def remind_new_runner(ctx: Context, job: Job) -> None:
    """The runner reminder for whoever took a run over after its reminder had gone out
    (the swap cleared `reminder_ts`); sent once, after their "you're the runner" DM."""
    run_id = job.payload["run_id"]
    with ctx.database.transaction() as conn:
        run = runs.lock(conn, run_id)
        if run is None or run.reminder_ts or run.status != RunStatus.CLOSED:
            return
        if not run.reminders_enabled:
            return
    _after_close_jobs(ctx, run_id)
    record = load_job_run(ctx, job)
    if record is None or not record.view.runner_slack_id:
        return
    runner = record.view.runner_slack_id
    text, body = summary_blocks.reminder_dm(record.view)
    _, ts = send_dm(ctx, job, record, runner, "reminder", text, body)
    with ctx.database.transaction() as conn:
        if reminders.mark_sent_to(conn, run_id, ts, runner):
            _record_sent(conn, run_id, run, record, runner=runner, after_swap=True)


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
        run = runs.lock(conn, run_id)
        if run is None or not _reminder_due(run):
            return
        _record_due_once(conn, run_id, run)
        if run.status == RunStatus.OPEN:
            outcome = close_locked_run(conn, run, closed_by=None)
    if outcome is not None:
        outcome.count()
        if outcome.status is not RunStatus.CLOSED:
            return
    _after_close_jobs(ctx, run_id)
    record = load_job_run(ctx, job)
    if (
        record is None
        or not record.view.runner_slack_id
        or record.view.status is not RunStatus.CLOSED
    ):
        return
    text, body = summary_blocks.reminder_dm(record.view)
    _, ts = send_dm(ctx, job, record, record.view.runner_slack_id, "reminder", text, body)
    with ctx.database.transaction() as conn:
        _mark_sent(conn, run_id, run, record, ts)


def _reminder_due(run: RunRow) -> bool:
    """Whether the locked run still wants this reminder now."""
    if run.reminder_ts or run.reminder_at is None:
        return False
    if run.status not in (RunStatus.OPEN, RunStatus.CLOSED):
        return False
    if not run.reminders_enabled:
        log.info("reminder_skipped", extra={"reason": "reminders_disabled"})
        return False
    # The pickup moved later while this job waited: its replacement is queued.
    return not run.reminder_at > datetime.now(UTC) + timedelta(seconds=1)


def _record_due_once(conn: Conn, run_id: str, run: RunRow) -> None:
    """The `reminder_due` event, once per reminder however often this job is retried or
    deferred."""
    assert run.reminder_at is not None  # `_reminder_due` checked it
    due_at = run.reminder_at.isoformat()
    if not reminders.due_recorded(conn, run_id, due_at):
        outbox.record_run(
            conn,
            "reminder_due",
            run,
            kind="runner_reminder",
            due_at=due_at,
        )


def _mark_sent(conn: Conn, run_id: str, run: RunRow, record: RunRecord, ts: str) -> None:
    lateness = reminders.mark_sent(conn, run_id, ts)
    if lateness is None:
        return
    REMINDER_LATENESS.observe(max(lateness, 0.0))
    _record_sent(
        conn,
        run_id,
        run,
        record,
        runner=record.view.runner_slack_id,
        lateness_seconds=round(lateness, 3),
    )
    log.info("reminder_sent", extra={"latency_ms": round(lateness * 1000, 1)})


def _record_sent(conn: Conn, run_id: str, run: RunRow, record: RunRecord, **facts: object) -> None:
    """The `reminder_sent` event; `facts` starts with the runner reminded."""
    outbox.record(
        conn,
        "reminder_sent",
        run_id=run_id,
        channel_id=record.view.slack_channel_id,
        correlation_id=run.correlation_id,
        kind="runner_reminder",
        **facts,
    )


def last_call(ctx: Context, job: Job) -> None:
    """The optional last call to the channel before the run closes."""
    run_id = job.payload["run_id"]
    with ctx.database.transaction() as conn:
        run = runs.lock(conn, run_id)
        if run is None or run.status != RunStatus.OPEN or run.last_call_ts:
            return
        if not run.last_call_enabled or not run.reminders_enabled:
            return
        minutes = run.last_call_minutes
    record = load_job_run(ctx, job)
    if record is None:
        return
    text, body = summary_blocks.last_call_message(record.view, minutes)
    ts = post_once(ctx, job, record, record.view.slack_channel_id, "last_call", text, body)
    with ctx.database.transaction() as conn:
        reminders.mark_last_call_sent(conn, run_id, ts)
