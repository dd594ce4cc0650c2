"""What `/coffee stats` reads, in one read-only snapshot: the channel, its closed-run
history and the people of its fairness window."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coffeebuddy import db
from coffeebuddy.db import Conn
from coffeebuddy.store import columns


@dataclass(frozen=True)
class StatsChannel:
    id: uuid.UUID
    enabled: bool
    fairness_window_runs: int
    admin_user_ids: tuple[str, ...]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StatsChannel:
        return cls(**{**columns(cls, row), "admin_user_ids": tuple(row["admin_user_ids"])})


@dataclass(frozen=True)
class History:
    """How many closed runs the channel has, and who ran the latest one."""

    closed_runs: int
    previous_runner: str | None


@dataclass(frozen=True)
class WindowPerson:
    """Someone who served or ordered in the channel's fairness window."""

    slack_user_id: str
    runs_in_window: int
    runs_joined: int
    # When they last served at all (outside the window too, as the fairness rule counts).
    last_run_at: datetime | None
    display_name: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WindowPerson:
        return cls(**{**columns(cls, row), "display_name": row["display_name"] or ""})


def read_only(conn: Conn) -> None:
    """Make the caller's transaction a read-only snapshot: stats never write."""
    db.run(conn, "stats_read_only")


def channel(conn: Conn, slack_channel_id: str) -> StatsChannel | None:
    row = db.one(conn, "stats_channel", {"slack_channel_id": slack_channel_id})
    return StatsChannel.from_row(row) if row is not None else None


def history(conn: Conn, channel_id: uuid.UUID) -> History:
    row = db.one(conn, "stats_history", {"channel_id": channel_id})
    assert row is not None  # an aggregate always gives a row
    return History(closed_runs=int(row["closed_runs"]), previous_runner=row["previous_runner"])


def window(conn: Conn, channel_id: uuid.UUID, runs: int) -> list[WindowPerson]:
    """Everyone who served or ordered in the channel's last `runs` closed runs."""
    rows = db.all_rows(conn, "stats_window", {"channel_id": channel_id, "window": runs})
    return [WindowPerson.from_row(row) for row in rows]
