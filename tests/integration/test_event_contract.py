"""The outbox check every database test runs at teardown (tests/conftest.py): it names
events outside their schema, types without one, and rows whose columns (what the relay
sends as topic, key and headers) disagree with their envelope."""

from __future__ import annotations

import json
import uuid

import psycopg
from psycopg.rows import dict_row

from coffeebuddy.store import outbox
from tests import contract
from tests.conftest import CHANNEL
from tests.driver import SqlFn


def _record(database_url: str, event_type: str, **data: object) -> str:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        event_id = outbox.record(
            conn,
            event_type,
            run_id=uuid.uuid4(),
            channel_id=CHANNEL,
            correlation_id="corr-contract",
            **data,
        )
        conn.commit()
    return event_id


def test_an_outbox_within_the_contract_has_no_problems(database_url: str) -> None:
    for event_type in sorted(outbox.EVENT_TYPES):
        _record(database_url, event_type, **contract.example(event_type)["data"])
    assert contract.check_outbox(database_url) == []


def test_the_check_names_each_event_outside_the_contract(database_url: str, sql: SqlFn) -> None:
    good = contract.example("order_updated")["data"]
    _record(database_url, "order_updated", **good)
    _record(database_url, "order_updated", **good, order_text="oat flat white")
    _record(database_url, "run_failed")  # no category
    # A type the code has no schema for (outbox.record would refuse it: no topic either).
    stray = contract.example("run_created") | {"type": "run_teleported"}
    sql(
        "INSERT INTO events (event_id, topic, event_type, run_id, envelope)"
        " VALUES (%s, %s, %s, %s, %s::jsonb)",
        stray["event_id"],
        outbox.RUN_TOPIC,
        "run_teleported",
        stray["run_id"],
        json.dumps(stray),
    )
    # A row whose topic column disagrees with its envelope's type.
    moved = _record(database_url, "run_closed", **contract.example("run_closed")["data"])
    sql("UPDATE events SET topic = %s WHERE event_id = %s", outbox.REMINDER_TOPIC, moved)

    found = contract.check_outbox(database_url)
    assert len(found) == 4, found
    assert "order_updated: data: Additional properties are not allowed" in found[0]
    assert "'order_text' was unexpected" in found[0]
    assert "run_failed: data: 'category' is a required property" in found[1]
    assert "no schema events/schemas/run_teleported.schema.json" in found[2]
    assert "coffeebuddy.reminder.events" in found[3] and "!= envelope" in found[3]
    # Leave the outbox clean for this test's own teardown check.
    sql("DELETE FROM events")
