"""What one web pod sustains, measured: steady load at rising rates against the web as
`k8s/base` runs it (gunicorn with `GUNICORN_WORKERS=2`, a limit of one CPU).

    .venv/bin/python -m bench.pod [--seconds 6] [--form-rates 100,200,...] [--coffee-rates 50,...]

The web's gunicorn master and workers are pinned to CPU 0, alone; everything else
(Postgres, the job worker, the fake Slack, this client and its sender process) to CPU 1,
as if they ran elsewhere. Postgres's processes get their affinity back at the end.

Two kinds of load, each at every rate for `--seconds`, requests spread evenly, sent and
timed by `bench.sender` (open loop: a slow answer does not slow the next request down):
- order-form saves on runs open in 10 channels, each with a new text, so each is a change
  the inbox queues (the same path as "Use my usual");
- `/coffee` in a channel of its own (a whole transaction in the request).
Between steps the worker settles. Prints per step: requests, how many were answered 200,
client p50/p95/p99, and how busy the web's core was; then the highest rate whose p99
stayed under 50 ms (the burst goal) and under 3 s (Slack's deadline) with every request
answered.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.cpu import cpu_seconds
from bench.request_latency import DRINKS, percentile
from bench.sender import Sender
from bench.setup import bench_service, wait_for_no_due_jobs
from bench.soak import ServiceProcesses, autovacuum_on, vacuum
from simulator import HttpAnswer, Simulator
from testkit.slack_payloads import command_body, sign, view_submission_body

WEB_CPU = 0
REST_CPU = 1
GOAL_P99_MS = 50.0
SLACK_DEADLINE_MS = 3000.0
RUN_CHANNELS = 10


@dataclass(frozen=True)
class Step:
    kind: str
    rate: int
    sent: int
    ok: int
    p50: float
    p95: float
    p99: float
    web_busy: float  # share of the web's core used during the step

    @property
    def held(self) -> bool:
        return self.ok == self.sent

    def line(self) -> str:
        return (
            f"{self.kind:<10} {self.rate:>6}/s │ {self.sent:>5} {self.ok:>5} │ {self.p50:>7.1f}"
            f" {self.p95:>7.1f} {self.p99:>8.1f} │ {self.web_busy:>6.0%}"
        )


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _pin(pids: Sequence[int], cpus: set[int]) -> None:
    for pid in pids:
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                os.sched_setaffinity(int(task), cpus)
        except OSError:
            continue


def _fire(
    sender: Sender, url: str, bodies: Sequence[bytes], rate: int, pool: ThreadPoolExecutor
) -> list[HttpAnswer]:
    """Send `bodies` at `rate` a second, evenly spaced, starting shortly; their answers."""
    start = time.monotonic() + 0.5
    gap = 1.0 / rate

    def one(index: int) -> HttpAnswer:
        body = bodies[index]
        with sender.due(start + index * gap):
            return sender.send(url, body, sign(body), 30.0)

    return list(pool.map(one, range(len(bodies))))


class PodBench:
    def __init__(self, url: str, web: str, sender: Sender, seconds: float) -> None:
        self.url = url
        self.web = web
        self.sender = sender
        self.seconds = seconds
        self.processes = ServiceProcesses.find()
        self.pool = ThreadPoolExecutor(max_workers=400)
        self.autovacuum = autovacuum_on(url)
        self.steps: list[Step] = []

    def step(self, kind: str, rate: int, path: str, bodies: Sequence[bytes]) -> None:
        with psycopg.connect(self.url) as conn:
            wait_for_no_due_jobs(conn, ahead="2 seconds", timeout=180, every=0.2)
        if not self.autovacuum:
            vacuum(self.url)
        web = [self.processes.web_master, *self.processes.web_workers]
        cpu_before, began = cpu_seconds(web), time.monotonic()
        answers = _fire(self.sender, self.web + path, bodies, rate, self.pool)
        busy = (cpu_seconds(web) - cpu_before) / max(time.monotonic() - began - 0.5, 1e-9)
        ms = sorted(a.elapsed * 1000 for a in answers)
        step = Step(
            kind,
            rate,
            len(answers),
            sum(a.ok for a in answers),
            percentile(ms, 50),
            percentile(ms, 95),
            percentile(ms, 99),
            busy,
        )
        self.steps.append(step)
        print(step.line(), flush=True)

    def forms(self, rates: Sequence[int], users: Sequence[str], runs: Sequence[str]) -> None:
        serial = iter(range(10**9))
        for rate in rates:
            n = int(rate * self.seconds)
            bodies = [
                view_submission_body(
                    user_id=users[i % len(users)],
                    run_id=runs[i % len(runs)],
                    order_text=f"{DRINKS[i % len(DRINKS)]} #{next(serial)}",
                )
                for i in range(n)
            ]
            self.step("order form", rate, "/slack/interactions", bodies)

    def commands(self, rates: Sequence[int], users: Sequence[str], channels: Sequence[str]) -> None:
        free = iter(channels)
        for rate in rates:
            n = int(rate * self.seconds)
            bodies = [
                command_body(user_id=users[i % len(users)], channel_id=next(free)) for i in range(n)
            ]
            self.step("/coffee", rate, "/slack/commands", bodies)

    def report(self) -> None:
        for kind in ("order form", "/coffee"):
            steps = [s for s in self.steps if s.kind == kind]
            if not steps:
                continue
            under_goal = [s.rate for s in steps if s.held and s.p99 < GOAL_P99_MS]
            under_slack = [s.rate for s in steps if s.held and s.p99 < SLACK_DEADLINE_MS]
            print(
                f"{kind}: p99 < {GOAL_P99_MS:g} ms up to"
                f" {max(under_goal, default=0)}/s; every answer within Slack's 3 s up to"
                f" {max(under_slack, default=0)}/s (of the rates tried)"
            )


def _rates(text: str) -> list[int]:
    return [int(r) for r in text.split(",") if r.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each step")
    parser.add_argument("--form-rates", default="100,200,300,400,500,600,800")
    parser.add_argument("--coffee-rates", default="50,100,150,200,300,400")
    parser.add_argument("-w", "--web-workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args()
    form_rates, coffee_rates = _rates(args.form_rates), _rates(args.coffee_rates)
    command_channels = int(sum(coffee_rates) * args.seconds) + 1
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("bench.pod needs two CPUs: one for the web pod, one for the rest")
    postgres = _postgres_pids()
    every_cpu = os.sched_getaffinity(0)
    try:
        with (
            bench_service(
                "C0POD", RUN_CHANNELS + command_channels, users=300, web_workers=args.web_workers
            ) as service,
            Sender() as sender,
        ):
            processes = ServiceProcesses.find()
            _pin([processes.web_master, *processes.web_workers], {WEB_CPU})
            _pin([os.getpid(), *processes.job_workers, *postgres, *_postgres_pids()], {REST_CPU})
            sender_pids = [
                int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_sender(p)
            ]
            _pin(sender_pids, {REST_CPU})
            sim = Simulator(service.slack, service.client.base, record=False, timeout=60)
            runs = [
                str(sim.person(service.users[i], channel).start_run().value)
                for i, channel in enumerate(service.channels[:RUN_CHANNELS])
            ]
            print(
                f"one web pod: gunicorn {args.web_workers} workers on CPU {WEB_CPU} alone;"
                f" Postgres, the job worker, the fake Slack and the client on CPU {REST_CPU};"
                f" {args.seconds:g} s per step\n"
            )
            print(
                f"{'load':<10} {'rate':>8} │ {'sent':>5} {'200':>5} │ {'p50 ms':>7} {'p95':>7}"
                f" {'p99':>8} │ {'web CPU':>6}"
            )
            bench = PodBench(service.url, service.client.base, sender, args.seconds)
            bench.forms(form_rates, service.users, runs)
            bench.commands(coffee_rates, service.users, service.channels[RUN_CHANNELS:])
            print()
            bench.report()
    finally:
        _pin(_postgres_pids(), every_cpu)


def _is_sender(proc: Path) -> bool:
    try:
        return b"bench.sender" in (proc / "cmdline").read_bytes()
    except OSError:
        return False


if __name__ == "__main__":
    main()
