"""Keeping the queue healthy and visible: the recurring prune job, the queue gauges, and
the worker's own HTTP port (/metrics, /health/live, /health/ready)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, multiprocess

from coffeebuddy import db
from coffeebuddy.config import WorkerSettings
from coffeebuddy.db import Conn, Database
from coffeebuddy.jobs.context import Context
from coffeebuddy.metrics import (
    JOB_OLDEST_DUE_AGE,
    JOB_QUEUE_DEPTH,
    JOBS_DEAD,
    JOBS_PRUNED,
    RETENTION_PURGED,
)
from coffeebuddy.service import privacy
from coffeebuddy.store import queue
from coffeebuddy.store.queue import Job

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

# One dedupe key for the prune job in the whole deployment: at most one is ever queued.
PRUNE_KEY = "recurring:prune_jobs"
# When a prune run stopped at its batch limit, the next one comes this soon.
PRUNE_AGAIN_SECONDS = 1.0
# The daily retention purge: one queued across replicas, again a day after each run.
RETENTION_KEY = "recurring:retention_purge"
RETENTION_INTERVAL_SECONDS = 24 * 3600.0


# ---- pruning ------------------------------------------------------------------------------


def ensure_prune_job(conn: Conn, *, delay_seconds: float = 0.0) -> bool:
    """Schedule the prune job unless one is already queued or running. True if added."""
    row = db.one(
        conn,
        "ensure_job",
        {"kind": queue.PRUNE_JOBS, "dedupe_key": PRUNE_KEY, "delay_seconds": delay_seconds},
    )
    return row is not None


@dataclass(frozen=True)
class Pruned:
    done: int
    dead: int
    # The batch limit was reached: there may be more to delete.
    more: bool


def prune(database: Database, settings: WorkerSettings) -> Pruned:
    """Delete finished jobs past their retention, one short transaction per batch so that
    the table is never locked for long."""
    params = {
        "done_seconds": settings.job_retention_hours * 3600,
        "dead_seconds": settings.dead_job_retention_days * 86400,
        "batch": settings.prune_batch_size,
    }
    done = dead = 0
    for _ in range(settings.prune_max_batches):
        with database.transaction() as conn:
            rows = db.all_rows(conn, "prune_finished_jobs", params)
        removed_dead = sum(1 for r in rows if r["status"] == "dead")
        done += len(rows) - removed_dead
        dead += removed_dead
        if len(rows) < settings.prune_batch_size:
            return Pruned(done, dead, more=False)
    return Pruned(done, dead, more=True)


def prune_unrelayed_events(database: Database, retention_seconds: float, batch: int) -> int:
    """Without a relay nothing marks events sent (and so the relay's own prune never
    deletes them): delete them by age instead, in short batches."""
    total = 0
    while True:
        with database.transaction() as conn:
            deleted = db.run(
                conn,
                "prune_events_without_relay",
                {"retention_seconds": retention_seconds, "limit": batch},
            )
        total += deleted
        if deleted < batch:
            return total


def prune_and_reschedule(
    database: Database, settings: WorkerSettings, *, event_retention_seconds: float | None = None
) -> Pruned:
    """The prune job's work: prune, then queue the next run (its dedupe key keeps it one).
    `event_retention_seconds` is given when no relay runs (see prune_unrelayed_events)."""
    if event_retention_seconds is not None:
        events = prune_unrelayed_events(
            database, event_retention_seconds, settings.prune_batch_size
        )
        if events:
            log.info("events_pruned", extra={"count": events})
    pruned = prune(database, settings)
    JOBS_PRUNED.labels("done").inc(pruned.done)
    JOBS_PRUNED.labels("dead").inc(pruned.dead)
    if pruned.done or pruned.dead:
        log.info("jobs_pruned", extra={"count": pruned.done + pruned.dead})
    delay = PRUNE_AGAIN_SECONDS if pruned.more else settings.prune_interval_seconds
    with database.transaction() as conn:
        # The rate budget's per-channel windows long past (one row per channel posted to).
        db.run(conn, "prune_budget")
        queue.enqueue(conn, queue.PRUNE_JOBS, {}, delay_seconds=delay, dedupe_key=PRUNE_KEY)
    return pruned


def prune_job(ctx: Context, _job: Job) -> None:
    """The handler of the recurring prune job."""
    prune_and_reschedule(
        ctx.database,
        ctx.upkeep.settings,
        event_retention_seconds=ctx.upkeep.event_retention_seconds,
    )


# ---- retention ------------------------------------------------------------------------------


def ensure_retention_job(conn: Conn, *, delay_seconds: float = 0.0) -> bool:
    """Schedule the retention purge unless one is already queued or running. True if added."""
    row = db.one(
        conn,
        "ensure_job",
        {
            "kind": queue.RETENTION_PURGE,
            "dedupe_key": RETENTION_KEY,
            "delay_seconds": delay_seconds,
        },
    )
    return row is not None


def purge_and_reschedule(database: Database) -> dict[str, int]:
    """The retention job's work: purge as of the database clock and queue tomorrow's run,
    in one transaction (a purge that fails is retried like any job, and queues nothing)."""
    with database.transaction() as conn:
        counts = privacy.purge_now(conn)
        queue.enqueue(
            conn,
            queue.RETENTION_PURGE,
            {},
            delay_seconds=RETENTION_INTERVAL_SECONDS,
            dedupe_key=RETENTION_KEY,
        )
    for what, n in counts.items():
        RETENTION_PURGED.labels(what).inc(n)
    return counts


def retention_job(ctx: Context, _job: Job) -> None:
    """The handler of the daily retention purge."""
    purge_and_reschedule(ctx.database)


# ---- queue gauges -------------------------------------------------------------------------


@dataclass(frozen=True)
class KindStats:
    kind: str
    due: int
    oldest_due_age: float
    dead: int


def read_stats(conn: Conn) -> list[KindStats]:
    return [
        KindStats(
            kind=r["kind"],
            due=int(r["due"]),
            oldest_due_age=max(0.0, float(r["oldest_due_age"])),
            dead=int(r["dead"]),
        )
        for r in db.all_rows(conn, "job_stats")
    ]


def publish_stats(stats: Iterable[KindStats], known_kinds: set[str]) -> None:
    """Set the gauges; kinds in `known_kinds` without rows read 0 rather than keep a stale
    value. Kinds seen are added to `known_kinds`."""
    by_kind = {s.kind: s for s in stats}
    known_kinds.update(by_kind)
    for kind in sorted(known_kinds):
        current = by_kind.get(kind, KindStats(kind, 0, 0.0, 0))
        JOB_QUEUE_DEPTH.labels(kind).set(current.due)
        JOB_OLDEST_DUE_AGE.labels(kind).set(current.oldest_due_age)
        JOBS_DEAD.labels(kind).set(current.dead)


# ---- the worker's HTTP port: /metrics and health ------------------------------------------

# A health check: named results, all true when healthy.
Checks = Callable[[], dict[str, bool]]


class Heartbeat:
    """When the worker loop last went round. The loop beats on every iteration (and while
    it waits for work, in slices), so a loop stuck in a call stops beating: not live."""

    def __init__(self, threshold_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.threshold_seconds = threshold_seconds
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def age(self) -> float:
        return max(0.0, self._clock() - self._last)

    def live(self) -> bool:
        return self.age() <= self.threshold_seconds


def _always_ok() -> dict[str, bool]:
    return {}


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request: a slow readiness check never holds up a scrape."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Probes and scrapes every few seconds are not worth a log line each."""


