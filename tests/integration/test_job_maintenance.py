"""The queue's housekeeping against a real Postgres: finished jobs are pruned by a
recurring job that exists once, the queue gauges tell operators what waits and what died,
an idle worker sleeps until the next claimable job, and the worker serves /metrics."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from coffeebuddy import db
from coffeebuddy.config import WorkerSettings
from coffeebuddy.jobs import maintenance
from coffeebuddy.jobs.kinds import JobKind
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.store import queue
from testkit.polling import eventually
from tests.driver import SqlFn, ensured_once

MakeWorker = Callable[..., Worker]


def _add(sql: SqlFn, kind: str, status: str, *, age: str = "0 seconds", **cols: Any) -> int:
    """A job that reached `status` `age` ago."""
    values: dict[str, Any] = {"kind": kind, "status": status, **cols}
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    job_id = int(sql(f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING id",
                     *values.values())[0][0])  # fmt: skip
    if status in ("done", "dead"):
        sql(
            "UPDATE jobs SET finished_at = now() - %s::interval,"
            " updated_at = now() - %s::interval WHERE id = %s",
            age,
            age,
            job_id,
        )
    return job_id


def _ids(sql: SqlFn, *statuses: str) -> set[int]:
    rows = sql("SELECT id FROM jobs WHERE status = ANY(%s)", list(statuses))
    return {int(r[0]) for r in rows}


def _prune_jobs(sql: SqlFn) -> list[tuple[Any, ...]]:
    return sql(
        "SELECT id, status, dedupe_key, EXTRACT(EPOCH FROM run_at - now())::float8"
        " FROM jobs WHERE kind = %s ORDER BY id",
        queue.PRUNE_JOBS,
    )


def _gauge(name: str, kind: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"kind": kind})


# ---- pruning -----------------------------------------------------------------------------


def test_prune_deletes_only_finished_jobs_past_their_retention(worker: Worker, sql: SqlFn) -> None:
    old_done = [_add(sql, queue.NOTIFY_USER, "done", age="25 hours") for _ in range(5)]
    recent_done = _add(sql, queue.NOTIFY_USER, "done", age="23 hours")
    old_dead = _add(sql, queue.POST_SUMMARY, "dead", age="15 days", last_error="http_503")
    recent_dead = _add(sql, queue.POST_SUMMARY, "dead", age="13 days", last_error="http_503")
    # Old but not finished: never touched, however long they waited.
    queued = _add(sql, queue.NOTIFY_USER, "queued", age="30 days")
    sql("UPDATE jobs SET created_at = now() - interval '30 days', updated_at = created_at"
        " WHERE id = %s", queued)  # fmt: skip
    running = _add(sql, queue.NOTIFY_USER, "running", locked_by="w1")
    # A coalesced job that ended as `done` without finished_at (an older retry path).
    legacy = _add(sql, queue.REFRESH_RUN_MESSAGE, "done", age="2 days")
    sql("UPDATE jobs SET finished_at = NULL WHERE id = %s", legacy)

    settings = WorkerSettings(prune_batch_size=2)
    pruned = maintenance.prune(worker.database, settings)

    assert (pruned.done, pruned.dead, pruned.more) == (6, 1, False)
    remaining = {int(r[0]) for r in sql("SELECT id FROM jobs")}
    assert remaining == {recent_done, recent_dead, queued, running}
    assert not remaining & {*old_done, old_dead, legacy}


def test_prune_stops_after_its_batch_limit_and_says_there_is_more(
    worker: Worker, sql: SqlFn
) -> None:
    for _ in range(7):
        _add(sql, queue.NOTIFY_USER, "done", age="2 days")
    settings = WorkerSettings(prune_batch_size=2, prune_max_batches=3)
    first = maintenance.prune(worker.database, settings)
    assert (first.done, first.more) == (6, True)
    second = maintenance.prune(worker.database, settings)
    assert (second.done, second.more) == (1, False)
    assert sql("SELECT count(*) FROM jobs") == [(0,)]


def test_retention_comes_from_the_settings(worker: Worker, sql: SqlFn) -> None:
    three_hours = _add(sql, queue.NOTIFY_USER, "done", age="3 hours")
    one_hour = _add(sql, queue.NOTIFY_USER, "done", age="1 hour")
    two_days_dead = _add(sql, queue.NOTIFY_USER, "dead", age="2 days")
    settings = WorkerSettings(job_retention_hours=2, dead_job_retention_days=1)
    assert maintenance.prune(worker.database, settings).dead == 1
    assert _ids(sql, "done", "dead") == {one_hour}
    assert three_hours not in _ids(sql, "done") and two_days_dead not in _ids(sql, "dead")


def test_the_prune_job_is_added_once_and_reschedules_itself(
    make_worker: MakeWorker, sql: SqlFn
) -> None:
    first, second = make_worker(), make_worker()
    ensured_once(maintenance.ensure_prune_job, first, second)
    [(job_id, status, key, due_in)] = _prune_jobs(sql)
    assert (status, key) == ("queued", maintenance.PRUNE_KEY)
    assert due_in <= 0

    old = _add(sql, queue.NOTIFY_USER, "done", age="2 days")
    # Claimed and running: a replica starting now must not add another.
    with first.database.transaction() as conn:
        [claimed] = queue.claim(conn, worker_id=first.worker_id, limit=5, lease_seconds=60)
    assert claimed.kind == queue.PRUNE_JOBS
    with second.database.transaction() as conn:
        assert not maintenance.ensure_prune_job(conn), "one is running"

    first.execute(claimed)

    assert old not in _ids(sql, "done")
    jobs = _prune_jobs(sql)
    assert [(r[0], r[1]) for r in jobs[:1]] == [(job_id, "done")]
    [(_, status, key, due_in)] = jobs[1:]
    assert (status, key) == ("queued", maintenance.PRUNE_KEY)
    interval = WorkerSettings().prune_interval_seconds
    assert interval - 60 < due_in <= interval
    # Its next run is not due yet, so nothing else runs now.
    assert second.run_until_idle() == 0


def test_a_failing_prune_retries_and_the_next_one_is_still_single(
    worker: Worker, sql: SqlFn
) -> None:
    with worker.database.transaction() as conn:
        maintenance.ensure_prune_job(conn)
    worker.kinds[queue.PRUNE_JOBS] = JobKind(queue.PRUNE_JOBS, _raise_boom)
    assert worker.run_until_idle() == 1
    [(job_id, status, _, due_in)] = _prune_jobs(sql)
    assert status == "queued" and due_in > 0, "backed off like any failed job"
    with worker.database.transaction() as conn:
        assert not maintenance.ensure_prune_job(conn)
    assert sql("SELECT last_error FROM jobs WHERE id = %s", job_id) == [("RuntimeError",)]


def _raise_boom(*_: object) -> None:
    raise RuntimeError("boom")


# ---- the worker loop does its housekeeping ----------------------------------------------


def test_a_starting_worker_prunes_at_once_and_publishes_the_gauges(
    looping: Callable[[WorkerSettings], Worker], sql: SqlFn
) -> None:
    old = _add(sql, queue.NOTIFY_USER, "done", age="3 days")
    dead = _add(sql, "probe_kind", "dead", age="1 hour", last_error="http_503")
    looping(WorkerSettings(stats_interval_seconds=0.2))

    eventually(lambda: old not in _ids(sql, "done"))
    eventually(lambda: [r[1] for r in _prune_jobs(sql)] == ["done", "queued"])
    assert eventually(lambda: _gauge("coffeebuddy_jobs_dead", "probe_kind") == 1)
    # Every kind the worker knows reads 0 rather than being absent.
    assert _gauge("coffeebuddy_jobs_dead", queue.POST_RUN_MESSAGE) == 0
    assert _gauge("coffeebuddy_job_queue_depth", queue.POST_RUN_MESSAGE) == 0

    sql("DELETE FROM jobs WHERE id = %s", dead)
    # Gone from the table, so back to 0 (not stuck at the last value).
    assert eventually(lambda: _gauge("coffeebuddy_jobs_dead", "probe_kind") == 0)


def test_queue_gauges_count_what_could_start_and_how_long_it_waited(
    worker: Worker, sql: SqlFn
) -> None:
    kind = "gauge_probe"
    for age in ("40 seconds", "10 seconds"):
        job = _add(sql, kind, "queued")
        sql("UPDATE jobs SET run_at = now() - %s::interval WHERE id = %s", age, job)
    _add(sql, kind, "queued", run_at="2999-01-01T00:00:00Z")  # scheduled: not waiting
    stale = _add(sql, kind, "running", locked_by="gone")  # its worker died 100 s ago
    sql("UPDATE jobs SET locked_until = now() - interval '100 seconds' WHERE id = %s", stale)
    live = _add(sql, kind, "running", locked_by="alive")
    sql("UPDATE jobs SET locked_until = now() + interval '30 seconds' WHERE id = %s", live)
    _add(sql, kind, "dead", last_error="missing_scope")
    _add(sql, kind, "done")

    worker.refresh_stats()

    assert _gauge("coffeebuddy_job_queue_depth", kind) == 3
    age = _gauge("coffeebuddy_job_oldest_due_age_seconds", kind)
    assert age is not None and 100 <= age < 110
    assert _gauge("coffeebuddy_jobs_dead", kind) == 1

    sql("UPDATE jobs SET status = 'done' WHERE kind = %s AND status <> 'running'", kind)
    sql("UPDATE jobs SET locked_until = now() + interval '1 minute' WHERE id = %s", stale)
    worker.refresh_stats()
    assert _gauge("coffeebuddy_job_queue_depth", kind) == 0
    assert _gauge("coffeebuddy_job_oldest_due_age_seconds", kind) == 0
    assert _gauge("coffeebuddy_jobs_dead", kind) == 0


# ---- sleeping until the next claimable job ----------------------------------------------


def _next_due_in(worker: Worker) -> float | None:
    with worker.database.transaction() as conn:
        row = db.one(conn, "next_due_in", {})
    assert row is not None
    return None if row["seconds"] is None else float(row["seconds"])


def test_an_idle_worker_does_not_spin_on_a_job_it_cannot_claim(worker: Worker, sql: SqlFn) -> None:
    assert _next_due_in(worker) is None
    # A refresh is being sent; the next one for the same message is due but must wait.
    busy = _add(sql, queue.REFRESH_RUN_MESSAGE, "running", dedupe_key="refresh:r1",
                locked_by="other")  # fmt: skip
    sql("UPDATE jobs SET locked_until = now() + interval '20 seconds' WHERE id = %s", busy)
    _add(sql, queue.REFRESH_RUN_MESSAGE, "queued", dedupe_key="refresh:r1")
    assert worker.run_until_idle() == 0, "blocked by the running one"
    wait = _next_due_in(worker)
    # Not "due now" (which made idle workers spin): next look is when that lease ends.
    assert wait is not None and 15 < wait <= 20

    # A free job due in 3 s comes first.
    free = _add(sql, queue.NOTIFY_USER, "queued")
    sql("UPDATE jobs SET run_at = now() + interval '3 seconds' WHERE id = %s", free)
    wait = _next_due_in(worker)
    assert wait is not None and 1 < wait <= 3

    sql("UPDATE jobs SET run_at = now() - interval '1 second' WHERE id = %s", free)
    wait = _next_due_in(worker)
    assert wait is not None and wait <= 0


def test_a_lost_lease_wakes_an_idle_worker_without_polling(
    make_worker: MakeWorker, sql: SqlFn
) -> None:
    kind = queue.NOTIFY_USER
    crashed = make_worker()
    # A notice with nobody to tell: a handler that does nothing, quickly.
    sql("""INSERT INTO jobs (kind, payload) VALUES (%s, '{"text": "hi"}')""", kind)
    with crashed.database.transaction() as conn:
        queue.claim(conn, worker_id=crashed.worker_id, limit=1, lease_seconds=5)
    sql("UPDATE jobs SET locked_until = now() + interval '1 second'")

    # Polls every 60 s and no NOTIFY comes: only the lease's end can wake it in time.
    survivor = make_worker(worker_poll_seconds=60)
    survivor.settings = WorkerSettings(stats_interval_seconds=600)
    thread = threading.Thread(target=survivor.run, daemon=True)
    thread.start()
    try:
        eventually(
            lambda: (
                sql("SELECT status, locked_by FROM jobs WHERE kind = %s", kind)
                == [("done", survivor.worker_id)]
            ),
            timeout=20,
        )
    finally:
        survivor.stop()
        thread.join(timeout=10)


# ---- the worker's /metrics ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_worker_serves_its_metrics(worker: Worker, sql: SqlFn) -> None:
    port = _free_port()
    worker.settings = WorkerSettings(metrics_port=port)
    _add(sql, "served_kind", "dead", last_error="invalid_auth")
    worker.refresh_stats()
    worker.serve_metrics()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert 'coffeebuddy_jobs_dead{kind="served_kind"} 1.0' in text
        assert "coffeebuddy_job_queue_depth" in text
        assert "coffeebuddy_job_oldest_due_age_seconds" in text
        # A second server on the same port can't start, and says so instead of crashing.
        assert maintenance.serve_metrics(port, addr="127.0.0.1") is None
    finally:
        worker.stop()
        worker.run()  # stops at once and shuts the server down
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_port_zero_serves_no_metrics() -> None:
    assert maintenance.serve_metrics(0) is None
