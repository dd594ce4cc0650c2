"""The pilot's figures as pure rules and blocks: the fairness warning and its reasons, the
failure categories, the report's wording, and the Home tab."""

from __future__ import annotations

import urllib.error
from datetime import UTC, datetime

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from coffeebuddy.domain.pilot import (
    MIN_ELIGIBLE,
    Csat,
    FairnessShare,
    OutcomeTimes,
    PilotPeriod,
    RunCounts,
    duration_text,
)
from coffeebuddy.slack import home_blocks, pilot_blocks
from coffeebuddy.slack.api import classify, failure_category


def _slack_error(error: str, status: int = 200) -> SlackApiError:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.test/api/chat.postMessage",
        req_args={},
        data={"ok": False, "error": error},
        headers={},
        status_code=status,
    )
    return SlackApiError(error, response)


@pytest.mark.parametrize(
    ("exc", "category"),
    [
        (TimeoutError("timed out"), "timeout"),
        (TimeoutError(), "timeout"),
        (urllib.error.URLError(TimeoutError("timed out")), "timeout"),
        (urllib.error.URLError(ConnectionRefusedError()), "slack_error"),
        (ConnectionResetError(), "slack_error"),
        (_slack_error("not_in_channel"), "slack_error"),
        (_slack_error("internal_error", 500), "slack_error"),
        (ValueError("a bug of ours"), "internal"),
        (KeyError("ts"), "internal"),
    ],
)
def test_failure_categories(exc: BaseException, category: str) -> None:
    assert failure_category(classify(exc)) == category


def test_a_fair_share_has_no_warning() -> None:
    share = FairnessShare(runs=10, eligible=8, top_runner="U1", top_runs=2, orders=60)
    assert share.share == 0.2
    assert not share.over_target
    assert share.warning() is None
    assert FairnessShare().warning() is None
    assert FairnessShare().share == 0.0


@pytest.mark.parametrize(
    ("share", "reason"),
    [
        (FairnessShare(runs=3, eligible=9, top_runner="U1", top_runs=1, orders=20), "only 3"),
        (
            FairnessShare(runs=12, eligible=3, top_runner="U1", top_runs=4, orders=36),
            "only 3 people ordered",
        ),
        (
            FairnessShare(
                runs=10, eligible=9, top_runner="U1", top_runs=5, top_volunteered=4, orders=60
            ),
            "4 of 5 of them as a volunteer",
        ),
        (
            FairnessShare(runs=10, eligible=9, top_runner="U1", top_runs=3, orders=30),
            "only 3.0 people ordering on average",
        ),
        (
            FairnessShare(runs=10, eligible=9, top_runner="U1", top_runs=3, orders=80),
            "not keeping up",
        ),
    ],
)
def test_an_unfair_share_says_why(share: FairnessShare, reason: str) -> None:
    assert share.over_target
    warning = share.warning()
    assert warning is not None
    assert warning.startswith("<@U1> served")
    assert reason in warning


def test_min_eligible_follows_the_target() -> None:
    # With 5 people each can serve exactly 20 %; with 4 someone must serve more.
    assert MIN_ELIGIBLE == 5


def test_fairness_share_blocks() -> None:
    fair = FairnessShare(runs=10, eligible=7, top_runner="U1", top_runs=2, orders=60)
    (line,) = pilot_blocks.fairness_share_blocks(fair)
    assert "20% (<@U1>, 2 of 10 runs) — 7 people took part" in line["text"]["text"]
    unfair = FairnessShare(runs=10, eligible=2, top_runner="U1", top_runs=6, orders=20)
    _, warning = pilot_blocks.fairness_share_blocks(unfair)
    assert warning["elements"][0]["text"].startswith("⚠️ <@U1> served 60% of runs")
    (empty,) = pilot_blocks.fairness_share_blocks(FairnessShare())
    assert "no finished runs yet" in empty["text"]["text"]


def test_period_text() -> None:
    period = PilotPeriod(
        days=7,
        runs=RunCounts(
            started=50, closed=44, canceled=3, failed=3, failed_slack=2, failed_timeout=1
        ),
        outcome=OutcomeTimes(measured=44, within_target=40, median_seconds=1.234),
        csat=Csat(ratings=30, average=4.4333),
        fairness=FairnessShare(runs=44, eligible=12, top_runner="U9", top_runs=6, orders=300),
    )
    text = pilot_blocks.period_text(period)
    assert "*Last 7 days*" in text
    assert (
        "Runs: 50 started · 44 completed · 3 canceled · 3 failed (2 Slack error, 1 timeout; "
        "6% of finished runs)"
    ) in text
    assert "median 1.2 s · 91% under 2.0 min (44 measured)" in text
    assert "CSAT: 4.4/5 from 30 ratings" in text
    assert "most served by one person 14% (<@U9>) · 12 people took part" in text
    empty = pilot_blocks.period_text(
        PilotPeriod(28, RunCounts(), OutcomeTimes(), Csat(), FairnessShare())
    )
    assert "Runs: 0 started · 0 completed · 0 canceled · 0 failed" in empty
    assert "no completed runs measured yet" in empty
    assert "CSAT: no ratings yet" in empty


def test_duration_text() -> None:
    assert duration_text(None) == "no runs measured yet"
    assert duration_text(0.25) == "0.2 s"
    assert duration_text(42.4) == "42 s"
    assert duration_text(150) == "2.5 min"


def test_home_view_escapes_the_usual_and_lists_channels() -> None:
    channels = [
        home_blocks.HomeChannel(
            slack_channel_id="C1",
            usual="tea <b> & milk",
            served=2,
            joined=5,
            last_served_at=datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
        ),
        home_blocks.HomeChannel("C2", usual=None, served=1, joined=1, last_served_at=None),
    ]
    view = home_blocks.home_view(channels, "the rule")
    assert view["type"] == "home"
    texts = [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]
    # Issue 14 item 10: the person's own runs come first, then the quick start.
    assert texts[0] == "*Your coffee runs*"
    assert "<#C1> — your usual: _tea &lt;b&gt; &amp; milk_" in texts[1]
    assert "you served 2 runs, last <!date^" in texts[1]
    assert "ordered in 5" in texts[1]
    assert "<#C2> — no usual yet" in texts[2]
    assert "you served 1 run ·" in texts[2]
    assert texts[3] == home_blocks.QUICK_START
    assert view["blocks"][-1]["elements"][0]["text"] == "*Who goes:* the rule"
    many = [
        home_blocks.HomeChannel(f"C{i}", usual="tea", served=0, joined=1, last_served_at=None)
        for i in range(100)
    ]
    assert len(home_blocks.home_view(many, "r")["blocks"]) <= 100
