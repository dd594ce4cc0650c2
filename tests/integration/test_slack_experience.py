"""Issue 14 (the Slack experience) and issue 13's one-tap "I'll go", through the HTTP
endpoints, real Postgres and the worker's handlers, with the fake Slack Web API."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from coffeebuddy.slack import run_blocks, stats_blocks
from testkit.slack_payloads import block_action_payload
from tests.blocks import text_of
from tests.conftest import CHANNEL
from tests.driver import Channel, runner_of


def _pick(chan: Channel, user: str, value: str) -> Any:
    """`user` picks an option of the run message's ⋯ menu, as Slack sends it."""
    payload = block_action_payload(
        user_id=user, channel_id=CHANNEL, action_id=run_blocks.ACTION_RUN_MENU, value=""
    )
    action = payload["actions"][0]
    action.pop("value")
    action.update(
        type="overflow",
        selected_option={"text": {"type": "plain_text", "text": "x"}, "value": value},
    )
    payload["response_url"] = chan.slack.response_url(f"{user}-menu")
    body = urlencode({"payload": json.dumps(payload)}).encode()
    result = chan.web.post("/slack/interactions", body)
    assert result.status_code == 200, result.text
    return result


def _volunteer(sql: Any, run_id: str, user: str) -> bool | None:
    rows = sql(
        "SELECT o.volunteer FROM orders o JOIN users u ON u.id = o.user_id"
        " WHERE o.run_id = %s AND u.slack_user_id = %s AND o.canceled_at IS NULL",
        run_id,
        user,
    )
    return rows[0][0] if rows else None


# --- I'll go --------------------------------------------------------------------------


def test_ill_go_marks_an_order_orders_the_usual_or_opens_the_ticked_form(
    chan: Channel, sql: Any, slack: Any
) -> None:
    # Ben gets a usual in a first run.
    chan.start("U0BEN")
    chan.submit("U0BEN", "oat latte")
    chan.click_and_work("U0BEN", run_blocks.ACTION_CLOSE_RUN)

    run_id = chan.open_run("U0ANA")
    # Ana has an order: one tap marks her as a volunteer.
    chan.submit("U0ANA", "espresso")
    chan.click_and_work("U0ANA", run_blocks.ACTION_ILL_GO, run_id)
    assert _volunteer(sql, run_id, "U0ANA") is True
    assert any("You volunteered to go" in t for t in chan.told("U0ANA"))
    # Ben has no order but a usual: one tap orders it, as a volunteer.
    chan.click_and_work("U0BEN", run_blocks.ACTION_ILL_GO, run_id)
    assert _volunteer(sql, run_id, "U0BEN") is True
    assert any("I ordered your usual: *oat latte*" in t for t in chan.told("U0BEN"))
    # Cat has neither: the order form opens with "I'll go" ticked, and nothing is stored.
    views = len(slack.opened_views())
    chan.click("U0CAT", run_blocks.ACTION_ILL_GO, run_id)
    view = slack.opened_views()[views]
    (box,) = [b for b in view["blocks"] if b.get("block_id") == run_blocks.VOLUNTEER_BLOCK_ID]
    assert box["element"]["initial_options"] == box["element"]["options"]
    assert _volunteer(sql, run_id, "U0CAT") is None
    # Tapping again changes nothing and says so.
    chan.click_and_work("U0ANA", run_blocks.ACTION_ILL_GO, run_id)
    assert any("already said you'll go" in t for t in chan.told("U0ANA"))
    # The same rule as the form's tick: a volunteer runs.
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert runner_of(sql, run_id) in {"U0ANA", "U0BEN"}


