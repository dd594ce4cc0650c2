"""Enqueue, claim, finish and retry jobs. Every function takes the caller's connection so
that a job is written in the same transaction as the change that needs it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from coffeebuddy import db
from coffeebuddy.db import Conn

# Kinds of job; each is declared (handler, attempts, what happens when it dies) in
# `coffeebuddy.jobs.kinds`.
POST_RUN_MESSAGE = "post_run_message"
REFRESH_RUN_MESSAGE = "refresh_run_message"
NOTIFY_USER = "notify_user"
POST_SUMMARY = "post_summary"
DM_RUNNER = "dm_runner"
REPLACE_MESSAGE = "replace_message"
# After "I can't go": the channel summary shows the new runner, who is reminded if the
# old runner already was (see `coffeebuddy.service.swap`).
UPDATE_SUMMARY = "update_summary"
REMIND_NEW_RUNNER = "remind_new_runner"
# ...and a reply in the summary's thread says so, with plain names (no notifications).
POST_RUNNER_CHANGE = "post_runner_change"
# The App Home tab, published when someone opens it (see `coffeebuddy.service.home`).
PUBLISH_HOME = "publish_home"
# An action acknowledged through the inbox (`sql/queries/inbox.sql`), applied by the worker.
APPLY_ACTION = "apply_action"
# A person's Slack profile (time zone, admin flag) fetched ahead of need, so that a request
# that needs it finds it cached (see `coffeebuddy.service.effects.warm_profile`).
WARM_PROFILE = "warm_profile"
# The runner's reminder before pickup and the last call for orders (see
# `coffeebuddy.service.reminders`).
RUNNER_REMINDER = "runner_reminder"
LAST_CALL = "last_call"
# Housekeeping the worker itself schedules (see `coffeebuddy.jobs.maintenance`).
PRUNE_JOBS = "prune_jobs"
# The daily retention purge (see `coffeebuddy.service.privacy`).
RETENTION_PURGE = "retention_purge"

STATUSES = ("queued", "running", "done", "dead")

# A job's attempts unless its enqueuer or its kind (`coffeebuddy.jobs.kinds`) says fewer.
DEFAULT_MAX_ATTEMPTS = 8

BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 300.0


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    run_id: str | None
    correlation_id: str | None
    dedupe_key: str | None


def enqueue(
    conn: Conn,
    kind: str,
    payload: Mapping[str, Any],
    *,
    run_id: uuid.UUID | str | None = None,
    correlation_id: str | None = None,
    delay_seconds: float = 0.0,
    dedupe_key: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    replace_payload: bool = False,
    lane: str | None = None,
    bring_forward: bool = True,
) -> int | None:
    """Add a job; with `dedupe_key`, nothing is added while one with that key is queued
    (that one is brought forward if this one was due sooner, and takes this payload when
    `replace_payload`: the latest wins; with `bring_forward` False, joining it takes no
    row lock). Returns the id of the job added or brought forward, None when it simply
    joined a queued one."""
    params = {
        "kind": kind,
        "payload": Jsonb(dict(payload)),
        "delay_seconds": delay_seconds,
        "max_attempts": max_attempts,
        "dedupe_key": dedupe_key,
        "run_id": run_id,
        "correlation_id": correlation_id,
        "replace_payload": replace_payload,
        "lane": lane or _lane(payload, run_id),
    }
    if bring_forward or replace_payload:
        row = db.one(conn, "enqueue_job", params)
    else:
        row = db.one(conn, "enqueue_coalesced_job", params)
    return int(row["id"]) if row else None


def _lane(payload: Mapping[str, Any], run_id: uuid.UUID | str | None) -> str | None:
    """Whose turn a job waits for: a person's answers are their own lane, a run's message
    work its run's, so one person's or one channel's burst never queues the others."""
    user = payload.get("user")
    if isinstance(user, str) and user:
        return f"user:{user}"
    if run_id is not None:
        return f"run:{run_id}"
    channel = payload.get("channel")
    return f"channel:{channel}" if isinstance(channel, str) and channel else None


def claim(conn: Conn, *, worker_id: str, limit: int, lease_seconds: int) -> list[Job]:
    rows = db.all_rows(
        conn,
        "claim_jobs",
        {"worker_id": worker_id, "limit": limit, "lease_seconds": lease_seconds},
    )
    return [
        Job(
            id=int(r["id"]),
            kind=r["kind"],
            payload=dict(r["payload"] or {}),
            attempts=int(r["attempts"]),
            max_attempts=int(r["max_attempts"]),
            run_id=str(r["run_id"]) if r["run_id"] else None,
            correlation_id=r["correlation_id"],
            dedupe_key=r["dedupe_key"],
        )
        for r in sorted(rows, key=lambda r: int(r["id"]))
    ]


