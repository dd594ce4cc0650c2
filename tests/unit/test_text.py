"""User text is cleaned like the run note on the way in (no zero-width or bidi controls)
and escaped on the way out (no pings, no reordering), in every message that repeats it."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest

from coffeebuddy import slack
from coffeebuddy.domain.command import CommandError, parse_command
from coffeebuddy.domain.models import OrderLine, RunStatus, RunView
from coffeebuddy.domain.summary import grouped_items
from coffeebuddy.domain.text import clean_user_text, escape_mrkdwn
from coffeebuddy.service.orders import normalize_order_text
from coffeebuddy.slack import (
    blockkit,
    home_blocks,
    run_blocks,
    summary_blocks,
)
from tests.blocks import run_view, walk

INVISIBLE = [chr(c) for c in range(0x200B, 0x2010)] + [chr(c) for c in range(0x202A, 0x202F)]
INVISIBLE += [chr(c) for c in range(0x2066, 0x206A)]


@pytest.mark.parametrize("ch", INVISIBLE)
def test_orders_lose_zero_width_and_bidi_controls(ch: str) -> None:
    assert normalize_order_text(f"  flat{ch} white{ch} ") == "flat white"
    assert clean_user_text(f"tea{ch}") == "tea"


def test_a_zero_width_space_does_not_split_identical_drinks() -> None:
    orders = (
        OrderLine("U1", normalize_order_text("flat\u200b white")),
        OrderLine("U2", "flat white"),
    )
    assert grouped_items(orders) == [("flat white", 2)]
    # Rows stored before the fix group and render the same.
    legacy = (OrderLine("U1", "flat\u200b white"), OrderLine("U2", "flat white"))
    assert grouped_items(legacy) == [("flat white", 2)]


def test_a_right_to_left_override_cannot_reverse_the_counts_line() -> None:
    legacy = (OrderLine("U1", "tea\u202e"), OrderLine("U2", "tea"), OrderLine("U3", "latte"))
    text = summary_blocks.order_list_text(legacy)
    assert not set(text) & set(INVISIBLE)
    assert "2× tea" in text


@pytest.mark.parametrize("word", ["@here", "@channel", "@everyone", "@HERE"])
def test_plain_broadcast_words_are_neutralised(word: str) -> None:
    escaped = escape_mrkdwn(f"latte {word} please")
    assert word not in escaped
    assert word[1:] in escaped
    text = summary_blocks.order_list_text((OrderLine("U1", f"{word} latte"),))
    assert word not in text


def test_escape_still_handles_slack_syntax() -> None:
    assert escape_mrkdwn("<!channel> & <@U9>") == "&lt;!channel&gt; &amp; &lt;@U9&gt;"
    assert escape_mrkdwn("&amp; &lt;") == "&amp; &lt;"


def test_error_hints_escape_what_they_repeat() -> None:
    with pytest.raises(CommandError) as info:
        parse_command("10:3<!channel>")
    message = info.value.user_message
    assert "<!channel>" not in message
    assert "&lt;!channel&gt;" in message


def _mrkdwn_objects(node: Any) -> list[dict[str, Any]]:
    return [n for n in walk(node) if n.get("type") == "mrkdwn"]


def test_every_mrkdwn_text_object_is_verbatim() -> None:
    view = run_view(
        run_id="run-1",
        note="Lobby https://example.com #general",
        orders=(OrderLine("U1", "latte @here"),),
    )
    rendered: list[Any] = [
        run_blocks.run_message(view)[1],
        summary_blocks.summary_message(
            RunView(**{**view.__dict__, "status": RunStatus.CLOSED, "runner_slack_id": "U1"})
        )[1],
        home_blocks.home_view([], "rule"),
    ]
    objects = [o for r in rendered for o in _mrkdwn_objects(r)]
    assert objects
    assert all(o.get("verbatim") is True for o in objects), objects


def test_no_block_builder_makes_a_mrkdwn_object_by_hand() -> None:
    # One helper (blockkit.mrkdwn) makes every mrkdwn text object, so none can miss verbatim.
    import inspect

    builders = [
        importlib.import_module(f"coffeebuddy.slack.{m.name}")
        for m in pkgutil.iter_modules(slack.__path__)
        if m.name.endswith("_blocks") or m.name == "blockkit"
    ]
    assert len(builders) >= 7
    for module in builders:
        source = inspect.getsource(module)
        uses = source.count("MarkdownTextObject(")
        assert uses == (1 if module is blockkit else 0), module.__name__
