"""The event relay against a real Kafka-protocol broker (Tansu) and a real Postgres: what
reaches Kafka, in which order, with two relays, with the broker down and back, and when
Kafka is not configured at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest
from kafka.errors import KafkaTimeoutError
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from coffeebuddy.events.producer import make_producer
from coffeebuddy.events.relay import EventRelay
from coffeebuddy.store import outbox
from testkit.kafka_broker import KafkaBroker, running_broker
from testkit.polling import eventually
from testkit.processes import ROOT, coverage_env
from testkit.slack_payloads import SIGNING_SECRET
from tests import contract
from tests.conftest import BOT_TOKEN, CHANNEL
from tests.driver import Channel

SqlFn = Callable[..., list[tuple[Any, ...]]]


# ---- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaBroker]:
    """One broker for the module; each test reads back only the events it wrote."""
    # Several partitions, so that per-run order is not just per-topic order.
    with running_broker(partitions=3) as broker:
        yield broker


@pytest.fixture
def own_kafka() -> Iterator[KafkaBroker]:
    """A broker this test may stop and restart."""
    with running_broker(partitions=3) as broker:
        yield broker


@pytest.fixture
def make_relay(database_url: str) -> Iterator[Callable[..., EventRelay]]:
    made: list[EventRelay] = []

    def factory(bootstrap: str | Sequence[str], **overrides: Any) -> EventRelay:
        settings: dict[str, Any] = {
            "batch_size": 50,
            "poll_seconds": 0.2,
            "lock_retry_seconds": 0.2,
            "max_backoff_seconds": 1.0,
        }
        settings.update(overrides)
        servers = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
        made.append(EventRelay(database_url, servers, **settings))
        return made[-1]

    yield factory
    for r in made:
        r.stop()


def write(database_url: str, plan: Sequence[tuple[str, str]]) -> list[str]:
    """One transaction per (run id, event type), each with the example payload of its
    type's schema; returns the event ids in write order."""
    ids = []
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        for run_id, event_type in plan:
            data = contract.example(event_type)["data"]
            ids.append(
                outbox.record(
                    conn,
                    event_type,
                    run_id=run_id,
                    channel_id=CHANNEL,
                    correlation_id=f"corr-{run_id[:8]}",
                    **data,
                )
            )
            conn.commit()
    return ids


def outbox_rows(sql: SqlFn) -> list[dict[str, Any]]:
    rows = sql("SELECT id, event_id::text, topic, run_id::text, sent_at FROM events ORDER BY id")
    return [
        dict(zip(("id", "event_id", "topic", "run_id", "sent_at"), r, strict=True)) for r in rows
    ]


def unsent(sql: SqlFn) -> int:
    return int(sql("SELECT count(*) FROM events WHERE sent_at IS NULL")[0][0])


def header(record: Any, name: str) -> str:
    values = [v for k, v in record.headers if k == name]
    assert len(values) == 1, (name, record.headers)
    return bytes(values[0]).decode()


def mine(records: list[Any], event_ids: set[str]) -> list[Any]:
    return [r for r in records if header(r, "event_id") in event_ids]


def per_run(records: list[Any]) -> dict[tuple[str, str | None], list[str]]:
    """Event ids by (topic, key), in the order Kafka holds them (one partition per key)."""
    seen: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for r in records:
        key = r.key.decode() if r.key is not None else None
        seen[(r.topic, key)].append(header(r, "event_id"))
    return seen


def expected_per_run(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], list[str]]:
    expected: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for row in rows:  # id order
        expected[(row["topic"], row["run_id"])].append(row["event_id"])
    return expected


