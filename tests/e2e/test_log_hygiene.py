"""Logs never carry a secret, a credential, a raw request body or an order text.

Known secrets and order texts are planted, a full run is driven through the real gunicorn
and worker processes, with errors along the way (Slack failing, a channel the bot is not in,
forged and malformed requests), and every line both processes wrote is scanned."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from coffeebuddy.slack import run_blocks
from testkit.fakes.slack_api import FakeSlack
from testkit.processes import Service, start_service
from testkit.slack_payloads import SIGNING_SECRET, command_body, sign
from tests.conftest import BOT_TOKEN, CHANNEL
from tests.driver import Channel

pytestmark = pytest.mark.e2e

DB_PASSWORD = "planted-db-password-5521"
ORDERS = ("zebra mocha 7731", "quokka cortado 9042", "narwhal chai 1188")
NOTE = "Secret Garden Cafe 4410"
LONELY = "C0LONELY01"


@pytest.fixture
def service(database_url: str, slack: FakeSlack) -> Iterator[Service]:
    # Postgres here trusts local connections, so a planted password connects all the same
    # and shows up wherever the URL would be logged.
    url = database_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    assert DB_PASSWORD in url
    extra = {"COFFEEBUDDY_REFRESH_COALESCE_MS": "200", "COFFEEBUDDY_JOB_LEASE_SECONDS": "5"}
    with start_service(url, slack.base_url, extra_env=extra) as running:
        yield running


def _lines(service: Service) -> list[str]:
    lines = []
    for path in (service.logs / "web.log", service.logs / "worker.log"):
        lines += [line for line in path.read_text().splitlines() if line.strip()]
    return lines


def test_no_secret_or_order_text_reaches_the_logs(
    service: Service, slack: FakeSlack, sql: Any
) -> None:
    slack.add_channel(LONELY, name="lonely", bot_member=False)
    chan = Channel(service.client, None, sql, CHANNEL, slack)

    # Slack fails once while the run message is posted: retried, then it works.
    slack.fail_next("chat.postMessage", status=500)
    chan.command("U0ANA", f"in 30m {NOTE}")
    run_id = chan.run_id()
    slack.wait_for(lambda: slack.messages(CHANNEL), timeout=20)
    for user, order in zip(("U0ANA", "U0BEN", "U0CAT"), ORDERS, strict=True):
        chan.submit(user, order)
    slack.fail_next("views.open", error="expired_trigger_id")
    chan.click("U0DAN", run_blocks.ACTION_PLACE_ORDER, run_id)
    chan.submit("U0DAN", "x" * 400)  # too long: a field error, not stored
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    slack.wait_for(lambda: len(slack.messages(CHANNEL)) >= 2, timeout=20)

    # A channel the bot is not in: the run fails and the person is told how to fix it.
    lonely = Channel(service.client, None, sql, LONELY, slack)
    lonely.command("U0BEN", "Lobby")
    slack.wait_for(lambda: any("/invite" in t for t in lonely.told("U0BEN")), timeout=20)

    # Forged, stale and malformed requests.
    body = command_body(user_id="U0EVE", channel_id=CHANNEL, text=ORDERS[0])
    assert service.client.post("/slack/commands", body).status_code == 200
    forged = {**sign(body, secret="not-the-secret"), "X-Forwarded-For": "10.0.0.1"}
    assert _raw_post(service, body, forged) == 401
    assert _raw_post(service, b"payload=%7Bnot-json " + ORDERS[1].encode(), None) == 400

    lines = _lines(service)
    assert len(lines) > 20, "the processes logged almost nothing; the scan would prove little"
    events = set()
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object
        events.add(entry.get("event"))
        for planted in (SIGNING_SECRET, BOT_TOKEN, DB_PASSWORD, NOTE, *ORDERS):
            assert planted not in line, f"{planted!r} leaked into: {line}"
        assert "payload=" not in line
    # The scan saw the interesting moments, including the errors.
    assert {"request", "job_done", "job_retry", "job_dead", "signature_rejected"} <= events


def _raw_post(service: Service, body: bytes, headers: dict[str, str] | None) -> int:
    signed = headers if headers is not None else sign(body)
    path = "/slack/interactions" if body.startswith(b"payload=") else "/slack/commands"
    request = urllib.request.Request(
        service.client.base + path, data=body, headers=signed, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
