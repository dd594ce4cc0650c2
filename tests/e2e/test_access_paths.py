"""Through the real gunicorn (which decodes `%2F` in the path before the app sees it):
the ops and Slack routes written any non-canonical way are refused, unsigned or not."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from testkit.fakes.oidc_issuer import FakeIssuer
from testkit.fakes.slack_api import FakeSlack
from testkit.processes import Service, start_service
from testkit.slack_payloads import command_body, sign
from tests.conftest import CHANNEL

VARIANTS = [
    "//{p}",
    "/%2F{p}",
    "/%2f{p}",
    "/{p}/",
    "/{head}//{tail}",
    "/{head}%2F{tail}",
]


@pytest.fixture
def service(database_url: str, slack: FakeSlack) -> Iterator[tuple[Service, FakeIssuer]]:
    issuer = FakeIssuer().start()
    extra = {"COFFEEBUDDY_OPS_ISSUER": issuer.url, "COFFEEBUDDY_OPS_AUDIENCE": "coffeebuddy-ops"}
    try:
        with start_service(database_url, slack.base_url, web_workers=1, extra_env=extra) as svc:
            yield svc, issuer
    finally:
        issuer.stop()


def _post(base: str, raw_path: str, body: bytes, headers: dict[str, str]) -> int:
    # http.client sends the path byte for byte (no normalising, no re-encoding).
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("POST", raw_path, body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_non_canonical_paths_are_refused_by_the_running_service(
    service: tuple[Service, FakeIssuer], sql: object
) -> None:
    svc, issuer = service
    base = svc.client.base
    body = command_body(user_id="U0ANA", channel_id=CHANNEL, text="Lobby")
    for path in ("ops/retention/purge", "slack/commands"):
        head, _, tail = path.partition("/")
        for variant in VARIANTS:
            raw = variant.format(p=path, head=head, tail=tail)
            for headers in ({}, sign(body)):
                status = _post(base, raw, body, headers)
                assert status == 404, (raw, status)
    # The canonical paths still work for whoever has the credentials.
    assert _post(base, "/slack/commands", body, sign(body)) == 200
    token = {"Authorization": f"Bearer {issuer.token()}"}
    assert _post(base, "/ops/retention/purge", b"", token) == 200
    assert _post(base, "/ops/retention/purge", b"", {}) == 401
