"""The interaction registry: every button the bot posts reaches a responder, built once."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest

from coffeebuddy.service.admin import AdminService
from coffeebuddy.service.common import Actor, Interaction
from coffeebuddy.service.ratings import RatingService
from coffeebuddy.service.runs import RunService
from coffeebuddy.service.stats import StatsService
from coffeebuddy.service.swap import SwapService
from coffeebuddy.slack import admin_blocks, run_blocks, stats_blocks
from coffeebuddy.slack.response_url import ResponseUrlPolicy
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
    try:
        run_id: uuid.UUID | None = uuid.UUID(value)
    except ValueError:
        run_id = None
    return BlockAction(
        team_id="T0TEAM",
        user_id="U0ANA",
        user_name="ana",
        channel_id=CHANNEL,
        action_id=action_id,
        value=value,
        run_id=run_id,
        trigger_id="t",
        response_url=None,
    )


RUN_ACTIONS = [
    run_blocks.ACTION_PLACE_ORDER,
    run_blocks.ACTION_USE_USUAL,
    run_blocks.ACTION_EDIT_ORDER,
    run_blocks.ACTION_CANCEL_ORDER,
    run_blocks.ACTION_CLOSE_RUN,
    run_blocks.ACTION_CANCEL_RUN,
    run_blocks.ACTION_EDIT_RUN,
    run_blocks.ACTION_ILL_GO,
    run_blocks.ACTION_CANCEL_RUN_PROMPT,
    run_blocks.ACTION_CANT_GO,
]


@pytest.mark.parametrize("action_id", RUN_ACTIONS)
def test_a_run_button_reaches_its_responder_with_its_run(action_id: str) -> None:
    responder, run_id = _interactions()._responder(_action(action_id, str(RUN)))
    assert responder is not None
    assert run_id == RUN


@pytest.mark.parametrize("action_id", RUN_ACTIONS)
def test_a_run_button_without_a_run_id_is_unknown(action_id: str) -> None:
    responder, _ = _interactions()._responder(_action(action_id, "not-a-run"))
    assert responder is None


def test_the_same_responder_serves_every_request() -> None:
    interactions = _interactions()
    first, _ = interactions._responder(_action(run_blocks.ACTION_CLOSE_RUN, str(RUN)))
    again, _ = interactions._responder(_action(run_blocks.ACTION_CLOSE_RUN, str(RUN)))
    assert first is again


def test_buttons_without_a_run_reach_theirs() -> None:
    interactions = _interactions()
    for action_id, value in (
        (run_blocks.ACTION_HELP_MORE, ""),
        (stats_blocks.ACTION_STATS_ALL, "all"),
        (admin_blocks.ACTION_ADMIN_RESET, CHANNEL),
    ):
        responder, _ = interactions._responder(_action(action_id, value))
        assert responder is not None, action_id


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