def health_app(metrics: WSGIApplication, live: Checks, ready: Checks) -> WSGIApplication:
    """/health/live and /health/ready as JSON (200 or 503); every other path is /metrics."""
    paths = {"/health/live": live, "/health/ready": ready}

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        check = paths.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics(environ, start_response)
        try:
            checks = check()
        except Exception:
            log.exception("worker_health_check_failed")
            checks = {"check": False}
        ok = all(checks.values())
        body = json.dumps({"status": "ok" if ok else "unavailable", "checks": checks}).encode()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def serve_metrics(
    port: int,
    addr: str = "0.0.0.0",  # noqa: S104 (scraped and probed from inside the cluster)
    *,
    live: Checks = _always_ok,
    ready: Checks = _always_ok,
) -> WSGIServer | None:
    """Serve /metrics for this process (all processes sharing PROMETHEUS_MULTIPROC_DIR in
    multiprocess mode) and the health checks on a daemon thread. None when disabled (port 0)
    or when the port is taken: missing metrics must not stop the jobs."""
    if port == 0:
        return None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    app = health_app(make_wsgi_app(registry), live, ready)
    try:
        server = make_server(
            addr, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
    except OSError as exc:
        log.error("worker_metrics_unavailable", extra={"port": port, "error": str(exc)})
        return None
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    log.info("worker_metrics_serving", extra={"port": server.server_address[1]})
    return server
