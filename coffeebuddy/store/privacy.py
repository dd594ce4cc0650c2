"""Deleting what CoffeeBuddy stores about people: a person's "forget me", and the daily
retention purge (its rules are in `coffeebuddy.service.privacy` and the queries)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from coffeebuddy import db
from coffeebuddy.db import Conn


@dataclass(frozen=True)
class PurgedRuns:
    runs: int
    orders: int
    jobs: int
    # What else the purge must follow up: the runs' events, and the channels' runner stats.
    run_ids: tuple[uuid.UUID, ...]
    channel_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class RecomputedStats:
    deleted: int
    updated: int


def db_now(conn: Conn) -> datetime:
    row = db.one(conn, "db_now")
    assert row is not None
    return row["now"]  # type: ignore[no-any-return]


def purge_runs(conn: Conn, now: datetime) -> PurgedRuns:
    """Finished runs past their channel's retention, with their orders and waiting jobs."""
    row = db.one(conn, "purge_expired_runs", {"now": now})
    assert row is not None  # an aggregate always gives a row
    return PurgedRuns(
        runs=int(row["runs"]),
        orders=int(row["orders"]),
        jobs=int(row["jobs"]),
        run_ids=tuple(row["run_ids"]),
        channel_ids=tuple(row["channel_ids"]),
    )


def purge_preferences(conn: Conn, now: datetime) -> int:
    return db.run(conn, "purge_expired_preferences", {"now": now})


def recompute_runner_stats(
    conn: Conn, now: datetime, channel_ids: tuple[uuid.UUID, ...]
) -> RecomputedStats:
    row = db.one(conn, "recompute_runner_stats", {"now": now, "channel_ids": list(channel_ids)})
    assert row is not None  # an aggregate always gives a row
    return RecomputedStats(deleted=int(row["deleted"]), updated=int(row["updated"]))


def purge_traceless_users(conn: Conn, now: datetime) -> int:
    return db.run(conn, "purge_traceless_users", {"now": now})


def purge_events(conn: Conn, now: datetime, run_ids: tuple[uuid.UUID, ...]) -> int:
    return db.run(conn, "purge_expired_events", {"now": now, "run_ids": list(run_ids)})


def forget(conn: Conn, slack_user_id: str) -> int:
    """Delete the person's usual in every channel and the outbox events that name them;
    returns how many usuals went."""
    deleted = db.all_rows(conn, "forget_user_preferences", {"slack_user_id": slack_user_id})
    # The event outbox names people too; their events go (nothing else of runs).
    db.run(conn, "forget_user_events", {"slack_user_id": slack_user_id})
    return len(deleted)
