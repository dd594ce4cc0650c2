"""A run's reminder jobs: when its runner reminder is due, and the jobs that fire then.
One queued job per key, so scheduling again moves the job instead of adding another."""

from __future__ import annotations

import uuid
from datetime import datetime

from psycopg.types.json import Jsonb

from coffeebuddy import db
from coffeebuddy.db import Conn


def set_due(conn: Conn, run_id: uuid.UUID | str, at: datetime | None) -> None:
    """When the run's runner reminder is due (None: no reminder)."""
    db.run(conn, "set_reminder_at", {"run_id": run_id, "reminder_at": at})


def schedule(
    conn: Conn,
    kind: str,
    run_id: uuid.UUID | str,
    *,
    at: datetime,
    key: str,
    correlation_id: str | None,
) -> None:
    db.one(
        conn,
        "schedule_job_at",
        {
            "kind": kind,
            "payload": Jsonb({"run_id": str(run_id), "due_at": at.isoformat()}),
            "run_at": at,
            "dedupe_key": key,
            "run_id": run_id,
            "correlation_id": correlation_id,
        },
    )


def unschedule(conn: Conn, key: str) -> None:
    """Drop the queued job with `key`, if any (one already running finishes)."""
    db.run(conn, "unschedule_job", {"dedupe_key": key})


def close_jobs_pending(conn: Conn, run_id: uuid.UUID | str) -> bool:
    """Whether the run's summary or "you're the runner" DM is still to be sent."""
    row = db.one(conn, "pending_close_jobs", {"run_id": run_id})
    return row is not None and bool(row["n"])


def due_recorded(conn: Conn, run_id: uuid.UUID | str, due_at: str) -> bool:
    """Whether the `reminder_due` event for the reminder due at `due_at` is recorded."""
    return db.one(conn, "reminder_due_recorded", {"run_id": run_id, "due_at": due_at}) is not None


def mark_sent(conn: Conn, run_id: uuid.UUID | str, ts: str) -> float | None:
    """Record the runner reminder as sent: how late it went out (seconds past its due
    time, negative when early); None when it was recorded already."""
    row = db.one(conn, "mark_reminder_sent", {"run_id": run_id, "ts": ts})
    if row is None:
        return None
    return float((row["reminder_sent_at"] - row["reminder_at"]).total_seconds())


def mark_sent_to(conn: Conn, run_id: uuid.UUID | str, ts: str, runner: str) -> bool:
    """Record the reminder of a runner who took the run over as sent, only while `runner`
    is still its runner; False otherwise (or when recorded already)."""
    params = {"run_id": run_id, "ts": ts, "runner": runner}
    return db.one(conn, "swap_mark_reminder_sent", params) is not None


def mark_last_call_sent(conn: Conn, run_id: uuid.UUID | str, ts: str) -> None:
    db.run(conn, "mark_last_call_sent", {"run_id": run_id, "ts": ts})
