"""What people are told when something fails in the request path (FR9), and that such a
failure changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from coffeebuddy.config import Config, Secret
from coffeebuddy.db import Database
from coffeebuddy.slack import run_blocks
from coffeebuddy.slack.gateway import Profile
from coffeebuddy.web.app import create_app
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import block_action_body, command_body, view_submission_body
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel

DB_DOWN = "CoffeeBuddy can't reach its database right now, try again in a minute."


def test_expired_trigger_asks_to_click_again(chan: Channel, slack: FakeSlack) -> None:
    run_id = chan.open_run("U0ANA")
    slack.fail_next("views.open", error="expired_trigger_id")
    chan.click_and_work("U0BEN", run_blocks.ACTION_PLACE_ORDER, run_id)
    assert any("please click again" in t for t in chan.told("U0BEN"))
    assert slack.opened_views() == []


def test_slack_server_error_on_views_open_asks_to_click_again(
    chan: Channel, slack: FakeSlack
) -> None:
    run_id = chan.start("U0ANA")
    slack.fail_next("views.open", status=500)
    chan.click_and_work("U0BEN", run_blocks.ACTION_EDIT_ORDER, run_id)
    assert any("please click again" in t for t in chan.told("U0BEN"))


def test_missing_scope_on_views_open_names_the_fix(chan: Channel, slack: FakeSlack) -> None:
    run_id = chan.start("U0ANA")
    slack.fail_next("views.open", error="missing_scope")
    chan.click_and_work("U0BEN", run_blocks.ACTION_PLACE_ORDER, run_id)
    assert any("reinstall the app" in t for t in chan.told("U0BEN"))


def test_unreachable_slack_when_reading_time_zone(
    chan: Channel, slack: FakeSlack, sql: Any
) -> None:
    slack.fail_next("users.info", status=503)
    answer = chan.command("U0ANA", "10:30 Lobby")
    assert answer["response_type"] == "ephemeral"
    assert "couldn't reach Slack" in answer["text"]
    assert sql("SELECT count(*) FROM runs") == [(0,)]


class ExplodingGateway:
    """A Slack gateway with a bug in it: every call raises something unexpected."""

    def user_profile(self, user_id: str) -> Profile:
        raise RuntimeError("boom")

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def broken_web(config: Config, app_database: Database) -> SignedClient:
    return SignedClient(create_app(config, database=app_database, slack=ExplodingGateway()))


def test_internal_error_in_a_command_gives_a_reference(
    broken_web: SignedClient, sql: Any, slack: FakeSlack
) -> None:
    body = command_body(user_id="U0ANA", channel_id=CHANNEL, text="10:30")
    result = broken_web.post("/slack/commands", body)
    assert result.status_code == 200
    text = result.json["text"]
    assert "try again" in text
    assert "reference `" in text
    assert sql("SELECT count(*) FROM runs") == [(0,)]


def test_internal_error_in_a_click_is_told_through_response_url(
    broken_web: SignedClient, chan: Channel, slack: FakeSlack
) -> None:
    run_id = chan.start("U0ANA")
    body = block_action_body(
        user_id="U0BEN",
        channel_id=CHANNEL,
        action_id=run_blocks.ACTION_PLACE_ORDER,
        value=run_id,
        response_url=slack.response_url("broken-click"),
    )
    assert broken_web.post("/slack/interactions", body).status_code == 200
    told = [r["text"] for r in slack.responses("broken-click")]
    assert len(told) == 1
    assert "reference `" in told[0]


@pytest.fixture
def db_down_web(config: Config) -> Iterator[SignedClient]:
    down = replace(config, database_url=Secret("postgresql://postgres@127.0.0.1:1/none"))
    database = Database(down.database_url.reveal(), min_size=0, max_size=1, timeout=0.5)
    database.open(wait=False)
    yield SignedClient(create_app(down, database=database))
    database.close()


def test_database_down_click_is_told_through_response_url(
    db_down_web: SignedClient, slack: FakeSlack
) -> None:
    body = block_action_body(
        user_id="U0BEN",
        channel_id=CHANNEL,
        action_id=run_blocks.ACTION_USE_USUAL,
        value="6f1c1d2e-1111-4222-8333-444455556666",
        response_url=slack.response_url("down-click"),
    )
    assert db_down_web.post("/slack/interactions", body).status_code == 200
    assert [r["text"] for r in slack.responses("down-click")] == [DB_DOWN]


def test_database_down_modal_submission_keeps_the_modal_open(
    db_down_web: SignedClient,
) -> None:
    body = view_submission_body(
        user_id="U0BEN", run_id="6f1c1d2e-1111-4222-8333-444455556666", order_text="tea"
    )
    result = db_down_web.post("/slack/interactions", body)
    assert result.status_code == 200
    assert json.loads(result.text) == {"response_action": "errors", "errors": {"order": DB_DOWN}}
