"""End to end: the real gunicorn (two workers) and the real worker process, talking to
Postgres and to the fake Slack over HTTP, playing a full run with five people."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coffeebuddy.slack import run_blocks
from testkit.fakes.slack_api import FakeSlack
from testkit.processes import Service, start_service
from testkit.slack_payloads import SIGNING_SECRET
from tests.conftest import BOT_TOKEN, CHANNEL
from tests.driver import Channel, runner_of

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture
def service(database_url: str, slack: FakeSlack) -> Iterator[Service]:
    extra = {"COFFEEBUDDY_REFRESH_COALESCE_MS": "300"}
    with start_service(database_url, slack.base_url, extra_env=extra) as running:
        yield running


def _counter(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_full_run_through_gunicorn_and_worker(service: Service, slack: FakeSlack, sql: Any) -> None:
    chan = Channel(service.client, None, sql, CHANNEL, slack)
    people = ["U0ANA", "U0BEN", "U0CAT", "U0DAN", "U0EVE"]

    answer = chan.command("U0ANA", "in 30m Lobby cafe")
    assert "Starting your coffee run" in answer["text"]
    run_id = chan.run_id()
    slack.wait_for(lambda: slack.messages(CHANNEL))

    drinks = ["flat white", "oat latte", "flat white", "tea", "espresso"]
    for user, drink in zip(people, drinks, strict=True):
        assert chan.submit(user, drink) is None
    # Ben changes his mind, Dan withdraws and re-orders with one click on his usual.
    chan.submit("U0BEN", "cortado")
    chan.click("U0DAN", run_blocks.ACTION_CANCEL_ORDER, run_id)
    chan.click("U0DAN", run_blocks.ACTION_USE_USUAL, run_id)

    def shows_five() -> bool:
        message = slack.messages(CHANNEL)[0]
        return "5 people" in json.dumps(message["blocks"])

    slack.wait_for(shows_five, timeout=15)
    # Bursts of clicks were coalesced: fewer chat.update calls than changes (8).
    assert len(slack.calls("chat.update")) < 8

    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)  # a double click changes nothing
    slack.wait_for(lambda: len(slack.messages(CHANNEL)) >= 2, timeout=15)
    assert chan.status(run_id) == "closed"
    runner = runner_of(sql, run_id)
    dm = slack.wait_for(lambda: slack.dms(runner), timeout=15)
    summary = slack.messages(CHANNEL)[1]
    summary_text = json.dumps(summary["blocks"], ensure_ascii=False)
    assert "2× flat white" in summary_text
    assert "5 orders" in summary_text
    assert "cortado" in summary_text and "oat latte" not in summary_text
    order_list = [b for b in summary["blocks"] if str(b.get("block_id", "")).startswith("order_")]
    assert order_list == [
        b for b in dm[0]["blocks"] if str(b.get("block_id", "")).startswith("order_")
    ]
    time.sleep(0.5)  # let any stray duplicate arrive before counting
    assert len(slack.messages(CHANNEL)) == 2
    assert len(slack.dms(runner)) == 1
    # The second click's answer is a job too: on a loaded machine it may still be on its way.
    slack.wait_for(lambda: any("already closed" in t for t in chan.told("U0ANA")), timeout=15)

    metrics = service.client.get("/metrics").text
    assert _counter(metrics, "coffeebuddy_runs_total", status="started") == 1
    assert _counter(metrics, "coffeebuddy_runs_total", status="closed") == 1
    assert _counter(metrics, "coffeebuddy_requests_total", type="slash") == 1
    assert _counter(metrics, "coffeebuddy_requests_total", type="interaction") == 10

    # The job worker runs at a lower CPU priority than the web (COFFEEBUDDY_WORKER_NICE).
    assert _niceness(service.worker.pid) == _niceness(service.web.pid) + 10

    # Graceful stop: SIGTERM ends the worker cleanly.
    service.worker.send_signal(signal.SIGTERM)
    assert service.worker.wait(timeout=30) == 0

    # Every log line is JSON and carries no order text or secret.
    for name in ("web.log", "worker.log"):
        for line in (service.logs / name).read_text().splitlines():
            entry = json.loads(line)
            assert "event" in entry
            for secret in (SIGNING_SECRET, BOT_TOKEN, "cortado", "oat latte", "espresso"):
                assert secret not in line


def _niceness(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[16])  # field 19: nice
