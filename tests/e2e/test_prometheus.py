"""Metrics tested for real: a real Prometheus (Debian package `prometheus`) scrapes the
real gunicorn (two workers) and the real worker process while the test plays two coffee
runs, and its HTTP API must show every target up and counters equal to what the test did.
The exposition of both processes passes `promtool check metrics`."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coffeebuddy.slack import run_blocks
from testkit.fakes.slack_api import FakeSlack
from testkit.polling import eventually
from testkit.processes import Service, free_port, reap, start_service
from tests.conftest import CHANNEL
from tests.driver import Channel, SqlFn

pytestmark = pytest.mark.e2e

INSTALL_HINT = "install it with scripts/install_tools.sh (Debian package `prometheus`)"
WEB_JOB = "coffeebuddy-web"
WORKER_JOB = "coffeebuddy-worker"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"`{name}` is not on PATH: {INSTALL_HINT}")
    return path


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read().decode())


def _until_ok[T](
    probe: Callable[[], T], ok: Callable[[T], bool], timeout: float, what: str
) -> None:
    """Poll `probe` until `ok(value)`; on timeout, fail showing the last value seen."""
    seen: list[object] = [None]

    def check() -> bool:
        try:
            value = probe()
        except (OSError, ValueError) as exc:
            seen[0] = exc
            return False
        seen[0] = value
        return ok(value)

    eventually(check, timeout, what, every=0.2, explain=lambda: f"last seen: {seen[0]!r}")


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def targets(self) -> dict[str, str]:
        """Scrape job -> health of its (only) target."""
        data = _get_json(self.base + "/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in data}

    def value(self, query: str) -> float | None:
        """The single value of an instant query, None when it has no result."""
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
        answer = _get_json(url)
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])


@pytest.fixture
def service(database_url: str, slack: FakeSlack) -> Iterator[Service]:
    with start_service(database_url, slack.base_url, web_workers=2, separate_metrics=True) as s:
        yield s


@pytest.fixture
def prometheus(service: Service) -> Iterator[Prometheus]:
    binary = _binary("prometheus")
    home = Path(tempfile.mkdtemp(prefix="cb-prometheus-"))
    web = urllib.parse.urlsplit(service.client.base).netloc
    (worker_port,) = service.metrics_ports
    config = home / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 900ms\n"
        "scrape_configs:\n"
        f"  - job_name: {WEB_JOB}\n"
        "    metrics_path: /metrics\n"
        f"    static_configs: [{{targets: ['{web}']}}]\n"
        f"  - job_name: {WORKER_JOB}\n"
        "    metrics_path: /metrics\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{worker_port}']}}]\n"
    )
    port = free_port()
    log = (home / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> int:
            if proc.poll() is not None:
                raise AssertionError("prometheus exited:\n" + (home / "prometheus.log").read_text())
            with urllib.request.urlopen(base + "/-/ready", timeout=2) as answer:
                return int(answer.status)

        _until_ok(ready, lambda status: status == 200, 30, "prometheus ready")
        yield Prometheus(base)
    finally:
        proc.terminate()
        reap(proc, timeout=15)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def _promtool_check(exposition: str, where: str) -> None:
    checked = subprocess.run(
        [_binary("promtool"), "check", "metrics"],
        input=exposition.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    complaints = (checked.stdout + checked.stderr).decode().strip()
    assert checked.returncode == 0 and not complaints, f"promtool on {where}:\n{complaints}"


def test_prometheus_scrapes_web_and_worker(
    service: Service, prometheus: Prometheus, slack: FakeSlack, sql: SqlFn
) -> None:
    chan = Channel(service.client, None, sql, CHANNEL, slack)

    # Every target is scraped and up before anything happens.
    _until_ok(
        prometheus.targets,
        lambda t: t == {WEB_JOB: "up", WORKER_JOB: "up"},
        30,
        "both targets up",
    )

    # Run 1: started, three orders, closed.
    chan.command("U0ANA", "in 20m Lobby cafe")
    first = chan.run_id()
    for user, drink in (("U0BEN", "tea"), ("U0CAT", "flat white"), ("U0DAN", "espresso")):
        assert chan.submit(user, drink, run_id=first) is None
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, first)
    assert chan.status(first) == "closed"
    # Run 2: started and canceled.
    chan.command("U0EVE", "in 10m")
    second = chan.run_id()
    assert second != first
    chan.click("U0EVE", run_blocks.ACTION_CANCEL_RUN, second)
    assert chan.status(second) == "canceled"
    # The worker posted both run messages and the summary of run 1.
    slack.wait_for(lambda: len(slack.messages(CHANNEL)) >= 3, timeout=15)

    expected = {
        'sum(coffeebuddy_runs_total{status="started"})': 2.0,
        'sum(coffeebuddy_runs_total{status="closed"})': 1.0,
        'sum(coffeebuddy_runs_total{status="canceled"})': 1.0,
        'sum(coffeebuddy_requests_total{type="slash"})': 2.0,
        # 3 order submissions, 1 close click, 1 cancel click.
        'sum(coffeebuddy_requests_total{type="interaction"})': 5.0,
        # Runs are counted where they happen: by the web, never by the worker.
        f'sum(coffeebuddy_runs_total{{job="{WORKER_JOB}"}}) or vector(0)': 0.0,
    }

    def seen() -> dict[str, float | None]:
        return {query: prometheus.value(query) for query in expected}

    _until_ok(seen, lambda values: values == expected, 30, "counters match the runs")

    # The worker's jobs as Prometheus saw them match the jobs table once the queue is idle.
    # (Inboxed actions are not counted: a batch or a close applies many of them under one
    # claimed job, or none.)
    def done_jobs() -> tuple[float | None, int, int]:
        (done, waiting) = sql(
            "SELECT count(*) FILTER (WHERE status = 'done' AND kind <> 'apply_action'),"
            " count(*) FILTER (WHERE status IN ('queued', 'running') AND run_at <= now())"
            " FROM jobs"
        )[0]
        scraped = prometheus.value(
            f'sum(coffeebuddy_jobs_total{{job="{WORKER_JOB}",outcome="done",kind!="apply_action"}})'
        )
        return scraped, int(done), int(waiting)

    _until_ok(
        done_jobs,
        lambda seen: seen[1] > 0 and seen[2] == 0 and seen[0] == seen[1],
        30,
        "jobs done as Prometheus scraped them == jobs done in the table",
    )
    assert prometheus.targets() == {WEB_JOB: "up", WORKER_JOB: "up"}

    # The expositions Prometheus scraped are clean by promtool's rules.
    _promtool_check(service.client.get("/metrics").text, "the web's /metrics")
    (worker_port,) = service.metrics_ports
    with urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/metrics", timeout=5) as answer:
        _promtool_check(answer.read().decode(), "the worker's /metrics")
