"""Who serves: the channel's runner history the fairness rule reads, the runner stats that
mirror it, and handing a closed run on to another runner ("I can't go")."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coffeebuddy import db
from coffeebuddy.db import Conn


@dataclass(frozen=True)
class Served:
    """How many of the channel's last `window` closed runs someone served, and when they
    last served at all (outside the window too)."""

    runs_in_window: int
    last_run_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Served:
        return cls(runs_in_window=int(row["runs_in_window"]), last_run_at=row["last_run_at"])


@dataclass(frozen=True)
class PreviousRunner:
    slack_user_id: str
    display_name: str


def history(
    conn: Conn,
    *,
    channel_id: uuid.UUID,
    run_id: uuid.UUID,
    window: int,
    user_ids: Sequence[uuid.UUID],
) -> dict[str, Served]:
    """Per Slack id of `user_ids` (our ids): their runs among the channel's last `window`
    closed runs other than `run_id`."""
    rows = db.all_rows(
        conn,
        "runner_history",
        {"channel_id": channel_id, "run_id": run_id, "window": window, "user_ids": list(user_ids)},
    )
    return {row["slack_user_id"]: Served.from_row(row) for row in rows}


def previous(conn: Conn, *, channel_id: uuid.UUID, run_id: uuid.UUID) -> PreviousRunner | None:
    """Who ran the channel's latest closed run other than `run_id`."""
    row = db.one(conn, "previous_runner", {"channel_id": channel_id, "run_id": run_id})
    if row is None:
        return None
    return PreviousRunner(slack_user_id=row["slack_user_id"], display_name=row["display_name"])


def record_stats(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    channel_id: uuid.UUID,
    runs_served_count: int,
    last_run_at: datetime | None,
) -> None:
    """Set someone's runner stats in a channel (they mirror `history`)."""
    db.run(
        conn,
        "upsert_runner_stats",
        {
            "user_id": user_id,
            "channel_id": channel_id,
            "runs_served_count": runs_served_count,
            "last_run_at": last_run_at,
        },
    )


def drop_stats(conn: Conn, *, user_id: uuid.UUID, channel_id: uuid.UUID) -> None:
    """Someone who served no closed run in the channel has no stats row."""
    db.run(conn, "swap_delete_runner_stats", {"user_id": user_id, "channel_id": channel_id})


def hand_on(
    conn: Conn,
    run_id: uuid.UUID,
    *,
    runner_user_id: uuid.UUID,
    reason: str,
    rule: str,
    declined: str,
    old_runner_user_id: uuid.UUID,
) -> datetime | None:
    """Make `runner_user_id` the runner of the closed run whose runner `old_runner_user_id`
    declined (Slack id `declined`); returns the run's close time, None when it wasn't so."""
    row = db.one(
        conn,
        "swap_runner",
        {
            "run_id": run_id,
            "runner_user_id": runner_user_id,
            "runner_reason": reason,
            "runner_rule": rule,
            "declined": declined,
            "old_runner_user_id": old_runner_user_id,
        },
    )
    return row["closed_at"] if row is not None else None


def newer_closed_run(
    conn: Conn, *, channel_id: uuid.UUID, run_id: uuid.UUID, closed_at: datetime
) -> bool:
    """Whether a closed run of the channel came after this one (its history is settled)."""
    params = {"channel_id": channel_id, "run_id": run_id, "closed_at": closed_at}
    return db.one(conn, "swap_newer_closed_run", params) is not None
