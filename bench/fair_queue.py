"""How long a colleague's confirmation waits behind one person's burst of clicks.

    .venv/bin/python -m bench.fair_queue [--clicks 400] [--latency-ms 100] [--workers 4]

One person makes `--clicks` clicks on a run, each answered with an ephemeral confirmation;
then a colleague acts once. Jobs are run by `--workers` threads, each job taking
`--latency-ms` (Slack's answer time). Printed: when the colleague's answer is sent, after
the burst was written, in three set-ups over the real queue on a fresh database:

- before: one job per click, claimed first come first served (the old claim query);
- fair claim only: one job per click, claimed by `claim_jobs` (each lane's oldest first);
- after: the clicks written by `effects.queue_ephemeral` (one person's answers about a run
  coalesce, the latest wins) and claimed by `claim_jobs`.

The machine is shared and noisy: compare figures from one run.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg.rows import dict_row

from bench.job_latency import migrated_database
from coffeebuddy import db
from coffeebuddy.service import effects
from coffeebuddy.store import queue

SPAMMER, COLLEAGUE, CHANNEL = "U0SPAM", "U0COLLEAGUE", "C0BENCH01"

# The claim query before fair lanes: due jobs strictly in run_at, id order.
FIFO_CLAIM = """
WITH due AS (
    SELECT id FROM jobs
     WHERE status = 'queued' AND run_at <= now()
     ORDER BY run_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = %(worker_id)s,
       locked_until = now() + interval '60 seconds', updated_at = now()
  FROM due WHERE jobs.id = due.id
RETURNING jobs.id, jobs.payload
"""

Claim = Callable[[db.Conn, int], list[tuple[int, dict[str, object]]]]


def fifo_claim(conn: db.Conn, limit: int) -> list[tuple[int, dict[str, object]]]:
    rows = conn.execute(FIFO_CLAIM, {"limit": limit, "worker_id": "bench"}).fetchall()
    return [(int(r["id"]), dict(r["payload"])) for r in rows]


def fair_claim(conn: db.Conn, limit: int) -> list[tuple[int, dict[str, object]]]:
    jobs = queue.claim(conn, worker_id="bench", limit=limit, lease_seconds=60)
    return [(j.id, j.payload) for j in jobs]


def write_burst(conn: db.Conn, clicks: int, *, coalesce: bool, run_id: uuid.UUID) -> None:
    def answer(user: str, text: str) -> None:
        if coalesce:
            effects.queue_ephemeral(
                conn,
                run_id,
                channel=CHANNEL,
                user=user,
                text=text,
                response_url=None,
                correlation_id=None,
            )
        else:  # one job per click, as before
            queue.enqueue(conn, queue.NOTIFY_USER, {"user": user, "text": text}, run_id=run_id)

    for i in range(clicks):
        answer(SPAMMER, f"click {i}")
    answer(COLLEAGUE, "your order")


def colleague_wait(
    url: str, claim: Claim, clicks: int, coalesce: bool, latency: float, workers: int
) -> float:
    run_id = uuid.uuid4()
    with psycopg.connect(url, row_factory=dict_row) as conn:
        conn.execute("DELETE FROM jobs")
        write_burst(conn, clicks, coalesce=coalesce, run_id=run_id)
        conn.commit()
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            while True:
                batch = claim(conn, workers)
                conn.commit()
                if not batch:
                    raise RuntimeError("the colleague's job never came")
                # Each job is one Slack call; a batch runs in parallel, one per thread.
                list(pool.map(lambda _job: time.sleep(latency), batch))
                ids = [job_id for job_id, _ in batch]
                conn.execute(
                    "UPDATE jobs SET status = 'done', finished_at = now() WHERE id = ANY(%s)",
                    (ids,),
                )
                conn.commit()
                if any(payload.get("user") == COLLEAGUE for _, payload in batch):
                    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clicks", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    print(
        f"{args.clicks} clicks by one person, then one by a colleague; {args.workers} workers,"
        f" {args.latency_ms:.0f} ms per Slack call"
    )
    with migrated_database() as url:
        for label, claim, coalesce in (
            ("before (FIFO, a job per click)", fifo_claim, False),
            ("fair claim only (a job per click)", fair_claim, False),
            ("after (coalesced answers, fair claim)", fair_claim, True),
        ):
            wait = colleague_wait(url, claim, args.clicks, coalesce, latency, args.workers)
            print(f"{label:<40} colleague answered after {wait:7.2f} s")


if __name__ == "__main__":
    main()
