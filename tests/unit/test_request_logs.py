"""What the web logs about requests it refuses: the real path (not "unmatched") and why a
signature was refused (missing, stale or wrong) (issue 13, item 16)."""

from __future__ import annotations

import hashlib
import hmac
import logging

import falcon
import falcon.testing
import pytest

from coffeebuddy.web.access import AccessGate, SlackResource
from coffeebuddy.web.middleware import RequestContext, SigningSecrets, SlackSignature

SECRET = "test-signing-secret"
NOW = 1_800_000_000


class Ok(SlackResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"ok": True}


@pytest.fixture
def client() -> falcon.testing.TestClient:
    app = falcon.App(
        middleware=[
            RequestContext(),
            AccessGate(
                slack=SlackSignature(
                    SigningSecrets(SECRET, clock=lambda: NOW), max_body_bytes=4096
                ),
                ops=None,
            ),
        ]
    )
    app.add_route("/slack/commands", Ok())
    return falcon.testing.TestClient(app)


def _headers(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    base = f"v0:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def _records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == event]


def test_a_request_to_no_route_logs_its_path(
    client: falcon.testing.TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert client.simulate_get("/no/such/place").status_code == 404
    (record,) = _records(caplog, "request")
    assert record.path == "/no/such/place"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-Slack-Request-Timestamp": str(NOW)}, "missing"),
        (_headers(b"text=hi", NOW - 600), "stale"),
        (_headers(b"text=hi", NOW + 600), "stale"),
        (_headers(b"text=hi", NOW, secret="another-secret"), "wrong"),
        (_headers(b"text=other", NOW), "wrong"),
        ({"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=abc"}, "malformed"),
    ],
    ids=["no-headers", "no-signature", "old", "future", "other-secret", "other-body", "bad-ts"],
)
def test_a_refused_signature_says_why(
    client: falcon.testing.TestClient,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    reason: str,
) -> None:
    caplog.set_level(logging.INFO)
    answer = client.simulate_post("/slack/commands", body=b"text=hi", headers=headers)
    assert answer.status_code == 401
    (record,) = _records(caplog, "signature_rejected")
    assert record.reason == reason  # type: ignore[attr-defined]
    assert record.path == "/slack/commands"  # type: ignore[attr-defined]


def test_a_good_signature_passes(client: falcon.testing.TestClient) -> None:
    answer = client.simulate_post(
        "/slack/commands", body=b"text=hi", headers=_headers(b"text=hi", NOW)
    )
    assert answer.status_code == 200
