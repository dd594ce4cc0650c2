"""Reads that turn rows into domain data, shared by the web path and the worker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from coffeebuddy import db
from coffeebuddy.db import Conn
from coffeebuddy.domain.models import OrderLine, RunStatus, RunView


@dataclass(frozen=True)
class RunRecord:
    """A run's view plus the bookkeeping the worker needs (message timestamps)."""

    view: RunView
    channel_id: uuid.UUID
    # The workspace the run's channel belongs to ("" when not recorded).
    slack_team_id: str
    correlation_id: str
    message_ts: str | None
    summary_ts: str | None
    runner_dm_ts: str | None
    closed_at: Any


def parse_uuid(value: object) -> uuid.UUID | None:
    """A run id from Slack (button value, modal metadata); None when it isn't one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def load_run(conn: Conn, run_id: uuid.UUID | str) -> RunRecord | None:
    row = db.one(conn, "get_run_view", {"run_id": run_id})
    if row is None:
        return None
    orders = tuple(
        OrderLine(
            slack_user_id=o["slack_user_id"],
            text=o["order_text"],
            volunteer=o["volunteer"],
            name=o["display_name"],
        )
        for o in db.all_rows(conn, "active_orders", {"run_id": run_id})
    )
    view = RunView(
        run_id=str(row["id"]),
        slack_channel_id=row["slack_channel_id"],
        initiator_slack_id=row["initiator_slack_id"],
        status=RunStatus(row["status"]),
        started_at=row["started_at"],
        pickup_time=row["pickup_time"],
        note=row["pickup_note"],
        orders=orders,
        runner_slack_id=row["runner_slack_id"],
        runner_reason=row["runner_reason"],
        failure_reason=row["failure_reason"],
        cancel_reason=row["cancel_reason"],
        first_in_channel=row["first_in_channel"],
        rating_count=row["rating_count"],
        rating_average=row["rating_average"],
        # The runner reminder closes a run still open; with reminders off nothing does.
        order_by=row["reminder_at"] if row["reminders_enabled"] else None,
        message_permalink=row["message_permalink"],
        summary_permalink=row["summary_permalink"],
    )
    return RunRecord(
        view=view,
        channel_id=row["channel_id"],
        slack_team_id=row["slack_team_id"],
        correlation_id=row["correlation_id"],
        message_ts=row["message_ts"],
        summary_ts=row["summary_ts"],
        runner_dm_ts=row["runner_dm_ts"],
        closed_at=row["closed_at"],
    )