def first_copies(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def assert_once_in_write_order(records: list[Any], rows: list[dict[str, Any]]) -> None:
    counts = Counter(header(r, "event_id") for r in records)
    assert {e for e, n in counts.items() if n > 1} == set()
    assert set(counts) == {row["event_id"] for row in rows}
    assert per_run(records) == expected_per_run(rows)


def gauge(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None, name
    return value


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def mixed_plan(runs: int, per_run_events: int) -> list[tuple[str, str]]:
    """Events of several runs, interleaved, with reminder events among them."""
    run_ids = [str(uuid.uuid4()) for _ in range(runs)]
    kinds = ["run_created", "reminder_scheduled", "run_updated", "runner_assigned", "run_closed"]
    return [
        (run_id, kinds[i % len(kinds)] if i < len(kinds) else "run_updated")
        for i in range(per_run_events)
        for run_id in run_ids
    ]


# ---- what reaches Kafka ----------------------------------------------------------------------


def test_event_reaches_kafka_keyed_by_run_with_headers_and_the_envelope(
    kafka: KafkaBroker, database_url: str, sql: SqlFn, make_relay: Callable[..., EventRelay]
) -> None:
    run_id, other_run = str(uuid.uuid4()), str(uuid.uuid4())
    written = write(database_url, [(run_id, "run_created"), (other_run, "reminder_due")])
    envelopes = {
        eid: env for eid, env in sql("SELECT event_id::text, envelope FROM events ORDER BY id")
    }
    published_before = counter("coffeebuddy_events_published_total", topic=outbox.RUN_TOPIC)
    relay_ = make_relay(kafka.bootstrap)
    relay_.start()
    eventually(lambda: unsent(sql) == 0, what="the relay to publish")

    records = mine(kafka.read_all(), set(written))
    assert len(records) == 2
    by_id = {header(r, "event_id"): r for r in records}
    created, due = by_id[written[0]], by_id[written[1]]
    assert created.topic == outbox.RUN_TOPIC
    assert created.key == run_id.encode()
    assert header(created, "event_type") == "run_created"
    assert header(created, "schema_version") == "1"
    body = json.loads(created.value)
    assert body == envelopes[written[0]]
    assert body["event_id"] == written[0] and body["run_id"] == run_id
    assert body["type"] == "run_created" and body["schema_version"] == 1
    # A reminder event goes out on its own topic, keyed by its run too.
    assert due.topic == outbox.REMINDER_TOPIC and due.key == other_run.encode()
    assert json.loads(due.value) == envelopes[written[1]]
    after = counter("coffeebuddy_events_published_total", topic=outbox.RUN_TOPIC)
    assert after - published_before == 1
    assert gauge("coffeebuddy_event_backlog") == 0


def test_a_run_through_the_app_reaches_kafka_without_order_text(
    kafka: KafkaBroker, chan: Channel, sql: SqlFn, make_relay: Callable[..., EventRelay]
) -> None:
    chan.command("U0ANA", "in 20m Lobby cafe")
    run_id = chan.run_id()
    chan.work()
    for user, text in {"U0BEN": "quadruple oat cortado", "U0CAT": "yuzu tonic espresso"}.items():
        chan.submit(user, text)
    chan.work()
    relay_ = make_relay(kafka.bootstrap)
    relay_.start()
    eventually(lambda: unsent(sql) == 0, what="the relay to publish")

    rows = [row for row in outbox_rows(sql) if row["run_id"] == run_id]
    records = mine(kafka.read_all(), {row["event_id"] for row in rows})
    types = [header(r, "event_type") for r in records if r.topic == outbox.RUN_TOPIC]
    assert "run_created" in types
    assert_once_in_write_order(records, rows)
    for r in records:
        text = r.value.decode()
        assert "oat cortado" not in text and "yuzu" not in text


def test_per_run_order_equals_write_order_across_many_runs(
    kafka: KafkaBroker, database_url: str, sql: SqlFn, make_relay: Callable[..., EventRelay]
) -> None:
    # Writers commit while the relay publishes in small batches.
    relay_ = make_relay(kafka.bootstrap, batch_size=7)
    relay_.start()
    plans = [mixed_plan(runs=8, per_run_events=12) for _ in range(4)]
    failures: list[BaseException] = []

    def writer(plan: list[tuple[str, str]]) -> None:
        try:
            write(database_url, plan)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(plan,)) for plan in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    eventually(lambda: unsent(sql) == 0, timeout=60, what="the relay to publish")

    rows = outbox_rows(sql)
    assert len(rows) == 4 * 8 * 12
    records = mine(kafka.read_all(), {row["event_id"] for row in rows})
    assert_once_in_write_order(records, rows)
    # The keys really were spread over partitions.
    assert len({(r.topic, r.partition) for r in records}) > 2


# ---- one relay at a time ------------------------------------------------------------------


def test_two_relays_only_one_publishes_and_the_other_takes_over(
    kafka: KafkaBroker, database_url: str, sql: SqlFn, make_relay: Callable[..., EventRelay]
) -> None:
    producers: Counter[str] = Counter()

    def counting(name: str) -> Callable[[Sequence[str]], Any]:
        def factory(servers: Sequence[str]) -> Any:
            producers[name] += 1
            return make_producer(servers)

        return factory

    first = make_relay(kafka.bootstrap, name="a", producer_factory=counting("a"))
    second = make_relay(kafka.bootstrap, name="b", producer_factory=counting("b"))
    first.start()
    second.start()
    eventually(lambda: first.is_leader or second.is_leader, what="a leader")
    written = write(database_url, mixed_plan(runs=5, per_run_events=10))
    eventually(lambda: unsent(sql) == 0, what="the relay to publish")
    leader, standby = (first, second) if first.is_leader else (second, first)
    assert not standby.is_leader
    assert producers[standby.name] == 0
    assert producers[leader.name] >= 1

    # The leader goes away (its connection, and so its lock, with it): the other takes over.
    leader.stop()
    assert not leader.is_running
    eventually(lambda: standby.is_leader, what="the standby to take the lock")
    written += write(database_url, mixed_plan(runs=5, per_run_events=4))
    eventually(lambda: unsent(sql) == 0, what="the new leader to publish")
    assert producers[standby.name] >= 1

    rows = outbox_rows(sql)
    records = mine(kafka.read_all(), set(written))
    assert_once_in_write_order(records, rows)


# ---- failures ---------------------------------------------------------------------------------


class _Failed:
    """A send whose acknowledgement never came."""

    exception = KafkaTimeoutError("injected: no acknowledgement")

    def succeeded(self) -> bool:
        return False


class FlakyProducer:
    """The real producer, except that chosen events fail once without reaching Kafka."""

    def __init__(self, real: Any, fail_once: set[str]) -> None:
        self.real = real
        self.fail_once = fail_once

    def send(self, topic: str, **kwargs: Any) -> Any:
        event_id = dict(kwargs["headers"])["event_id"].decode()
        if event_id in self.fail_once:
            self.fail_once.discard(event_id)
            return _Failed()
        return self.real.send(topic, **kwargs)

    def flush(self, timeout: float | None = None) -> None:
        self.real.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        self.real.close(timeout=timeout)


def test_a_failure_in_the_middle_marks_only_the_prefix_and_resends_from_there(
    kafka: KafkaBroker, database_url: str, sql: SqlFn, make_relay: Callable[..., EventRelay]
) -> None:
    runs = [str(uuid.uuid4()) for _ in range(3)]
    plan: list[tuple[str | None, str]] = [
        (runs[0], "run_created"),
        (runs[1], "run_created"),
        (runs[0], "run_updated"),
        (runs[2], "run_created"),  # <- fails; it is the last event of its run in this batch
        (runs[1], "run_updated"),
        (runs[0], "run_closed"),
    ]
    written = write(database_url, plan)
    fail_once = {written[3]}
    relay_ = make_relay(
        kafka.bootstrap,
        batch_size=100,
        producer_factory=lambda servers: FlakyProducer(make_producer(servers), fail_once),
    )
    errors_before = counter("coffeebuddy_relay_errors_total", kind="kafka")

    relay_.step()  # one round, in this thread: takes the lock, publishes, fails at event 4
    assert fail_once == set()
    sent = [row["sent_at"] is not None for row in outbox_rows(sql)]
    assert sent == [True, True, True, False, False, False]
    assert counter("coffeebuddy_relay_errors_total", kind="kafka") == errors_before + 1

    deadline = time.monotonic() + 30
    while unsent(sql) and time.monotonic() < deadline:
        relay_.step()
    assert unsent(sql) == 0

    rows = outbox_rows(sql)
    records = mine(kafka.read_all(), set(written))
    counts = Counter(header(r, "event_id") for r in records)
    # At least once: the events after the failed one went twice, everything else once.
    assert counts == {e: 2 if i > 3 else 1 for i, e in enumerate(written)}
    # Consumers drop repeats by event id; what they keep is in write order for every run.
    assert {k: first_copies(v) for k, v in per_run(records).items()} == expected_per_run(rows)


def test_broker_down_events_wait_and_arrive_once_in_order_after_restart(
    own_kafka: KafkaBroker, database_url: str, sql: SqlFn, make_relay: Callable[..., EventRelay]
) -> None:
    # Records wait in the producer for at most 4 s (15 s in production) before a round fails.
    relay_ = make_relay(
        own_kafka.bootstrap,
        batch_size=20,
        producer_factory=lambda servers: make_producer(
            servers, delivery_timeout_ms=4000, request_timeout_ms=2000
        ),
    )
    relay_.start()
    runs = [str(uuid.uuid4()) for _ in range(6)]
    before = write(database_url, [(r, "run_created") for r in runs])
    eventually(lambda: unsent(sql) == 0, what="the first events to go out")
    # The broker keeps records in memory only: read what it got before it goes away.
    delivered_before = mine(own_kafka.read_all(), set(before))

    errors_before = counter("coffeebuddy_relay_errors_total", kind="kafka")
    own_kafka.stop()
    during = write(
        database_url,
        [(r, kind) for kind in ("run_updated", "runner_assigned", "run_closed") for r in runs]
        + [(runs[0], "reminder_sent")],
    )
    eventually(
        lambda: counter("coffeebuddy_relay_errors_total", kind="kafka") >= errors_before + 2,
        timeout=60,
        what="the relay to try and fail twice",
    )
    assert unsent(sql) == len(during)
    eventually(lambda: gauge("coffeebuddy_event_backlog") == len(during), what="the backlog gauge")
    age = gauge("coffeebuddy_event_backlog_age_seconds")
    assert age > 0
    eventually(
        lambda: gauge("coffeebuddy_event_backlog_age_seconds") > age + 1, what="the backlog to age"
    )
    assert unsent(sql) == len(during)

    own_kafka.start()
    own_kafka.create_topics(partitions=3)
    eventually(lambda: unsent(sql) == 0, timeout=60, what="the backlog to drain after the restart")
    eventually(lambda: gauge("coffeebuddy_event_backlog") == 0, what="the backlog gauge to drop")
    delivered_after = mine(own_kafka.read_all(), set(during))

    assert_once_in_write_order(delivered_before + delivered_after, outbox_rows(sql))


def test_stop_returns_promptly_while_kafka_is_unreachable(
    database_url: str, sql: SqlFn, make_relay: Callable[..., EventRelay]
) -> None:
    dead = KafkaBroker()  # never started: nothing listens on its port
    relay_ = make_relay(dead.bootstrap, max_backoff_seconds=0.2)
    write(database_url, [(str(uuid.uuid4()), "run_created")])
    errors_before = counter("coffeebuddy_relay_errors_total", kind="kafka")
    relay_.start()
    eventually(
        lambda: counter("coffeebuddy_relay_errors_total", kind="kafka") > errors_before,
        what="a failed attempt",
    )
    relay_.stop(timeout=10)
    assert not relay_.is_running
    assert unsent(sql) == 1


def test_prune_deletes_only_sent_events_past_the_retention(
    database_url: str, sql: SqlFn, make_relay: Callable[..., EventRelay]
) -> None:
    old_sent, recent_sent, old_unsent = write(
        database_url, [(str(uuid.uuid4()), "run_created") for _ in range(3)]
    )
    sql(
        "UPDATE events SET sent_at = now() - interval '8 days', created_at = now() - interval "
        "'8 days' WHERE event_id = %s",
        old_sent,
    )
    sql("UPDATE events SET sent_at = now() - interval '6 days' WHERE event_id = %s", recent_sent)
    sql("UPDATE events SET created_at = now() - interval '9 days' WHERE event_id = %s", old_unsent)
    relay_ = make_relay("127.0.0.1:9", retention_seconds=7 * 86400)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        assert relay_.prune(conn) == 1
    assert [row["event_id"] for row in outbox_rows(sql)] == [recent_sent, old_unsent]


# ---- the worker process ------------------------------------------------------------------------


def _worker_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **coverage_env(),
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_BASE_URL": "http://127.0.0.1:9/api/",
        **extra,
    }


