"""The simulator's transcript shows mrkdwn as a person sees it (issue 13 item 19)."""

from __future__ import annotations

from datetime import UTC, datetime

from simulator.transcript import render_blocks, render_text
from testkit.fakes.slack_api import FakeSlack


def _fake() -> FakeSlack:
    fake = FakeSlack()  # not started: only its users and channels are read
    fake.add_user("U0ANA", "ana", real_name="Ana Alves")
    return fake


def test_styles_are_applied_not_shown() -> None:
    fake = _fake()
    text = "*<@U0ANA> started a coffee run*, _soon_ · `code` ~old~ 2*3*4"
    assert render_text(text, fake, ansi=False) == (
        "@ana started a coffee run, soon · code old 2*3*4"
    )
    styled = render_text(text, fake, ansi=True)
    assert "\033[1m@ana started a coffee run\033[22m" in styled
    assert "\033[3msoon\033[23m" in styled
    assert "*" not in styled.replace("2*3*4", "")


def test_escaped_user_text_stays_text() -> None:
    # Someone typed "*not bold*" and "&lt;b&gt;": Slack shows the escapes as characters.
    assert render_text("a &lt;b&gt; &amp; c", _fake(), ansi=False) == "a <b> & c"


def test_times_show_their_zone() -> None:
    unix = int(datetime(2024, 5, 1, 10, 30, tzinfo=UTC).timestamp())
    shown = render_text(f"pickup <!date^{unix}^{{time}}|10:30 UTC>", _fake(), ansi=False)
    zone = datetime.fromtimestamp(unix).astimezone().strftime("%Z")
    assert shown.endswith(f" {zone}")
    assert zone


def test_an_overflow_menu_shows_its_options() -> None:
    block = {
        "type": "actions",
        "elements": [
            {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "Go"}},
            {
                "type": "overflow",
                "action_id": "m",
                "options": [
                    {"text": {"type": "plain_text", "text": "Cancel my order"}, "value": "x"},
                    {"text": {"type": "plain_text", "text": "Cancel run…"}, "value": "y"},
                ],
            },
        ],
    }
    assert render_blocks([block], _fake()) == ["[Go] [⋯ Cancel my order · Cancel run…]"]
