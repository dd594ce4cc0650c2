"""Runs: the queries on the `runs` table, returning typed rows. Shared by the web path
and the worker; the services never name a run query themselves."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from coffeebuddy import db
from coffeebuddy.db import Conn
from coffeebuddy.domain.models import OrderLine, RunStatus, RunView
from coffeebuddy.store import columns, orders


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
    lines = tuple(
        OrderLine(slack_user_id=o.slack_user_id, text=o.text, volunteer=o.volunteer, name=o.name)
        for o in orders.active(conn, run_id)
    )
    view = RunView(
        run_id=str(row["id"]),
        slack_channel_id=row["slack_channel_id"],
        initiator_slack_id=row["initiator_slack_id"],
        status=RunStatus(row["status"]),
        started_at=row["started_at"],
        pickup_time=row["pickup_time"],
        note=row["pickup_note"],
        orders=lines,
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


@dataclass(frozen=True)
class RunRow:
    """A run with its channel's ids and settings, as `lock_run`, `share_run` and
    `get_run_view` read it: what the services check before they act on it, and what
    closing, "I can't go" and the reminders read."""

    id: uuid.UUID
    status: RunStatus
    channel_id: uuid.UUID
    slack_channel_id: str
    slack_team_id: str
    correlation_id: str
    initiator_slack_id: str
    summary_permalink: str | None
    pickup_time: datetime | None
    closed_at: datetime | None
    runner_user_id: uuid.UUID | None
    # Who said "I can't go" (Slack ids).
    declined_user_ids: tuple[str, ...]
    runner_dm_channel: str | None
    runner_dm_ts: str | None
    reminder_at: datetime | None
    reminder_sent_at: datetime | None
    reminder_ts: str | None
    last_call_ts: str | None
    # The channel's settings the run follows.
    channel_enabled: bool
    fairness_window_runs: int
    reminders_enabled: bool
    reminder_offset_minutes: int
    last_call_enabled: bool
    last_call_minutes: int
    # Only `get_run_view` reads them (who besides the starter may manage the run).
    channel_admin_ids: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRow:
        # The locking queries don't read the channel's admins.
        named = {f.name: row[f.name] for f in fields(cls) if f.name != "channel_admin_ids"}
        return cls(
            **{
                **named,
                "status": RunStatus(row["status"]),
                "declined_user_ids": tuple(row["declined_user_ids"]),
                "channel_admin_ids": tuple(row.get("channel_admin_ids") or ()),
            }
        )


@dataclass(frozen=True)
class Closed:
    """When a run closed, and when it started (its duration)."""

    closed_at: datetime
    started_at: datetime


@dataclass(frozen=True)
class OpenRun:
    """The channel's open run, as a refused second `/coffee` points to it."""

    id: uuid.UUID
    initiator_slack_id: str
    message_permalink: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OpenRun:
        return cls(**columns(cls, row))


def _run_row(row: Mapping[str, Any] | None) -> RunRow | None:
    return RunRow.from_row(row) if row is not None else None


def lock(conn: Conn, run_id: uuid.UUID | str) -> RunRow | None:
    """Lock the run row FOR UPDATE (closing, canceling, editing the run)."""
    return _run_row(db.one(conn, "lock_run", {"run_id": run_id}))


def share(conn: Conn, run_id: uuid.UUID | str) -> RunRow | None:
    """Lock the run row FOR SHARE: order writes go side by side, never beside a close."""
    return _run_row(db.one(conn, "share_run", {"run_id": run_id}))


def view(conn: Conn, run_id: uuid.UUID | str) -> RunRow | None:
    """The run without a lock (checks made before locking it)."""
    return _run_row(db.one(conn, "get_run_view", {"run_id": run_id}))


def insert(
    conn: Conn,
    *,
    channel_id: uuid.UUID,
    initiator_user_id: uuid.UUID,
    pickup_time: datetime | None,
    pickup_note: str | None,
    correlation_id: str,
    first_in_channel: bool,
    command_at: datetime,
) -> uuid.UUID | None:
    """A new open run's id; None when the channel has one open already."""
    row = db.one(
        conn,
        "insert_run",
        {
            "channel_id": channel_id,
            "initiator_user_id": initiator_user_id,
            "pickup_time": pickup_time,
            "pickup_note": pickup_note,
            "correlation_id": correlation_id,
            "first_in_channel": first_in_channel,
            "command_at": command_at,
        },
    )
    return row["id"] if row is not None else None


def open_in_channel(conn: Conn, channel_id: uuid.UUID) -> OpenRun | None:
    row = db.one(conn, "get_open_run_for_channel", {"channel_id": channel_id})
    return OpenRun.from_row(row) if row is not None else None


def update_details(
    conn: Conn, run_id: uuid.UUID, *, pickup_time: datetime | None, pickup_note: str | None
) -> None:
    db.run(
        conn,
        "update_run_details",
        {"run_id": run_id, "pickup_time": pickup_time, "pickup_note": pickup_note},
    )


def close(
    conn: Conn, run_id: uuid.UUID, *, runner_user_id: uuid.UUID, reason: str, rule: str
) -> Closed | None:
    """Close the open run with its runner; None when it was not open."""
    params = {
        "run_id": run_id,
        "runner_user_id": runner_user_id,
        "runner_reason": reason,
        "runner_rule": rule,
    }
    row = db.one(conn, "close_run", params)
    return Closed(closed_at=row["closed_at"], started_at=row["started_at"]) if row else None


def end(
    conn: Conn,
    run_id: uuid.UUID | str,
    *,
    status: str,
    from_statuses: list[str],
    failure_reason: str | None = None,
    failure_category: str | None = None,
    cancel_reason: str | None = None,
) -> bool:
    """Cancel or fail a run in one of `from_statuses`; False when it was in none."""
    params = {
        "run_id": run_id,
        "status": status,
        "failure_reason": failure_reason,
        "failure_category": failure_category,
        "cancel_reason": cancel_reason,
        "from_statuses": from_statuses,
    }
    return db.one(conn, "end_run", params) is not None
