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
