"""The event relay: publishes the `events` outbox to Kafka in id order and marks rows sent
only after the broker acknowledged them.

One relay in the whole deployment publishes at a time. Each worker replica runs an
`EventRelay` thread; the one holding a session-level advisory lock on its own connection
publishes, the others retry the lock every few seconds. The lock dies with the connection,
so a replica that crashes or loses the database hands over without any lease to expire.
All reads and marks go through that same connection: a relay whose connection (and so
whose lock) is gone cannot mark anything.

Order: events of one run are written in id order (the run row is locked first) and keyed
by run id, so they land in one partition; the relay sends them oldest first over one
idempotent producer (one in-flight batch per partition) and marks only the contiguous
prefix of acknowledged ids, so a failure in the middle makes the next round start again
at the first unacknowledged event. Delivery is at least once: the event id travels in a
header for consumers to drop repeats. If two relays ever overlap (the old leader still
flushing while a new one starts), each sends in id order, so the first copy of every event
still arrives in write order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from kafka.errors import KafkaError, KafkaTimeoutError
from psycopg.rows import DictRow, dict_row

from coffeebuddy import db
from coffeebuddy.config import Config
from coffeebuddy.db import Conn
from coffeebuddy.events.producer import (
    FLUSH_LIMIT_SECONDS,
    Backoff,
    ProducerFactory,
    PublishFailed,
    error_name,
    make_producer,
)
from coffeebuddy.metrics import EVENT_BACKLOG, EVENT_BACKLOG_AGE, EVENTS_PUBLISHED, RELAY_ERRORS

log = logging.getLogger(__name__)

CHANNEL = "coffeebuddy_events"
# pg_try_advisory_lock key shared by every relay of one database ("cbrelay1" in ASCII).
LOCK_KEY = 0x6362_7265_6C61_7931
# Slices in which blocking waits check whether stop() was called.
STOP_CHECK_SECONDS = 0.5
# After stop(), how long a flush that is under way may still finish (and be marked).
STOP_GRACE_SECONDS = 2.0
GAUGE_EVERY_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 3600.0
PRUNE_SLICE = 5000


class EventRelay:
    def __init__(
        self,
        conninfo: str,
        bootstrap_servers: Sequence[str],
        *,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        retention_seconds: float = 7 * 86400,
        lock_retry_seconds: float = 3.0,
        max_backoff_seconds: float = 30.0,
        producer_factory: ProducerFactory = make_producer,
        name: str = "relay",
    ) -> None:
        self.conninfo = conninfo
        self.bootstrap_servers = tuple(bootstrap_servers)
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.retention_seconds = retention_seconds
        self.lock_retry_seconds = lock_retry_seconds
        self.producer_factory = producer_factory
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Conn | None = None
        self._producer: Any = None
        self._leader = False
        self._kafka_backoff = Backoff(cap=max_backoff_seconds)
        self._db_backoff = Backoff(cap=max_backoff_seconds)
        self._retry_at = 0.0
        self._gauges_at = 0.0
        self._pruned_at: float | None = None

    @classmethod
    def from_config(cls, config: Config) -> EventRelay:
        return cls(
            config.database_url.reveal(),
            config.kafka_bootstrap_servers,
            batch_size=config.relay_batch,
            poll_seconds=config.relay_poll_seconds,
            retention_seconds=config.event_retention_days * 86400.0,
            # Says in the logs which replica holds the lock.
            name=f"{socket.gethostname()}:{os.getpid()}",
        )

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._leader

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"event-{self.name}", daemon=True)
        self._thread.start()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is None:
            # Driven by step() from the caller's thread (tests, tooling): clean up here.
            self._close_producer()
            self._close_connection()
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("relay_stop_timeout", extra={"worker_id": self.name})

    def run(self) -> None:
        log.info("relay_started", extra={"worker_id": self.name})
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            self._close_producer()
            self._close_connection()
            log.info("relay_stopped", extra={"worker_id": self.name})

    # ---- one round ---------------------------------------------------------------------------

    def step(self) -> None:
        """Take the lock if free, publish one batch, or wait; never raises."""
        try:
            conn = self._connection()
            if not self._leader and not self._take_lock(conn):
                self._refresh_gauges(conn, force=True)
                self._stop.wait(self.lock_retry_seconds)
                return
            self._refresh_gauges(conn)
            self._maybe_prune(conn)
            waiting = self._retry_at - time.monotonic()
            if waiting > 0:
                # Kafka is backing off; keep the gauges moving while the backlog ages.
                self._stop.wait(min(waiting, GAUGE_EVERY_SECONDS))
                return
            published = self.publish_batch(conn)
            self._kafka_backoff.reset()
            self._db_backoff.reset()
            if published < self.batch_size:
                self._refresh_gauges(conn, force=published > 0)
                self._wait_for_events(conn)
        except psycopg.Error as exc:
            RELAY_ERRORS.labels("database").inc()
            delay = self._db_backoff.next()
            log.warning(
                "relay_database_error",
                extra={"error": type(exc).__name__, "delay_s": round(delay, 2)},
            )
            # The lock went (or may go) with the connection: take it again before publishing.
            self._close_connection()
            self._stop.wait(delay)
        except (KafkaError, PublishFailed) as exc:
            self._close_producer()
            if self._stop.is_set():
                return  # cut short by stop(): the unacknowledged rest goes next time
            RELAY_ERRORS.labels("kafka").inc()
            delay = self._kafka_backoff.next()
            self._retry_at = time.monotonic() + delay
            log.warning(
                "relay_kafka_unavailable",
                extra={"error": error_name(exc), "delay_s": round(delay, 2)},
            )
        except Exception as exc:
            # The thread is a process edge: it must not die and leave the outbox unsent.
            RELAY_ERRORS.labels("internal").inc()
            log.error("relay_failed", exc_info=exc, extra={"error": type(exc).__name__})
            self._close_producer()
            self._close_connection()
            self._stop.wait(self._kafka_backoff.next())

    def publish_batch(self, conn: Conn) -> int:
        """Send the oldest unsent events, mark the acknowledged prefix; returns how many were
        marked. Raises PublishFailed (after marking the prefix) if any was not acknowledged."""
        rows = db.all_rows(conn, "unsent_events", {"limit": self.batch_size})
        if not rows:
            return 0
        producer = self._ensure_producer()
        pending: list[tuple[DictRow, Any]] = []
        error: BaseException | None = None
        for row in rows:
            if self._stop.is_set():
                break
            try:
                future = producer.send(
                    row["topic"],
                    key=str(row["run_id"]).encode() if row["run_id"] is not None else None,
                    value=row["envelope_json"].encode(),
                    headers=[
                        ("event_id", str(row["event_id"]).encode()),
                        ("event_type", row["event_type"].encode()),
                        ("schema_version", str(row["schema_version"] or 1).encode()),
                    ],
                )
            except KafkaError as exc:
                # Nothing after this one may go out in this round, or it would overtake it.
                error = exc
                break
            pending.append((row, future))
        if not self._await_acks(producer):
            error = error or KafkaTimeoutError("flush did not finish")
        acked: list[int] = []
        topics: Counter[str] = Counter()
        for row, future in pending:
            if not future.succeeded():
                error = error or future.exception or KafkaTimeoutError("not acknowledged")
                break
            acked.append(row["id"])
            topics[row["topic"]] += 1
        if acked:
            db.run(conn, "mark_events_sent", {"ids": acked})
            for topic, count in topics.items():
                EVENTS_PUBLISHED.labels(topic).inc(count)
            log.debug("events_published", extra={"count": len(acked)})
        if error is not None:
            raise PublishFailed(error_name(error)) from error
        return len(acked)

    def _await_acks(self, producer: Any) -> bool:
        """Wait until every record sent is acknowledged or failed; False if it took too long
        (a stop, or a client that never completes)."""
        started = time.monotonic()
        stop_seen: float | None = None
        while True:
            try:
                producer.flush(timeout=STOP_CHECK_SECONDS)
                return True
            except KafkaTimeoutError:
                pass
            now = time.monotonic()
            if self._stop.is_set():
                stop_seen = stop_seen or now
                if now - stop_seen > STOP_GRACE_SECONDS:
                    return False
            if now - started > FLUSH_LIMIT_SECONDS:
                return False

    # ---- the lock, the connection, waiting ------------------------------------------------------

    def _connection(self) -> Conn:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._leader = False
        self._conn = psycopg.connect(
            self.conninfo,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=3,
            application_name="coffeebuddy-relay",
            # A half-open connection would keep a lock nobody uses; notice it quickly.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        return self._conn

    def _take_lock(self, conn: Conn) -> bool:
        row = db.one(conn, "relay_try_lock", {"key": LOCK_KEY})
        if not (row and row["locked"]):
            return False
        conn.execute(f"LISTEN {CHANNEL}")
        self._leader = True
        self._pruned_at = None
        log.info("relay_leader", extra={"worker_id": self.name})
        return True

    def _close_connection(self) -> None:
        if self._leader:
            log.info("relay_lock_released", extra={"worker_id": self.name})
        self._leader = False
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            self._producer = self.producer_factory(self.bootstrap_servers)
            log.info("relay_producer_connected", extra={"worker_id": self.name})
        return self._producer

    def _close_producer(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            # Records still queued are dropped: they stay unsent in Postgres and go again.
            with contextlib.suppress(Exception):
                producer.close(timeout=0)

    def _wait_for_events(self, conn: Conn) -> None:
        deadline = time.monotonic() + self.poll_seconds
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            woken = False
            for _ in conn.notifies(timeout=min(remaining, STOP_CHECK_SECONDS), stop_after=1):
                woken = True
            if woken:
                # One round reads everything committed so far; the other wake-ups are spent.
                for _ in conn.notifies(timeout=0):
                    pass
                return

    # ---- metrics and housekeeping ----------------------------------------------------------

    def _refresh_gauges(self, conn: Conn, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._gauges_at < GAUGE_EVERY_SECONDS:
            return
        row = db.one(conn, "event_backlog", {})
        if row is not None:
            EVENT_BACKLOG.set(row["backlog"])
            EVENT_BACKLOG_AGE.set(row["age_seconds"])
        self._gauges_at = now

    def _maybe_prune(self, conn: Conn) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        self.prune(conn)

    def prune(self, conn: Conn) -> int:
        """Delete events sent longer ago than the retention; returns how many."""
        total = 0
        while not self._stop.is_set():
            deleted = db.run(
                conn,
                "prune_sent_events",
                {"retention_seconds": float(self.retention_seconds), "limit": PRUNE_SLICE},
            )
            total += deleted
            if deleted < PRUNE_SLICE:
                break
        if total:
            log.info("relay_pruned", extra={"count": total})
        return total


def start_relay(config: Config) -> EventRelay | None:
    """Start the relay thread if Kafka is configured; otherwise say so once."""
    if not config.kafka_bootstrap_servers:
        log.info("kafka_relay_disabled", extra={"reason": "KAFKA_BOOTSTRAP_SERVERS is not set"})
        return None
    relay = EventRelay.from_config(config)
    relay.start()
    return relay
