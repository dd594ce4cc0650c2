from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from coffeebuddy.domain.models import MAX_ORDER_CHARS, OrderLine, RunStatus, RunView
from coffeebuddy.slack import blocks as b

PICKUP = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
ORDERS = (
    OrderLine("U1", "Flat white"),
    OrderLine("U2", "oat latte"),
    OrderLine("U3", "flat white"),
    OrderLine("U4", "FLAT WHITE", volunteer=True),
)


def _view(**changes: Any) -> RunView:
    base = RunView(
        run_id="run-123",
        slack_channel_id="C42",
        initiator_slack_id="U0",
        status=RunStatus.OPEN,
        started_at=PICKUP - timedelta(minutes=30),
        pickup_time=PICKUP,
        note="Lobby cafe",
        orders=ORDERS,
    )
    return replace(base, **changes)


def _closed(**changes: Any) -> RunView:
    return _view(
        status=RunStatus.CLOSED,
        runner_slack_id="U2",
        runner_reason="<@U2> was chosen: 0 of the last 10 runs.",
        **changes,
    )


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n["action_id"]: n for n in _walk(blocks) if n.get("type") == "button"}


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [n["text"] for n in _walk(blocks) if isinstance(n.get("text"), str)]


def _order_list(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [blk for blk in blocks if blk.get("block_id", "").startswith(b.ORDER_LIST_BLOCK_ID)]


# --- helpers ---------------------------------------------------------------------------


def test_action_ids_are_the_public_contract() -> None:
    assert (
        b.ACTION_PLACE_ORDER,
        b.ACTION_USE_USUAL,
        b.ACTION_EDIT_ORDER,
        b.ACTION_CANCEL_ORDER,
        b.ACTION_CLOSE_RUN,
        b.ACTION_CANCEL_RUN,
    ) == ("place_order", "use_usual", "edit_order", "cancel_order", "close_run", "cancel_run")
    assert b.CALLBACK_ORDER_MODAL == "order_modal"


def test_escape_neutralises_mentions_and_is_idempotent() -> None:
    assert b.escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert b.escape(b.escape("a < b & c")) == "a &lt; b &amp; c"


def test_pickup_text_uses_slack_date_token_with_utc_fallback() -> None:
    assert b.pickup_text(PICKUP) == "<!date^1714559400^{time}|10:30 UTC>"
    # Same instant in another zone gives the same token and a UTC fallback.
    cet = PICKUP.astimezone(timezone(timedelta(hours=2)))
    assert b.pickup_text(cet) == b.pickup_text(PICKUP)
    # Naive values are read as UTC, not as the server's local time.
    assert b.pickup_text(PICKUP.replace(tzinfo=None)) == b.pickup_text(PICKUP)


# --- run message -----------------------------------------------------------------------


def test_open_run_has_all_buttons_with_run_id() -> None:
    _, blocks = b.run_message(_view())
    actions = [blk for blk in blocks if blk["type"] == "actions"]
    assert len(actions) == 1
    assert actions[0]["block_id"] == "run_actions"
    buttons = _buttons(blocks)
    assert list(buttons) == [
        "place_order",
        "use_usual",
        "edit_order",
        "cancel_order",
        "close_run",
        "edit_run",
        "cancel_run",
    ]
    assert {btn["value"] for btn in buttons.values()} == {"run-123"}
    assert buttons["place_order"]["style"] == "primary"
    assert buttons["cancel_run"]["style"] == "danger"


def test_cancel_run_asks_for_confirmation() -> None:
    _, blocks = b.run_message(_view())
    buttons = _buttons(blocks)
    confirm = buttons["cancel_run"]["confirm"]
    assert confirm["style"] == "danger"
    assert {"title", "text", "confirm", "deny"} <= confirm.keys()
    assert all("confirm" not in btn for aid, btn in buttons.items() if aid != "cancel_run")


def test_run_message_shows_initiator_pickup_note_and_who_is_in() -> None:
    text, blocks = b.run_message(_view())
    joined = "\n".join(_texts(blocks))
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == "☕ Coffee run"
    assert "<@U0> is doing a coffee run" in joined
    assert b.pickup_text(PICKUP) in joined
    assert "Lobby cafe" in joined
    assert "4 people are in: <@U1>, <@U2>, <@U3>, <@U4>" in joined
    assert "<@U0>" in text


def test_run_message_never_shows_order_texts() -> None:
    secret_orders = (OrderLine("U1", "decaf soy mocha"), OrderLine("U2", "triple ristretto"))
    for status in RunStatus:
        view = _closed(orders=secret_orders) if status is RunStatus.CLOSED else None
        view = view or _view(orders=secret_orders, status=status, failure_reason="oops")
        text, blocks = b.run_message(view)
        dumped = json.dumps([text, blocks]).casefold()
        assert "mocha" not in dumped
        assert "ristretto" not in dumped


def test_nobody_yet_and_singular() -> None:
    _, blocks = b.run_message(_view(orders=()))
    assert "Nobody has ordered yet — be the first" in _texts(blocks)
    _, blocks = b.run_message(_view(orders=ORDERS[:1]))
    assert "1 person is in: <@U1>" in _texts(blocks)


def test_pickup_and_note_are_optional() -> None:
    _, blocks = b.run_message(_view(pickup_time=None, note=None))
    assert blocks[1]["text"]["text"] == "<@U0> is doing a coffee run"


def test_note_is_escaped() -> None:
    _, blocks = b.run_message(_view(note="<!here> lobby & co"))
    assert "&lt;!here&gt; lobby &amp; co" in blocks[1]["text"]["text"]
    assert "<!here>" not in json.dumps(blocks)


def test_first_run_hint_only_when_first_in_channel() -> None:
    _, blocks = b.run_message(_view(first_in_channel=True))
    contexts = [blk for blk in blocks if blk["type"] == "context"]
    assert contexts[0]["elements"][0]["text"] == b.FIRST_RUN_HINT
    assert "`/coffee help`" in b.FIRST_RUN_HINT
    _, blocks = b.run_message(_view())
    assert not [blk for blk in blocks if blk["type"] == "context"]


def test_closed_run_has_no_buttons_and_names_runner() -> None:
    _, blocks = b.run_message(_closed(first_in_channel=True))
    assert not _buttons(blocks)
    assert not [blk for blk in blocks if blk["type"] in {"actions", "context"}]
    assert "Closed — <@U2> is on it. Summary below." in _texts(blocks)


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (RunStatus.CANCELED, "This run was canceled."),
        (RunStatus.FAILED, "This run couldn't complete: I can't post in this channel."),
    ],
)
def test_ended_runs_have_no_buttons(status: RunStatus, line: str) -> None:
    view = _view(status=status, failure_reason="I can't post in this channel.")
    _, blocks = b.run_message(view)
    assert not _buttons(blocks)
    assert line in _texts(blocks)


