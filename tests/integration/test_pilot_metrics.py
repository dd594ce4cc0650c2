"""The pilot's success metrics, measured by the product (spec "Success Metrics"), each from
real runs driven through the HTTP endpoints as Slack calls them, with the worker running
the jobs: the rating on the summary, the bot's own time per run, failure categories, the
fairness share (with a clock we move for the 28-day window), the admins' pilot report and
the Prometheus gauges."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from coffeebuddy import logs
from coffeebuddy.config import Config
from coffeebuddy.db import Database
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.service.ratings import NOT_A_PARTICIPANT_TEXT
from coffeebuddy.slack import run_blocks
from coffeebuddy.web.app import create_app
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import block_action_body
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel, SqlFn, runner_of

ANA, BEN, CAT, DAN, EVE, FAY, GUS = "U0ANA", "U0BEN", "U0CAT", "U0DAN", "U0EVE", "U0FAY", "U0GUS"
ADMIN = "U0ADMIN"


class Clock:
    """The app's clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def web_clocked(config: Config, app_database: Database, clock: Clock) -> SignedClient:
    return SignedClient(create_app(config, database=app_database, clock=clock))


@pytest.fixture
def chan(web_clocked: SignedClient, worker: Worker, sql: SqlFn, slack: FakeSlack) -> Channel:
    slack.add_user(ADMIN, name="admin", tz="Europe/Berlin")
    return Channel(web_clocked, worker, sql, CHANNEL, slack)


def _run(chan: Channel, orders: dict[str, bool], *, close: bool = True) -> str:
    """A whole run: the first person starts it, everyone orders (True = "I'll go"), the
    starter closes it. Returns the run id."""
    starter = next(iter(orders))
    run_id = chan.open_run(starter)
    for user, volunteer in orders.items():
        assert chan.submit(user, f"{user} latte", volunteer=volunteer, run_id=run_id) is None
    chan.work()  # the worker applies the inboxed orders
    if close:
        chan.click_and_work(starter, run_blocks.ACTION_CLOSE_RUN, run_id)
        assert chan.status(run_id) == "closed"
    return run_id


def _rate(chan: Channel, user: str, run_id: str, score: int, channel: str = CHANNEL) -> str:
    """Tap a rating button on the summary; returns what the person was told."""
    name = f"rate-{uuid.uuid4().hex[:6]}"
    body = block_action_body(
        user_id=user,
        channel_id=channel,
        action_id=f"{run_blocks.ACTION_RATE_RUN}_{score}",
        value=run_blocks.rating_value(run_id, score),
        block_id=run_blocks.RATING_BLOCK_ID,
        response_url=chan.slack.response_url(name),
    )
    result = chan.web.post("/slack/interactions", body)
    assert result.status_code == 200, result.text
    chan.work()
    answers = chan.slack.responses(name)
    assert len(answers) == 1, answers
    return str(answers[0]["text"])


def _ratings(sql: SqlFn, run_id: str) -> dict[str, int]:
    rows = sql(
        "SELECT u.slack_user_id, rr.score FROM run_ratings rr JOIN users u ON u.id = rr.user_id"
        " WHERE rr.run_id = %s",
        run_id,
    )
    return {str(user): int(score) for user, score in rows}


def _summary(slack: FakeSlack) -> dict[str, Any]:
    # The run message reads "closed" too once closed, but opens with a header block.
    summaries = [
        m
        for m in slack.messages(CHANNEL)
        if m["blocks"][0]["type"] != "header" and m.get("text", "").startswith("☕ Coffee run")
    ]
    assert len(summaries) == 1, summaries
    return summaries[0]


def _rating_line(message: dict[str, Any]) -> str:
    """The context line just above the rating buttons."""
    body = message["blocks"]
    (index,) = [i for i, b in enumerate(body) if b.get("block_id") == run_blocks.RATING_BLOCK_ID]
    return str(body[index - 1]["elements"][0]["text"])


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


# ---- CSAT ---------------------------------------------------------------------------------


