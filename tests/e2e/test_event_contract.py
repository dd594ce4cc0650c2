"""End to end, the event contract on the wire: the real gunicorn and worker (its relay
publishing to a real Kafka-protocol broker, Tansu) play runs; every record the broker holds
keeps its schema (events/schemas/) and the key, headers and ordering the AsyncAPI document
(events/asyncapi.yaml) promises; and the operator's `events tail` prints them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

import pytest
import yaml
from jsonschema import Draft7Validator

from coffeebuddy.slack import run_blocks
from coffeebuddy.store import outbox
from testkit.fakes.slack_api import FakeSlack
from testkit.kafka_broker import KafkaBroker, running_broker
from testkit.processes import ROOT, Service, coverage_env, start_service
from tests import contract
from tests.conftest import CHANNEL
from tests.driver import Channel, SqlFn, eventually

pytestmark = pytest.mark.e2e

ORDERS = {"U0BEN": "oat flat white", "U0CAT": "yuzu chai latte", "U0DAN": "double ristretto"}
EDITED = "decaf cortado with honey"


@pytest.fixture
def kafka() -> Iterator[KafkaBroker]:
    with running_broker(partitions=3) as broker:
        yield broker


@pytest.fixture
def service(database_url: str, slack: FakeSlack, kafka: KafkaBroker) -> Iterator[Service]:
    extra = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "COFFEEBUDDY_RELAY_POLL_SECONDS": "0.2",
        "COFFEEBUDDY_REFRESH_COALESCE_MS": "200",
    }
    with start_service(database_url, slack.base_url, extra_env=extra) as running:
        yield running


def _header(record: Any, name: str) -> str:
    values = [bytes(v).decode() for k, v in record.headers if k == name]
    assert len(values) == 1, (name, record.headers)
    return values[0]


def _all_sent(sql: SqlFn, run_id: str, last_type: str) -> bool:
    rows = sql(
        "SELECT count(*) FILTER (WHERE sent_at IS NULL),"
        " count(*) FILTER (WHERE run_id = %s AND event_type = %s) FROM events",
        run_id,
        last_type,
    )
    return rows[0][0] == 0 and rows[0][1] == 1


def _tail(kafka: KafkaBroker, *args: str) -> subprocess.Popen[str]:
    env = {
        **coverage_env(),
        "PATH": os.environ.get("PATH", ""),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "coffeebuddy", "events", "tail", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(stream: IO[str], into: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.extend(stream), daemon=True)
    thread.start()
    return thread


def test_the_events_on_the_wire_keep_the_contract_and_the_tail_prints_them(
    service: Service, kafka: KafkaBroker, slack: FakeSlack, sql: SqlFn
) -> None:
    chan = Channel(service.client, None, sql, CHANNEL, slack)
    # Run A: three orders placed, one edited, one canceled, then closed.
    run_a = chan.start("U0ANA", "in 30m Lobby cafe")
    slack.wait_for(lambda: slack.messages(CHANNEL))
    for user, text in ORDERS.items():
        assert chan.submit(user, text, run_id=run_a) is None
    assert chan.submit("U0BEN", EDITED, run_id=run_a) is None
    chan.click("U0CAT", run_blocks.ACTION_CANCEL_ORDER, run_a)
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_a)
    eventually(lambda: _all_sent(sql, run_a, "runner_assigned"), what="run A published")
    # Run B: started and canceled; its events must not show in a tail of run A.
    run_b = chan.start("U0EVE")
    chan.click("U0EVE", run_blocks.ACTION_CANCEL_RUN, run_b)
    eventually(lambda: _all_sent(sql, run_b, "run_canceled"), what="run B published")

    records = kafka.read_all()
    asyncapi = yaml.safe_load((ROOT / "events" / "asyncapi.yaml").read_text())
    headers_schema = asyncapi["components"]["schemas"]["headers"]
    headers_ok = Draft7Validator(headers_schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    first: dict[str, dict[str, Any]] = {}
    by_run_topic: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        envelope = json.loads(record.value)
        assert contract.problems(envelope) == [], envelope
        headers = {k: bytes(v).decode() for k, v in record.headers}
        assert list(headers_ok.iter_errors(headers)) == []
        assert _header(record, "event_id") == envelope["event_id"]
        assert _header(record, "event_type") == envelope["type"]
        assert _header(record, "schema_version") == str(envelope["schema_version"])
        assert record.key == envelope["run_id"].encode()
        assert record.topic == outbox.topic_for(envelope["type"])
        # At least once: a repeat is the same event; consumers keep the first copy.
        if envelope["event_id"] in first:
            assert first[envelope["event_id"]] == envelope
            continue
        first[envelope["event_id"]] = envelope
        by_run_topic.setdefault((envelope["run_id"], record.topic), []).append(envelope)
    wire = json.dumps([r.value.decode() for r in records], ensure_ascii=False).lower()
    for text in [*ORDERS.values(), EDITED, "lobby"]:
        assert text not in wire, text

    # What the outbox wrote is what the broker holds, in the same order per run.
    written = sql("SELECT envelope FROM events ORDER BY id")
    assert sorted(first) == sorted(row[0]["event_id"] for row in written)
    for (run_id, topic), envelopes in by_run_topic.items():
        assert envelopes == [
            row[0]
            for row in written
            if row[0]["run_id"] == run_id and outbox.topic_for(row[0]["type"]) == topic
        ]

    run_events = by_run_topic[(run_a, outbox.RUN_TOPIC)]
    assert [e["type"] for e in run_events] == [
        "run_created",
        *["order_updated"] * 5,
        "run_closed",
        "runner_assigned",
    ]
    updates = [
        (e["data"]["change"], e["data"]["user"], e["data"]["participants"])
        for e in run_events
        if e["type"] == "order_updated"
    ]
    # In the order they were made (Cat's cancel applies the inbox first), and every count
    # follows from the one before: orders are never applied concurrently.
    assert updates == [
        ("placed", "U0BEN", 1),
        ("placed", "U0CAT", 2),
        ("placed", "U0DAN", 3),
        ("changed", "U0BEN", 3),
        ("canceled", "U0CAT", 2),
    ]
    reminders = by_run_topic[(run_a, outbox.REMINDER_TOPIC)]
    assert reminders and {e["type"] for e in reminders} == {"reminder_scheduled"}
    correlation = sql("SELECT correlation_id FROM runs WHERE id = %s", run_a)[0][0]
    assert {e["correlation_id"] for e in run_events + reminders} == {correlation}
    assert [e["type"] for e in by_run_topic[(run_b, outbox.RUN_TOPIC)]] == [
        "run_created",
        "run_canceled",
    ]

    # The operator's tail of run A, from the beginning: exactly its events, as JSON lines.
    done = _tail(kafka, "--run", run_a, "--from-beginning", "--no-follow")
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    for topic in (outbox.RUN_TOPIC, outbox.REMINDER_TOPIC):
        mine = [e for e in printed if outbox.topic_for(e["type"]) == topic]
        assert list({e["event_id"]: e for e in mine}.values()) == by_run_topic[(run_a, topic)]
    only_reminders = _tail(
        kafka, "--run", run_a, "--topic", outbox.REMINDER_TOPIC, "--from-beginning", "--no-follow"
    )
    out, err = only_reminders.communicate(timeout=120)
    assert only_reminders.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [
        e for e in printed if e["type"].startswith("reminder_")
    ]

    # Following: only what is published after it started, until interrupted.
    follow = _tail(kafka, "--topic", outbox.RUN_TOPIC)
    assert follow.stdout is not None and follow.stderr is not None
    said: list[str] = []
    talker = _lines(follow.stderr, said)
    eventually(lambda: any("reading" in line for line in said), what="the tail to start")
    seen: list[str] = []
    reader = _lines(follow.stdout, seen)
    run_c = chan.start("U0FAY")
    eventually(
        lambda: any(json.loads(line)["run_id"] == run_c for line in seen),
        what="run C in the tail",
    )
    follow.send_signal(signal.SIGINT)
    assert follow.wait(timeout=30) == 0
    for thread, stream in ((reader, follow.stdout), (talker, follow.stderr)):
        thread.join(timeout=10)
        stream.close()
    followed = [json.loads(line) for line in seen]
    assert {e["run_id"] for e in followed} == {run_c}
    assert followed[0]["type"] == "run_created"
    for envelope in followed:
        assert contract.problems(envelope) == []
