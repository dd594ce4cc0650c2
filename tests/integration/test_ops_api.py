"""The operations API accepts only bearer JWTs from the configured Ory issuer, with the
right audience, unexpired, and carrying the ops scope."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

import falcon.testing
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from coffeebuddy.config import Config
from coffeebuddy.db import Database
from coffeebuddy.web.app import create_app
from testkit.fakes.oidc_issuer import FakeIssuer
from tests.conftest import CHANNEL
from tests.driver import Channel


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def run_id(chan: Channel) -> str:
    run = chan.start("U0ANA", "Lobby")
    chan.submit("U0BEN", "flat white")
    chan.work()  # the worker applies the inboxed order
    return run


def test_run_status_with_a_valid_token(
    ops: falcon.testing.TestClient, issuer: FakeIssuer, run_id: str
) -> None:
    answer = ops.simulate_get(f"/ops/runs/{run_id}", headers=_bearer(issuer.token()))
    assert answer.status_code == 200
    assert answer.json["status"] == "open"
    assert answer.json["participants"] == 1
    assert answer.json["slack_channel_id"] == CHANNEL
    assert "flat white" not in answer.text
    missing = "6f1c1d2e-1111-4222-8333-444455556666"
    assert (
        ops.simulate_get(f"/ops/runs/{missing}", headers=_bearer(issuer.token())).status_code == 404
    )


def test_retry_a_dead_job(ops: falcon.testing.TestClient, issuer: FakeIssuer, sql: Any) -> None:
    (dead,) = sql(
        "INSERT INTO jobs (kind, payload, status, last_error) VALUES"
        " ('notify_user', '{}', 'dead', 'http_500') RETURNING id"
    )[0:1]
    (queued,) = sql("INSERT INTO jobs (kind, payload) VALUES ('notify_user', '{}') RETURNING id")
    token = _bearer(issuer.token())
    answer = ops.simulate_post(f"/ops/jobs/{dead[0]}/retry", headers=token)
    assert answer.status_code == 200
    assert sql("SELECT status, attempts FROM jobs WHERE id = %s", dead[0]) == [("queued", 0)]
    assert ops.simulate_post(f"/ops/jobs/{queued[0]}/retry", headers=token).status_code == 409
    assert ops.simulate_post("/ops/jobs/999999/retry", headers=token).status_code == 404


def test_trigger_the_retention_purge(
    ops: falcon.testing.TestClient, issuer: FakeIssuer, sql: Any, run_id: str
) -> None:
    sql(
        "UPDATE runs SET status = 'canceled', closed_at = now() - interval '200 days',"
        " started_at = now() - interval '200 days' WHERE id = %s",
        run_id,
    )
    answer = ops.simulate_post("/ops/retention/purge", headers=_bearer(issuer.token()))
    assert answer.status_code == 200
    assert answer.json["purged"]["runs"] == 1
    assert sql("SELECT count(*) FROM runs") == [(0,)]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer not-a-jwt"}],
)
def test_missing_or_malformed_tokens_get_401(
    ops: falcon.testing.TestClient, headers: dict[str, str], sql: Any
) -> None:
    answer = ops.simulate_post("/ops/retention/purge", headers=headers)
    assert answer.status_code == 401
    assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")


def test_forged_tokens_get_401(ops: falcon.testing.TestClient, issuer: FakeIssuer) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = {
        "unknown key": issuer.token(key=stranger),  # kid k1, but not k1's key
        "unknown kid": issuer.token(kid="nope", key=stranger),
        "expired": issuer.token(lifetime=-3600),
        "wrong issuer": issuer.token(iss="https://evil.example"),
        "wrong audience": issuer.token(aud=["someone-else"]),
        "alg none": jwt.encode(
            {"iss": issuer.url, "aud": "coffeebuddy-ops", "exp": 2**31, "scp": ["coffeebuddy:ops"]},
            None,
            algorithm="none",
            headers={"kid": "k1"},
        ),
        "hs256": jwt.encode(
            {"iss": issuer.url, "aud": "coffeebuddy-ops", "exp": 2**31, "scp": ["coffeebuddy:ops"]},
            "k1-shared-secret-0123456789abcdef",
            algorithm="HS256",
            headers={"kid": "k1"},
        ),
    }
    for name, token in forged.items():
        answer = ops.simulate_post("/ops/retention/purge", headers=_bearer(token))
        assert answer.status_code == 401, name


def test_a_token_without_the_scope_gets_403(
    ops: falcon.testing.TestClient, issuer: FakeIssuer
) -> None:
    for token in (issuer.token(scp=["openid"]), issuer.token(scp=[], scope="openid offline")):
        assert ops.simulate_post("/ops/retention/purge", headers=_bearer(token)).status_code == 403
    scoped = issuer.token(scp=[], scope="openid coffeebuddy:ops")
    assert ops.simulate_post("/ops/retention/purge", headers=_bearer(scoped)).status_code == 200


def test_rotated_keys_are_fetched(
    ops: falcon.testing.TestClient, issuer: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The refetch cooldown (30 s) would make this test wait; the refetch itself is the point.
    monkeypatch.setattr("coffeebuddy.web.auth.REFETCH_COOLDOWN_SECONDS", 0.0)
    assert (
        ops.simulate_post("/ops/retention/purge", headers=_bearer(issuer.token())).status_code
        == 200
    )
    fetches = issuer.jwks_fetches
    issuer.add_key("k2", kind="ec")
    answer = ops.simulate_post("/ops/retention/purge", headers=_bearer(issuer.token(kid="k2")))
    assert answer.status_code == 200
    assert issuer.jwks_fetches > fetches


def test_ops_routes_absent_when_not_configured(web: Any) -> None:
    assert web.client.simulate_post("/ops/retention/purge").status_code == 404


def test_tokens_never_reach_the_logs(
    ops: falcon.testing.TestClient, issuer: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good, bad = issuer.token(), issuer.token(scp=["openid"])
    ops.simulate_post("/ops/retention/purge", headers=_bearer(good))
    ops.simulate_post("/ops/retention/purge", headers=_bearer(bad))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "ops_auth_rejected" in text
    assert good not in text and bad not in text


# ---- the issuer can't stall the web -------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        "x" * 20_000,
        "eyJhbGciOiJub25lIn0.e30.",  # alg none, empty signature
        "é.é.é",
    ],
)
def test_junk_bearer_strings_never_reach_the_issuer(
    ops: falcon.testing.TestClient, issuer: FakeIssuer, token: str
) -> None:
    answer = ops.simulate_post("/ops/retention/purge", headers=_bearer(token))
    assert answer.status_code == 401
    assert issuer.requests == 0


def test_wrong_issuer_or_expired_tokens_never_reach_the_issuer(
    ops: falcon.testing.TestClient, issuer: FakeIssuer
) -> None:
    for token in (issuer.token(iss="https://evil.example"), issuer.token(lifetime=-3600)):
        assert ops.simulate_post("/ops/retention/purge", headers=_bearer(token)).status_code == 401
    assert issuer.requests == 0


def test_an_unavailable_issuer_answers_503_with_backoff(
    ops: falcon.testing.TestClient, issuer: FakeIssuer
) -> None:
    issuer.fail_status = 500
    token = _bearer(issuer.token())
    first = ops.simulate_post("/ops/retention/purge", headers=token)
    assert first.status_code == 503
    assert first.headers.get("Retry-After")
    asked = issuer.requests
    assert asked >= 1
    for _ in range(5):
        assert ops.simulate_post("/ops/retention/purge", headers=token).status_code == 503
    assert issuer.requests == asked  # backing off: nobody waits on the issuer meanwhile


def test_a_slow_discovery_does_not_queue_other_requests(
    ops: falcon.testing.TestClient, issuer: FakeIssuer
) -> None:
    issuer.hold = threading.Event()
    token = _bearer(issuer.token())
    results: list[int] = []
    first = threading.Thread(
        target=lambda: results.append(
            ops.simulate_post("/ops/retention/purge", headers=token).status_code
        )
    )
    first.start()
    try:
        assert issuer.arrived.wait(10)
        # While one request waits on discovery, others are answered without joining it.
        assert ops.simulate_post("/ops/retention/purge", headers=token).status_code == 503
        assert ops.simulate_get("/health/live").status_code == 200
    finally:
        issuer.hold.set()
        first.join(15)
    assert results == [200]


def test_token_lifetime_is_capped(ops: falcon.testing.TestClient, issuer: FakeIssuer) -> None:
    now = int(time.time())
    long_lived = issuer.token(iat=now, exp=now + 2 * 3600)
    no_iat = issuer.token()
    claims = jwt.decode(no_iat, options={"verify_signature": False})
    del claims["iat"]
    stripped = jwt.encode(claims, issuer._keys["k1"], algorithm="RS256", headers={"kid": "k1"})
    for token in (long_lived, stripped):
        answer = ops.simulate_post("/ops/retention/purge", headers=_bearer(token))
        assert answer.status_code == 401
    fine = issuer.token(iat=now, exp=now + 3000)
    assert ops.simulate_post("/ops/retention/purge", headers=_bearer(fine)).status_code == 200


def test_token_lifetime_cap_is_configurable(
    config: Config, app_database: Database, issuer: FakeIssuer
) -> None:
    configured = replace(
        config,
        ops_issuer=issuer.url,
        ops_audience="coffeebuddy-ops",
        ops_max_token_lifetime_seconds=600,
    )
    client = falcon.testing.TestClient(create_app(configured, database=app_database))
    now = int(time.time())
    token = issuer.token(iat=now, exp=now + 900)
    assert client.simulate_post("/ops/retention/purge", headers=_bearer(token)).status_code == 401


def test_ops_changes_are_audited_with_the_tokens_subject(
    ops: falcon.testing.TestClient, issuer: FakeIssuer, sql: Any
) -> None:
    token = _bearer(issuer.token(sub="oncall-robot"))
    assert ops.simulate_post("/ops/retention/purge", headers=token).status_code == 200
    (dead,) = sql(
        "INSERT INTO jobs (kind, payload, status, last_error) VALUES"
        " ('notify_user', '{}', 'dead', 'http_500') RETURNING id"
    )
    assert ops.simulate_post(f"/ops/jobs/{dead[0]}/retry", headers=token).status_code == 200
    rows = sql("SELECT subject, action, details FROM ops_actions ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [
        ("oncall-robot", "retention_purge"),
        ("oncall-robot", "job_retried"),
    ]
    assert rows[0][2]["purged"]["runs"] == 0
    assert rows[1][2] == {"job_id": dead[0]}
    # A refused call changes nothing and so is not an ops action.
    assert ops.simulate_post("/ops/retention/purge").status_code == 401
    assert sql("SELECT count(*) FROM ops_actions") == [(2,)]
