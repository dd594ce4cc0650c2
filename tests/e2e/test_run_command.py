"""The README's "run the service" command: `scripts/run` with nothing but Slack settings
starts an embedded Postgres, migrates it, and serves a real run. However it is stopped
(Ctrl-C, SIGTERM, SIGHUP, even SIGKILL) nothing it started keeps running, and the next
start works (issue 13, items 1-6)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from testkit.fakes.slack_api import FakeSlack
from testkit.processes import ROOT, HttpClient, coverage_env, free_port, run_cli
from testkit.slack_payloads import SIGNING_SECRET, command_body
from tests.conftest import BOT_TOKEN, CHANNEL

pytestmark = pytest.mark.e2e


def _env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**coverage_env(), **keep, **extra}


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    state: Path
    log: Path
    # Every process it started, as seen while it served (the runner's own descendants).
    started: list[psutil.Process]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def postmaster(self) -> psutil.Process | None:
        pid_file = self.state / "pgdata" / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            return psutil.Process(pid)
        except (OSError, ValueError, psutil.NoSuchProcess):
            return None


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """The state directory, outside pytest's temporary root: as root the embedded Postgres
    runs as its own user, who must be able to reach it, and pytest (any concurrent run on
    the machine too) makes its root private again (0700) whenever it starts."""
    path = ROOT / ".state" / f"e2e-{tmp_path.name}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ignore_sigint() -> None:
    # As `cmd &` in a script leaves it: SIGINT ignored from the start. SIGHUP and SIGTERM
    # are what these tests send, so they start at their defaults even when the test run
    # itself was started under `nohup` (an ignored signal is inherited across exec).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def run_command(
    tmp_path: Path,
    state: Path,
    slack: FakeSlack,
    name: str,
    *,
    leave_postgres: bool = False,
    **extra: str,
) -> Iterator[Running]:
    """`scripts/run` started in the background (SIGINT ignored), waited on until ready.
    Whatever happens, everything it started is killed at the end (the embedded Postgres
    too, unless `leave_postgres`)."""
    port = free_port()
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = _env(
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_BASE_URL=slack.base_url,
        COFFEEBUDDY_STATE_DIR=str(state),
        COFFEEBUDDY_WORKER_METRICS_PORT=str(free_port()),
        TMPDIR=str(tmp_path / "tmp"),
        **extra,
    )
    env.setdefault("GUNICORN_BIND", f"127.0.0.1:{port}")
    port = int(env["GUNICORN_BIND"].rsplit(":", 1)[1])
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "run")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ignore_sigint,
        )
    running = Running(proc, port, state, log, [])
    try:
        client = HttpClient(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError):
                if client.get("/health/ready").status_code == 200:
                    break
            assert proc.poll() is None, running.output()
            assert time.monotonic() < deadline, running.output()
            time.sleep(0.2)
        running.started = psutil.Process(proc.pid).children(recursive=True)
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for process in running.started:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        postmaster = running.postmaster()
        if postmaster is not None and not leave_postgres:
            postmaster.kill()


def _gone(processes: list[psutil.Process], timeout: float = 40) -> list[psutil.Process]:
    """Those still alive after `timeout` seconds."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


def _jobs_list(state: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("jobs", "list", env=_env(COFFEEBUDDY_STATE_DIR=str(state)), timeout=60)


def test_run_command_serves_and_sigterm_stops_everything(
    tmp_path: Path, state: Path, slack: FakeSlack
) -> None:
    port = free_port()
    with run_command(
        tmp_path, state, slack, "run", GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="1"
    ) as running:
        client = HttpClient(f"http://127.0.0.1:{port}")
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

        output = running.output()
        # GUNICORN_BIND and GUNICORN_WORKERS are honoured: one web worker, on that address.
        assert f"web on http://127.0.0.1:{port}" in output
        assert "/slack/events" in output
        gunicorns = [p for p in running.started if "gunicorn" in " ".join(p.cmdline())]
        assert len(gunicorns) == 2, gunicorns  # the master and its one worker
        # The embedded database's URL is printed, and the jobs CLI finds it by itself.
        assert "DATABASE_URL=postgresql://" in output
        listed = _jobs_list(running.state)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("ID  KIND"), listed.stdout

        postmaster = running.postmaster()
        assert postmaster is not None
        # SIGINT is ignored here (a background job): SIGTERM is what `kill` sends.
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(timeout=60) == 0, output
        assert not _gone([*running.started, postmaster]), running.output()

    # The embedded Postgres lives under the state dir and was stopped with the service; the
    # runner's temporary files went with it.
    assert (state / "pgdata" / "PG_VERSION").exists()
    assert not (state / "pgdata" / "postmaster.pid").exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_after_a_kill_the_next_run_works_and_stops_cleanly(
    tmp_path: Path, state: Path, slack: FakeSlack
) -> None:
    with run_command(tmp_path, state, slack, "first") as first:
        postmaster = first.postmaster()
        assert postmaster is not None
        # The runner is killed outright: its children die with it, the reaper stops the
        # embedded Postgres.
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        assert not _gone([*first.started, postmaster]), first.output()
    assert not (state / "pgdata" / "postmaster.pid").exists()

    with run_command(tmp_path, state, slack, "second", leave_postgres=True) as second:
        postmaster = second.postmaster()
        assert postmaster is not None
        # Worse: the reaper dies too, and the embedded Postgres outlives the run.
        reapers = [p for p in second.started if "coffeebuddy.local.reaper" in " ".join(p.cmdline())]
        assert len(reapers) == 1
        reapers[0].kill()
        second.proc.send_signal(signal.SIGKILL)
        second.proc.wait(timeout=10)
        assert not _gone([p for p in second.started if p.pid != postmaster.pid])
        assert postmaster.is_running()

    with run_command(tmp_path, state, slack, "third") as third:
        # The running server is adopted, and this time SIGHUP (a closed terminal) stops it.
        assert third.postmaster() is not None
        third.proc.send_signal(signal.SIGHUP)
        assert third.proc.wait(timeout=60) == 0, third.output()
        assert not _gone([*third.started, postmaster]), third.output()
    assert not (state / "pgdata" / "postmaster.pid").exists()


def _run_fails(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "run"), *args],
        cwd=ROOT,
        env=_env(COFFEEBUDDY_STATE_DIR=str(tmp_path / "state"), **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_port_in_use_is_one_line_naming_the_port_and_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run_fails(
            tmp_path,
            "--port",
            str(port),
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_BOT_TOKEN=BOT_TOKEN,
        )
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert "PORT" in line and "--port" in line
    assert not (tmp_path / "state").exists()  # nothing was started


def test_run_command_refuses_missing_config(tmp_path: Path) -> None:
    result = _run_fails(tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [
        "coffeebuddy: configuration error: SLACK_SIGNING_SECRET is required but not set",
        "coffeebuddy: configuration error: SLACK_BOT_TOKEN is required but not set",
    ]
    # Nothing was started: no database directory was created.
    assert not (tmp_path / "state").exists()