def test_ill_go_on_a_closed_run_changes_nothing(chan: Channel, sql: Any) -> None:
    run_id = chan.start("U0ANA")
    chan.submit("U0ANA", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    chan.click_and_work("U0BEN", run_blocks.ACTION_ILL_GO, run_id)
    assert _volunteer(sql, run_id, "U0BEN") is None
    assert "already closed" in chan.told("U0BEN")[-1]


# --- the ⋯ menu -----------------------------------------------------------------------


def test_the_menu_cancels_an_order_and_prompts_before_canceling_the_run(
    chan: Channel, sql: Any, slack: Any
) -> None:
    run_id = chan.open_run("U0ANA")
    chan.submit("U0BEN", "tea")
    _pick(chan, "U0BEN", f"{run_blocks.ACTION_CANCEL_ORDER}:{run_id}")
    chan.work()
    assert _volunteer(sql, run_id, "U0BEN") is None  # no active order left
    assert any("Your order is canceled" in r["text"] for r in slack.responses("U0BEN-menu"))

    # "Cancel run…" asks first: the answer carries the real button, behind a confirm.
    _pick(chan, "U0ANA", f"{run_blocks.ACTION_CANCEL_RUN_PROMPT}:{run_id}")
    chan.work()
    assert chan.status(run_id) == "open"
    (prompt,) = [r for r in slack.responses("U0ANA-menu") if r.get("blocks")]
    buttons = [e for b in prompt["blocks"] for e in b.get("elements") or []]
    (button,) = [e for e in buttons if e.get("action_id") == run_blocks.ACTION_CANCEL_RUN]
    assert button["value"] == run_id
    assert button["confirm"]["style"] == "danger"
    # Only the starter (or an admin) gets it.
    _pick(chan, "U0CAT", f"{run_blocks.ACTION_CANCEL_RUN_PROMPT}:{run_id}")
    chan.work()
    assert not [r for r in slack.responses("U0CAT-menu") if r.get("blocks")]
    chan.click_and_work("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)
    assert chan.status(run_id) == "canceled"


@pytest.mark.parametrize("value", ["close_run:{run}", "cancel_order", "junk:{run}", ""])
def test_an_unknown_menu_choice_changes_nothing(chan: Channel, sql: Any, value: str) -> None:
    run_id = chan.start("U0ANA")
    chan.submit("U0ANA", "tea")
    _pick(chan, "U0ANA", value.format(run=run_id))
    chan.work()
    assert chan.status(run_id) == "open"
    assert _volunteer(sql, run_id, "U0ANA") is False
    assert "don't recognise that button" in chan.slack.responses("U0ANA-menu")[-1]["text"]


# --- links to the run message and the summary -----------------------------------------


def test_answers_link_to_the_run_message_and_the_summary(
    chan: Channel, sql: Any, slack: Any
) -> None:
    assert chan.command("U0ANA")["text"] == "☕ Starting your coffee run…"
    run_id = chan.run_id()
    chan.work()
    ((message_link, summary_link),) = sql(
        "SELECT message_permalink, summary_permalink FROM runs WHERE id = %s", run_id
    )
    run_message = slack.messages(CHANNEL)[0]
    digits = run_message["ts"].replace(".", "")
    assert message_link == f"{slack.permalink_base}/archives/{CHANNEL}/p{digits}"
    assert summary_link is None
    # "There's already an open run" points at it.
    answer = chan.command("U0BEN")
    assert f"<{message_link}|its message>" in answer["text"]

    chan.submit("U0ANA", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    ((summary_link,),) = sql("SELECT summary_permalink FROM runs WHERE id = %s", run_id)
    summary = slack.messages(CHANNEL)[1]
    assert summary_link.endswith("p" + summary["ts"].replace(".", ""))
    # The closed run message links to the summary instead of "Summary below".
    closed = text_of(slack.messages(CHANNEL)[0])
    assert f"<{summary_link}|See the orders>" in closed
    assert "below" not in closed
    # "Already closed" points at the orders.
    chan.click_and_work("U0BEN", run_blocks.ACTION_PLACE_ORDER, run_id)
    assert f"already closed. <{summary_link}|See the orders>." in chan.told("U0BEN")[-1]


def test_no_link_is_no_failure(chan: Channel, sql: Any, slack: Any) -> None:
    slack.fail_next("chat.getPermalink", error="channel_not_found", times=5)
    run_id = chan.open_run("U0ANA")
    assert slack.messages(CHANNEL)
    assert sql("SELECT message_permalink FROM runs WHERE id = %s", run_id) == [(None,)]
    assert not sql("SELECT id FROM jobs WHERE status IN ('dead', 'queued', 'running')")
    answer = chan.command("U0BEN")
    assert "order with the buttons on its message" in answer["text"]


# --- the summary and the runner change ------------------------------------------------


def test_the_summary_mentions_only_the_runner_and_a_change_is_told_in_its_thread(
    chan: Channel, sql: Any, slack: Any
) -> None:
    run_id = chan.start("U0ANA")
    for user, text in {"U0ANA": "flat white", "U0BEN": "flat white", "U0CAT": "tea"}.items():
        chan.submit(user, text)
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    first = runner_of(sql, run_id)
    summary = slack.messages(CHANNEL)[1]
    assert set(re.findall(r"<@(\w+)>", text_of(summary))) == {first}
    assert "• u0ben: flat white" in text_of(summary)
    assert "*To buy:* 2× flat white" in text_of(summary)
    assert "3 orders" in text_of(summary)

    chan.click_and_work(first, run_blocks.ACTION_CANT_GO, run_id)
    second = runner_of(sql, run_id)
    assert second != first
    replies = [m for m in slack.messages(CHANNEL) if m.get("thread_ts") == summary["ts"]]
    assert [m["text"] for m in replies] == [
        f"🔁 Runner changed: {second.lower()} instead of {first.lower()}."
    ]
    # The summary, edited in place, says it in plain words.
    updated = text_of(slack.messages(CHANNEL)[1])
    assert f"{second.lower()} is going instead: {first.lower()} can't go;" in updated
    assert set(re.findall(r"<@(\w+)>", updated)) == {second}


def test_a_retried_thread_reply_is_not_posted_twice(
    chan: Channel, sql: Any, slack: Any, make_worker: Callable[..., Any]
) -> None:
    # Finding a lost reply reads the channel's thread: only with the opt-in setting.
    chan.worker = make_worker(channel_post_dedupe=True)
    run_id = chan.start("U0ANA")
    chan.submit("U0ANA", "tea")
    chan.submit("U0BEN", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    first = runner_of(sql, run_id)
    # Slack takes the reply, but the answer is lost: the retry must find it in the thread.
    slack.fail_next(
        "chat.postMessage", status=500, effect_first=True, when=lambda a: bool(a.get("thread_ts"))
    )
    chan.click_and_work(first, run_blocks.ACTION_CANT_GO, run_id)
    sql("UPDATE jobs SET run_at = now() WHERE status = 'queued'")
    chan.work()
    replies = [m for m in slack.messages(CHANNEL) if m.get("thread_ts")]
    assert len(replies) == 1
    assert slack.calls("conversations.replies")
    assert not sql("SELECT id FROM jobs WHERE status IN ('dead', 'queued', 'running')")


# --- help and stats -------------------------------------------------------------------


def test_help_is_short_and_more_is_one_tap(chan: Channel, slack: Any) -> None:
    answer = chan.command("U0ANA", "help")
    assert len(answer["text"]) <= 600
    buttons = [e for b in answer["blocks"] for e in b.get("elements") or []]
    assert [b["action_id"] for b in buttons] == [run_blocks.ACTION_HELP_MORE]
    chan.click_and_work("U0ANA", run_blocks.ACTION_HELP_MORE, "more")
    assert "`/coffee in 20m`" in chan.told("U0ANA")[-1]


def test_a_members_stats_are_short_and_everyone_is_one_tap(chan: Channel, sql: Any) -> None:
    people = [f"U0P{i:03d}" for i in range(8)]
    run_id = chan.start(people[0])
    for user in people:
        chan.submit(user, "tea")
    chan.click_and_work(people[0], run_blocks.ACTION_CLOSE_RUN, run_id)
    short = chan.command("U0P007", "stats")
    rows = [b for b in short["blocks"] if b.get("block_id", "").startswith("stats_table")]
    assert sum(t["text"]["text"].count("\n") + 1 for t in rows) == stats_blocks.SHORT_ROWS + 1
    chan.click_and_work("U0P007", stats_blocks.ACTION_STATS_ALL, "all")
    (full,) = [
        r for name in chan._urls["U0P007"] for r in chan.slack.responses(name) if r.get("blocks")
    ]
    lines = [
        line
        for b in full["blocks"]
        if b.get("block_id", "").startswith("stats_table")
        for line in b["text"]["text"].split("\n")
    ]
    assert len(lines) == len(people)
