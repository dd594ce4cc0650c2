"""The interaction registry: every button the bot posts reaches a responder, built once."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from coffeebuddy.domain.models import OrderLine, RunStatus, RunView
from coffeebuddy.service.admin import AdminService
from coffeebuddy.service.common import Actor, Interaction
from coffeebuddy.service.ratings import RatingService
from coffeebuddy.service.runs import RunService
from coffeebuddy.service.stats import StatsService
from coffeebuddy.service.swap import SwapService
from coffeebuddy.slack import admin_blocks, run_blocks, stats_blocks, summary_blocks
from coffeebuddy.slack.response_url import ResponseUrlPolicy
from coffeebuddy.web import payloads
from coffeebuddy.web.payloads import BlockAction
from coffeebuddy.web.slack_resources import SlackInteractions

RUN = uuid.UUID("6f1c2c1e-7d1b-4f0e-9a55-0d6f1d2b3c4a")
CHANNEL = "C0COFFEE01"


def _interactions() -> SlackInteractions:
    # Nothing is called: the registry only holds bound methods of these services.
    nothing = cast(Any, None)
    return SlackInteractions(
        RunService(nothing, nothing, nothing, people=nothing),
        AdminService(nothing, nothing, nothing, nothing, nothing),
        swap=SwapService(nothing),
        ratings=RatingService(nothing, nothing),
        stats=StatsService(nothing, nothing, nothing, nothing),
        response_urls=cast(ResponseUrlPolicy, nothing),
    )


def _action(action_id: str, value: str) -> BlockAction:
    return payloads.block_action(_payload({"action_id": action_id, "value": value}))


def _payload(element: dict[str, Any]) -> dict[str, Any]:
    """What Slack posts when `element` (a button, or an overflow menu's first option) is
    pressed in CHANNEL."""
    action = {"action_id": element["action_id"], "value": element.get("value")}
    if "options" in element:
        action = {"action_id": element["action_id"], "selected_option": element["options"][0]}
    return {
        "type": "block_actions",
        "team": {"id": "T0TEAM"},
        "user": {"id": "U0ANA", "username": "ana"},
        "channel": {"id": CHANNEL},
        "trigger_id": "t",
        "actions": [action],
    }


def _elements(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every interactive element of a message: buttons, and each overflow menu option as
    if it had been chosen."""
    found: list[dict[str, Any]] = []
    for block in blocks:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if "options" in element:
                found += [{**element, "options": [option]} for option in element["options"]]
            elif "action_id" in element:
                found.append(element)
    return found


def _posted_elements() -> list[dict[str, Any]]:
    """The buttons the bot posts: an open run's message, its summary, the runner's DM, the
    cancel prompt, /coffee help and an admin's reset prompt."""
    view = RunView(
        run_id=str(RUN),
        slack_channel_id=CHANNEL,
        initiator_slack_id="U0ANA",
        status=RunStatus.OPEN,
        started_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        orders=(OrderLine("U0ANA", "flat white"),),
    )
    closed = replace(view, status=RunStatus.CLOSED, runner_slack_id="U0ANA")
    messages = [
        run_blocks.run_message(view)[1],
        summary_blocks.summary_message(closed)[1],
        summary_blocks.runner_dm(closed)[1],
        run_blocks.cancel_run_prompt(str(RUN)),
        run_blocks.help_blocks("rule"),
        admin_blocks.reset_prompt(CHANNEL)[1],
    ]
    return [element for blocks in messages for element in _elements(blocks)]


POSTED = _posted_elements()


@pytest.mark.parametrize("element", POSTED, ids=[e["action_id"] for e in POSTED])
def test_every_posted_button_reaches_a_responder(element: dict[str, Any]) -> None:
    action = payloads.block_action(_payload(element))
    responder, _ = _interactions()._responder(action)
    assert responder is not None


def test_the_posted_buttons_cover_the_run_actions() -> None:
    # So that the test above can't pass by finding no buttons at all.
    posted = {payloads.block_action(_payload(e)).action_id for e in POSTED}
    assert {
        run_blocks.ACTION_PLACE_ORDER,
        run_blocks.ACTION_USE_USUAL,
        run_blocks.ACTION_ILL_GO,
        run_blocks.ACTION_CLOSE_RUN,
        run_blocks.ACTION_CANCEL_ORDER,
        run_blocks.ACTION_EDIT_RUN,
        run_blocks.ACTION_CANCEL_RUN_PROMPT,
        run_blocks.ACTION_CANCEL_RUN,
        run_blocks.ACTION_CANT_GO,
        run_blocks.ACTION_HELP_MORE,
        admin_blocks.ACTION_ADMIN_RESET,
        f"{run_blocks.ACTION_RATE_RUN}_5",
    } <= posted


def test_a_run_button_without_a_run_id_is_unknown() -> None:
    responder, _ = _interactions()._responder(_action(run_blocks.ACTION_CLOSE_RUN, "nope"))
    assert responder is None


def test_a_run_button_acts_on_its_run() -> None:
    _, run_id = _interactions()._responder(_action(run_blocks.ACTION_CLOSE_RUN, str(RUN)))
    assert run_id == RUN


def test_the_same_responder_serves_every_request() -> None:
    interactions = _interactions()
    first, _ = interactions._responder(_action(run_blocks.ACTION_CLOSE_RUN, str(RUN)))
    again, _ = interactions._responder(_action(run_blocks.ACTION_CLOSE_RUN, str(RUN)))
    assert first is again


def test_show_everyone_under_stats_reaches_its_responder() -> None:
    responder, _ = _interactions()._responder(_action(stats_blocks.ACTION_STATS_ALL, "all"))
    assert responder is not None


def test_a_reset_button_for_another_channel_is_unknown() -> None:
    responder, _ = _interactions()._responder(
        _action(admin_blocks.ACTION_ADMIN_RESET, "C0ELSEWHERE")
    )
    assert responder is None


def test_a_rating_acts_on_the_run_its_value_names() -> None:
    value = run_blocks.rating_value(str(RUN), 4)
    responder, run_id = _interactions()._responder(
        _action(f"{run_blocks.ACTION_RATE_RUN}_4", value)
    )
    assert responder is not None
    assert run_id == RUN


def test_an_unknown_button_has_no_responder() -> None:
    responder, _ = _interactions()._responder(_action("launch_rocket", str(RUN)))
    assert responder is None


def test_an_interaction_without_a_run_refuses_to_name_one() -> None:
    ia = Interaction(Actor(user_id="U0ANA", channel_id=CHANNEL), "corr")
    with pytest.raises(ValueError, match="names no run"):
        _ = ia.run
    assert Interaction(Actor("U0ANA", CHANNEL), "corr", run_id=RUN).run == RUN
