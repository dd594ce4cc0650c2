"""Request latency of `/coffee`, a button click and a modal submission, measured against
the real gunicorn + worker + Postgres with the fake Slack on the other side.

    .venv/bin/python -m bench.request_latency [--runs 200] [--clients 4]

Prints p50/p95/p99 per request type. The machine is shared and noisy: compare figures
from one run, not across runs.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

from bench.setup import bench_service
from coffeebuddy.slack import blocks
from tests.fakes.slack_api import FakeSlack
from tests.processes import HttpClient
from tests.slack_payloads import block_action_body, command_body, view_submission_body


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def timed(fn: Callable[[], int]) -> float:
    started = time.perf_counter()
    status = fn()
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200:
        raise SystemExit(f"unexpected HTTP {status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200, help="runs (channels) to start")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    args = parser.parse_args()

    with bench_service("C0BENCH", args.runs) as bench:
        run(bench.client, bench.slack, bench.url, bench.channels, bench.users, args.clients)


def run(
    client: HttpClient,
    slack: FakeSlack,
    url: str,
    channels: list[str],
    users: list[str],
    clients: int,
) -> None:
    lock = threading.Lock()
    results: dict[str, list[float]] = {"/coffee": [], "button click": [], "modal submit": []}

    def record(kind: str, ms: float) -> None:
        with lock:
            results[kind].append(ms)

    def start(i: int) -> None:
        body = command_body(
            user_id=users[i % len(users)],
            channel_id=channels[i],
            text="in 30m Lobby",
            response_url=slack.response_url(f"c{i}"),
        )
        record("/coffee", timed(lambda: client.post("/slack/commands", body).status_code))

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(start, range(len(channels))))

    with psycopg.connect(url) as conn:
        run_ids = [
            str(r[0])
            for r in conn.execute(
                "SELECT r.id FROM runs r JOIN channels c ON c.id = r.channel_id"
                " ORDER BY c.slack_channel_id"
            ).fetchall()
        ]

    def order(i: int) -> None:
        run_id = run_ids[i % len(run_ids)]
        user = users[i % len(users)]
        body = view_submission_body(user_id=user, run_id=run_id, order_text="flat white")
        record("modal submit", timed(lambda: client.post("/slack/interactions", body).status_code))
        click = block_action_body(
            user_id=user,
            channel_id=channels[i % len(channels)],
            action_id=blocks.ACTION_USE_USUAL,
            value=run_id,
            response_url=slack.response_url(f"a{i}"),
        )
        record("button click", timed(lambda: client.post("/slack/interactions", click).status_code))

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(order, range(len(channels))))

    print(f"{len(channels)} runs, {clients} concurrent clients, gunicorn 2 sync workers")
    print(f"{'request':<14} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for kind, samples in results.items():
        print(
            f"{kind:<14} {len(samples):>5} {percentile(samples, 50):>8.1f} "
            f"{percentile(samples, 95):>8.1f} {percentile(samples, 99):>8.1f} "
            f"{statistics.fmean(samples):>8.1f}"
        )


if __name__ == "__main__":
    main()
