"""The summary, the runner's DM, the reminder, the last call and the runner-change reply."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from coffeebuddy.domain.models import MAX_ORDER_CHARS, OrderLine, RunStatus, RunView
from coffeebuddy.slack import blockkit, run_blocks
from coffeebuddy.slack import summary_blocks as s
from tests.blocks import PICKUP, buttons_by_action, run_view, walk

ORDERS = (
    OrderLine("U1", "Flat white", name="ana"),
    OrderLine("U2", "oat latte, extra hot", name="bo"),
    OrderLine("U3", "flat white", name="cat"),
    OrderLine("U4", "FLAT WHITE", volunteer=True, name="dan"),
)
MENTION = re.compile(r"<[@!]")


def _closed(**changes: Any) -> RunView:
    closed = {
        "status": RunStatus.CLOSED,
        "orders": ORDERS,
        "runner_slack_id": "U2",
        "runner_reason": "Bo is going: fewest runs lately (a tie, picked at random).",
    }
    return run_view(**{**closed, **changes})


def _order_list(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        blk for blk in blocks if blk.get("block_id", "").startswith(run_blocks.ORDER_LIST_BLOCK_ID)
    ]


def test_order_list_names_people_and_counts_only_repeats() -> None:
    """Issue 14 items 3 and 4: plain names (a new post notifies everyone it mentions), the
    counts only of drinks ordered twice or more, and "orders", not "items"."""
    assert s.order_list_text(ORDERS) == (
        "• ana: Flat white\n"
        "• bo: oat latte, extra hot\n"
        "• cat: flat white\n"
        "• dan: FLAT WHITE\n"
        "*To buy:* 3× Flat white\n"
        "4 orders"
    )
    # Nothing repeated: no tally that only repeats the list.
    two = "• ana: Flat white\n• bo: oat latte, extra hot\n2 orders"
    assert s.order_list_text(ORDERS[:2]) == two
    assert s.order_list_text(ORDERS[:1]).endswith("\n1 order")
    # Two repeated drinks are told apart by " · ": a comma stays inside one order.
    twice = (*ORDERS, OrderLine("U5", "oat latte, extra hot", name="eve"))
    assert "*To buy:* 3× Flat white · 2× oat latte, extra hot" in s.order_list_text(twice)
    # Without a name nobody is pinged either.
    assert s.order_list_text((OrderLine("U9", "tea"),)).startswith("• U9: tea")


def test_summary_mentions_only_the_runner_once() -> None:
    text, blocks = s.summary_message(_closed())
    everything = json.dumps(blocks)
    assert re.findall(r"<@(\w+)>", everything) == ["U2"]
    assert text == "☕ Coffee run closed — <@U2> is going: 4 orders"
    head = blocks[0]["text"]["text"]
    when = blockkit.pickup_text(PICKUP)
    assert head == f"*☕ Coffee run closed — <@U2> is going*\nPickup {when}, Lobby cafe"
    assert blocks[1]["elements"][0]["text"] == (
        "Bo is going: fewest runs lately (a tie, picked at random)."
    )
    assert "items" not in everything


def test_summary_is_shorter_than_before() -> None:
    # The test run: 8 people, two long orders; the old summary was 1,012 chars.
    orders = tuple(
        OrderLine(f"U{i}", text, name=name)
        for i, (name, text) in enumerate(
            [
                ("ana", "flat white"),
                ("bo", "large oat milk latte, extra hot, half sweet vanilla syrup"),
                ("cat", "espresso"),
                ("dan", "flat white"),
                ("eve", "chai latte with almond milk and a sprinkle of cinnamon"),
                ("fay", "flat white"),
                ("gus", "americano"),
                ("ivy", "tea"),
            ]
        )
    )
    _, blocks = s.summary_message(_closed(orders=orders))
    shown = sum(len(n["text"]) for n in walk(blocks) if isinstance(n.get("text"), str))
    assert shown < 700
    listed = "\n".join(blk["text"]["text"] for blk in _order_list(blocks))
    assert "*To buy:* 3× flat white\n8 orders" in listed
    assert "1×" not in listed


def test_user_text_is_escaped_everywhere() -> None:
    orders = (
        OrderLine("U1", "<!channel> latte & cake", name="<@U7>"),
        OrderLine("U2", "<!channel> latte & cake", name="bo"),
    )
    escaped = "&lt;!channel&gt; latte &amp; cake"
    view = _closed(orders=orders, note="<!here>", runner_reason="<!channel> is going: x.")
    for builder in (s.summary_message, s.runner_dm, s.reminder_dm):
        text, blocks = builder(view)
        dumped = json.dumps([text, blocks])
        assert "<!channel>" not in dumped
        assert "<!here>" not in dumped
        assert "<@U7>" not in dumped
        listed = "\n".join(blk["text"]["text"] for blk in _order_list(blocks))
        assert f"• &lt;@U7&gt;: {escaped}" in listed
        assert f"2× {escaped}" in listed
    assert "<@" not in s.runner_changed_text("<@U1>", "<!channel>")


def test_summary_and_dms_share_the_same_order_list() -> None:
    view = _closed()
    lists = [_order_list(builder(view)[1]) for builder in (s.summary_message, s.runner_dm)]
    lists.append(_order_list(s.reminder_dm(view)[1]))
    assert lists[0] and lists[0] == lists[1] == lists[2]
    assert lists[0][0]["text"]["text"] == s.order_list_text(ORDERS)


def test_rating_buttons_have_accessibility_labels() -> None:
    """Issue 14 item 10: a screen reader reads "Rate this run 1 of 5, poor", not "1"."""
    _, blocks = s.summary_message(_closed())
    buttons = buttons_by_action(blocks)
    assert sorted(buttons) == [f"rate_run_{n}" for n in range(1, 6)]
    assert buttons["rate_run_1"]["accessibility_label"] == "Rate this run 1 of 5, poor"
    assert buttons["rate_run_5"]["accessibility_label"] == "Rate this run 5 of 5, great"
    assert [buttons[f"rate_run_{n}"]["value"] for n in range(1, 6)] == [
        f"run-123:{n}" for n in range(1, 6)
    ]
    assert blocks[-1]["block_id"] == run_blocks.RATING_BLOCK_ID
    _, blocks = s.summary_message(_closed(rating_count=3, rating_average=13 / 3))
    assert "Rated *4.3* / 5 from 3 ratings" in blocks[-2]["elements"][0]["text"]


def test_notification_texts_stand_alone() -> None:
    """Issue 14 item 5: a phone shows only `text`."""
    view = _closed()
    when = blockkit.pickup_text(PICKUP)
    assert s.reminder_dm(view)[0] == f"⏰ Pickup {when}, Lobby cafe: 4 orders"
    assert s.runner_dm(view)[0] == f"☕ You're the runner: 4 orders, pickup {when}, Lobby cafe"
    assert s.reminder_dm(replace(view, pickup_time=None))[0] == (
        "⏰ Coffee run reminder (Lobby cafe): 4 orders"
    )
    assert s.runner_dm(replace(view, pickup_time=None, note=None))[0] == (
        "☕ You're the runner: 4 orders"
    )
    _, dm = s.runner_dm(view)
    assert "<#C42>" in dm[0]["text"]["text"]
    assert list(buttons_by_action(dm)) == [run_blocks.ACTION_CANT_GO]


def test_last_call_links_to_the_run_and_mentions_nobody() -> None:
    link = "https://x.slack.com/archives/C42/p1"
    view = replace(_closed(), status=RunStatus.OPEN, message_permalink=link)
    text, blocks = s.last_call_message(view, 5)
    assert text == "⏰ Last call: closes in about 5 min"
    body = blocks[0]["text"]["text"]
    assert f"<{link}|Order on the run message>" in body
    assert not MENTION.search(body)
    _, blocks = s.last_call_message(replace(view, message_permalink=None), 5)
    assert "Order on the run message." in blocks[0]["text"]["text"]


def test_runner_changed_reply_uses_plain_names() -> None:
    assert s.runner_changed_text("Ana", "Gus") == "🔁 Runner changed: Ana instead of Gus."


def test_huge_order_list_is_split_within_slack_limits() -> None:
    # Worst case per line: a maximal order text that quadruples when escaped.
    orders = tuple(
        OrderLine(f"U{i:010d}", f"{i % 2} " + "<" * (MAX_ORDER_CHARS - 5), name=f"n{i}")
        for i in range(400)
    )
    for builder in (s.summary_message, s.runner_dm, s.reminder_dm):
        _, blocks = builder(_closed(orders=orders))
        assert len(blocks) <= run_blocks.MAX_BLOCKS
        sections = [blk for blk in blocks if blk["type"] == "section"]
        assert all(len(blk["text"]["text"]) <= run_blocks.MAX_SECTION_CHARS for blk in sections)
        block_ids = [blk["block_id"] for blk in _order_list(blocks)]
        assert len(block_ids) == len(set(block_ids))
        assert _order_list(blocks)[-1]["text"]["text"].startswith("… the list is too long")


def test_long_list_split_keeps_every_line() -> None:
    orders = tuple(
        OrderLine(f"U{i:010d}", f"drink number {i % 150}", name=f"p{i}") for i in range(300)
    )
    _, blocks = s.summary_message(_closed(orders=orders))
    parts = [blk["text"]["text"] for blk in _order_list(blocks)]
    assert len(parts) > 1
    assert all(len(p) <= run_blocks.MAX_SECTION_CHARS for p in parts)
    joined = "\n".join(parts)
    assert all(f"• p{i}: drink number {i % 150}\n" in joined for i in range(300))
    assert joined.endswith("300 orders")
    # The repeated-drinks line is longer than one section and is cut only after " · ".
    assert "2× drink number 0 · " in joined
    assert "2× drink number 149\n" in joined
