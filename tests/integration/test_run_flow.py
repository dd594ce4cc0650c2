"""A coffee run through the HTTP endpoints, real Postgres and the worker's job handlers,
with the fake Slack Web API on the other side."""

from __future__ import annotations

import json
import re
from typing import Any

from coffeebuddy.slack import run_blocks
from tests.blocks import text_of
from tests.conftest import CHANNEL
from tests.driver import Channel, runner_of


def _run_message(slack: Any) -> dict[str, Any]:
    messages = slack.messages(CHANNEL)
    assert messages, "no message in the channel"
    return messages[0]


def test_full_run_with_five_people(chan: Channel, slack: Any, sql: Any) -> None:
    answer = chan.command("U0ANA", "in 20m Lobby cafe")
    assert answer["response_type"] == "ephemeral"
    assert "Starting your coffee run" in answer["text"]
    run_id = chan.run_id()
    chan.work()
    message = _run_message(slack)
    assert "Lobby cafe" in text_of(message)
    assert "<!date^" in text_of(message)

    orders = {
        "U0ANA": "flat white",
        "U0BEN": "oat latte",
        "U0CAT": "flat white",
        "U0DAN": "espresso",
        "U0EVE": "Flat  White",
    }
    for user, text in orders.items():
        assert chan.submit(user, text) is None  # modal closes
    chan.work()
    message = _run_message(slack)
    assert "5 people" in text_of(message)
    # Order texts never appear in the channel's run message (privacy).
    assert "espresso" not in text_of(message)

    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert chan.status(run_id) == "closed"
    runner = runner_of(sql, run_id)
    assert runner in orders

    channel_messages = slack.messages(CHANNEL)
    summaries = [m for m in channel_messages if _has_order_list(m)]
    assert len(summaries) == 1, "exactly one summary in the channel"
    summary = text_of(summaries[0])
    assert "*To buy:* 3× flat white" in summary and "5 orders" in summary
    # Only the runner is mentioned: a new post notifies everyone it mentions.
    assert f"<@{runner}>" in summary
    assert re.findall(r"<@(\w+)>", summary) == [runner] * len(re.findall(r"<@(\w+)>", summary))

    dms = slack.dms(runner)
    assert len(dms) == 1
    # The DM carries the identical order list.
    dm_blocks = [b for b in dms[0]["blocks"] if str(b.get("block_id", "")).startswith("order_list")]
    summary_blocks = [
        b for b in summaries[0]["blocks"] if str(b.get("block_id", "")).startswith("order_list")
    ]
    assert dm_blocks == summary_blocks and dm_blocks

    # Everyone's order became their usual for this channel.
    usuals = dict(
        sql(
            "SELECT u.slack_user_id, p.last_order_text FROM user_preferences p"
            " JOIN users u ON u.id = p.user_id"
        )
    )
    assert usuals["U0BEN"] == "oat latte" and usuals["U0EVE"] == "Flat White"


def test_second_run_reuses_usual_with_one_click(chan: Channel, slack: Any, sql: Any) -> None:
    first = chan.start("U0ANA")
    chan.submit("U0BEN", "cortado")
    chan.submit("U0ANA", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, first)

    second = chan.start("U0CAT")
    assert second != first
    chan.work()
    chan.click_and_work("U0BEN", run_blocks.ACTION_USE_USUAL, second)
    rows = sql(
        "SELECT o.order_text FROM orders o JOIN users u ON u.id = o.user_id"
        " WHERE o.run_id = %s AND u.slack_user_id = 'U0BEN' AND o.canceled_at IS NULL",
        second,
    )
    assert rows == [("cortado",)]
    # The confirmation says what the usual is.
    assert any("Ordered your usual" in t and "cortado" in t for t in chan.told("U0BEN"))
    assert "1 person" in json.dumps(slack.messages(CHANNEL)[-1]["blocks"])


def _has_order_list(message: dict[str, Any]) -> bool:
    """The summary (not the closed run message): it carries the order list."""
    return any(
        str(b.get("block_id", "")).startswith("order_list") for b in message.get("blocks") or []
    )
