"""A response_url is only POSTed to when its origin is allowed (Slack's hooks host, the
origin of SLACK_API_BASE_URL, COFFEEBUDDY_RESPONSE_URL_ORIGINS), redirects are never
followed, and a refused URL is answered by chat.postEphemeral and logged without the URL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from coffeebuddy.config import Config, ConfigError
from coffeebuddy.slack import run_blocks
from coffeebuddy.slack.response_url import ResponseUrlPolicy, post_ephemeral
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import block_action_body
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel, SqlFn


class Canary:
    """An "internal admin API" that records every request it gets; `/redirect` answers
    302 to `/internal-admin/api` on itself."""

    def __init__(self) -> None:
        seen: list[str] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                seen.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/internal-admin/api")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    fake = Canary()
    yield fake
    fake.stop()


def _refused_click(web: SignedClient, run_id: str, url: str) -> None:
    # Ben may not cancel Ana's run: the refusal goes to him through the response_url.
    body = block_action_body(
        user_id="U0BEN",
        channel_id=CHANNEL,
        action_id=run_blocks.ACTION_CANCEL_RUN,
        value=run_id,
        response_url=url,
        trigger_id="1.1",
    )
    assert web.post("/slack/interactions", body).status_code == 200


@pytest.mark.parametrize("path", ["/internal-admin/api", "/redirect"], ids=["internal", "redirect"])
def test_a_response_url_outside_the_allow_list_is_never_posted_to(
    web: SignedClient,
    chan: Channel,
    slack: FakeSlack,
    canary: Canary,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    run_id = chan.open_run("U0ANA", "Lobby")
    url = canary.origin + path
    with caplog.at_level(logging.INFO):
        _refused_click(web, run_id, url)
        chan.work()
    assert canary.seen == []
    assert len(slack.ephemerals("U0BEN")) == 1  # told through chat.postEphemeral instead
    refused = [r for r in caplog.records if r.getMessage() == "response_url_refused"]
    assert refused
    assert all(url not in r.getMessage() and url not in str(r.__dict__) for r in refused)


def test_redirects_from_an_allowed_origin_are_not_followed(
    web: SignedClient,
    make_worker: Any,
    sql: SqlFn,
    slack: FakeSlack,
    canary: Canary,
) -> None:
    worker = make_worker(response_url_origins=(canary.origin,))
    chan = Channel(web, worker, sql, CHANNEL, slack)
    run_id = chan.open_run("U0ANA", "Lobby")
    _refused_click(web, run_id, canary.origin + "/redirect")
    chan.work()
    assert canary.seen == ["/redirect"]  # asked once, the Location never followed
    assert len(slack.ephemerals("U0BEN")) == 1


def test_the_allow_list() -> None:
    policy = ResponseUrlPolicy.for_slack_api(
        "http://slack-proxy.internal:8080/api/", ["https://hooks.example.com"]
    )
    assert policy.allows("https://hooks.slack.com/actions/T1/2/abc")
    assert policy.allows("https://HOOKS.slack.com:443/actions/T1/2/abc")
    assert policy.allows("http://slack-proxy.internal:8080/actions/x")
    assert policy.allows("https://hooks.example.com/x")
    for url in (
        "http://hooks.slack.com/actions/x",  # not https
        "https://hooks.slack.com.evil.example/x",
        "https://hooks.slack.com@127.0.0.1/x",
        "https://evil@hooks.slack.com/x",
        "http://127.0.0.1:8080/internal-admin/api",
        "http://slack-proxy.internal:8081/x",
        "file:///etc/passwd",
        "https://hooks.slack.com:99999/x",
        "//hooks.slack.com/x",
    ):
        assert not policy.allows(url), url


def test_the_documented_setting() -> None:
    env = {
        "DATABASE_URL": "postgresql://x@y/z",
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_BOT_TOKEN": "xoxb-1",
        "COFFEEBUDDY_RESPONSE_URL_ORIGINS": "https://a.example, https://b.example:8443/",
    }
    assert Config.from_environ(env).response_url_origins == (
        "https://a.example",
        "https://b.example:8443",
    )
    for bad in ("http://a.example", "https://a.example/path", "https://u@a.example"):
        with pytest.raises(ConfigError):
            Config.from_environ({**env, "COFFEEBUDDY_RESPONSE_URL_ORIGINS": bad})


def test_response_urls_go_through_the_egress_proxy(
    canary: Canary, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The canary plays a forward proxy: it gets the absolute URL in the request line.
    for name in ("https_proxy", "http_proxy", "no_proxy", "NO_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", canary.origin)
    policy = ResponseUrlPolicy.for_slack_api("http://slack-double.test/api/")
    url = "http://slack-double.test/actions/T1/2/abc"
    assert post_ephemeral(url, "hi", timeout=5, policy=policy)
    assert canary.seen == [url]