def _log_events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _run_worker_until(
    env: dict[str, str], ready: Callable[[list[dict[str, Any]]], bool], log_path: Any
) -> list[dict[str, Any]]:
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            eventually(lambda: ready(_log_events(log_path.read_text())), what="the worker's logs")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert code == 0, log_path.read_text()
    return _log_events(log_path.read_text())


def test_worker_without_kafka_says_once_that_the_relay_is_off(
    database_url: str, sql: SqlFn, tmp_path: Any
) -> None:
    write(database_url, [(str(uuid.uuid4()), "run_created")])
    logs = _run_worker_until(
        _worker_env(database_url),
        lambda logs: any(e["event"] == "worker_started" for e in logs),
        tmp_path / "worker.log",
    )
    disabled = [e for e in logs if e["event"] == "kafka_relay_disabled"]
    assert len(disabled) == 1
    assert "KAFKA_BOOTSTRAP_SERVERS" in disabled[0]["reason"]
    assert not any(e["event"].startswith("relay_") for e in logs)
    assert unsent(sql) == 1


def test_worker_process_runs_the_relay_and_stops_it_cleanly(
    kafka: KafkaBroker, database_url: str, sql: SqlFn, tmp_path: Any
) -> None:
    written = write(database_url, mixed_plan(runs=3, per_run_events=3))
    logs = _run_worker_until(
        _worker_env(database_url, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap),
        lambda _logs: unsent(sql) == 0,
        tmp_path / "worker.log",
    )
    names = [e["event"] for e in logs]
    assert "kafka_relay_disabled" not in names
    assert {"relay_started", "relay_leader", "relay_stopped"} <= set(names)
    assert names.index("relay_stopped") > names.index("relay_leader")
    assert_once_in_write_order(mine(kafka.read_all(), set(written)), outbox_rows(sql))
