"""Applying the inbox: a run's inboxed actions, in arrival order, in batches.

The web acknowledges "Use my usual" and checked order forms with one insert each (an
`apply_action` job, see sql/queries/inbox.sql). Applying them out of order would be wrong
(a person's usual, then their edit, must end as the edit), so a run's actions are applied
by one party at a time, under the run's inbox lock, oldest first:
- a worker that claims one of them applies the run's next batch (up to BATCH_SIZE) in ONE
  transaction, each action in its own savepoint, and marks them done in that same
  transaction. A crash before the commit leaves them all queued (the claimed one comes
  back when its lease runs out), and none is applied twice. The run message is refreshed
  once per batch (the refresh job coalesces within the transaction);
- a close, or a person's cancel, drains what is left (`drain`) before it acts, under the
  same lock, so an order acknowledged before the close counts in it.
A burst is applied after it, not beside it: `apply_action` is a paced kind (see
`coffeebuddy.store.queue.Pacing`), so the web answering the burst has the cores to itself
and the worker applies the whole burst afterwards in a few large batches.
An action that fails rolls back to its savepoint and is tried again later; that person's
later actions wait behind it (still in order), everyone else's go ahead. After its last
attempt it is given up, and the person is told their order wasn't saved.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from coffeebuddy import db
from coffeebuddy.db import Conn, Database
from coffeebuddy.service.effects import queue_ephemeral
from coffeebuddy.store.queue import backoff_seconds

log = logging.getLogger(__name__)

# Actions applied per transaction: large enough that a 300-click burst is a few
# transactions (and a few run-message refreshes), small enough that one batch holds the
# run's share lock (which a close waits for) well under a second.
BATCH_SIZE = 100

GIVEN_UP_TEXT = (
    "⚠️ Sorry — I couldn't save your order just now. Please try again (reference `{reference}`)."
)


class Applier(Protocol):
    """What applies inboxed actions: `RunService` (service/runs.py), whose `db` a batch
    swaps for its one transaction."""

    db: Database

    def apply_inboxed(self, action: Mapping[str, Any], correlation_id: str | None) -> None: ...


class _OneTransaction:
    """Stands in for the service's Database inside a batch: every `transaction()` the
    service opens becomes a savepoint of the batch's one transaction."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        with self._conn.transaction():
            yield self._conn

    @contextmanager
    def statement(self) -> Iterator[Conn]:
        with self.transaction() as conn:
            yield conn


@dataclass(frozen=True)
class Outcome:
    """What a batch did: how many actions it applied, failed (to be tried again or given
    up) and held back behind a person's failed one; and, when the claimed job itself was
    not applied, when it may be claimed again (`wait_seconds`, 0: at once)."""

    applied: int
    failed: int
    held: int
    wait_seconds: float | None = None


def apply_batch(runs: Applier, run_id: str, leader: int, user_id: str) -> Outcome:
    """A worker claimed inboxed job `leader` (of `user_id`) of `run_id`: apply the run's
    next batch. If the leader itself was not in it (its person has an earlier action
    waiting for a retry, or the batch was full), say when to try it again."""
    with runs.db.transaction() as conn:
        db.one(conn, "lock_run_inbox", {"run_id": run_id})
        rows = db.all_rows(conn, "inbox_batch", {"run_id": run_id, "limit": BATCH_SIZE})
        outcome = _apply(runs, conn, rows)
        if any(int(r["id"]) == leader for r in rows):
            return outcome
        status = db.one(conn, "get_job", {"id": leader})
        if status is None or status["status"] not in ("queued", "running"):
            return outcome  # applied meanwhile (a close drained it)
        waiting = db.one(
            conn, "inbox_waiting", {"run_id": run_id, "id": leader, "user_id": user_id}
        )
    if waiting and waiting["until"] is not None:
        delay = (waiting["until"] - datetime.now(UTC)).total_seconds()
        return _with_wait(outcome, max(delay, 0.0))
    return _with_wait(outcome, 0.0)


def drain(runs: Applier, run_id: uuid.UUID | str) -> Outcome:
    """Apply everything still in the run's inbox now, retries that are still waiting
    included, after any batch a worker is applying right now."""
    with runs.db.transaction() as conn:
        db.one(conn, "lock_run_inbox", {"run_id": run_id})
        rows = db.all_rows(conn, "inbox_all", {"run_id": run_id})
        return _apply(runs, conn, rows)


def drain_person(runs: Applier, user_id: str) -> None:
    """Apply the inboxes of every run where `user_id` has an action waiting (before their
    "forget me", which must not be undone by an order applied after it)."""
    with runs.db.transaction() as conn:
        rows = db.all_rows(conn, "inbox_runs_of_person", {"user_id": user_id})
    for row in rows:
        drain(runs, row["run_id"])


def _with_wait(outcome: Outcome, seconds: float) -> Outcome:
    return Outcome(outcome.applied, outcome.failed, outcome.held, wait_seconds=seconds)


def _apply(runs: Applier, conn: Conn, rows: Sequence[Mapping[str, Any]]) -> Outcome:
    """Apply `rows` in order, each in a savepoint of `conn`'s transaction."""
    if not rows:
        return Outcome(0, 0, 0)
    # The same service, its every transaction a savepoint of this one.
    batch = copy.copy(runs)
    batch.db = cast(Database, _OneTransaction(conn))
    done: list[int] = []
    failed = 0
    # A person whose action failed: their later ones wait until it is tried again.
    held_until: dict[str, datetime] = {}
    held: list[tuple[int, datetime]] = []
    for row in rows:
        payload = row["payload"]
        person = str(payload.get("user_id") or "")
        if person in held_until:
            held.append((int(row["id"]), held_until[person]))
            continue
        try:
            batch.apply_inboxed(payload, row["correlation_id"])
        except Exception as exc:
            failed += 1
            until = _failed(conn, row, exc)
            if until is not None:
                held_until[person] = until
        else:
            done.append(int(row["id"]))
    if done:
        db.run(conn, "inbox_done", {"ids": done})
    for job_id, until in held:
        db.run(conn, "inbox_postpone", {"ids": [job_id], "until": until})
    return Outcome(len(done), failed, len(held))


def _failed(conn: Conn, row: Mapping[str, Any], exc: Exception) -> datetime | None:
    """Record one action's failure (its savepoint is rolled back): when it will be tried
    again, or None when it was given up and its person told."""
    # The claim of a running job already counted this attempt.
    attempts = int(row["attempts"]) + (0 if row["status"] == "running" else 1)
    dead = attempts >= int(row["max_attempts"])
    error = type(exc).__name__
    retried = db.one(
        conn,
        "inbox_failed",
        {
            "id": row["id"],
            "dead": dead,
            "attempts": attempts,
            "delay_seconds": 0.0 if dead else backoff_seconds(attempts),
            "error": error,
        },
    )
    facts = {"job_id": row["id"], "attempt": attempts, "error": error}
    if not dead:
        log.warning("inboxed_action_retry", extra=facts)
        return retried["run_at"] if retried else None
    log.error("inboxed_action_dead", exc_info=exc, extra=facts)
    payload = row["payload"]
    reference = row["correlation_id"] or str(row["id"])
    queue_ephemeral(
        conn,
        # Not coalesced with their answers about the run (which the latest would replace):
        # this one must reach them.
        None,
        channel=payload.get("channel_id") or "",
        user=payload["user_id"],
        text=GIVEN_UP_TEXT.format(reference=reference),
        response_url=payload.get("response_url"),
        correlation_id=reference,
    )
    return None
