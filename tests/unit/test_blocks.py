from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

import pytest

from coffeebuddy.domain.fairness import RULE_SUMMARY
from coffeebuddy.domain.models import MAX_ORDER_CHARS, OrderLine, RunStatus, RunView
from coffeebuddy.slack import blockkit, modal_blocks, run_blocks
from tests.blocks import PICKUP, buttons_by_action, run_view, walk

ORDERS = (
    OrderLine("U1", "Flat white"),
    OrderLine("U2", "oat latte"),
    OrderLine("U3", "flat white"),
    OrderLine("U4", "FLAT WHITE", volunteer=True),
)


def _view(**changes: Any) -> RunView:
    return run_view(**{"orders": ORDERS, **changes})


def _closed(**changes: Any) -> RunView:
    return _view(
        status=RunStatus.CLOSED,
        runner_slack_id="U2",
        runner_reason="Bo is going: fewest runs lately.",
        **changes,
    )


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [n["text"] for n in walk(blocks) if isinstance(n.get("text"), str)]


def _order_list(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        blk for blk in blocks if blk.get("block_id", "").startswith(run_blocks.ORDER_LIST_BLOCK_ID)
    ]


# --- helpers ---------------------------------------------------------------------------


def test_action_ids_are_the_public_contract() -> None:
    assert (
        run_blocks.ACTION_PLACE_ORDER,
        run_blocks.ACTION_USE_USUAL,
        run_blocks.ACTION_EDIT_ORDER,
        run_blocks.ACTION_CANCEL_ORDER,
        run_blocks.ACTION_CLOSE_RUN,
        run_blocks.ACTION_CANCEL_RUN,
    ) == ("place_order", "use_usual", "edit_order", "cancel_order", "close_run", "cancel_run")
    assert run_blocks.CALLBACK_ORDER_MODAL == "order_modal"


def test_escape_neutralises_mentions_and_is_idempotent() -> None:
    assert blockkit.escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert blockkit.escape(blockkit.escape("a < b & c")) == "a &lt; b &amp; c"


def test_pickup_text_uses_slack_date_token_with_utc_fallback() -> None:
    assert blockkit.pickup_text(PICKUP) == "<!date^1714559400^{time}|10:30 UTC>"
    # Same instant in another zone gives the same token and a UTC fallback.
    cet = PICKUP.astimezone(timezone(timedelta(hours=2)))
    assert blockkit.pickup_text(cet) == blockkit.pickup_text(PICKUP)
    # Naive values are read as UTC, not as the server's local time.
    assert blockkit.pickup_text(PICKUP.replace(tzinfo=None)) == blockkit.pickup_text(PICKUP)


# --- run message -----------------------------------------------------------------------


