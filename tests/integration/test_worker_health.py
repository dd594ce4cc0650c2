"""The worker's health checks on its metrics port, against a real Postgres: live while its
loop goes round, not live when the loop is stuck in a call that never returns, not ready
while the database is away, and /metrics served throughout."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from coffeebuddy.config import Config, Secret, WorkerSettings
from coffeebuddy.entry import build_worker
from coffeebuddy.jobs import maintenance
from coffeebuddy.jobs.worker import Worker
from testkit.polling import eventually
from tests.tcp_proxy import TcpProxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _live_throughout(port: int, seconds: float, *, every: float) -> None:
    """/health/live says 200 at each look for `seconds`, and /metrics still serves."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert _status(port, "/health/live") == 200
        time.sleep(every)
    status, metrics = _get(port, "/metrics")
    assert status == 200 and "coffeebuddy_job_queue_depth" in metrics


def _status(port: int, path: str) -> int:
    return _get(port, path)[0]


class Running:
    """A worker whose loop runs on a thread, serving its HTTP port."""

    def __init__(self, worker: Worker, stats_interval_seconds: float) -> None:
        self.worker = worker
        self.port = _free_port()
        worker.settings = WorkerSettings(
            metrics_port=self.port, stats_interval_seconds=stats_interval_seconds
        )
        worker.serve_metrics()
        self.thread = threading.Thread(target=worker.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the worker loop did not stop"


@pytest.fixture
def start(config: Config) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def factory(stats_interval_seconds: float = 0.2, **overrides: Any) -> Running:
        worker = build_worker(replace(config, **overrides))
        running = Running(worker, stats_interval_seconds)
        started.append(running)
        return running

    yield factory
    for running in started:
        if running.thread.is_alive():
            running.stop()
        running.worker.database.close()


def test_a_running_worker_is_live_and_ready(start: Callable[..., Running]) -> None:
    # Nothing to do for a long while: the loop spends its time waiting on LISTEN.
    running = start(stats_interval_seconds=600, worker_poll_seconds=20)
    eventually(lambda: _status(running.port, "/health/ready") == 200, timeout=10, what="ready")
    status, body = _get(running.port, "/health/live")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "checks": {"loop": True}}
    status, body = _get(running.port, "/health/ready")
    assert json.loads(body) == {"status": "ok", "checks": {"loop": True, "database": True}}
    # A loop idling on LISTEN for longer than the threshold still beats while it waits.
    running.worker.heartbeat.threshold_seconds = 1.0
    _live_throughout(running.port, 3, every=0.2)
    running.stop()
    # A stopped loop no longer beats; the server is gone with it.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{running.port}/health/live", timeout=2)


def test_a_stuck_loop_is_not_live(start: Callable[..., Running], database_url: str) -> None:
    """The loop's own queries wait on a lock nobody releases: a real stuck call (the
    database itself answers, as /health/ready's ping shows when the loop is fine)."""
    running = start()
    running.worker.heartbeat.threshold_seconds = 1.5
    eventually(lambda: _status(running.port, "/health/live") == 200, timeout=10, what="live")
    blocker = psycopg.connect(database_url)
    try:
        blocker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        eventually(
            lambda: _status(running.port, "/health/live") == 503, timeout=10, what="not live"
        )
        status, body = _get(running.port, "/health/live")
        assert json.loads(body) == {"status": "unavailable", "checks": {"loop": False}}
        assert running.worker.heartbeat.age() > 1.5
        status, body = _get(running.port, "/health/ready")
        assert status == 503
        assert json.loads(body)["checks"] == {"loop": False, "database": True}
        # Scrapes still work while the loop is stuck.
        assert _status(running.port, "/metrics") == 200
    finally:
        blocker.rollback()
        blocker.close()
    eventually(lambda: _status(running.port, "/health/live") == 200, timeout=10, what="live again")
    eventually(
        lambda: _status(running.port, "/health/ready") == 200, timeout=10, what="ready again"
    )


def test_without_the_database_the_worker_is_live_but_not_ready(
    start: Callable[..., Running], database_url: str
) -> None:
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        running = start(database_url=Secret(url))
        eventually(lambda: _status(running.port, "/health/ready") == 200, timeout=10, what="ready")
        # Shorter than the default, still above a loop round with the database away.
        running.worker.heartbeat.threshold_seconds = 7.0
        proxy.cut()
        eventually(
            lambda: _status(running.port, "/health/ready") == 503, timeout=15, what="not ready"
        )
        _, body = _get(running.port, "/health/ready")
        assert json.loads(body)["checks"]["database"] is False
        # The loop goes on (failing to claim and waiting): a database outage is not a
        # reason to restart the worker.
        _live_throughout(running.port, 9, every=0.5)
        proxy.restore()
        eventually(
            lambda: _status(running.port, "/health/ready") == 200, timeout=20, what="ready again"
        )
        running.stop()
    finally:
        proxy.close()


def test_health_checks_that_fail_to_run_answer_503() -> None:
    def broken() -> dict[str, bool]:
        raise RuntimeError("boom")

    port = _free_port()
    server = maintenance.serve_metrics(port, addr="127.0.0.1", live=broken)
    assert server is not None
    try:
        assert _status(port, "/health/live") == 503
        assert _status(port, "/health/ready") == 200
        assert _status(port, "/metrics") == 200
    finally:
        server.shutdown()
        server.server_close()
