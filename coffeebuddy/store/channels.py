"""A channel's row: its settings, its admins, its data reset and the admins' audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from coffeebuddy import db
from coffeebuddy.db import Conn
from coffeebuddy.store import columns

# The columns `/coffee admin` edits (see `coffeebuddy.slack.admin_blocks`).
SETTINGS = (
    "enabled",
    "reminders_enabled",
    "reminder_offset_minutes",
    "last_call_enabled",
    "last_call_minutes",
    "fairness_window_runs",
    "data_retention_days",
    "admin_user_ids",
)


@dataclass(frozen=True)
class Channel:
    id: uuid.UUID
    slack_channel_id: str
    # The workspace that first used the channel ("" until one did).
    slack_team_id: str
    name: str
    enabled: bool
    reminders_enabled: bool
    reminder_offset_minutes: int
    last_call_enabled: bool
    last_call_minutes: int
    fairness_window_runs: int
    data_retention_days: int
    admin_user_ids: tuple[str, ...]
    onboarded_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Channel:
        return cls(**{**columns(cls, row), "admin_user_ids": tuple(row["admin_user_ids"])})

    def settings(self) -> dict[str, Any]:
        """The settings `/coffee admin` edits, by column name."""
        return {key: getattr(self, key) for key in SETTINGS}


@dataclass(frozen=True)
class ResetCounts:
    """What a data reset deleted (the audit trail records these)."""

    runs: int
    orders: int
    preferences: int
    runner_stats: int
    jobs: int
    events: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ResetCounts:
        return cls(**{key: int(row[key]) for key in cls.__dataclass_fields__})

    def details(self) -> dict[str, int]:
        """As the audit trail records them."""
        return asdict(self)


@dataclass(frozen=True)
class OpenRunMessage:
    """The channel's open run, and its message once posted."""

    id: uuid.UUID
    message_ts: str | None


def _channel(row: Mapping[str, Any] | None) -> Channel | None:
    return Channel.from_row(row) if row is not None else None


def find(conn: Conn, slack_channel_id: str) -> Channel | None:
    return _channel(db.one(conn, "get_channel_by_slack_id", {"slack_channel_id": slack_channel_id}))


def lock(conn: Conn, slack_channel_id: str) -> Channel | None:
    """The channel row, locked for a settings change or a reset."""
    return _channel(db.one(conn, "lock_channel", {"slack_channel_id": slack_channel_id}))


def upsert(conn: Conn, slack_channel_id: str, *, team_id: str, name: str) -> Channel:
    """The channel, added on first use; a non-empty name is kept up to date."""
    row = db.one(
        conn,
        "upsert_channel",
        {"slack_channel_id": slack_channel_id, "team_id": team_id, "name": name},
    )
    assert row is not None  # INSERT … ON CONFLICT DO UPDATE always returns the row
    return Channel.from_row(row)


def mark_onboarded(conn: Conn, channel_id: uuid.UUID) -> None:
    """The channel's first run started (`first_in_channel` is set on that run only)."""
    db.run(conn, "mark_channel_onboarded", {"channel_id": channel_id})


def update_settings(conn: Conn, channel_id: uuid.UUID, settings: Mapping[str, Any]) -> None:
    """Write every one of `SETTINGS` (the caller holds the channel's lock)."""
    db.run(conn, "update_channel_settings", {**settings, "id": channel_id})


def open_run(conn: Conn, channel_id: uuid.UUID) -> OpenRunMessage | None:
    row = db.one(conn, "open_run_message", {"channel_id": channel_id})
    return OpenRunMessage(id=row["id"], message_ts=row["message_ts"]) if row is not None else None


def reset(conn: Conn, channel_id: uuid.UUID) -> ResetCounts:
    """Delete everything the channel stored except its settings and audit trail."""
    row = db.one(conn, "reset_channel", {"channel_id": channel_id})
    assert row is not None  # an aggregate always gives a row
    return ResetCounts.from_row(row)


def audit(
    conn: Conn,
    channel: Channel,
    *,
    admin: str,
    action_type: str,
    details: Mapping[str, Any],
) -> None:
    db.run(
        conn,
        "insert_audit",
        {
            "channel_id": channel.id,
            "slack_channel_id": channel.slack_channel_id,
            "admin": admin,
            "action_type": action_type,
            "details": Jsonb(dict(details)),
        },
    )


def recent_audit(conn: Conn, slack_channel_id: str, *, limit: int) -> list[dict[str, Any]]:
    """The newest admin actions first, as `admin_blocks.audit_text` shows them."""
    params = {"slack_channel_id": slack_channel_id, "limit": limit}
    return [dict(row) for row in db.all_rows(conn, "recent_audit", params)]