def _menu(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    (menu,) = [n for n in walk(blocks) if n.get("type") == "overflow"]
    return menu


def test_open_run_has_four_buttons_and_a_menu() -> None:
    """Issue 14 item 2: one row on a phone: order/change (primary), usual, I'll go, close;
    the rest in the ⋯ menu. "Edit my order" is gone: it opened the same form as order."""
    _, blocks = run_blocks.run_message(_view())
    actions = [blk for blk in blocks if blk["type"] == "actions"]
    assert len(actions) == 1
    assert actions[0]["block_id"] == "run_actions"
    buttons = buttons_by_action(blocks)
    assert list(buttons) == ["place_order", "use_usual", "ill_go", "close_run"]
    assert [btn["text"]["text"] for btn in buttons.values()] == [
        "Order / change",
        "Use my usual",
        "I'll go",
        "Close run",
    ]
    assert {btn["value"] for btn in buttons.values()} == {"run-123"}
    assert buttons["place_order"]["style"] == "primary"
    menu = _menu(blocks)
    assert menu["action_id"] == run_blocks.ACTION_RUN_MENU
    assert [(o["text"]["text"], o["value"]) for o in menu["options"]] == [
        ("Cancel my order", "cancel_order:run-123"),
        ("Edit time/note", "edit_run:run-123"),
        ("Cancel run…", "cancel_run_prompt:run-123"),
    ]
    assert {o["value"].partition(":")[0] for o in menu["options"]} == set(
        run_blocks.RUN_MENU_ACTIONS
    )


def test_close_run_asks_for_confirmation_with_the_count() -> None:
    """Issue 14 item 7: closing can't be undone and ends ordering for everyone."""
    _, blocks = run_blocks.run_message(_view())
    confirm = buttons_by_action(blocks)["close_run"]["confirm"]
    assert confirm["title"]["text"] == "Close the run now?"
    assert confirm["text"]["text"].startswith(
        "4 people are in. I'll pick the runner and post the orders."
    )
    _, blocks = run_blocks.run_message(_view(orders=ORDERS[:1]))
    assert buttons_by_action(blocks)["close_run"]["confirm"]["text"]["text"].startswith(
        "1 person is in."
    )
    # The one-tap actions stay one tap.
    buttons = buttons_by_action(blocks)
    assert all("confirm" not in btn for aid, btn in buttons.items() if aid != "close_run")


def test_cancel_run_prompt_has_the_danger_button_with_confirmation() -> None:
    blocks = run_blocks.cancel_run_prompt("run-123")
    button = buttons_by_action(blocks)["cancel_run"]
    assert button["value"] == "run-123"
    assert button["style"] == "danger"
    assert button["confirm"]["style"] == "danger"
    assert {"title", "text", "confirm", "deny"} <= button["confirm"].keys()


def test_run_message_leads_with_starter_and_when_ordering_ends() -> None:
    """Issue 14 item 1: "@ana started a coffee run, order by 09:27 · pickup 09:32 · Lobby
    cafe", then that the runner is picked at close (the starter is not the runner)."""
    order_by = PICKUP - timedelta(minutes=5)
    text, blocks = run_blocks.run_message(_view(order_by=order_by))
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == "☕ Coffee run"
    assert blocks[1]["text"]["text"] == (
        f"*<@U0> started a coffee run*, order by *{blockkit.pickup_text(order_by)}* · "
        f"pickup {blockkit.pickup_text(PICKUP)} · Lobby cafe\nRunner picked fairly at close."
    )
    assert "doing a coffee run" not in json.dumps([text, blocks])
    joined = "\n".join(_texts(blocks))
    assert "4 people are in: <@U1>, <@U2>, <@U3>, <@U4>" in joined
    assert text.startswith("☕ <@U0> started a coffee run, order by ")
    # Without a reminder nothing closes the run by itself, so there is no "order by".
    _, blocks = run_blocks.run_message(_view())
    assert "order by" not in blocks[1]["text"]["text"]


def test_run_message_never_shows_order_texts() -> None:
    secret_orders = (OrderLine("U1", "decaf soy mocha"), OrderLine("U2", "triple ristretto"))
    for status in RunStatus:
        view = _closed(orders=secret_orders) if status is RunStatus.CLOSED else None
        view = view or _view(orders=secret_orders, status=status, failure_reason="oops")
        text, blocks = run_blocks.run_message(view)
        dumped = json.dumps([text, blocks]).casefold()
        assert "mocha" not in dumped
        assert "ristretto" not in dumped


def test_nobody_yet_and_singular() -> None:
    _, blocks = run_blocks.run_message(_view(orders=()))
    assert "Nobody has ordered yet — be the first" in _texts(blocks)
    _, blocks = run_blocks.run_message(_view(orders=ORDERS[:1]))
    assert "1 person is in: <@U1>" in _texts(blocks)


def test_pickup_and_note_are_optional() -> None:
    _, blocks = run_blocks.run_message(_view(pickup_time=None, note=None))
    assert blocks[1]["text"]["text"] == (
        "*<@U0> started a coffee run*\nRunner picked fairly at close."
    )


def test_note_is_escaped() -> None:
    _, blocks = run_blocks.run_message(_view(note="<!here> lobby & co"))
    assert "&lt;!here&gt; lobby &amp; co" in blocks[1]["text"]["text"]
    assert "<!here>" not in json.dumps(blocks)


def test_first_run_hint_only_when_first_in_channel() -> None:
    _, blocks = run_blocks.run_message(_view(first_in_channel=True))
    contexts = [blk for blk in blocks if blk["type"] == "context"]
    assert contexts[0]["elements"][0]["text"] == run_blocks.FIRST_RUN_HINT
    assert "`/coffee help`" in run_blocks.FIRST_RUN_HINT
    # Issue 14 item 6: the same words as the rule everywhere, not "served least recently".
    assert RULE_SUMMARY in run_blocks.FIRST_RUN_HINT
    assert "least recently" not in run_blocks.FIRST_RUN_HINT
    _, blocks = run_blocks.run_message(_view())
    assert not [blk for blk in blocks if blk["type"] == "context"]


def test_closed_run_has_no_buttons_and_links_to_the_summary() -> None:
    """Issue 14 item 8: the closed run message links to the summary, not "Summary below"."""
    link = "https://x.slack.com/archives/C42/p1700000000000100"
    _, blocks = run_blocks.run_message(_closed(first_in_channel=True, summary_permalink=link))
    assert not buttons_by_action(blocks)
    assert not [blk for blk in blocks if blk["type"] in {"actions", "context", "overflow"}]
    assert f"Closed — <@U2> is going. <{link}|See the orders>." in _texts(blocks)
    assert "below" not in json.dumps(blocks)
    # Before the link is known it still reads right.
    _, blocks = run_blocks.run_message(_closed())
    assert "Closed — <@U2> is going. See the orders in the summary." in _texts(blocks)


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (RunStatus.CANCELED, "This run was canceled."),
        (RunStatus.FAILED, "This run couldn't complete: I can't post in this channel."),
    ],
)
def test_ended_runs_have_no_buttons(status: RunStatus, line: str) -> None:
    view = _view(status=status, failure_reason="I can't post in this channel.")
    _, blocks = run_blocks.run_message(view)
    assert not buttons_by_action(blocks)
    assert line in _texts(blocks)