def test_many_participants_are_truncated_within_limits() -> None:
    orders = tuple(OrderLine(f"U{i:010d}", "latte") for i in range(500))
    _, blocks = b.run_message(_view(orders=orders))
    assert len(blocks) <= b.MAX_BLOCKS
    (who,) = [t for t in _texts(blocks) if t.startswith("500 people are in: ")]
    assert len(who) <= b.MAX_SECTION_CHARS
    shown = who.count("<@")
    assert 0 < shown < 500
    assert who.endswith(f" and {500 - shown} more")
    assert f"<@U{shown - 1:010d}>" in who
    assert f"<@U{shown:010d}>" not in who


def test_participants_list_not_truncated_when_it_fits() -> None:
    ids = [f"U{i:010d}" for i in range(150)]
    text = b.participants_text(ids)
    assert "more" not in text
    assert text.count("<@") == 150


# --- order list, summary, DMs ----------------------------------------------------------


def test_order_list_text() -> None:
    assert b.order_list_text(ORDERS) == (
        "• <@U1>: Flat white\n"
        "• <@U2>: oat latte\n"
        "• <@U3>: flat white\n"
        "• <@U4>: FLAT WHITE\n"
        "\n"
        "3× Flat white, 1× oat latte\n"
        "Total: 4 items"
    )
    assert b.order_list_text(ORDERS[:1]).endswith("Total: 1 item")


