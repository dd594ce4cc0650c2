"""The README's "run the service" command: `scripts/run` with nothing but Slack settings
starts an embedded Postgres, migrates it, and serves a real run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BOT_TOKEN, CHANNEL
from tests.fakes.slack_api import FakeSlack
from tests.processes import ROOT, HttpClient, coverage_env, free_port
from tests.slack_payloads import SIGNING_SECRET, command_body

pytestmark = pytest.mark.e2e


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**coverage_env(), **keep, **extra}


def test_run_command_with_embedded_postgres(tmp_path: Path, slack: FakeSlack) -> None:
    port = free_port()
    env = _env(
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_BASE_URL=slack.base_url,
        COFFEEBUDDY_STATE_DIR=str(tmp_path / "state"),
    )
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "run"), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = HttpClient(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if client.get("/health/ready").status_code == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.2)
        body = command_body(
            user_id="U0ANA",
            channel_id=CHANNEL,
            text="in 15m Lobby",
            response_url=slack.response_url("run-cmd"),
        )
        answer = client.post("/slack/commands", body)
        assert answer.status_code == 200
        assert "Starting your coffee run" in json.loads(answer.text)["text"]
        posted = slack.wait_for(lambda: slack.messages(CHANNEL), timeout=20)
        assert "Lobby" in json.dumps(posted[0]["blocks"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=40)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    assert code == 0, (tmp_path / "run.log").read_text()
    # The embedded Postgres lives under the state dir and was stopped with the service.
    assert (tmp_path / "state" / "pgdata" / "PG_VERSION").exists()
    assert not (tmp_path / "state" / "pgdata" / "postmaster.pid").exists()


def test_run_command_refuses_missing_config(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "run")],
        cwd=ROOT,
        env=_env(COFFEEBUDDY_STATE_DIR=str(tmp_path / "state")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [
        "coffeebuddy: configuration error: SLACK_SIGNING_SECRET is required but not set"
    ]
    # Nothing was started: no database directory was created.
    assert not (tmp_path / "state").exists()
