"""The worker runs what `coffeebuddy.jobs.kinds` declares: a kind's attempts bound its
jobs, and its `on_dead` hook runs once when one dies (and a kind without one dies quietly).
"""

from __future__ import annotations

from typing import Any

from coffeebuddy.jobs.context import Context
from coffeebuddy.jobs.kinds import JobKind
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.store import queue
from coffeebuddy.store.queue import Job
from testkit.fakes.slack_api import FakeSlack
from tests.driver import Channel, SqlFn

FLAKY = "test_flaky"


def _fail(_ctx: Context, _job: Job) -> None:
    raise RuntimeError("boom")


def _jobs(sql: SqlFn, kind: str) -> list[tuple[Any, ...]]:
    return sql("SELECT status, attempts, max_attempts FROM jobs WHERE kind = %s", kind)


def _force_due(sql: SqlFn) -> None:
    sql("UPDATE jobs SET run_at = now() WHERE status = 'queued'")


def test_a_kinds_attempts_bound_its_jobs_and_its_hook_runs_once(worker: Worker, sql: SqlFn) -> None:
    dead: list[tuple[int, str]] = []

    def on_dead(_ctx: Context, job: Job, code: str, _failure: object) -> None:
        dead.append((job.id, code))

    worker.kinds[FLAKY] = JobKind(FLAKY, _fail, attempts=2, on_dead=on_dead)
    with worker.database.transaction() as conn:
        job_id = queue.enqueue(conn, FLAKY, {})  # the row allows 8 attempts
    assert worker.run_until_idle() == 1
    assert _jobs(sql, FLAKY) == [("queued", 1, 8)]
    assert dead == []
    _force_due(sql)
    assert worker.run_until_idle() == 1
    assert _jobs(sql, FLAKY) == [("dead", 2, 8)]
    assert dead == [(job_id, "RuntimeError")]
    _force_due(sql)
    assert worker.run_until_idle() == 0
    assert len(dead) == 1


def test_a_job_may_allow_fewer_attempts_than_its_kind(worker: Worker, sql: SqlFn) -> None:
    worker.kinds[FLAKY] = JobKind(FLAKY, _fail, attempts=5)
    with worker.database.transaction() as conn:
        queue.enqueue(conn, FLAKY, {}, max_attempts=1)
    assert worker.run_until_idle() == 1
    assert _jobs(sql, FLAKY) == [("dead", 1, 1)]


def test_an_answer_gets_the_attempts_its_kind_declares(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    chan.open_run("U0ANA")
    # A modal submission has no response_url: the answer goes by chat.postEphemeral.
    assert chan.submit("U0BEN", "cortado") is None
    sql("UPDATE jobs SET max_attempts = 8 WHERE kind = %s", queue.NOTIFY_USER)
    slack.fail_next("chat.postEphemeral", status=503, times=8)
    for _ in range(6):
        chan.work()
        _force_due(sql)
    assert _jobs(sql, queue.NOTIFY_USER) == [("dead", 4, 8)]
    assert len(slack.calls("chat.postEphemeral")) == 4