def test_order_text_is_escaped_everywhere() -> None:
    orders = (OrderLine("U1", "<!channel> latte & cake"), OrderLine("U2", "tea <@U9>"))
    escaped = "&lt;!channel&gt; latte &amp; cake"
    for builder in (b.summary_message, b.runner_dm, b.reminder_dm):
        _, blocks = builder(_closed(orders=orders))
        dumped = json.dumps(blocks)
        assert "<!channel>" not in dumped
        assert "<@U9>" not in dumped
        text = "\n".join(blk["text"]["text"] for blk in _order_list(blocks))
        assert f"• <@U1>: {escaped}" in text
        assert f"1× {escaped}" in text


def test_summary_and_runner_dm_share_identical_order_list() -> None:
    view = _closed()
    _, summary = b.summary_message(view)
    _, dm = b.runner_dm(view)
    _, reminder = b.reminder_dm(view)
    assert _order_list(summary)
    assert _order_list(summary) == _order_list(dm) == _order_list(reminder)
    assert _order_list(summary)[0]["text"]["text"] == b.order_list_text(ORDERS)


def test_summary_message_content() -> None:
    text, blocks = b.summary_message(_closed())
    assert "☕ Coffee run closed — runner: <@U2>" in text
    head = blocks[0]["text"]["text"]
    assert "☕ Coffee run closed — runner: <@U2>" in head
    assert b.pickup_text(PICKUP) in head
    assert "Lobby cafe" in head
    assert blocks[1] == {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": "<@U2> was chosen: 0 of the last 10 runs.", "verbatim": True}
        ],
    }
    # The only buttons are the one-tap rating, last, after the order list.
    buttons = _buttons(blocks)
    assert sorted(buttons) == [f"rate_run_{n}" for n in range(1, 6)]
    assert [buttons[f"rate_run_{n}"]["value"] for n in range(1, 6)] == [
        f"run-123:{n}" for n in range(1, 6)
    ]
    assert blocks[-1]["block_id"] == b.RATING_BLOCK_ID
    assert "How was this run?" in blocks[-2]["elements"][0]["text"]


def test_summary_shows_the_runs_average_once_rated() -> None:
    _, blocks = b.summary_message(_closed(rating_count=3, rating_average=13 / 3))
    assert "Rated *4.3* / 5 from 3 ratings" in blocks[-2]["elements"][0]["text"]
    _, blocks = b.summary_message(_closed(rating_count=1, rating_average=5.0))
    assert "Rated *5.0* / 5 from 1 rating " in blocks[-2]["elements"][0]["text"]


def test_rating_values_round_trip_and_reject_junk() -> None:
    run_id = "0b5f3a4e-0000-4000-8000-000000000001"
    for score in b.RATING_SCORES:
        assert b.parse_rating_value(b.rating_value(run_id, score)) == (run_id, score)
    for junk in ("", run_id, f"{run_id}:0", f"{run_id}:6", f"{run_id}:x", f"{run_id}:-1", ":"):
        assert b.parse_rating_value(junk) is None, junk


def test_runner_dm_and_reminder_have_no_rating() -> None:
    for builder in (b.runner_dm, b.reminder_dm):
        _, blocks = builder(_closed())
        assert not [a for a in _buttons(blocks) if a.startswith(b.ACTION_RATE_RUN)]


def test_runner_dm_content() -> None:
    text, blocks = b.runner_dm(_closed())
    head = blocks[0]["text"]["text"]
    assert "You're the runner for the coffee run in <#C42>" in head
    assert f"*When:* {b.pickup_text(PICKUP)}" in head
    assert "*Where:* Lobby cafe" in head
    assert "<#C42>" in text
    assert "4 items" in text


def test_reminder_dm_content() -> None:
    text, blocks = b.reminder_dm(_closed())
    head = blocks[0]["text"]["text"]
    assert f"Pickup at {b.pickup_text(PICKUP)} — 4 items for 4 people" in head
    assert "4 items for 4 people" in text
    _, blocks = b.reminder_dm(_closed(pickup_time=None, orders=ORDERS[:1]))
    assert "1 item for 1 person" in blocks[0]["text"]["text"]


