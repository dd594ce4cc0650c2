"""The inbox: with COFFEEBUDDY_INBOX on (the default), "Use my usual" and the order form
are acknowledged with one insert and applied by the worker, with the same confirmations;
whatever can't simply be queued is answered in the request as before."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from coffeebuddy.slack import run_blocks
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import block_action_payload, view_submission_payload
from tests.conftest import CHANNEL
from tests.driver import Channel, SqlFn


@pytest.fixture
def chan(inbox_chan: Channel) -> Channel:
    return inbox_chan


def _orders(sql: SqlFn, run_id: str) -> list[tuple[str, str]]:
    return [
        (str(u), str(t))
        for u, t in sql(
            "SELECT u.slack_user_id, o.order_text FROM orders o JOIN users u ON u.id = o.user_id"
            " WHERE o.run_id = %s AND o.canceled_at IS NULL ORDER BY 1",
            run_id,
        )
    ]


def _queued(sql: SqlFn) -> int:
    return int(sql("SELECT count(*) FROM jobs WHERE kind = 'apply_action'")[0][0])


def test_an_order_form_is_queued_then_applied_with_its_confirmation(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.open_run("U0ANA")
    assert chan.submit("U0BEN", "  oat   latte ") is None  # the modal closes at once
    assert _orders(sql, run_id) == []  # acknowledged, not yet applied
    assert _queued(sql) == 1
    chan.work()
    assert _orders(sql, run_id) == [("U0BEN", "oat latte")]
    assert any("Got your order: *oat latte*" in t for t in chan.told("U0BEN"))


def test_use_my_usual_is_queued_then_applied_with_its_confirmation(
    chan: Channel, sql: SqlFn
) -> None:
    first = chan.start("U0ANA")
    chan.submit_and_work("U0BEN", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, first)
    second = chan.open_run("U0ANA")
    queued = _queued(sql)
    chan.click("U0BEN", run_blocks.ACTION_USE_USUAL, second)
    assert _orders(sql, second) == []
    assert _queued(sql) == queued + 1
    chan.work()
    assert _orders(sql, second) == [("U0BEN", "tea")]
    assert any("Ordered your usual: *tea*" in t for t in chan.told("U0BEN"))


def test_use_my_usual_without_a_usual_opens_the_form_in_the_request(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.open_run("U0ANA")
    chan.click("U0CAT", run_blocks.ACTION_USE_USUAL, run_id)
    assert _queued(sql) == 0
    assert slack.calls("views.open")  # the trigger id is only good for 3 s


def test_what_cant_be_queued_is_answered_in_the_request(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA")
    chan.submit_and_work("U0BEN", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    queued = _queued(sql)
    # A closed run: the form says so and stays open; the click is told why.
    answer = chan.submit("U0BEN", "espresso", run_id=run_id)
    assert answer is not None and "already closed" in answer["errors"]["order"]
    chan.click_and_work("U0BEN", run_blocks.ACTION_USE_USUAL, run_id)
    assert any("already closed" in t for t in chan.told("U0BEN"))
    # A text that fails the checks never reaches the inbox either.
    second = chan.start("U0ANA")
    answer = chan.submit("U0CAT", "   ", run_id=second)
    assert answer is not None and answer["errors"]["order"]
    assert _queued(sql) == queued
    assert _orders(sql, run_id) == [("U0BEN", "tea")]


def test_a_close_counts_the_orders_still_in_the_inbox(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.start("U0ANA")
    chan.submit_and_work("U0ANA", "flat white")
    assert chan.submit("U0BEN", "tea") is None  # queued...
    # ...and the worker hasn't got to it (far from due) when the run is closed.
    sql("UPDATE jobs SET run_at = now() + interval '1 hour' WHERE kind = 'apply_action'")
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert chan.status(run_id) == "closed"
    assert _orders(sql, run_id) == [("U0ANA", "flat white"), ("U0BEN", "tea")]
    assert sql("SELECT DISTINCT status FROM jobs WHERE kind = 'apply_action'") == [("done",)]
    chan.work()
    summary = str(slack.messages(CHANNEL)[-1])
    assert "2 orders" in summary
    assert any("Got your order: *tea*" in t for t in chan.told("U0BEN"))


def test_a_run_canceled_before_the_worker_applies_an_order_tells_the_person(
    chan: Channel, sql: SqlFn
) -> None:
    run_id = chan.open_run("U0ANA")
    assert chan.submit("U0BEN", "tea") is None  # queued
    sql("UPDATE jobs SET run_at = now() + interval '1 hour' WHERE kind = 'apply_action'")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)
    sql("UPDATE jobs SET run_at = now() WHERE kind = 'apply_action' AND status = 'queued'")
    chan.work()
    assert _orders(sql, run_id) == []
    assert any("was canceled" in t and "wasn't saved" in t for t in chan.told("U0BEN"))


def test_a_cancel_right_after_an_order_cancels_it(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA")
    chan.submit_and_work("U0ANA", "flat white")
    assert chan.submit("U0BEN", "tea") is None  # queued, not applied yet
    chan.click("U0BEN", run_blocks.ACTION_CANCEL_ORDER, run_id)
    assert _orders(sql, run_id) == [("U0ANA", "flat white")]
    assert sql(
        "SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id"
        " WHERE u.slack_user_id = 'U0BEN' AND o.canceled_at IS NOT NULL"
    ) == [(1,)]
    chan.work()
    assert any("Your order is canceled" in t for t in chan.told("U0BEN"))


def test_another_workspace_is_never_queued(chan: Channel, sql: SqlFn) -> None:
    first = chan.start("U0ANA")
    chan.submit_and_work("U0BEN", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, first)
    run_id = chan.open_run("U0ANA")
    queued = _queued(sql)
    payload = block_action_payload(
        user_id="U0BEN",
        channel_id=CHANNEL,
        action_id=run_blocks.ACTION_USE_USUAL,
        value=run_id,
        trigger_id="1.2.3",
    )
    payload["team"]["id"] = payload["user"]["team_id"] = "T0OTHER"
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert chan.web.post("/slack/interactions", body).status_code == 200
    answer = view_submission_payload(user_id="U0BEN", run_id=run_id, order_text="tea")
    answer["team"]["id"] = answer["user"]["team_id"] = "T0OTHER"
    body = urlencode({"payload": json.dumps(answer)}).encode()
    assert "errors" in chan.web.post("/slack/interactions", body).text
    assert _queued(sql) == queued
    chan.work()
    assert _orders(sql, run_id) == []
