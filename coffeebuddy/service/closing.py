"""Closing a run: shared by the Close button and by the reminder that closes a run still
open at its reminder time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coffeebuddy.db import Conn
from coffeebuddy.domain.fairness import choose_runner
from coffeebuddy.domain.models import Candidate, RunnerChoice, RunStatus
from coffeebuddy.metrics import RUN_DURATION, RUNS, RUNS_FAILED
from coffeebuddy.service.effects import refresh_run_message
from coffeebuddy.slack.api import FailureCategory
from coffeebuddy.store import orders as store_orders
from coffeebuddy.store import outbox, queue, runners, runs
from coffeebuddy.store.orders import ActiveOrder
from coffeebuddy.store.runners import Served
from coffeebuddy.store.runs import RunRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloseOutcome:
    status: RunStatus
    runner_slack_id: str | None = None
    participants: int = 0
    duration_seconds: float | None = None

    def count(self) -> None:
        """Metrics for the outcome; call once the transaction committed."""
        RUNS.labels(self.status.value).inc()
        if self.duration_seconds is not None:
            RUN_DURATION.observe(self.duration_seconds)


def close_locked_run(conn: Conn, run: RunRow, *, closed_by: str | None) -> CloseOutcome:
    """Close an open run whose row the caller locked (`store.runs.lock`): choose the runner by
    the fairness rule, record it, and queue the refresh, summary and runner DM. A run
    nobody ordered in is canceled instead. `closed_by` is None when the reminder closed it."""
    run_id = run.id
    orders = store_orders.active(conn, run_id)
    if not orders:
        cancel_locked_run(
            conn, run, reason="no_orders", by=closed_by, text="Nobody ordered, so it was canceled."
        )
        return CloseOutcome(RunStatus.CANCELED)

    choice, history = choose_fair_runner(conn, run, orders)
    runner = next(o for o in orders if o.slack_user_id == choice.runner_slack_id)
    closed = runs.close(
        conn, run_id, runner_user_id=runner.user_id, reason=choice.reason, rule=choice.rule
    )
    if closed is None:
        raise RuntimeError("close_locked_run needs an open, locked run")
    store_orders.finalize(conn, run_id)
    runners.record_stats(
        conn,
        user_id=runner.user_id,
        channel_id=run.channel_id,
        runs_served_count=history[choice.runner_slack_id].runs_in_window + 1,
        last_run_at=closed.closed_at,
    )
    duration = (closed.closed_at - closed.started_at).total_seconds()
    items = len(orders)
    _announce_close(conn, run, choice, items=items, closed_by=closed_by, duration=duration)
    log.info(
        "run_closed",
        extra={"participants": items, "rule": choice.rule, "user_id": choice.runner_slack_id},
    )
    return CloseOutcome(RunStatus.CLOSED, choice.runner_slack_id, items, duration)


def _announce_close(
    conn: Conn,
    run: RunRow,
    choice: RunnerChoice,
    *,
    items: int,
    closed_by: str | None,
    duration: float,
) -> None:
    """What follows a close, in its transaction: the run message refreshed, the summary
    and the runner DM queued, and the `run_closed` and `runner_assigned` events."""
    run_id = run.id
    corr = run.correlation_id
    channel = run.slack_channel_id
    refresh_run_message(conn, run_id, corr, delay_seconds=0)
    queue.enqueue(
        conn, queue.POST_SUMMARY, {"run_id": str(run_id)}, run_id=run_id, correlation_id=corr
    )
    queue.enqueue(
        conn, queue.DM_RUNNER, {"run_id": str(run_id)}, run_id=run_id, correlation_id=corr
    )
    outbox.record(
        conn,
        "run_closed",
        run_id=run_id,
        channel_id=channel,
        correlation_id=corr,
        participants=items,
        items=items,
        by=closed_by,
        duration_seconds=round(duration, 3),
    )
    outbox.record(
        conn,
        "runner_assigned",
        run_id=run_id,
        channel_id=channel,
        correlation_id=corr,
        runner=choice.runner_slack_id,
        rule=choice.rule,
        candidates=len(choice.considered),
    )


def runner_history(conn: Conn, run: RunRow, user_ids: Sequence[Any]) -> dict[str, Served]:
    """Per Slack id: how many of the channel's last `fairness_window_runs` closed runs
    (other than `run`) each person served, and when they last served."""
    return runners.history(
        conn,
        channel_id=run.channel_id,
        run_id=run.id,
        window=run.fairness_window_runs,
        user_ids=user_ids,
    )


def choose_fair_runner(
    conn: Conn, run: RunRow, orders: Sequence[ActiveOrder]
) -> tuple[RunnerChoice, dict[str, Served]]:
    """The fairness rule over the people of `orders` (the run's active orders) for the
    locked `run`, with the channel's history; also returns that history by Slack id.
    Closing uses every order; "I can't go" uses those who haven't declined."""
    window = run.fairness_window_runs
    history = runner_history(conn, run, [o.user_id for o in orders])
    previous = runners.previous(conn, channel_id=run.channel_id, run_id=run.id)
    choice = choose_runner(
        [
            Candidate(
                slack_user_id=o.slack_user_id,
                runs_in_window=history[o.slack_user_id].runs_in_window,
                last_run_at=history[o.slack_user_id].last_run_at,
                volunteered=bool(o.volunteer),
                name=o.name,
            )
            for o in orders
        ],
        previous_runner=previous.slack_user_id if previous else None,
        previous_runner_name=previous.display_name if previous else None,
        window=window,
        seed=str(run.id),
    )
    return choice, history


def cancel_locked_run(
    conn: Conn, run: RunRow, *, reason: str, by: str | None, text: str | None
) -> None:
    """Cancel an open run whose row the caller locked. `reason` is for the event stream
    ("no_orders", "canceled", "channel_disabled"); `text` is shown on the run message."""
    runs.end(conn, run.id, status="canceled", cancel_reason=text, from_statuses=["open"])
    refresh_run_message(conn, run.id, run.correlation_id, delay_seconds=0)
    outbox.record_run(
        conn,
        "run_canceled",
        run,
        reason=reason,
        by=by,
    )


def fail_run(
    conn: Conn,
    run_id: str,
    *,
    reason: str,
    category: FailureCategory,
    from_statuses: list[str],
    channel_id: str,
    correlation_id: str,
) -> bool:
    """Mark a run failed (it can't complete) for a `category` of reason (the pilot's
    critical error rate); True when this call changed it."""
    ended = runs.end(
        conn,
        run_id,
        status="failed",
        failure_reason=reason,
        failure_category=category,
        from_statuses=from_statuses,
    )
    if not ended:
        return False
    RUNS_FAILED.labels(category).inc()
    refresh_run_message(conn, run_id, correlation_id, delay_seconds=0)
    outbox.record(
        conn,
        "run_failed",
        run_id=run_id,
        channel_id=channel_id,
        correlation_id=correlation_id,
        category=category,
    )
    return True
