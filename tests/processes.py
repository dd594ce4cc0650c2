"""Run the real service as child processes (gunicorn + worker) for end-to-end tests and
benchmarks, and talk to it over HTTP as Slack does."""

from __future__ import annotations

import json
import os
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import BOT_TOKEN
from tests.slack_payloads import SIGNING_SECRET, sign

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


def coverage_env() -> dict[str, str]:
    """What coverage.py needs to measure the child processes too (when it is running)."""
    return {k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")}


@contextmanager
def start_service(
    database_url: str,
    slack_base_url: str,
    *,
    web_workers: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Service]:
    """gunicorn and the worker as child processes; stopped with SIGTERM on exit."""
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
    worker_log = (logs / "worker.log").open("wb")
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "app:app", "--config", "gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=web_log,
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
    )
    client = HttpClient(f"http://127.0.0.1:{port}")
    try:
        _wait_ready(client, web, logs)
        yield Service(web, worker, client, logs)
    finally:
        for proc in (web, worker):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (web, worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        web_log.close()
        worker_log.close()


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
