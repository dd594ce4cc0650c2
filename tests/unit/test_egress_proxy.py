"""Egress to Slack honours HTTPS_PROXY (a platform proxy that is not transparent) and
NO_PROXY (a Slack double or egress gateway inside the cluster is reached directly). The
response_url side is in tests/integration/test_response_url.py."""

from __future__ import annotations

import pytest

from coffeebuddy.config import Config, Secret
from coffeebuddy.slack.api import make_client

PROXY = "http://egress-proxy.example.internal:3128"


def _config(base_url: str) -> Config:
    return Config(
        database_url=Secret("postgresql://x/y"),
        slack_signing_secret=Secret("s"),
        slack_bot_token=Secret("xoxb-1"),
        slack_api_base_url=base_url,
    )


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", ".svc.cluster.local,localhost,127.0.0.1")


@pytest.mark.usefixtures("proxy_env")
def test_slack_calls_go_through_the_proxy() -> None:
    assert make_client(_config("https://slack.com/api/"), timeout=2).proxy == PROXY


@pytest.mark.usefixtures("proxy_env")
def test_no_proxy_hosts_are_reached_directly() -> None:
    inside = "https://slack-gateway.egress.svc.cluster.local/api/"
    assert make_client(_config(inside), timeout=2).proxy is None
