"""`/metrics` counts every gunicorn worker however gunicorn is started: a plain
`gunicorn app:app -w 2` without PROMETHEUS_MULTIPROC_DIR gets a private directory from
gunicorn.conf.py, made before the workers fork and removed on exit (issue 13, item 10)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.fakes.slack_api import FakeSlack
from testkit.processes import ROOT, HttpClient, coverage_env, free_port
from testkit.slack_payloads import SIGNING_SECRET

pytestmark = pytest.mark.e2e

REQUESTS = 40


def _bad_signatures(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "coffeebuddy_errors_total" and sample.labels == {
                "type": "bad_signature"
            }:
                return sample.value
    raise AssertionError("coffeebuddy_errors_total{type=bad_signature} is not exported")


def test_plain_gunicorn_with_two_workers_counts_both(
    tmp_path: Path, database_url: str, slack: FakeSlack
) -> None:
    port = free_port()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {
        **coverage_env(),
        "PATH": os.environ.get("PATH", ""),
        "TMPDIR": str(tmp),
        "DATABASE_URL": database_url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": "xoxb-1-2",
        "SLACK_API_BASE_URL": slack.base_url,
    }
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        web = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "app:app", "-w", "2",
                "--bind", f"127.0.0.1:{port}", "--config", "gunicorn.conf.py",
            ],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    client = HttpClient(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/health/live").status_code == 200:
                    break
            except OSError:
                pass
            assert web.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        (private,) = tmp.iterdir()
        assert private.name.startswith("coffeebuddy-metrics-")

        # Unsigned requests, several at a time so that both workers answer some: each is
        # refused and counted as a bad signature.
        def unsigned(_: int) -> int:
            request = urllib.request.Request(
                client.base + "/slack/commands", data=b"text=hi", method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(unsigned, range(REQUESTS)))
        assert codes == [401] * REQUESTS
        # Whichever worker answers the scrape, it reports both workers' counts.
        for _ in range(6):
            assert _bad_signatures(client.get("/metrics").text) == REQUESTS
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
    assert list(tmp.iterdir()) == [], "the private metrics directory was not removed"
