"""The worker loop: claim due jobs, run their handlers on a small thread pool, record the
outcome. Wakes on LISTEN/NOTIFY, falls back to polling, and sleeps exactly until the next
scheduled job when idle."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from types import FrameType
from wsgiref.simple_server import WSGIServer

import psycopg

from coffeebuddy import db, logs
from coffeebuddy.config import Config, WorkerSettings
from coffeebuddy.db import Database, DatabaseUnavailable
from coffeebuddy.jobs import maintenance
from coffeebuddy.jobs.context import Context, NotYet, Upkeep
from coffeebuddy.jobs.kinds import KINDS, JobKind, allowed_attempts
from coffeebuddy.metrics import JOB_DURATION, JOB_OUTCOMES, JOBS, start_at_zero
from coffeebuddy.service.pilot import PilotGauges
from coffeebuddy.slack.api import SlackFailure, classify
from coffeebuddy.slack.budget import OverBudget
from coffeebuddy.store import queue
from coffeebuddy.store.queue import Job

log = logging.getLogger(__name__)

CHANNEL = "coffeebuddy_jobs"
# How often a worker waiting for work checks whether it was asked to stop.
STOP_CHECK_SECONDS = 0.5
# The loop is not live when it has not gone round for this many poll intervals (at least
# 5 s each): well past a slow iteration with the database down (a few 2 s pool timeouts).
LIVE_AFTER_INTERVALS = 3
LIVE_MIN_INTERVAL_SECONDS = 5.0


class Worker:
    def __init__(
        self,
        config: Config,
        database: Database,
        context: Context,
        settings: WorkerSettings | None = None,
    ) -> None:
        self.config = config
        self.database = database
        self.settings = settings or WorkerSettings()
        relay_off = not config.kafka_bootstrap_servers
        upkeep = Upkeep(
            self.settings,
            event_retention_seconds=config.event_retention_days * 86400.0 if relay_off else None,
        )
        self.context = replace(context, upkeep=upkeep)
        self.pacing = queue.Pacing(config.burst_quiet_ms / 1000, config.burst_max_wait_ms / 1000)
        # What to run for each kind (see `coffeebuddy.jobs.kinds`); tools may add their own.
        self.kinds: dict[str, JobKind] = dict(KINDS)
        # Every kind's outcomes exist at 0 before the first job (see metrics.KNOWN_LABELS).
        start_at_zero(JOBS, [(kind, outcome) for kind in self.kinds for outcome in JOB_OUTCOMES])
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._slot_freed = threading.Event()
        self._inflight: dict[int, Future[None]] = {}
        self._lock = threading.Lock()
        self._listener: psycopg.Connection[tuple[object, ...]] | None = None
        self._metrics_server: WSGIServer | None = None
        # /health/live: the loop went round recently.
        self.heartbeat = maintenance.Heartbeat(
            LIVE_AFTER_INTERVALS * max(config.worker_poll_seconds, LIVE_MIN_INTERVAL_SECONDS)
        )
        # Housekeeping in the loop: when the gauges are read next, and whether this worker
        # has made sure the prune job exists.
        self._next_stats = 0.0
        self._prune_ensured = False
        self._stat_kinds: set[str] = set(self.kinds)
        # The pilot's success figures, refreshed with the queue gauges.
        self._pilot = PilotGauges()

    # ---- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        log.info("worker_started", extra={"worker_id": self.worker_id})
        pool = ThreadPoolExecutor(
            max_workers=self.config.worker_concurrency, thread_name_prefix="job"
        )
        renewer = threading.Thread(target=self._renew_leases, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            while not self._stop.is_set():
                self.heartbeat.beat()
                self._maintain()
                free = self.config.worker_concurrency - self._count_inflight()
                if free <= 0:
                    self._slot_freed.wait(0.5)
                    self._slot_freed.clear()
                    continue
                if self._stop.is_set():
                    break  # SIGTERM arrived during housekeeping: claim nothing more
                try:
                    jobs = self._claim(free)
                except DatabaseUnavailable:
                    log.warning("worker_database_unavailable")
                    self._stop.wait(2.0)
                    continue
                for job in jobs:
                    future = pool.submit(self.execute, job)
                    with self._lock:
                        self._inflight[job.id] = future
                    future.add_done_callback(functools.partial(self._on_future_done, job.id))
                if len(jobs) == free:
                    continue  # more may be due
                self._wait_for_work()
        finally:
            # Graceful stop: no new claims; jobs already started run to completion.
            pool.shutdown(wait=True)
            self._close_listener()
            if self._metrics_server is not None:
                self._metrics_server.shutdown()
                self._metrics_server.server_close()
                self._metrics_server = None
            log.info("worker_stopped", extra={"worker_id": self.worker_id})

    def stop(self, *_: object) -> None:
        self._stop.set()
        self._slot_freed.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("worker_stopping", extra={"reason": signal.Signals(signum).name})
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def serve_metrics(self) -> None:
        """Serve /metrics, /health/live and /health/ready on the configured port."""
        self._metrics_server = maintenance.serve_metrics(
            self.settings.metrics_port,
            self.settings.metrics_host,
            live=self.live_checks,
            ready=self.ready_checks,
        )

    def live_checks(self) -> dict[str, bool]:
        return {"loop": self.heartbeat.live()}

    def ready_checks(self) -> dict[str, bool]:
        return {"loop": self.heartbeat.live(), "database": self.database.ping()}

    def run_until_idle(self, max_jobs: int = 1000) -> int:
        """Run due jobs in this thread until none is due (tests, one-shot tooling)."""
        done = 0
        while done < max_jobs:
            jobs = self._claim(1)
            if not jobs:
                break
            self.execute(jobs[0])
            done += 1
        return done

    def _renew_leases(self) -> None:
        """Every third of a lease, extend the leases of the jobs running here."""
        interval = max(self.config.job_lease_seconds / 3, 0.5)
        while not self._stop.wait(interval):
            self.renew_leases()

    def renew_leases(self) -> int:
        with self._lock:
            ids = list(self._inflight)
        if not ids:
            return 0
        try:
            with self.database.transaction() as conn:
                return db.run(
                    conn,
                    "renew_leases",
                    {
                        "ids": ids,
                        "worker_id": self.worker_id,
                        "lease_seconds": self.config.job_lease_seconds,
                    },
                )
        except (DatabaseUnavailable, psycopg.Error) as exc:
            log.warning("lease_renewal_failed", extra={"error": type(exc).__name__})
            return 0

    def _count_inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _on_future_done(self, job_id: int, _future: Future[None]) -> None:
        with self._lock:
            self._inflight.pop(job_id, None)
        self._slot_freed.set()

    def _claim(self, limit: int) -> list[Job]:
        with self.database.transaction() as conn:
            return queue.claim(
                conn,
                worker_id=self.worker_id,
                limit=limit,
                lease_seconds=self.config.job_lease_seconds,
            )

    # ---- housekeeping -----------------------------------------------------------------------

    def _maintain(self) -> None:
        """At a bounded rate: refresh the queue gauges and make sure the prune job exists.
        Failures are logged and tried again next time; they never stop the loop."""
        now = time.monotonic()
        if now < self._next_stats:
            return
        self._next_stats = now + self.settings.stats_interval_seconds
        try:
            self.refresh_stats()
            with self.database.transaction() as conn:
                # At start the first prune runs at once; later (it died, or an operator
                # deleted it) the next one waits a full interval, so a prune that keeps
                # failing can't become a loop.
                delay = self.settings.prune_interval_seconds if self._prune_ensured else 0.0
                maintenance.ensure_prune_job(conn, delay_seconds=delay)
                # Likewise the daily retention purge (a dead one comes back a day later).
                maintenance.ensure_retention_job(
                    conn,
                    delay_seconds=maintenance.RETENTION_INTERVAL_SECONDS
                    if self._prune_ensured
                    else 0.0,
                )
            self._prune_ensured = True
        except (DatabaseUnavailable, psycopg.Error) as exc:
            log.warning("worker_housekeeping_failed", extra={"error": type(exc).__name__})

    def refresh_stats(self) -> None:
        with self.database.transaction() as conn:
            stats = maintenance.read_stats(conn)
        maintenance.publish_stats(stats, self._stat_kinds)
        with self.database.transaction() as conn:
            self._pilot.publish(conn, datetime.now(UTC))

    def _wait_for_work(self) -> None:
        # Never sleep past the next housekeeping round.
        timeout = min(
            self.config.worker_poll_seconds, max(0.0, self._next_stats - time.monotonic())
        )
        try:
            with self.database.transaction() as conn:
                row = db.one(conn, "next_due_in", {})
            if row and row["seconds"] is not None:
                timeout = max(0.0, min(timeout, float(row["seconds"])))
        except DatabaseUnavailable:
            pass
        if timeout <= 0:
            return
        listener = self._ensure_listener()
        if listener is None:
            self._stop.wait(timeout)
            return
        try:
            # Wait in short slices: nothing wakes a LISTEN wait on stop(), and a stopping
            # worker must not sit out the whole poll interval first.
            deadline = time.monotonic() + timeout
            while not self._stop.is_set():
                self.heartbeat.beat()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                woken = False
                for _ in listener.notifies(
                    timeout=min(remaining, STOP_CHECK_SECONDS), stop_after=1
                ):
                    woken = True
                if woken:
                    return
        except psycopg.Error:
            # Notifications sent while we were disconnected are lost; polling covers them.
            self._close_listener()

    def _ensure_listener(self) -> psycopg.Connection[tuple[object, ...]] | None:
        if self._listener is not None and not self._listener.closed:
            return self._listener
        try:
            self._listener = psycopg.connect(
                self.database.conninfo, autocommit=True, connect_timeout=3
            )
            self._listener.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            self._listener = None
        return self._listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(psycopg.Error):
                self._listener.close()
            self._listener = None

    # ---- one job --------------------------------------------------------------------------

    def execute(self, job: Job) -> None:
        started = time.perf_counter()
        with logs.context(correlation=job.correlation_id, run=job.run_id):
            kind = self.kinds.get(job.kind)
            try:
                if kind is None:
                    raise LookupError(f"no handler for job kind {job.kind!r}")
                if kind.paced:
                    self._wait_for_burst(job)
                kind.handler(self.context, job)
            except Exception as exc:
                self._failed(job, exc)
            else:
                with self.database.transaction() as conn:
                    queue.complete(conn, job, worker_id=self.worker_id)
                JOBS.labels(job.kind, "done").inc()
                log.info(
                    "job_done",
                    extra={
                        "kind": job.kind,
                        "job_id": job.id,
                        "attempt": job.attempts,
                        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            finally:
                JOB_DURATION.labels(job.kind).observe(time.perf_counter() - started)

    def _wait_for_burst(self, job: Job) -> None:
        """Jobs of a paced kind still arriving: raise NotYet (they all wait, see
        `queue.Pacing`), which puts this one back without counting an attempt."""
        with self.database.transaction() as conn:
            wait = queue.burst_wait(conn, job.kind, self.pacing)
        if wait > 0:
            raise NotYet(wait)

    def _failed(self, job: Job, exc: Exception) -> None:
        failure = classify(exc)
        code = failure.code if failure else type(exc).__name__
        facts = {"kind": job.kind, "job_id": job.id, "attempt": job.attempts, "error": code}
        with self.database.transaction() as conn:
            if isinstance(exc, NotYet | OverBudget):
                # Waiting for other jobs, or for a token of the shared Slack budget: back
                # to the queue until then, which is not a failed attempt.
                queue.retry(
                    conn,
                    job,
                    worker_id=self.worker_id,
                    error="not_yet" if isinstance(exc, NotYet) else "over_budget",
                    delay_seconds=exc.delay_seconds,
                    free_attempt=True,
                )
                JOBS.labels(job.kind, "deferred").inc()
                return
            if failure is not None and failure.kind == "rate_limited":
                # Slack said when to come back; waiting is not a failed attempt.
                delay = failure.retry_after or 30.0
                queue.retry(
                    conn,
                    job,
                    worker_id=self.worker_id,
                    error=code,
                    delay_seconds=delay,
                    free_attempt=True,
                )
                JOBS.labels(job.kind, "rate_limited").inc()
                log.warning("job_rate_limited", extra={**facts, "delay_s": delay})
                return
            permanent = failure is not None and failure.kind == "permanent"
            if permanent or job.attempts >= allowed_attempts(
                self.kinds.get(job.kind), job.max_attempts
            ):
                queue.bury(conn, job, worker_id=self.worker_id, error=code)
                JOBS.labels(job.kind, "dead").inc()
                log.error("job_dead", exc_info=exc if failure is None else None, extra=facts)
            else:
                delay = queue.backoff_seconds(job.attempts)
                queue.retry(conn, job, worker_id=self.worker_id, error=code, delay_seconds=delay)
                JOBS.labels(job.kind, "retry").inc()
                log.warning("job_retry", extra={**facts, "delay_s": round(delay, 2)})
                return
        self._give_up(job, code, failure)

    def _give_up(self, job: Job, code: str, failure: SlackFailure | None) -> None:
        """A side effect that will never happen: its kind's `on_dead` hook says what then."""
        kind = self.kinds.get(job.kind)
        if kind is not None and kind.on_dead is not None:
            kind.on_dead(self.context, job, code, failure)