def test_huge_order_list_is_split_within_slack_limits() -> None:
    # Worst case per line: a maximal order text that quadruples when escaped.
    orders = tuple(
        OrderLine(f"U{i:010d}", f"{i} " + "<" * (MAX_ORDER_CHARS - 5)) for i in range(400)
    )
    for builder in (b.summary_message, b.runner_dm, b.reminder_dm):
        _, blocks = builder(_closed(orders=orders))
        assert len(blocks) <= b.MAX_BLOCKS
        sections = [blk for blk in blocks if blk["type"] == "section"]
        assert all(len(blk["text"]["text"]) <= b.MAX_SECTION_CHARS for blk in sections)
        block_ids = [blk["block_id"] for blk in _order_list(blocks)]
        assert len(block_ids) == len(set(block_ids))
        assert _order_list(blocks)[-1]["text"]["text"].startswith("… the list is too long")


def test_long_list_split_keeps_every_line() -> None:
    orders = tuple(OrderLine(f"U{i:010d}", f"drink number {i}") for i in range(300))
    _, blocks = b.summary_message(_closed(orders=orders))
    parts = [blk["text"]["text"] for blk in _order_list(blocks)]
    assert len(parts) > 1
    assert all(len(p) <= b.MAX_SECTION_CHARS for p in parts)
    joined = "\n".join(parts)
    assert all(f"• <@U{i:010d}>: drink number {i}\n" in joined for i in range(300))
    assert joined.endswith("Total: 300 items")
    # The grouped counts line is longer than one section and is cut only after ", ".
    assert "1× drink number 0, " in joined
    assert "1× drink number 299\n" in joined


# --- modal -----------------------------------------------------------------------------


def _block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [blk for blk in view["blocks"] if blk.get("block_id") == block_id]
    assert len(found) == 1
    return found[0]


def test_new_order_modal() -> None:
    view = b.order_modal("run-123", current_text=None, volunteer=False, pickup=None, note=None)
    assert view["type"] == "modal"
    assert view["callback_id"] == "order_modal"
    assert view["private_metadata"] == "run-123"
    assert view["title"]["text"] == "Coffee order"
    assert view["submit"]["text"] == "Save order"
    assert view["close"]["text"] == "Cancel"
    element = _block(view, "order")["element"]
    assert element["type"] == "plain_text_input"
    assert element["action_id"] == "order_text"
    assert element["max_length"] == MAX_ORDER_CHARS
    assert element["placeholder"]["text"] == "e.g. oat flat white, no sugar"
    assert "initial_value" not in element
    volunteer = _block(view, "volunteer")
    assert volunteer["optional"] is True
    checkbox = volunteer["element"]
    assert checkbox["type"] == "checkboxes"
    assert checkbox["action_id"] == "volunteer_choice"
    assert [(o["value"], o["text"]["text"]) for o in checkbox["options"]] == [
        ("volunteer", "I'll go — make me the runner")
    ]
    assert "initial_options" not in checkbox
    assert not [blk for blk in view["blocks"] if blk["type"] == "context"]


def test_edit_order_modal_has_initial_values() -> None:
    view = b.order_modal(
        "run-123",
        current_text="oat latte",
        volunteer=True,
        pickup=PICKUP,
        note="<!here> lobby",
    )
    assert _block(view, "order")["element"]["initial_value"] == "oat latte"
    checkbox = _block(view, "volunteer")["element"]
    assert checkbox["initial_options"] == checkbox["options"]
    (context,) = [blk for blk in view["blocks"] if blk["type"] == "context"]
    details = context["elements"][0]["text"]
    assert b.pickup_text(PICKUP) in details
    assert "&lt;!here&gt; lobby" in details


# --- help ------------------------------------------------------------------------------


def test_help_text() -> None:
    rule = "Whoever ran least among the last 10 runs goes; volunteers first."
    text = b.help_text(rule)
    for example in ("`/coffee [time] [note]`", "`/coffee`", "`/coffee 10:30 Lobby cafe`"):
        assert example in text
    assert "`/coffee in 20m`" in text
    assert "`/coffee 3pm`" in text
    for button in ("Place order", "Use my usual", "Edit my order", "Close run", "Cancel run"):
        assert button in text
    assert rule in text
