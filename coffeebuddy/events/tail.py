"""`python -m coffeebuddy events tail`: the events on Kafka as JSON lines, one envelope per
line exactly as consumers receive it, for following a run end to end (every event of a
run carries its correlation id, the same as in the service's logs).

Reads with `assign()` and no consumer group: a tail commits nothing and must not take
partitions away from real consumers. Events of one run are in one partition, so they
print in their order; events of different runs may interleave in any order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from coffeebuddy.config import ConfigError, kafka_bootstrap_servers, report_config_error
from coffeebuddy.store.outbox import REMINDER_TOPIC, RUN_TOPIC

TOPICS = (RUN_TOPIC, REMINDER_TOPIC)
POLL_MS = 500
# With --no-follow: how long reading up to the end seen at the start may take.
CATCH_UP_SECONDS = 60.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("events", help="read the events on Kafka (KAFKA_BOOTSTRAP_SERVERS)")
    actions = group.add_subparsers(dest="events_command", required=True)
    tail = actions.add_parser(
        "tail",
        help="print events as JSON lines",
        description="Print the events on Kafka as JSON lines (one envelope per line). "
        "By default only new events, until interrupted.",
    )
    tail.add_argument(
        "--topic",
        action="append",
        choices=TOPICS,
        help="only this topic (repeatable; default: both)",
    )
    tail.add_argument("--run", type=_run_id, metavar="ID", help="only the events of this run")
    tail.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest event the topics still hold, not at the end",
    )
    tail.add_argument(
        "--no-follow",
        action="store_true",
        help="stop at the end the topics had when the tail started",
    )
    tail.add_argument(
        "--bootstrap",
        metavar="HOST:PORT,...",
        help="brokers to read from (default: KAFKA_BOOTSTRAP_SERVERS)",
    )


def _run_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a run id: {text!r}") from None


def run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        servers = kafka_bootstrap_servers(
            {"KAFKA_BOOTSTRAP_SERVERS": args.bootstrap} if args.bootstrap else env
        )
    except ConfigError as exc:
        report_config_error(exc)
        return 2
    if not servers:
        report_config_error(ConfigError("set KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap"))
        return 2
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=list(servers),
            client_id="coffeebuddy-tail",
            group_id=None,
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            request_timeout_ms=10000,
        )
    except KafkaError as exc:
        return _fail(f"cannot reach Kafka at {','.join(servers)} ({type(exc).__name__})", 1)
    try:
        return _tail(consumer, args, out)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's final flush
        # of stdout from failing on the closed pipe.
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KafkaError as exc:
        return _fail(f"reading from Kafka failed ({type(exc).__name__})", 1)
    finally:
        consumer.close()


def _tail(consumer: Any, args: argparse.Namespace, out: TextIO) -> int:
    started_ms = int(time.time() * 1000)
    partitions = _partitions(consumer, args.topic or TOPICS)
    if not partitions:
        return _fail("none of the topics exists yet", 1)
    consumer.assign(partitions)
    if args.from_beginning:
        consumer.seek_to_beginning(*partitions)
    else:
        consumer.seek_to_end(*partitions)
    # Resolve the starting offsets now, so "reading" below means new events are seen.
    for tp in partitions:
        consumer.position(tp)
    start = "the beginning" if args.from_beginning else "now"
    topics = ", ".join(dict.fromkeys(tp.topic for tp in partitions))
    print(f"coffeebuddy: reading {topics} from {start}", file=sys.stderr, flush=True)
    end = consumer.end_offsets(partitions) if args.no_follow else None
    wanted = args.run.encode() if args.run else None
    # "From now" also by the clock: some Kafka-protocol brokers (Tansu) report the end of
    # a partition as just past the first record of its last batch, so the seek to the end
    # can land among records that were there before the tail started. The relay stamps
    # each record when it sends it.
    since_ms = -1 if args.from_beginning else started_ms
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:
        if end is not None:
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                return 0
            if time.monotonic() > deadline:
                return _fail("could not read up to the end of the topics in time", 1)
        for batch in consumer.poll(timeout_ms=POLL_MS).values():
            for record in batch:
                if (wanted is None or record.key == wanted) and record.timestamp >= since_ms:
                    _print(record, out)
        out.flush()


def _partitions(consumer: Any, topics: Sequence[str]) -> list[Any]:
    found: list[Any] = []
    for topic in dict.fromkeys(topics):
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            print(f"coffeebuddy: topic {topic} does not exist (yet)", file=sys.stderr)
            continue
        found.extend(TopicPartition(topic, n) for n in sorted(numbers))
    return found


def _print(record: Any, out: TextIO) -> None:
    try:
        envelope = json.loads(record.value)
    except (TypeError, ValueError):
        # Say where, never what: a stranger's record could hold anything.
        where = f"{record.topic}/{record.partition}@{record.offset}"
        print(f"coffeebuddy: skipped a record that is not JSON at {where}", file=sys.stderr)
        return
    out.write(json.dumps(envelope, ensure_ascii=False) + "\n")


def _fail(message: str, code: int) -> int:
    print(f"coffeebuddy: {message}", file=sys.stderr)
    return code
