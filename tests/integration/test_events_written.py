"""Every state change of a run writes its event to the outbox, in the same transaction as
the change: the right types in the right order, a complete envelope, and never order text."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pytest

from coffeebuddy.slack import run_blocks
from coffeebuddy.store import outbox
from testkit.fakes.slack_api import FakeSlack
from tests import contract
from tests.conftest import CHANNEL
from tests.driver import Channel, SqlFn, runner_of

ORDERS = {
    "U0BEN": "oat flat white extra hot",
    "U0CAT": "chai latte no foam",
    "U0DAN": "double ristretto",
}
EDITED = "decaf cortado with honey"


def _rows(sql: SqlFn) -> list[dict[str, Any]]:
    rows = sql(
        "SELECT id, event_id::text, topic, event_type, run_id::text, envelope, sent_at"
        " FROM events ORDER BY id"
    )
    keys = ("id", "event_id", "topic", "event_type", "run_id", "envelope", "sent_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def _check_envelopes(rows: list[dict[str, Any]], run_id: str, correlation_id: str) -> None:
    ids = [r["envelope"]["event_id"] for r in rows]
    assert len(set(ids)) == len(ids), "event ids are unique"
    for row in rows:
        env = row["envelope"]
        assert set(env) == contract.ENVELOPE_KEYS, env
        uuid.UUID(env["event_id"])
        assert env["event_id"] == row["event_id"]
        assert env["type"] == row["event_type"]
        assert env["schema_version"] == 1
        assert datetime.fromisoformat(env["occurred_at"]).utcoffset() is not None
        assert env["run_id"] == run_id == row["run_id"]
        assert env["channel_id"] == CHANNEL
        assert env["correlation_id"] == correlation_id
        assert isinstance(env["data"], dict)
        assert row["topic"] == outbox.topic_for(env["type"])
        assert row["sent_at"] is None  # only the relay marks them sent


@pytest.mark.parametrize("start_text", ["", "in 20m Lobby cafe"], ids=["no-pickup", "pickup"])
def test_a_full_run_writes_its_events_in_order_without_order_text(
    chan: Channel, sql: SqlFn, start_text: str
) -> None:
    run_id = chan.open_run("U0ANA", start_text)
    for user, text in ORDERS.items():
        assert chan.submit(user, text) is None
    assert chan.submit("U0BEN", EDITED) is None  # an edit of an order
    chan.click("U0CAT", run_blocks.ACTION_CANCEL_ORDER, run_id)
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)  # refused: no second close event
    chan.work()
    assert chan.status(run_id) == "closed"

    rows = _rows(sql)
    expected = [
        "run_created",
        *(["reminder_scheduled"] if start_text else []),
        *["order_updated"] * 5,
        "run_closed",
        "runner_assigned",
    ]
    assert [r["event_type"] for r in rows] == expected
    correlation_id = sql("SELECT correlation_id FROM runs WHERE id = %s", run_id)[0][0]
    _check_envelopes(rows, run_id, correlation_id)

    by_type: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_type.setdefault(row["event_type"], []).append(row["envelope"]["data"])
    created = by_type["run_created"][0]
    assert created["initiator"] == "U0ANA"
    assert created["has_note"] is bool(start_text)
    assert (created["pickup_time"] is not None) is bool(start_text)
    changes = [(d["change"], d["user"], d["participants"]) for d in by_type["order_updated"]]
    assert changes == [
        ("placed", "U0BEN", 1),
        ("placed", "U0CAT", 2),
        ("placed", "U0DAN", 3),
        ("changed", "U0BEN", 3),
        ("canceled", "U0CAT", 2),
    ]
    closed = by_type["run_closed"][0]
    assert closed["by"] == "U0ANA" and closed["items"] == 2
    runner = runner_of(sql, run_id)
    assert by_type["runner_assigned"][0]["runner"] == runner

    # Privacy: no order text (nor the note) anywhere in any envelope.
    everything = json.dumps([r["envelope"] for r in rows], ensure_ascii=False).lower()
    for text in [*ORDERS.values(), EDITED, "flat white", "cortado", "lobby"]:
        assert text not in everything, text


def test_a_canceled_run_writes_run_canceled(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.open_run("U0ANA")
    chan.submit("U0BEN", "tea")
    chan.work()  # the worker applies the inboxed order before the run is canceled
    chan.click_and_work("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)
    assert chan.status(run_id) == "canceled"
    rows = _rows(sql)
    assert [r["event_type"] for r in rows] == ["run_created", "order_updated", "run_canceled"]
    correlation_id = sql("SELECT correlation_id FROM runs WHERE id = %s", run_id)[0][0]
    _check_envelopes(rows, run_id, correlation_id)
    assert rows[-1]["envelope"]["data"]["by"] == "U0ANA"
    assert rows[-1]["topic"] == outbox.RUN_TOPIC


def test_refused_changes_write_no_events(chan: Channel, sql: SqlFn, slack: FakeSlack) -> None:
    run_id = chan.start("U0ANA")
    chan.command("U0BEN")  # a second run while one is open: pointed at the open one
    chan.click("U0BEN", run_blocks.ACTION_CLOSE_RUN, run_id)  # not the initiator
    chan.click("U0BEN", run_blocks.ACTION_CANCEL_ORDER, run_id)  # has no order
    assert chan.submit("U0CAT", "   ") is not None  # empty order: the form stays open
    chan.work()
    assert [r["event_type"] for r in _rows(sql)] == ["run_created"]

    chan.click("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)
    chan.click("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)  # already canceled
    sql("UPDATE channels SET enabled = false WHERE slack_channel_id = %s", CHANNEL)
    assert "disabled" in chan.command("U0CAT", "in 20m")["text"]
    chan.work()
    assert [r["event_type"] for r in _rows(sql)] == ["run_created", "run_canceled"]


def test_a_run_message_slack_refuses_writes_run_failed(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    slack.fail_next("chat.postMessage", error="not_in_channel")
    run_id = chan.open_run("U0ANA", "in 20m")
    assert chan.status(run_id) == "failed"
    rows = _rows(sql)
    types = [r["event_type"] for r in rows]
    assert types.count("run_failed") == 1, types
    assert types[-1] == "run_failed"
    correlation_id = sql("SELECT correlation_id FROM runs WHERE id = %s", run_id)[0][0]
    _check_envelopes(rows, run_id, correlation_id)
    failed = rows[-1]["envelope"]["data"]
    assert failed.get("category"), failed
