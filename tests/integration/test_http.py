"""The HTTP surface against real Postgres: what Slack did not sign, what is malformed, the
answers to `/coffee` itself, health, metrics and unknown interactions."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import falcon
import falcon.testing
import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.signature import Clock, SignatureVerifier

from coffeebuddy.config import Config, Secret
from coffeebuddy.domain.fairness import RULE_SUMMARY
from coffeebuddy.slack import run_blocks
from coffeebuddy.web.access import AccessGate, SlackResource
from coffeebuddy.web.app import create_app
from coffeebuddy.web.middleware import SigningSecrets, SlackSignature
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import (
    SIGNING_SECRET,
    block_action_body,
    command_body,
    sign,
    view_submission_body,
)
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel, SqlFn

# Slack's published example: https://api.slack.com/authentication/verifying-requests-from-slack
VECTOR_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
VECTOR_TIMESTAMP = 1531420618
VECTOR_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
VECTOR_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

DB_DOWN = "CoffeeBuddy can't reach its database right now, try again in a minute."
UNKNOWN_BUTTON = "don't recognise that button"
WRITTEN_TABLES = ("runs", "users", "channels", "jobs")


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


class EchoBody(SlackResource):
    """Answers with the body the middleware verified."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = req.context.raw_body


def _command(user: str = "U0ANA", text: str = "", **kwargs: Any) -> bytes:
    return command_body(user_id=user, channel_id=CHANNEL, text=text, **kwargs)


def _signature(body: bytes, timestamp: str, secret: str) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def _row_counts(sql: SqlFn) -> dict[str, int]:
    return {table: int(sql(f"SELECT count(*) FROM {table}")[0][0]) for table in WRITTEN_TABLES}


def _assert_nothing_written(sql: SqlFn) -> None:
    assert _row_counts(sql) == dict.fromkeys(WRITTEN_TABLES, 0)


