"""Enqueue → start latency of a job on an idle worker, woken by LISTEN/NOTIFY.

    .venv/bin/python -m bench.job_latency [--jobs 200] [--mode thread|process|both]

Jobs are enqueued one at a time; each is waited for before the next, after a short random
pause so that the worker is idle again (back in its LISTEN wait) when the next one comes.
Polling is set to 30 s, so anything faster than that was woken by NOTIFY.

- thread: the real `Worker.run()` loop in a thread of this process, with a bench-only job
  kind whose handler notes when it started. Measured from the enqueue transaction's commit
  to the handler's first line (one clock, `perf_counter`).
- process: a real `python worker.py`, running `notify_user` jobs with nobody to tell (the
  handler returns at once). Measured on the database clock, from the enqueue transaction
  to the transaction that marked the job done: an upper bound of enqueue → start.

Target: p99 < 100 ms. The machine is shared and noisy: compare figures from one run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from bench.request_latency import percentile
from coffeebuddy.config import Config, Secret, WorkerSettings
from coffeebuddy.db.migrate import migrate
from coffeebuddy.entry import build_worker
from coffeebuddy.jobs.context import Context
from coffeebuddy.jobs.kinds import JobKind
from coffeebuddy.store import queue
from coffeebuddy.store.queue import Job
from testkit.databases import scratch_database
from testkit.fakes.slack_api import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "xoxb-bench-0000-bot-token"
BENCH_KIND = "bench_noop"
# Time for the worker to settle back into its LISTEN wait between two jobs.
IDLE_PAUSE = (0.02, 0.05)


@contextmanager
def migrated_database() -> Iterator[str]:
    with scratch_database("cb_bench") as url:
        migrate(url)
        yield url


def report(label: str, samples_ms: list[float]) -> None:
    print(
        f"{label:<44} {len(samples_ms):>5} {percentile(samples_ms, 50):>8.2f} "
        f"{percentile(samples_ms, 99):>8.2f} {max(samples_ms):>8.2f} "
        f"{statistics.fmean(samples_ms):>8.2f}"
    )


def _wait_listening(conn: psycopg.Connection[dict[str, object]]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
        ).fetchone()
        # No transaction left open: now() in the next one must be its own start.
        conn.rollback()
        if row and int(str(row["n"])) > 0:
            return
        time.sleep(0.05)
    raise SystemExit("the worker never started listening")


def bench_thread(url: str, slack: FakeSlack, jobs: int) -> list[float]:
    config = Config(
        database_url=Secret(url),
        slack_signing_secret=Secret("bench-signing-secret"),
        slack_bot_token=Secret(TOKEN),
        slack_api_base_url=slack.base_url,
        worker_poll_seconds=30,
    )
    worker = build_worker(config, WorkerSettings(metrics_port=0, stats_interval_seconds=600))
    started: dict[int, float] = {}
    arrived = threading.Event()

    def note_start(_ctx: Context, job: Job) -> None:
        started[job.id] = time.perf_counter()
        arrived.set()

    worker.kinds[BENCH_KIND] = JobKind(BENCH_KIND, note_start)
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    thread.start()
    samples: list[float] = []
    try:
        with psycopg.connect(url, row_factory=dict_row) as conn:
            _wait_listening(conn)
            time.sleep(0.5)  # let the startup housekeeping (first prune) finish
            for _ in range(jobs):
                time.sleep(random.uniform(*IDLE_PAUSE))
                arrived.clear()
                job_id = queue.enqueue(conn, BENCH_KIND, {})
                conn.commit()
                committed = time.perf_counter()
                if not arrived.wait(5) or job_id is None:
                    raise SystemExit(f"job {job_id} did not start within 5 s")
                samples.append((started[job_id] - committed) * 1000)
    finally:
        worker.stop()
        thread.join(timeout=30)
        worker.database.close()
    return samples


def bench_process(url: str, slack: FakeSlack, jobs: int) -> list[float]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": url,
        "SLACK_SIGNING_SECRET": "bench-signing-secret",
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_API_BASE_URL": slack.base_url,
        "COFFEEBUDDY_WORKER_POLL_SECONDS": "30",
        "COFFEEBUDDY_WORKER_METRICS_PORT": "0",
        "COFFEEBUDDY_WORKER_STATS_SECONDS": "600",
        "LOG_LEVEL": "WARNING",
    }
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            return _measure_done(url, jobs)
        finally:
            proc.terminate()
            if proc.wait(timeout=30) != 0:
                log.seek(0)
                print(log.read().decode(errors="replace"), file=sys.stderr)


def _measure_done(url: str, jobs: int) -> list[float]:
    samples: list[float] = []
    with psycopg.connect(url, row_factory=dict_row) as conn:
        _wait_listening(conn)
        time.sleep(0.5)
        for _ in range(jobs):
            time.sleep(random.uniform(*IDLE_PAUSE))
            job_id = queue.enqueue(conn, queue.NOTIFY_USER, {"text": "bench"})
            conn.commit()
            deadline = time.monotonic() + 5
            while True:
                row = conn.execute(
                    "SELECT status, EXTRACT(EPOCH FROM finished_at - created_at)::float8"
                    " AS seconds FROM jobs WHERE id = %s",
                    (job_id,),
                ).fetchone()
                conn.rollback()
                if row and row["status"] == "done":
                    samples.append(float(str(row["seconds"])) * 1000)
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job_id} not done within 5 s: {row}")
                time.sleep(0.002)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--mode", choices=("thread", "process", "both"), default="both")
    args = parser.parse_args()

    slack = FakeSlack(token=TOKEN)
    slack.start()
    try:
        print(f"{'enqueue → start, idle worker':<44} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'max ms':>8} {'mean ms':>8}")  # fmt: skip
        if args.mode in ("thread", "both"):
            with migrated_database() as url:
                report("Worker.run() thread: commit → handler", bench_thread(url, slack, args.jobs))
        if args.mode in ("process", "both"):
            with migrated_database() as url:
                report(
                    "worker.py process: enqueue → done (DB clock)",
                    bench_process(url, slack, args.jobs),
                )
    finally:
        slack.stop()


if __name__ == "__main__":
    main()