def test_participants_rate_once_and_may_change_it_others_are_refused(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = _run(chan, {ANA: False, BEN: False, CAT: False})
    summary = _summary(slack)
    assert "How was this run?" in _rating_line(summary)
    updates_before = len(slack.calls("chat.update"))
    fours = _sample("coffeebuddy_csat_ratings_total", {"score": "4"})

    assert "you rated this run 4/5" in _rate(chan, BEN, run_id, 4)
    assert "you rated this run 5/5" in _rate(chan, CAT, run_id, 5)
    assert _ratings(sql, run_id) == {BEN: 4, CAT: 5}
    assert _sample("coffeebuddy_csat_ratings_total", {"score": "4"}) == fours + 1
    # The summary shows the run's average in place: no new channel message, no DM.
    assert "Rated *4.5* / 5 from 2 ratings" in _rating_line(_summary(slack))
    assert len(slack.calls("chat.update")) > updates_before

    # Changing it replaces the rating; tapping the same number again changes nothing.
    assert "now rate this run 2/5 (was 4/5)" in _rate(chan, BEN, run_id, 2)
    assert "already rated this run 2/5" in _rate(chan, BEN, run_id, 2)
    assert _ratings(sql, run_id) == {BEN: 2, CAT: 5}
    assert "Rated *3.5* / 5 from 2 ratings" in _rating_line(_summary(slack))

    # Dan didn't order, start or run it: refused politely, nothing stored.
    assert _rate(chan, DAN, run_id, 1) == NOT_A_PARTICIPANT_TEXT
    assert _ratings(sql, run_id) == {BEN: 2, CAT: 5}
    # Never a DM or another channel message for a rating.
    assert not slack.dms(DAN)
    assert len(slack.calls("conversations.open")) == 1  # the runner's DM only
    # The run message and its summary: nothing else was ever posted in the channel.
    assert len(slack.messages(CHANNEL)) == 2


def test_the_initiator_who_did_not_order_may_rate(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.open_run(ANA)
    chan.submit(BEN, "tea", run_id=run_id)
    chan.click_and_work(ANA, run_blocks.ACTION_CLOSE_RUN, run_id)
    assert "you rated this run 5/5" in _rate(chan, ANA, run_id, 5)
    assert _ratings(sql, run_id) == {ANA: 5}


def test_open_foreign_and_deleted_runs_cannot_be_rated(chan: Channel, sql: SqlFn) -> None:
    run_id = _run(chan, {ANA: False, BEN: False}, close=False)
    assert "Only a completed coffee run can be rated" in _rate(chan, BEN, run_id, 3)
    chan.click_and_work(ANA, run_blocks.ACTION_CLOSE_RUN, run_id)
    # The same button replayed from another channel.
    chan.slack.add_channel("C0OTHER01", name="other")
    assert "belongs to a coffee run in another channel" in _rate(
        chan, BEN, run_id, 3, channel="C0OTHER01"
    )
    assert _ratings(sql, run_id) == {}
    # A junk value never reaches the rating code, and is answered.
    result = chan.web.post(
        "/slack/interactions",
        block_action_body(
            user_id=BEN,
            channel_id=CHANNEL,
            action_id=f"{run_blocks.ACTION_RATE_RUN}_9",
            value=f"{run_id}:9",
            response_url=chan.slack.response_url("junk"),
        ),
    )
    assert result.status_code == 200
    chan.work()
    assert "don't recognise that button" in chan.slack.responses("junk")[0]["text"]
    assert _ratings(sql, run_id) == {}
    # Gone after a delete (retention or reset): a clear answer, nothing written.
    assert "you rated" in _rate(chan, BEN, run_id, 4)
    sql("DELETE FROM runs WHERE id = %s", run_id)
    assert sql("SELECT count(*) FROM run_ratings")[0][0] == 0
    assert "doesn't exist any more" in _rate(chan, BEN, run_id, 4)
    assert sql("SELECT count(*) FROM run_ratings")[0][0] == 0


def test_a_channel_reset_deletes_the_ratings(chan: Channel, sql: SqlFn) -> None:
    run_id = _run(chan, {ANA: False, BEN: False})
    _rate(chan, BEN, run_id, 4)
    assert sql("SELECT count(*) FROM run_ratings")[0][0] == 1
    chan.command(ADMIN, "admin reset")  # asks first; the confirmed button resets
    chan.click_and_work(ADMIN, "admin_reset", CHANNEL, block_id="admin_reset")
    assert sql("SELECT count(*) FROM runs")[0][0] == 0
    assert sql("SELECT count(*) FROM run_ratings")[0][0] == 0


# ---- outcome time -------------------------------------------------------------------------


def test_the_bot_steps_of_a_run_are_recorded_and_observed(chan: Channel, sql: SqlFn) -> None:
    starts = _sample("coffeebuddy_bot_step_seconds_count", {"step": "start"})
    closes = _sample("coffeebuddy_bot_step_seconds_count", {"step": "close"})
    run_id = _run(chan, {ANA: False, BEN: False, CAT: False})
    (row,) = sql(
        "SELECT command_at, message_posted_at, closed_at, summary_posted_at,"
        " runner_dm_posted_at FROM runs WHERE id = %s",
        run_id,
    )
    command_at, message_at, closed_at, summary_at, dm_at = row
    assert None not in row
    assert command_at <= message_at <= closed_at <= min(summary_at, dm_at)
    # One observation per step per run, however the close's two halves interleave.
    assert _sample("coffeebuddy_bot_step_seconds_count", {"step": "start"}) == starts + 1
    assert _sample("coffeebuddy_bot_step_seconds_count", {"step": "close"}) == closes + 1
    # A runner swap DMs the new runner but the close step was timed once, by the first DM.
    chan.slack.wait_for(lambda: chan.slack.dms(runner_of(sql, run_id)))


def test_a_run_whose_bot_steps_are_slow_is_logged_with_its_correlation_id(
    chan: Channel, sql: SqlFn, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # The command is received "three minutes ago": the start step exceeds 2 minutes.
    clock.offset = -timedelta(minutes=3)
    # Formatted as the service logs it, while the job's log context is in effect.
    caplog.handler.setFormatter(logs.JsonFormatter())
    with caplog.at_level(logging.WARNING, logger="coffeebuddy.jobs.bot_step_times"):
        run_id = chan.open_run(ANA)
    (corr,) = sql("SELECT correlation_id FROM runs WHERE id = %s", run_id)[0]
    slow = [json.loads(line) for line in caplog.text.splitlines() if "run_bot_steps_slow" in line]
    assert len(slow) == 1
    assert slow[0]["step"] == "start"
    assert slow[0]["correlation_id"] == corr
    assert slow[0]["latency_ms"] >= 180_000


# ---- critical errors ------------------------------------------------------------------------


def test_a_run_slack_refuses_fails_with_its_category_and_counts_in_the_ratio(
    chan: Channel, sql: SqlFn, slack: FakeSlack, worker: Worker
) -> None:
    _run(chan, {ANA: False, BEN: False})
    failed_before = _sample("coffeebuddy_runs_failed_total", {"category": "slack_error"})
    slack.fail_next("chat.postMessage", error="not_in_channel")
    run_id = chan.open_run(ANA)
    assert sql("SELECT status, failure_category FROM runs WHERE id = %s", run_id) == [
        ("failed", "slack_error")
    ]
    assert _sample("coffeebuddy_runs_failed_total", {"category": "slack_error"}) == (
        failed_before + 1
    )
    worker.refresh_stats()
    # One of the two finished runs failed.
    assert _sample("coffeebuddy_pilot_failed_run_ratio") == 0.5
    assert _sample("coffeebuddy_pilot_runs", {"status": "failed"}) == 1
    assert _sample("coffeebuddy_pilot_runs", {"status": "closed"}) == 1


# ---- fairness and the pilot report ----------------------------------------------------------


def _stats_text(chan: Channel, user: str) -> str:
    body = chan.command(user, "stats")
    parts = [body["text"]]
    for block in body.get("blocks", []):
        if "text" in block and isinstance(block["text"], dict):
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element, dict) and "text" in element:
                parts.append(str(element["text"]))
    return "\n".join(parts)


def test_fairness_share_with_too_few_people_is_shown_with_why(chan: Channel, sql: SqlFn) -> None:
    # Ana volunteers for three of four runs among three people.
    for volunteer in (ANA, ANA, BEN, ANA):
        _run(chan, {ANA: volunteer == ANA, BEN: volunteer == BEN, CAT: False})
    text = _stats_text(chan, CAT)
    assert "the most anyone served is 75% (<@U0ANA>, 3 of 4 runs)" in text
    assert "3 people took part" in text
    assert "only 4 finished runs — too few to spread" in text
    # Not an admin: no pilot report.
    assert "Pilot report" not in text


def test_fairness_warning_names_the_volunteer(chan: Channel) -> None:
    people = [ANA, BEN, CAT, DAN, EVE, FAY]
    for _ in range(5):
        _run(chan, {p: p == ANA for p in people})
    text = _stats_text(chan, BEN)
    assert "100% (<@U0ANA>, 5 of 5 runs)" in text
    assert "6 people took part" in text
    assert "5 of 5 of them as a volunteer" in text


def test_fair_channel_has_no_warning_and_the_gauge_agrees(chan: Channel, worker: Worker) -> None:
    people = [ANA, BEN, CAT, DAN, EVE, FAY, GUS]
    for _ in range(7):
        _run(chan, dict.fromkeys(people, False))
    text = _stats_text(chan, BEN)
    # Seven runs among seven people: the rule gives each one run.
    assert "the most anyone served is 14%" in text
    assert "⚠️" not in text
    worker.refresh_stats()
    share = _sample("coffeebuddy_pilot_fairness_max_share", {"channel": CHANNEL})
    assert share == pytest.approx(1 / 7)
    assert _sample("coffeebuddy_pilot_fairness_eligible_people", {"channel": CHANNEL}) == 7


def test_pilot_report_for_admins_over_7_and_28_days(
    chan: Channel, clock: Clock, sql: SqlFn, slack: FakeSlack
) -> None:
    first = _run(chan, {ANA: False, BEN: False, CAT: False})
    second = _run(chan, {BEN: False, CAT: False})
    _rate(chan, ANA, first, 5)
    _rate(chan, BEN, first, 4)
    _rate(chan, CAT, second, 3)
    canceled = chan.open_run(ANA)
    chan.click_and_work(ANA, run_blocks.ACTION_CANCEL_RUN, canceled)
    slack.fail_next("chat.postMessage", error="is_archived")
    chan.open_run(ANA)

    report = _stats_text(chan, ADMIN)
    assert "Pilot report" in report
    seven, twenty_eight = report.split("*Last 7 days*")[1].split("*Last 28 days*")
    for period in (seven, twenty_eight):
        assert "Runs: 4 started · 2 completed · 1 canceled · 1 failed (1 Slack error; 25%" in (
            period
        )
        assert "CSAT: 4.0/5 from 3 ratings" in period
        assert "100% under 2.0 min (2 measured)" in period
        assert "Bot time per run: median" in period

    # Ten days on: out of the 7-day period, still in the 28-day one.
    clock.offset = timedelta(days=10)
    seven, twenty_eight = _stats_text(chan, ADMIN).split("*Last 7 days*")[1].split("*Last 28 days*")
    assert "Runs: 0 started" in seven
    assert "CSAT: no ratings yet" in seven
    assert "Runs: 4 started" in twenty_eight
    assert "most served by one person 50%" in twenty_eight

    # Thirty days on: out of both, and out of the fairness figure.
    clock.offset = timedelta(days=30)
    text = _stats_text(chan, ADMIN)
    assert text.count("Runs: 0 started") == 2
    assert "Fairness, last 28 days:* no finished runs yet" in text
    # Asking wrote nothing.
    assert sql("SELECT count(*) FROM run_ratings")[0][0] == 3


def test_csat_gauges(chan: Channel, worker: Worker) -> None:
    run_id = _run(chan, {ANA: False, BEN: False, CAT: False})
    for user, score in ((ANA, 5), (BEN, 4), (CAT, 4)):
        _rate(chan, user, run_id, score)
    worker.refresh_stats()
    assert _sample("coffeebuddy_pilot_csat_ratings") == 3
    assert _sample("coffeebuddy_pilot_csat_average") == pytest.approx(13 / 3)
    assert _sample("coffeebuddy_pilot_outcome_within_target_ratio") == 1.0


# ---- Events API and the Home tab -----------------------------------------------------------


def _event(web: SignedClient, body: bytes, **sign: Any) -> Any:
    from testkit.slack_payloads import sign as signature

    headers = {**signature(body, **sign), "Content-Type": "application/json"}
    return web.client.simulate_post("/slack/events", body=body, headers=headers)


def _home_opened(user: str, event_id: str = "Ev0HOME01") -> bytes:
    return json.dumps(
        {
            "token": "legacy-unused",
            "team_id": "T0COFFEE1",
            "api_app_id": "A0COFFEE",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": 1700000000,
            "event": {
                "type": "app_home_opened",
                "user": user,
                "channel": "D0HOME0001",
                "tab": "home",
                "event_ts": "1700000000.000100",
            },
        }
    ).encode()


def test_url_verification_handshake_needs_a_valid_signature(web_clocked: SignedClient) -> None:
    body = b'{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",'
    body += b'"type":"url_verification"}'
    answer = _event(web_clocked, body)
    assert answer.status_code == 200
    assert answer.text == "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    assert _event(web_clocked, body, secret="not-the-secret").status_code == 401
    stale = int(datetime.now(UTC).timestamp()) - 6 * 60
    assert _event(web_clocked, body, timestamp=stale).status_code == 401
    assert _event(web_clocked, b'{"type":"url_verification"}').status_code == 400
    assert _event(web_clocked, b"not json").status_code == 400
    assert _event(web_clocked, b"[1, 2]").status_code == 400


def test_app_home_shows_usuals_runs_served_rule_and_quick_start(
    chan: Channel, web_clocked: SignedClient, slack: FakeSlack, sql: SqlFn
) -> None:
    _run(chan, {ANA: True, BEN: False})
    # Slack retries an event it thinks we missed: still one publish.
    assert _event(web_clocked, _home_opened(ANA)).status_code == 200
    assert _event(web_clocked, _home_opened(ANA)).status_code == 200
    assert sql("SELECT count(*) FROM jobs WHERE kind = 'publish_home'")[0][0] == 1
    chan.work()
    view = slack.home_view(ANA)
    assert view is not None
    assert view["type"] == "home"
    text = "\n".join(
        b["text"]["text"] if "text" in b and isinstance(b["text"], dict) else str(b)
        for b in view["blocks"]
    )
    assert "Quick start" in text
    assert f"<#{CHANNEL}> — your usual: _U0ANA latte_" in text
    assert "you served 1 run" in text
    assert "ordered in 1" in text
    assert "Who goes:" in text
    assert len(slack.calls("views.publish")) == 1

    # Someone CoffeeBuddy knows nothing about gets the quick start, and nothing is stored.
    slack.add_user("U0NEWBIE", name="newbie", tz="Europe/Berlin")
    users = sql("SELECT count(*) FROM users")[0][0]
    assert _event(web_clocked, _home_opened("U0NEWBIE")).status_code == 200
    chan.work()
    newbie = slack.home_view("U0NEWBIE")
    assert newbie is not None
    assert "Nothing yet" in str(newbie["blocks"])
    assert sql("SELECT count(*) FROM users")[0][0] == users


def test_other_events_are_acknowledged_and_ignored(web_clocked: SignedClient, sql: SqlFn) -> None:
    messages_tab = json.loads(_home_opened(ANA))
    messages_tab["event"]["tab"] = "messages"
    assert _event(web_clocked, json.dumps(messages_tab).encode()).status_code == 200
    other = {"type": "event_callback", "event": {"type": "member_joined_channel"}}
    assert _event(web_clocked, json.dumps(other).encode()).status_code == 200
    assert _event(web_clocked, json.dumps({"type": "app_rate_limited"}).encode()).status_code == 200
    bad_user = json.loads(_home_opened(ANA))
    bad_user["event"]["user"] = "not a user"
    assert _event(web_clocked, json.dumps(bad_user).encode()).status_code == 400
    assert sql("SELECT count(*) FROM jobs")[0][0] == 0


def test_the_how_this_works_line_shows_once_per_channel(chan: Channel, slack: FakeSlack) -> None:
    _run(chan, {ANA: False, BEN: False})
    chan.open_run(BEN)
    # Run messages open with a header block; summaries don't.
    run_posts = [
        c.args["blocks"]
        for c in slack.calls("chat.postMessage")
        if c.args.get("channel") == CHANNEL and c.args["blocks"][0]["type"] == "header"
    ]
    assert len(run_posts) == 2
    assert run_blocks.FIRST_RUN_HINT in str(run_posts[0])
    assert run_blocks.FIRST_RUN_HINT not in str(run_posts[1])
