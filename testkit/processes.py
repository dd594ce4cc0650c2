"""Run the real service as child processes (gunicorn + worker) for end-to-end tests and
benchmarks, and talk to it over HTTP as Slack does."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit import BOT_TOKEN
from testkit.slack_payloads import SIGNING_SECRET, sign

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    status_code: int
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class HttpClient:
    def __init__(self, base: str) -> None:
        self.base = base

    def post(self, path: str, body: bytes) -> Result:
        request = urllib.request.Request(
            self.base + path, data=body, headers=sign(body), method="POST"
        )
        return self._send(request)

    def get(self, path: str) -> Result:
        return self._send(urllib.request.Request(self.base + path))

    def _send(self, request: urllib.request.Request) -> Result:
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return Result(answer.status, answer.read().decode())
        except urllib.error.HTTPError as exc:
            return Result(exc.code, exc.read().decode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    web: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    client: HttpClient
    logs: Path
    # With `workers=n`: the other n-1 worker processes, and each worker's /metrics port
    # (in the order of `workers`).
    extra_workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_ports: list[int] = field(default_factory=list)
    # Keep the logs directory after the service stops (for someone to read); otherwise
    # it is removed, unless the block ended with an exception.
    keep_logs: bool = False

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return [self.worker, *self.extra_workers]

    def worker_log(self, index: int) -> Path:
        return self.logs / ("worker.log" if index == 0 else f"worker-{index + 1}.log")


def coverage_env() -> dict[str, str]:
    """What coverage.py needs to measure the child processes too (when it is running)."""
    return {k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")}


def run_cli(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m coffeebuddy ARGS` from the repository root, its output captured as text;
    the caller checks the exit code."""
    return subprocess.run(
        [sys.executable, "-m", "coffeebuddy", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def start_service(
    database_url: str,
    slack_base_url: str,
    *,
    web_workers: int = 2,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    separate_metrics: bool = False,
) -> Iterator[Service]:
    """gunicorn and `workers` worker processes as children; stopped with SIGTERM on exit.
    Each worker serves /metrics on a port of its own (`Service.metrics_ports`).

    By default every process shares one PROMETHEUS_MULTIPROC_DIR, so each /metrics shows
    all of them. With `separate_metrics`, each worker process gets a directory of its own,
    as in separate pods: the web's and the workers' /metrics then add up to the whole."""
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="cb-e2e-"))
    metrics_dir = logs / "metrics"
    metrics_dir.mkdir()
    env = {
        **coverage_env(),
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_BASE_URL": slack_base_url,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(web_workers),
        **(extra_env or {}),
    }
    web_log = (logs / "web.log").open("wb")
    worker_logs = [
        (logs / ("worker.log" if i == 0 else f"worker-{i + 1}.log")).open("wb")
        for i in range(workers)
    ]
    metrics_ports = [free_port() for _ in range(workers)]
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "app:app", "--config", "gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=web_log,
        stderr=subprocess.STDOUT,
    )
    worker_envs = [{"COFFEEBUDDY_WORKER_METRICS_PORT": str(p), **env} for p in metrics_ports]
    if separate_metrics:
        for i, worker_env in enumerate(worker_envs):
            own = logs / f"metrics-worker-{i + 1}"
            own.mkdir()
            worker_env["PROMETHEUS_MULTIPROC_DIR"] = str(own)
    worker_procs = [
        subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=worker_env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        for worker_log, worker_env in zip(worker_logs, worker_envs, strict=True)
    ]
    client = HttpClient(f"http://127.0.0.1:{port}")
    service = Service(web, worker_procs[0], client, logs, worker_procs[1:], metrics_ports)
    failed = True
    try:
        _wait_ready(client, web, logs)
        yield service
        failed = False
    finally:
        for proc in (web, *worker_procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (web, *worker_procs):
            reap(proc, timeout=30)
        web_log.close()
        for worker_log in worker_logs:
            worker_log.close()
        if not failed and not service.keep_logs:
            shutil.rmtree(logs, ignore_errors=True)


def reap(proc: subprocess.Popen[Any], timeout: float) -> None:
    """Wait for `proc` to exit (after it was told to stop); kill it when it takes longer
    than `timeout` seconds, so no test leaves a process behind."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_ready(client: HttpClient, web: subprocess.Popen[bytes], logs: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.get("/health/ready").status_code == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline or web.poll() is not None:
            raise AssertionError("web never became ready:\n" + (logs / "web.log").read_text())
        time.sleep(0.1)
