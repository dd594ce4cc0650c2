"""The rules of a coffee run, through the HTTP endpoints as Slack calls them: who may
close or cancel, idempotent closing, order edits and limits, fairness, disabled channels."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from coffeebuddy.service.common import DISABLED_TEXT
from coffeebuddy.slack import run_blocks
from coffeebuddy.slack.modal_blocks import read_form_metadata
from coffeebuddy.store import queue
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import block_action_body
from tests.blocks import text_of
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel, SqlFn


def _run_message(slack: FakeSlack, message_ts: str) -> dict[str, Any]:
    found = [m for m in slack.messages(CHANNEL) if m["ts"] == message_ts]
    assert len(found) == 1
    return found[0]


def _message_ts(sql: SqlFn, run_id: str) -> str:
    ts = sql("SELECT message_ts FROM runs WHERE id = %s", run_id)[0][0]
    assert ts is not None, "the run message was never posted"
    return str(ts)


def _summaries(slack: FakeSlack) -> list[dict[str, Any]]:
    """Channel messages carrying the order list: the closing summaries."""
    return [
        m
        for m in slack.messages(CHANNEL)
        if any(str(b.get("block_id", "")).startswith("order_list") for b in m.get("blocks", []))
    ]


def _runner(sql: SqlFn, run_id: str) -> str | None:
    rows = sql(
        "SELECT u.slack_user_id FROM runs r LEFT JOIN users u ON u.id = r.runner_user_id"
        " WHERE r.id = %s",
        run_id,
    )
    return None if rows[0][0] is None else str(rows[0][0])


def _jobs(sql: SqlFn, kind: str) -> int:
    return int(sql("SELECT count(*) FROM jobs WHERE kind = %s", kind)[0][0])


def _open_run_with_orders(chan: Channel, orders: dict[str, str]) -> str:
    run_id = chan.open_run("U0ANA")
    for user, text in orders.items():
        assert chan.submit(user, text, run_id=run_id) is None
    chan.work()
    return run_id


# ---- who may close or cancel ------------------------------------------------------------


@pytest.mark.parametrize("action", [run_blocks.ACTION_CLOSE_RUN, run_blocks.ACTION_CANCEL_RUN])
def test_a_participant_may_not_close_or_cancel_someone_elses_run(
    chan: Channel, slack: FakeSlack, sql: SqlFn, action: str
) -> None:
    run_id = _open_run_with_orders(chan, {"U0BEN": "tea", "U0CAT": "latte"})
    chan.click_and_work("U0BEN", action, run_id)

    assert chan.status(run_id) == "open"
    refusals = [t for t in chan.told("U0BEN") if "<@U0ANA>" in t and "Only" in t]
    assert len(refusals) == 1, chan.told("U0BEN")
    assert _jobs(sql, queue.POST_SUMMARY) == 0
    assert len(_summaries(slack)) == 0


@pytest.mark.parametrize(
    ("action", "ended"),
    [(run_blocks.ACTION_CLOSE_RUN, "closed"), (run_blocks.ACTION_CANCEL_RUN, "canceled")],
)
@pytest.mark.parametrize("who", ["initiator", "configured_admin", "workspace_admin", "owner"])
def test_the_initiator_and_admins_may_close_or_cancel(
    chan: Channel, slack: FakeSlack, action: str, ended: str, who: str
) -> None:
    user = {
        "initiator": "U0ANA",
        "configured_admin": "U0ADMIN",  # in config.admin_user_ids, not a Slack admin
        "workspace_admin": "U0BOSS",
        "owner": "U0OWNER",
    }[who]
    slack.add_user("U0ADMIN")
    slack.add_user("U0BOSS", is_admin=True)
    slack.add_user("U0OWNER", is_owner=True)
    run_id = _open_run_with_orders(chan, {"U0BEN": "tea"})
    chan.click_and_work(user, action, run_id)

    assert chan.status(run_id) == ended
    assert not [t for t in chan.told(user) if "Only" in t]


# ---- closing is idempotent --------------------------------------------------------------


def test_a_double_click_on_close_closes_once(chan: Channel, slack: FakeSlack, sql: SqlFn) -> None:
    run_id = _open_run_with_orders(chan, {"U0BEN": "tea", "U0CAT": "latte"})
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)

    assert chan.status(run_id) == "closed"
    runner = _runner(sql, run_id)
    assert runner in ("U0BEN", "U0CAT")
    assert sql("SELECT sum(runs_served_count) FROM runner_stats") == [(1,)]
    assert len(_summaries(slack)) == 1
    assert (_jobs(sql, queue.POST_SUMMARY), _jobs(sql, queue.DM_RUNNER)) == (1, 1)
    assert len(slack.dms("U0BEN")) + len(slack.dms("U0CAT")) == 1
    assert len(slack.dms(runner)) == 1
    already = [t for t in chan.told("U0ANA") if "already closed" in t]
    assert len(already) == 1, chan.told("U0ANA")


def test_two_racing_closes_close_once(
    chan: Channel, web: SignedClient, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = _open_run_with_orders(chan, {"U0BEN": "tea", "U0CAT": "latte", "U0DAN": "mocha"})
    clients = [SignedClient(web.client.app), SignedClient(web.client.app)]
    start = threading.Barrier(2)

    def close(i: int) -> int:
        body = block_action_body(
            user_id="U0ANA",
            channel_id=CHANNEL,
            action_id=run_blocks.ACTION_CLOSE_RUN,
            value=run_id,
            response_url=slack.response_url(f"race-{i}"),
            trigger_id=slack.trigger_id(),
        )
        start.wait(timeout=10)
        return clients[i].post("/slack/interactions", body).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(close, [0, 1])) == [200, 200]
    chan.work()

    assert chan.status(run_id) == "closed"
    assert (_jobs(sql, queue.POST_SUMMARY), _jobs(sql, queue.DM_RUNNER)) == (1, 1)
    assert sql("SELECT sum(runs_served_count) FROM runner_stats") == [(1,)]
    assert len(_summaries(slack)) == 1
    assert sum(len(slack.dms(u)) for u in ("U0BEN", "U0CAT", "U0DAN")) == 1
    answers = [str(r.get("text")) for i in (0, 1) for r in slack.responses(f"race-{i}")]
    assert sum("already closed" in a for a in answers) == 1, answers


def test_closing_a_run_nobody_ordered_in_cancels_it(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = chan.open_run("U0ANA")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)

    assert chan.status(run_id) == "canceled"
    assert _runner(sql, run_id) is None
    assert any("Nobody ordered" in t for t in chan.told("U0ANA"))
    assert _summaries(slack) == []
    assert "This run was canceled." in text_of(_run_message(slack, _message_ts(sql, run_id)))


# ---- orders: edit, cancel, limits --------------------------------------------------------


def test_edit_replaces_and_cancel_withdraws_the_order(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = _open_run_with_orders(chan, {"U0BEN": "tea", "U0CAT": "latte"})
    ts = _message_ts(sql, run_id)
    assert "2 people" in text_of(_run_message(slack, ts))

    def ben_orders() -> list[tuple[Any, ...]]:
        return sql(
            "SELECT o.order_text, o.canceled_at IS NOT NULL FROM orders o"
            " JOIN users u ON u.id = o.user_id WHERE u.slack_user_id = 'U0BEN'"
        )

    assert chan.submit("U0BEN", "oat flat white", run_id=run_id) is None
    chan.work()
    assert ben_orders() == [("oat flat white", False)]
    assert any("Updated your order" in t for t in chan.told("U0BEN"))
    assert "2 people" in text_of(_run_message(slack, ts))

    chan.click_and_work("U0BEN", run_blocks.ACTION_CANCEL_ORDER, run_id)
    assert ben_orders() == [("oat flat white", True)]
    message = text_of(_run_message(slack, ts))
    assert "1 person" in message and "<@U0BEN>" not in message
    assert any("Your order is canceled" in t for t in chan.told("U0BEN"))

    # Nothing left to cancel, for him or for someone who never ordered.
    chan.click("U0BEN", run_blocks.ACTION_CANCEL_ORDER, run_id)
    chan.click_and_work("U0DAN", run_blocks.ACTION_CANCEL_ORDER, run_id)
    assert any("no order" in t for t in chan.told("U0BEN"))
    assert any("no order" in t for t in chan.told("U0DAN"))
    assert ben_orders() == [("oat flat white", True)]


def test_after_close_orders_are_frozen(chan: Channel, slack: FakeSlack, sql: SqlFn) -> None:
    run_id = _open_run_with_orders(chan, {"U0BEN": "tea", "U0CAT": "latte"})
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    ts = _message_ts(sql, run_id)
    orders_before = sql("SELECT * FROM orders ORDER BY id")
    jobs_before = sql("SELECT count(*) FROM jobs WHERE kind <> %s", queue.NOTIFY_USER)
    updates_before = _run_message(slack, ts)["updates"]

    answer = chan.submit("U0BEN", "espresso", run_id=run_id)
    assert answer is not None and answer["response_action"] == "errors"
    assert "already closed" in answer["errors"]["order"]
    chan.click("U0CAT", run_blocks.ACTION_USE_USUAL, run_id)  # CAT has a usual: "latte"
    chan.click("U0BEN", run_blocks.ACTION_CANCEL_ORDER, run_id)
    chan.click_and_work("U0DAN", run_blocks.ACTION_PLACE_ORDER, run_id)

    for user in ("U0CAT", "U0BEN", "U0DAN"):
        assert any("already closed" in t for t in chan.told(user)), (user, chan.told(user))
    assert sql("SELECT * FROM orders ORDER BY id") == orders_before
    assert sql("SELECT count(*) FROM jobs WHERE kind <> %s", queue.NOTIFY_USER) == jobs_before
    assert _run_message(slack, ts)["updates"] == updates_before
    assert slack.opened_views() == []


@pytest.mark.parametrize("text", ["", "   \n\t  ", "x" * 151, "flat white " * 14])
def test_invalid_order_text_keeps_the_modal_open(chan: Channel, sql: SqlFn, text: str) -> None:
    run_id = chan.open_run("U0ANA")
    answer = chan.submit("U0BEN", text, run_id=run_id)
    assert answer is not None
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {run_blocks.ORDER_BLOCK_ID}
    assert answer["errors"][run_blocks.ORDER_BLOCK_ID]
    assert sql("SELECT count(*) FROM orders") == [(0,)]
    assert sql("SELECT count(*) FROM user_preferences") == [(0,)]
    assert _jobs(sql, queue.REFRESH_RUN_MESSAGE) == 0


def test_order_text_is_whitespace_collapsed_before_the_length_check(
    chan: Channel, sql: SqlFn
) -> None:
    run_id = chan.start("U0ANA")
    assert chan.submit("U0BEN", "  oat   flat\n\twhite  ", run_id=run_id) is None
    # 154 characters typed, 150 once the run of spaces collapses: accepted.
    long_text = "a     " + "b" * 148
    assert chan.submit("U0CAT", long_text, run_id=run_id) is None
    chan.work()  # the worker applies the inboxed orders
    rows: dict[str, str] = dict(
        sql("SELECT u.slack_user_id, o.order_text FROM orders o JOIN users u ON u.id = o.user_id")
    )
    assert rows == {"U0BEN": "oat flat white", "U0CAT": "a " + "b" * 148}


def test_use_my_usual_without_a_usual_opens_the_order_form(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = chan.open_run("U0ANA")
    chan.click_and_work("U0BEN", run_blocks.ACTION_USE_USUAL, run_id)

    views = slack.opened_views()
    assert len(views) == 1
    assert views[0]["callback_id"] == run_blocks.CALLBACK_ORDER_MODAL
    assert read_form_metadata(views[0]["private_metadata"])[0] == run_id
    assert sql("SELECT count(*) FROM orders") == [(0,)]


# ---- fairness through the app ----------------------------------------------------------


def _close_and_summary(chan: Channel, slack: FakeSlack, sql: SqlFn, run_id: str) -> str:
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert chan.status(run_id) == "closed"
    runner = _runner(sql, run_id)
    assert runner is not None
    reason = sql("SELECT runner_reason FROM runs WHERE id = %s", run_id)[0][0]
    summary = text_of(_summaries(slack)[-1])
    assert f"<@{runner}>" in summary
    # The explanation sentence names the runner (a name, not a mention) and is shown in
    # the summary.
    assert reason.startswith(f"{runner.lower()} is going: ")
    assert reason in summary
    return runner


def test_runners_rotate_and_volunteers_go(chan: Channel, slack: FakeSlack, sql: SqlFn) -> None:
    people = ["U0ANA", "U0BEN", "U0CAT"]
    runners: list[str] = []
    for _ in range(3):
        run_id = _open_run_with_orders(chan, dict.fromkeys(people, "flat white"))
        runner = _close_and_summary(chan, slack, sql, run_id)
        if runners:
            assert runner != runners[-1], "the previous runner sits out"
        runners.append(runner)
    assert sorted(runners) == people

    # Without volunteers the next run would go to runners[0] (ran longest ago); a
    # volunteer who is neither that person nor the last runner is chosen instead.
    volunteer = runners[1]
    run_id = chan.open_run("U0ANA")
    for user in people:
        assert chan.submit(user, "tea", volunteer=user == volunteer, run_id=run_id) is None
    runner = _close_and_summary(chan, slack, sql, run_id)
    assert runner == volunteer
    assert sql("SELECT runner_rule FROM runs WHERE id = %s", run_id) == [("volunteer",)]
    assert f"{volunteer.lower()} is going: volunteered." in text_of(_summaries(slack)[-1])


def test_the_previous_runner_sits_out_even_with_the_fewest_runs(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    # Solo runs: BEN runs twice, CAT twice, then ANA once (the previous runner).
    for solo in ("U0BEN", "U0BEN", "U0CAT", "U0CAT", "U0ANA"):
        run_id = _open_run_with_orders(chan, {solo: "flat white"})
        assert _close_and_summary(chan, slack, sql, run_id) == solo

    run_id = _open_run_with_orders(chan, dict.fromkeys(("U0ANA", "U0BEN", "U0CAT"), "tea"))
    runner = _close_and_summary(chan, slack, sql, run_id)
    # ANA has the fewest runs in the window but ran last time; of BEN and CAT (two runs
    # each) BEN has waited longest.
    assert runner == "U0BEN"
    reason = sql("SELECT runner_reason FROM runs WHERE id = %s", run_id)[0][0]
    assert reason.endswith("; u0ana went last time.")


# ---- channel state ---------------------------------------------------------------------


def test_a_disabled_channel_records_nothing(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)
    sql("UPDATE channels SET enabled = false")

    def snapshot() -> list[Any]:
        return [
            sql("SELECT * FROM runs ORDER BY id"),
            sql("SELECT * FROM users ORDER BY id"),
            sql("SELECT * FROM channels ORDER BY id"),
            sql("SELECT count(*) FROM jobs"),
        ]

    before = snapshot()
    answer = chan.command("U0DAN", channel_name="renamed")
    assert answer["text"] == DISABLED_TEXT
    assert snapshot() == before
    assert sql("SELECT count(*) FROM users WHERE slack_user_id = 'U0DAN'") == [(0,)]


def test_cancel_run_updates_the_message_and_frees_the_channel(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = _open_run_with_orders(chan, {"U0BEN": "tea"})
    chan.click_and_work("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)

    assert chan.status(run_id) == "canceled"
    message = _run_message(slack, _message_ts(sql, run_id))
    assert "This run was canceled." in text_of(message)
    assert not any(b.get("block_id") == run_blocks.RUN_ACTIONS_BLOCK_ID for b in message["blocks"])
    assert any("You canceled the coffee run" in t for t in chan.told("U0ANA"))
    assert _summaries(slack) == []

    answer = chan.command("U0BEN")
    assert "Starting your coffee run" in answer["text"]
    second = chan.run_id()
    assert second != run_id
    assert chan.status(second) == "open"
