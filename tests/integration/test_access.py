"""Access is decided by the resource that matched, never by the path text: every `/ops/`
and `/slack/` route written as `//x`, `/%2Fx`, `/x/` or `/x//y` is refused and changes
nothing, and a malformed signature is a bad signature (401), not an internal error."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import unquote

import falcon
import falcon.testing
import pytest
from prometheus_client import REGISTRY

from coffeebuddy.config import Config
from coffeebuddy.db import Database
from coffeebuddy.web.access import AccessGate, SlackResource, verified_body
from coffeebuddy.web.app import create_app
from testkit.fakes.oidc_issuer import FakeIssuer
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import command_body, sign
from tests.conftest import CHANNEL
from tests.driver import Channel

DEAD_JOB_ID = 4242

# (method, canonical path) of every /ops/ and /slack/ route.
ROUTES = [
    ("GET", "/ops/runs/6f1c1d2e-1111-4222-8333-444455556666"),
    ("POST", f"/ops/jobs/{DEAD_JOB_ID}/retry"),
    ("POST", "/ops/retention/purge"),
    ("POST", "/slack/commands"),
    ("POST", "/slack/interactions"),
    ("POST", "/slack/events"),
]


def _variants(path: str) -> list[str]:
    first, _, rest = path[1:].partition("/")
    return [
        "/" + path,  # //x
        "/%2F" + path[1:],  # /%2Fx
        path + "/",  # /x/
        f"/{first}//{rest}",  # /x//y
        f"/{first}%2F{rest}",  # an encoded slash the server decodes into a separator
    ]


CASES = [(method, path, raw) for method, path in ROUTES for raw in _variants(path)]


@pytest.fixture
def app(ops: falcon.testing.TestClient) -> falcon.testing.TestClient:
    return ops


def _as_server_sees_it(
    client: falcon.testing.TestClient, method: str, raw: str, **kwargs: Any
) -> falcon.testing.Result:
    # A WSGI server decodes the path into PATH_INFO and keeps the request line in RAW_URI.
    return client.simulate_request(
        method, unquote(raw), extras={"RAW_URI": raw, "REQUEST_URI": raw}, **kwargs
    )


@pytest.mark.parametrize(("method", "path", "raw"), CASES)
def test_non_canonical_paths_are_refused_and_change_nothing(
    app: falcon.testing.TestClient,
    web: Any,
    worker: Any,
    slack: FakeSlack,
    sql: Any,
    method: str,
    path: str,
    raw: str,
) -> None:
    sql(
        "INSERT INTO jobs (id, kind, payload, status, last_error)"
        " VALUES (%s, 'notify_user', '{}', 'dead', 'http_500')",
        DEAD_JOB_ID,
    )
    run_id = Channel(web, worker, sql, CHANNEL, slack).start("U0ANA", "Lobby")
    # Old enough for the retention purge to delete it, if the purge ran.
    sql(
        "UPDATE runs SET status = 'canceled', closed_at = now() - interval '400 days',"
        " started_at = now() - interval '400 days' WHERE id = %s",
        run_id,
    )
    body = command_body(user_id="U0ANA", channel_id=CHANNEL, text="Lobby")
    # Unsigned, and also correctly signed: neither may reach a handler by this path.
    for headers in ({}, sign(body)):
        answer = _as_server_sees_it(app, method, raw, body=body, headers=headers)
        assert answer.status_code == 404, (raw, answer.status_code, answer.text)
    assert sql("SELECT status FROM jobs WHERE id = %s", DEAD_JOB_ID) == [("dead",)]
    assert sql("SELECT count(*) FROM runs") == [(1,)]


def test_canonical_paths_still_need_credentials(app: falcon.testing.TestClient, sql: Any) -> None:
    for method, path in ROUTES:
        answer = _as_server_sees_it(app, method, path, body=b"x=1")
        assert answer.status_code == 401, path


def test_canonical_ops_path_with_a_token_works(
    app: falcon.testing.TestClient, issuer: FakeIssuer
) -> None:
    answer = _as_server_sees_it(
        app,
        "POST",
        "/ops/retention/purge",
        headers={"Authorization": f"Bearer {issuer.token()}"},
    )
    assert answer.status_code == 200


def test_every_route_declares_its_access(config: Config, app_database: Database) -> None:
    configured = replace(config, ops_issuer="https://issuer.invalid", ops_audience="x")
    application = create_app(configured, database=app_database)
    paths = [path for _, path in ROUTES] + ["/health/live", "/health/ready", "/metrics"]
    for path in paths:
        found = application._router.find(path)
        assert found is not None, path
        resource = found[0]
        assert getattr(resource, "access", None) in ("slack", "ops", "public"), path


class _Unmarked:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"reached": True}


class _SlackEcho(SlackResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = verified_body(req)


def test_an_unmarked_resource_is_refused() -> None:
    app = falcon.App(middleware=[AccessGate(slack=lambda req: None, ops=None)])
    app.add_route("/x", _Unmarked())
    assert falcon.testing.TestClient(app).simulate_get("/x").status_code == 404


def test_a_slack_resource_without_a_verified_body_answers_401() -> None:
    # A check that forgot to leave the verified body behind must not let the body through.
    app = falcon.App(middleware=[AccessGate(slack=lambda req: None, ops=None)])
    app.add_route("/slack/x", _SlackEcho())
    assert falcon.testing.TestClient(app).simulate_post("/slack/x", body=b"a=1").status_code == 401


def _errors(kind: str) -> float:
    return REGISTRY.get_sample_value("coffeebuddy_errors_total", {"type": kind}) or 0.0


@pytest.mark.parametrize(
    ("signature", "timestamp"),
    [
        ("v0=\xe9\xe9", None),  # the bytes a latin-1 header decodes to
        ("v0=" + "\xe9" * 64, None),
        ("v0=" + "A" * 64, None),  # upper-case hex is not what Slack sends
        (None, "\xe9\xe9"),
        (None, "١٢٣٤٥٦٧٨٩٠"),  # Arabic-Indic digits: isdigit() but not a Unix time
    ],
)
def test_malformed_signature_headers_are_a_bad_signature(
    app: falcon.testing.TestClient, sql: Any, signature: str | None, timestamp: str | None
) -> None:
    body = command_body(user_id="U0ANA", channel_id=CHANNEL, text="Lobby")
    headers = sign(body)
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = timestamp
    internal, bad = _errors("internal"), _errors("bad_signature")
    answer = app.simulate_post("/slack/commands", body=body, headers=headers)
    assert answer.status_code == 401
    assert _errors("internal") == internal
    assert _errors("bad_signature") == bad + 1
    assert sql("SELECT count(*) FROM runs") == [(0,)]


def test_a_chunked_body_is_refused_with_411(app: falcon.testing.TestClient, sql: Any) -> None:
    body = command_body(user_id="U0ANA", channel_id=CHANNEL, text="Lobby")
    headers = {**sign(body), "Transfer-Encoding": "chunked"}
    env = falcon.testing.create_environ(
        "/slack/commands", method="POST", body=body, headers=headers
    )
    env.pop("CONTENT_LENGTH", None)
    start = falcon.testing.StartResponseMock()
    b"".join(app.app(env, start))
    assert start.status.startswith("411")
    assert sql("SELECT count(*) FROM runs") == [(0,)]
