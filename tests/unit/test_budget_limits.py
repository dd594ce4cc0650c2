"""The Slack rate budget's sizes: read from the environment, per Slack's tiers, with a
reserve that makes refreshes go last (issue 16). The budget itself is tested against
Postgres and the tier-enforcing fake in tests/integration/test_budget.py."""

from __future__ import annotations

import pytest

from coffeebuddy.config import ConfigError, WorkerSettings
from coffeebuddy.slack.budget import TIER_3, TIER_4, Limit, limits


def test_defaults_follow_slacks_tiers() -> None:
    settings = WorkerSettings.from_environ({})
    assert settings.slack_budget is True
    sizes = limits(settings)
    assert {m for m in sizes if sizes[m].calls == 50} == TIER_3
    assert {m for m in sizes if sizes[m].calls == 100} == TIER_4
    for method in TIER_3 | TIER_4:
        # A little longer than Slack's minute: our clock reads the grant before Slack's
        # reads the call.
        assert 60.0 < sizes[method].window_seconds <= 62.0
    post = sizes["chat.postMessage"]  # one a second per channel, in bursts of 3
    assert post.calls == 3 and 3.0 < post.window_seconds <= 3.5


def test_settings_from_the_environment() -> None:
    settings = WorkerSettings.from_environ(
        {
            "COFFEEBUDDY_SLACK_BUDGET": "off",
            "COFFEEBUDDY_SLACK_TIER3_PER_MINUTE": "20",
            "COFFEEBUDDY_SLACK_TIER4_PER_MINUTE": "40",
            "COFFEEBUDDY_SLACK_CHANNEL_POSTS_PER_SECOND": "0.5",
        }
    )
    assert settings.slack_budget is False
    sizes = limits(settings)
    assert sizes["chat.update"].calls == 20
    assert sizes["users.info"].calls == 40
    assert 6.0 < sizes["chat.postMessage"].window_seconds <= 6.5
    with pytest.raises(ConfigError, match="COFFEEBUDDY_SLACK_TIER3_PER_MINUTE"):
        WorkerSettings.from_environ({"COFFEEBUDDY_SLACK_TIER3_PER_MINUTE": "0"})
    with pytest.raises(ConfigError, match="COFFEEBUDDY_SLACK_BUDGET"):
        WorkerSettings.from_environ({"COFFEEBUDDY_SLACK_BUDGET": "maybe"})


def test_refreshes_leave_a_reserve_for_people() -> None:
    tier3 = Limit.per_minute(50)
    assert tier3.allowed(low=False) == 50
    assert tier3.allowed(low=True) == 35
    # A window of one call: a refresh may still have it, or it would never go.
    assert Limit(1, 1.2).allowed(low=True) == 1
    assert tier3.spacing == pytest.approx(tier3.window_seconds / 50)