def complete(conn: Conn, job: Job, *, worker_id: str) -> bool:
    return db.run(conn, "complete_job", {"id": job.id, "worker_id": worker_id}) == 1


def retry(
    conn: Conn,
    job: Job,
    *,
    worker_id: str,
    error: str,
    delay_seconds: float,
    free_attempt: bool = False,
) -> bool:
    """Put the job back; `free_attempt` for waits (rate limits) that are not failures."""
    params = {
        "id": job.id,
        "worker_id": worker_id,
        "error": error[:500],
        "delay_seconds": delay_seconds,
        "free_attempt": free_attempt,
    }
    return db.run(conn, "retry_job", params) == 1


def bury(conn: Conn, job: Job, *, worker_id: str, error: str) -> bool:
    return (
        db.run(conn, "bury_job", {"id": job.id, "worker_id": worker_id, "error": error[:500]}) == 1
    )


def backoff_seconds(attempts: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [base/2, base * 2^(attempts-1)], capped."""
    # The exponent is bounded so a huge attempt count can't overflow the float.
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(max(attempts - 1, 0), 32))
    return (rng or random).uniform(BACKOFF_BASE_SECONDS / 2, ceiling)


@dataclass(frozen=True)
class JobInfo:
    """What operators see of a job: never its payload (it can hold response URLs)."""

    id: int
    kind: str
    status: str
    attempts: int
    max_attempts: int
    run_at: datetime
    last_error: str | None


def list_jobs(conn: Conn, *, status: str | None = None, limit: int = 50) -> list[JobInfo]:
    """Newest first."""
    rows = db.all_rows(conn, "list_jobs", {"status": status, "limit": limit})
    return [
        JobInfo(
            id=int(r["id"]),
            kind=r["kind"],
            status=r["status"],
            attempts=int(r["attempts"]),
            max_attempts=int(r["max_attempts"]),
            run_at=r["run_at"],
            last_error=r["last_error"],
        )
        for r in rows
    ]


def statuses(conn: Conn, ids: list[int]) -> dict[int, str]:
    return {int(r["id"]): r["status"] for r in db.all_rows(conn, "job_statuses", {"ids": ids})}


def retry_dead(conn: Conn, ids: list[int] | None = None) -> list[tuple[int, str]]:
    """Dead jobs back to the queue, due now with fresh attempts: those in `ids`, or every
    dead job when `ids` is None. Returns (id, kind) of the jobs that went back; workers are
    woken when the transaction commits."""
    rows = db.all_rows(conn, "retry_dead_jobs", {"ids": list(ids or []), "all_dead": ids is None})
    return [(int(r["id"]), r["kind"]) for r in rows]


@dataclass(frozen=True)
class Pacing:
    """How long the jobs of a paced kind wait for a burst to end (seconds).

    Such a job is enqueued due `quiet` after it arrived. A worker that claims one while
    jobs of its kind are still arriving (the newest came less than `quiet` ago) puts them
    all back until they pause, but no longer than until the oldest has waited `max_wait`.
    A burst the web is answering is thus worked off after it, not beside it on the same
    cores; at a human pace a job simply goes `quiet` later."""

    quiet: float = 0.0
    max_wait: float = 0.0

    def wait(self, since_newest: float | None, since_oldest: float | None) -> float:
        """How much longer to wait, given how long ago the newest and the oldest
        unfinished job arrived; 0: go now."""
        if since_newest is None or since_oldest is None:
            return 0.0
        if since_newest >= self.quiet or since_oldest >= self.max_wait:
            return 0.0
        return min(self.quiet - since_newest, self.max_wait - since_oldest)


def burst_wait(conn: Conn, kind: str, pacing: Pacing) -> float:
    """How long the queued jobs of `kind` should wait for their burst to end: 0 when it
    has (they are then left as they are); otherwise they are all held that long."""
    row = db.one(conn, "arrivals_of_kind", {"kind": kind})
    wait = pacing.wait(row["since_newest"], row["since_oldest"]) if row else 0.0
    if wait > 0:
        db.run(conn, "hold_kind", {"kind": kind, "seconds": wait})
    return wait