def _zone_with_local_hour(lo: int, hi: int) -> str:
    """A fixed-offset zone where the local hour is now within [lo, hi]; with a span of
    more than a few hours, one of the 27 whole-hour zones always qualifies."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        # Etc/GMT names have the sign inverted: Etc/GMT-5 is UTC+5.
        name = "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
        if lo <= now.astimezone(ZoneInfo(name)).hour <= hi:
            return name
    raise AssertionError(f"no zone has a local hour in [{lo}, {hi}] at {now:%H:%M} UTC")


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0  # a labelled counter appears once it was first incremented


# ---- the signature itself --------------------------------------------------------------


def _vector_app(clock: Clock) -> falcon.testing.TestClient:
    secrets = SigningSecrets(VECTOR_SECRET, clock=clock.now)
    gate = AccessGate(slack=SlackSignature(secrets, max_body_bytes=64 * 1024), ops=None)
    app = falcon.App(middleware=[gate])
    app.req_options.auto_parse_form_urlencoded = False
    app.add_route("/slack/commands", EchoBody())
    return falcon.testing.TestClient(app)


def _vector_headers(signature: str = VECTOR_SIGNATURE) -> dict[str, str]:
    return {
        "X-Slack-Request-Timestamp": str(VECTOR_TIMESTAMP),
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_slack_test_vector_with_the_sdk_verifier() -> None:
    verifier = SignatureVerifier(VECTOR_SECRET, clock=FixedClock(VECTOR_TIMESTAMP + 10))
    assert verifier.generate_signature(timestamp=str(VECTOR_TIMESTAMP), body=VECTOR_BODY) == (
        VECTOR_SIGNATURE
    )
    assert verifier.is_valid(VECTOR_BODY, str(VECTOR_TIMESTAMP), VECTOR_SIGNATURE)


def test_slack_test_vector_through_our_middleware() -> None:
    client = _vector_app(FixedClock(VECTOR_TIMESTAMP + 10))
    result = client.simulate_post("/slack/commands", body=VECTOR_BODY, headers=_vector_headers())
    assert result.status_code == 200
    assert result.content == VECTOR_BODY  # the verified raw body is what the resource gets


@pytest.mark.parametrize("position", [0, len(VECTOR_BODY) // 2, len(VECTOR_BODY) - 1])
def test_one_changed_byte_breaks_the_test_vector(position: int) -> None:
    tampered = bytearray(VECTOR_BODY)
    tampered[position] ^= 0x01
    client = _vector_app(FixedClock(VECTOR_TIMESTAMP + 10))
    result = client.simulate_post(
        "/slack/commands", body=bytes(tampered), headers=_vector_headers()
    )
    assert result.status_code == 401


def test_test_vector_is_stale_by_the_real_clock() -> None:
    result = _vector_app(Clock()).simulate_post(
        "/slack/commands", body=VECTOR_BODY, headers=_vector_headers()
    )
    assert result.status_code == 401


# ---- unsigned, badly signed, oversized -------------------------------------------------


def test_missing_signature_headers(web: SignedClient, sql: SqlFn) -> None:
    body = _command()
    for headers in (
        {},
        {"X-Slack-Request-Timestamp": str(int(time.time()))},
        {"X-Slack-Signature": sign(body)["X-Slack-Signature"]},
    ):
        result = web.client.simulate_post("/slack/commands", body=body, headers=headers)
        assert result.status_code == 401, headers
    _assert_nothing_written(sql)


def test_wrong_signature(web: SignedClient, sql: SqlFn) -> None:
    body = _command()
    headers = {**sign(body), "X-Slack-Signature": "v0=" + "0" * 64}
    assert web.client.simulate_post("/slack/commands", body=body, headers=headers).status_code == (
        401
    )
    _assert_nothing_written(sql)


def test_forged_request_signed_with_another_secret(web: SignedClient, sql: SqlFn) -> None:
    body = _command(text="in 20m")
    result = web.post("/slack/commands", body, secret="not-our-signing-secret-at-all")
    assert result.status_code == 401
    result = web.post("/slack/commands", body)  # the same body, signed by us, works
    assert result.status_code == 200
    assert _row_counts(sql)["runs"] == 1


@pytest.mark.parametrize("age_seconds", [600, -600])
def test_stale_or_future_timestamp(web: SignedClient, sql: SqlFn, age_seconds: int) -> None:
    body = _command()
    result = web.post("/slack/commands", body, timestamp=int(time.time()) - age_seconds)
    assert result.status_code == 401
    _assert_nothing_written(sql)


@pytest.mark.parametrize("timestamp", ["soon", "1e9", "١٥٣١٤٢٠٦١٨", "-1531420618", " "])
def test_non_numeric_timestamp_is_401_not_500(
    web: SignedClient, sql: SqlFn, timestamp: str
) -> None:
    # Correctly computed over the odd timestamp: only the timestamp itself is wrong.
    body = _command()
    headers = {
        **sign(body),
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": _signature(body, timestamp, SIGNING_SECRET),
    }
    result = web.client.simulate_post("/slack/commands", body=body, headers=headers)
    assert result.status_code == 401
    _assert_nothing_written(sql)


def test_unsigned_non_utf8_body_is_rejected_not_an_internal_error(
    web: SignedClient, sql: SqlFn
) -> None:
    body = _command() + b"&x=\xff"
    result = web.client.simulate_post(
        "/slack/commands", body=body, headers={**sign(body), "X-Slack-Signature": "v0=" + "0" * 64}
    )
    assert result.status_code == 400
    _assert_nothing_written(sql)


def _padded_to(size: int) -> bytes:
    body = _command() + b"&pad="
    return body + b"x" * (size - len(body))


def test_body_at_the_limit_is_accepted(web: SignedClient, config: Config, sql: SqlFn) -> None:
    body = _padded_to(config.max_body_bytes)
    assert len(body) == config.max_body_bytes
    result = web.post("/slack/commands", body)
    assert result.status_code == 200, result.text
    assert _row_counts(sql)["runs"] == 1


def test_body_over_the_limit(web: SignedClient, config: Config, sql: SqlFn) -> None:
    body = _padded_to(config.max_body_bytes + 1)
    assert web.post("/slack/commands", body).status_code == 413
    assert web.post("/slack/interactions", body).status_code == 413
    _assert_nothing_written(sql)


def test_declared_length_over_the_limit(web: SignedClient, config: Config, sql: SqlFn) -> None:
    body = _command()
    headers = {**sign(body), "Content-Length": str(config.max_body_bytes + 1)}
    result = web.client.simulate_post("/slack/commands", body=body, headers=headers)
    assert result.status_code == 413
    _assert_nothing_written(sql)


# ---- malformed but signed --------------------------------------------------------------


def _with_field(body: bytes, key: str, raw_value: bytes | None) -> bytes:
    """The form with `key` set to an already-encoded value, or removed (None)."""
    parts = [p for p in body.split(b"&") if not p.startswith(key.encode() + b"=")]
    if raw_value is not None:
        parts.append(key.encode() + b"=" + raw_value)
    return b"&".join(parts)


MALFORMED_COMMANDS = {
    "bad percent escape": _with_field(_command(), "text", b"%zz"),
    "truncated percent escape": _with_field(_command(), "text", b"10%"),
    "percent-encoded non-UTF-8": _with_field(_command(), "text", b"caf%E9"),
    "raw non-UTF-8 byte": _with_field(_command(), "text", b"caf\xe9"),
    "repeated field": _command() + b"&user_id=U0BEN",
    "repeated text": _command(text="10:30") + b"&text=11%3A30",
    "missing user_id": _with_field(_command(), "user_id", None),
    "missing channel_id": _with_field(_command(), "channel_id", None),
    "invalid user_id": _with_field(_command(), "user_id", b"robert%27%29%3B"),
    "not a form": b'{"user_id": "U0ANA"}',
}


MALFORMED_INTERACTIONS = {
    "missing payload": urlencode({"type": "block_actions"}).encode(),
    "payload not JSON": urlencode({"payload": "{type: block_actions"}).encode(),
    "payload without type": urlencode({"payload": json.dumps({"actions": []})}).encode(),
    "payload type not a string": urlencode({"payload": json.dumps({"type": 7})}).encode(),
    "payload not an object": urlencode({"payload": json.dumps(["block_actions"])}).encode(),
    "repeated payload": urlencode([("payload", json.dumps({"type": "view_closed"}))] * 2).encode(),
    "non-UTF-8": b"payload=%7B%22type%22%3A%22block_actions%22%7D\xff",
}


MALFORMED = {
    **{f"command, {name}": ("/slack/commands", b) for name, b in MALFORMED_COMMANDS.items()},
    **{
        f"interaction, {name}": ("/slack/interactions", b)
        for name, b in MALFORMED_INTERACTIONS.items()
    },
}


@pytest.mark.parametrize(("path", "body"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request(web: SignedClient, sql: SqlFn, path: str, body: bytes) -> None:
    result = web.post(path, body)
    assert result.status_code == 400, result.text
    _assert_nothing_written(sql)


# ---- /coffee answers -------------------------------------------------------------------


def test_help_is_ephemeral_and_explains_fairness(chan: Channel, sql: SqlFn) -> None:
    answer = chan.command("U0ANA", "help")
    assert answer["response_type"] == "ephemeral"
    assert "/coffee" in answer["text"]
    assert RULE_SUMMARY in answer["text"]
    _assert_nothing_written(sql)


@pytest.mark.parametrize(
    ("text", "hint"), [("25:00", "hours go from 0 to 23"), ("close", "isn't available")]
)
def test_invalid_syntax_gets_a_hint(chan: Channel, sql: SqlFn, text: str, hint: str) -> None:
    answer = chan.command("U0ANA", text)
    assert answer["response_type"] == "ephemeral"
    assert hint in answer["text"]
    assert "Usage:" in answer["text"]
    _assert_nothing_written(sql)


def test_pickup_time_already_past_in_the_users_zone(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    # Local time is between 02:00 and 20:59, so 00:01 has passed and 23:59 has not.
    zone = _zone_with_local_hour(2, 20)
    slack.add_user("U0ZED", name="zed", tz=zone)
    answer = chan.command("U0ZED", "00:01 Lobby")
    assert answer["response_type"] == "ephemeral"
    assert "00:01 has already passed" in answer["text"]
    assert _row_counts(sql)["runs"] == 0
    assert _row_counts(sql)["jobs"] == 0

    # The same command later in that zone's day starts a run for today, in that zone.
    answer = chan.command("U0ZED", "23:59 Lobby")
    assert "Starting your coffee run" in answer["text"]
    pickup = sql("SELECT pickup_time FROM runs")[0][0]
    local = pickup.astimezone(ZoneInfo(zone))
    assert (local.hour, local.minute) == (23, 59)
    assert local.date() == datetime.now(ZoneInfo(zone)).date()


def test_relative_pickup_is_stored(chan: Channel, sql: SqlFn) -> None:
    before = datetime.now(UTC)
    answer = chan.command("U0ANA", "in 20m")
    after = datetime.now(UTC)
    assert "Starting your coffee run" in answer["text"]
    rows = sql("SELECT pickup_time, status FROM runs")
    assert len(rows) == 1
    pickup, status = rows[0]
    assert status == "open"
    slack_minute = timedelta(minutes=1)
    assert before + timedelta(minutes=20) - slack_minute <= pickup
    assert pickup <= after + timedelta(minutes=20) + slack_minute


def test_second_command_points_to_the_open_run(chan: Channel, sql: SqlFn) -> None:
    first = chan.start("U0ANA", "in 20m")
    answer = chan.command("U0BEN", "in 30m Other cafe")
    assert answer["response_type"] == "ephemeral"
    assert "already an open coffee run" in answer["text"]
    assert "<@U0ANA>" in answer["text"]
    assert sql("SELECT id::text FROM runs WHERE status = 'open'") == [(first,)]
    assert _row_counts(sql)["runs"] == 1


def test_users_info_is_cached(chan: Channel, slack: FakeSlack, sql: SqlFn) -> None:
    zone = _zone_with_local_hour(2, 20)
    slack.add_user("U0ZED", name="zed", tz=zone)
    first = chan.start("U0ZED", "23:30 Lobby")
    chan.click("U0ZED", run_blocks.ACTION_CANCEL_RUN, first)
    assert chan.status(first) == "canceled"

    second = chan.start("U0ZED", "23:45 Lobby")
    assert second != first
    assert chan.status(second) == "open"
    assert [c.args["user"] for c in slack.calls("users.info")] == ["U0ZED"]
    assert sql("SELECT tz FROM users WHERE slack_user_id = 'U0ZED'") == [(zone,)]


def test_the_worker_warms_the_profile_of_someone_new(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    zone = _zone_with_local_hour(2, 20)
    slack.add_user("U0ZED", name="zed", tz=zone)
    first = chan.start("U0ANA")
    assert chan.submit("U0ZED", "flat white") is None
    assert slack.calls("users.info") == []  # no request waited for Slack
    chan.work()  # the worker applies the inboxed order, which asks for the warming
    # Warming waits 10 s (a burst's confirmations go first); don't wait here.
    sql("UPDATE jobs SET run_at = now() WHERE kind = 'warm_profile'")
    chan.work()
    # Zed ordered: his profile is fetched (Ana only started a run without a time).
    assert [c.args["user"] for c in slack.calls("users.info")] == ["U0ZED"]
    assert sql("SELECT tz FROM users WHERE slack_user_id = 'U0ZED'") == [(zone,)]
    chan.click_and_work("U0ANA", run_blocks.ACTION_CANCEL_RUN, first)

    # Zed's first /coffee with a time finds his time zone cached, and nothing is warmed again.
    second = chan.start("U0ZED", "23:30 Lobby")
    assert chan.status(second) == "open"
    chan.work()
    assert len(slack.calls("users.info")) == 1


# ---- health and metrics ----------------------------------------------------------------


def test_health(web: SignedClient) -> None:
    assert web.get("/health/live").status_code == 200
    ready = web.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json["checks"] == {"secrets": True, "database": True, "migrations": True}


def test_unreachable_database(config: Config, sql: SqlFn) -> None:
    down = replace(config, database_url=Secret("postgresql://postgres@127.0.0.1:1/none"))
    client = SignedClient(create_app(down))

    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json["checks"]["database"] is False

    # Slack shows only a 200 answer to the person; anything else is an opaque failure.
    answer = client.post("/slack/commands", _command(text="in 20m"))
    assert answer.status_code == 200
    assert answer.json == {"response_type": "ephemeral", "text": DB_DOWN}
    _assert_nothing_written(sql)  # the test's own database was never touched


def test_metrics_count_requests_and_runs(chan: Channel, web: SignedClient) -> None:
    before = web.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")

    chan.command("U0ANA", "in 20m")
    chan.command("U0BEN")  # answered with "already open": a request, not a run
    chan.command("U0CAT", "help")

    after = web.get("/metrics")
    assert "coffeebuddy_requests_total" in after.text
    assert "coffeebuddy_runs_total" in after.text
    families = {f.name: f.type for f in text_string_to_metric_families(after.text)}
    assert families["coffeebuddy_requests"] == "counter"
    assert families["coffeebuddy_runs"] == "counter"

    def delta(name: str, labels: dict[str, str]) -> float:
        return _sample(after.text, name, labels) - _sample(before.text, name, labels)

    assert delta("coffeebuddy_requests_total", {"type": "slash"}) == 3
    assert delta("coffeebuddy_requests_total", {"type": "interaction"}) == 0
    assert delta("coffeebuddy_runs_total", {"status": "started"}) == 1


# ---- unknown interactions --------------------------------------------------------------


def _snapshot(sql: SqlFn) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "runs": sql("SELECT * FROM runs ORDER BY id"),
        "orders": sql("SELECT * FROM orders ORDER BY id"),
        "users": sql("SELECT * FROM users ORDER BY id"),
        "channels": sql("SELECT * FROM channels ORDER BY id"),
    }


@pytest.mark.parametrize(
    ("action_id", "value"),
    [
        ("brew_espresso", None),  # an action this version doesn't have
        (run_blocks.ACTION_CLOSE_RUN, "not-a-run-id"),
        (run_blocks.ACTION_CANCEL_RUN, ""),
    ],
)
def test_unknown_button(
    chan: Channel, slack: FakeSlack, sql: SqlFn, action_id: str, value: str | None
) -> None:
    run_id = chan.open_run("U0ANA")
    state = _snapshot(sql)
    jobs_before = _row_counts(sql)["jobs"]

    body = block_action_body(
        user_id="U0ANA",
        channel_id=CHANNEL,
        action_id=action_id,
        value=run_id if value is None else value,
        response_url=slack.response_url("unknown-button"),
    )
    result = chan.web.post("/slack/interactions", body)
    assert result.status_code == 200, result.text
    chan.work()

    told = [r.get("text", "") for r in slack.responses("unknown-button")]
    assert len(told) == 1 and UNKNOWN_BUTTON in told[0]
    assert _snapshot(sql) == state
    new_jobs = sql("SELECT kind FROM jobs ORDER BY id OFFSET %s", jobs_before)
    assert new_jobs == [("notify_user",)]
    assert slack.calls("chat.update") == []
    assert chan.status(run_id) == "open"


def test_unknown_view_submission(web: SignedClient, sql: SqlFn) -> None:
    body = view_submission_body(
        user_id="U0ANA", run_id=str(uuid.uuid4()), order_text="tea", callback_id="mystery_modal"
    )
    result = web.post("/slack/interactions", body)
    assert result.status_code == 400
    _assert_nothing_written(sql)


def test_form_helper_round_trips() -> None:
    # _with_field must produce what it says, or the malformed cases test nothing.
    fields = dict(parse_qsl(_with_field(_command(), "text", b"hello+there").decode()))
    assert fields["text"] == "hello there"
    assert "user_id" not in dict(parse_qsl(_with_field(_command(), "user_id", None).decode()))