def test_many_participants_are_truncated_within_limits() -> None:
    orders = tuple(OrderLine(f"U{i:010d}", "latte") for i in range(500))
    _, blocks = run_blocks.run_message(_view(orders=orders))
    assert len(blocks) <= run_blocks.MAX_BLOCKS
    (who,) = [t for t in _texts(blocks) if t.startswith("500 people are in: ")]
    assert len(who) <= run_blocks.MAX_SECTION_CHARS
    shown = who.count("<@")
    assert 0 < shown < 500
    assert who.endswith(f" and {500 - shown} more")
    assert f"<@U{shown - 1:010d}>" in who
    assert f"<@U{shown:010d}>" not in who


def test_participants_list_not_truncated_when_it_fits() -> None:
    ids = [f"U{i:010d}" for i in range(150)]
    text = run_blocks.participants_text(ids)
    assert "more" not in text
    assert text.count("<@") == 150


# --- modal -----------------------------------------------------------------------------


def _block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [blk for blk in view["blocks"] if blk.get("block_id") == block_id]
    assert len(found) == 1
    return found[0]


def test_new_order_modal() -> None:
    view = modal_blocks.order_modal(
        "run-123", current_text=None, volunteer=False, pickup=None, note=None
    )
    assert view["type"] == "modal"
    assert view["callback_id"] == "order_modal"
    # No click to answer through: the metadata is the run id alone.
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
    view = modal_blocks.order_modal(
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
    assert blockkit.pickup_text(PICKUP) in details
    assert "&lt;!here&gt; lobby" in details
    # Issue 14 item 10: dismissing the edit form must not read as "cancel my order".
    assert view["close"]["text"] == "Close"


# --- help ------------------------------------------------------------------------------


def test_help_is_short_and_the_rest_is_behind_a_button() -> None:
    """Issue 14 item 9: the few lines people need (it was 1,203 characters)."""
    text = run_blocks.help_text(RULE_SUMMARY)
    assert len(text) <= 600
    assert "`/coffee 10:30 Lobby cafe`" in text
    for button in ("Order / change", "Use my usual", "I'll go", "Close run"):
        assert button in text
    assert RULE_SUMMARY in text
    blocks = run_blocks.help_blocks(RULE_SUMMARY)
    assert blocks[0]["text"]["text"] == text
    assert list(buttons_by_action(blocks)) == [run_blocks.ACTION_HELP_MORE]
    more = run_blocks.help_more_text()
    for example in ("`/coffee in 20m`", "`/coffee 3pm`", "`/coffee forget me`", "`/coffee admin`"):
        assert example in more
    assert "cancel run" in more


def test_an_order_form_keeps_the_response_url_of_the_click_that_opened_it() -> None:
    url = "https://hooks.slack.com/actions/T0/1/abc"
    view = modal_blocks.order_modal(
        "run-123", current_text=None, volunteer=False, pickup=None, note=None, response_url=url
    )
    assert modal_blocks.read_form_metadata(view["private_metadata"]) == ("run-123", url)
    assert len(view["private_metadata"]) <= 3000  # Slack's limit for private_metadata


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ("run-123", ("run-123", None)),  # a form opened before the URL was kept
        ('{"run":"r","response_url":"https://x"}', ("r", "https://x")),
        ('{"run":"r"}', ("r", None)),
        ('{"run":"r","response_url":""}', ("r", None)),
        ('{"run":"r","response_url":42}', ("r", None)),
        ("{not json", (None, None)),
        ("[1, 2]", ("[1, 2]", None)),
        ('{"run": 1}', (1, None)),  # not a run id: the caller's parse refuses it
        (None, (None, None)),
        (7, (7, None)),
    ],
)
def test_form_metadata_is_read_leniently(metadata: object, expected: object) -> None:
    assert modal_blocks.read_form_metadata(metadata) == expected


def test_an_over_long_response_url_is_not_kept() -> None:
    url = "https://hooks.slack.com/" + "a" * modal_blocks.MAX_REPLY_URL_CHARS
    assert modal_blocks.form_metadata("run-1", url) == "run-1"
    assert modal_blocks.form_metadata("run-1", None) == "run-1"
