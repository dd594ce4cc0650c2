"""End to end: several real `python worker.py` processes on one database, with gunicorn in
front and the fake Slack behind. Every job runs once however the workers share them; a
worker stopped with SIGTERM finishes what it started and exits 0; a worker killed with
SIGKILL loses nothing, because its lease runs out and another worker takes the job; a job
that died is visible on the worker's /metrics and is re-run with one command.

What "once" can mean here: delivery is at least once. A worker killed after Slack accepted
a message but before the message's ts was stored would send it again, and nothing on our
side can tell (Slack has no idempotency key). The SIGKILL test therefore kills the worker
*before* Slack accepted anything: while it waits on `conversations.open`, the call the DM
job makes before posting. The fake answers that call late (the `delay` of `fail_next`),
and answers it even after the caller is gone, which is harmless for opening a DM; the DM
itself is posted only by the worker that takes the job over.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coffeebuddy.jobs.worker import Worker
from coffeebuddy.slack import run_blocks
from coffeebuddy.store import queue
from testkit.fakes.slack_api import FakeSlack
from testkit.processes import Service, coverage_env, run_cli, start_service
from tests.conftest import CHANNEL, USERS
from tests.driver import (
    HOUSEKEEPING,
    Channel,
    SqlFn,
    connect_sql,
    eventually,
    runner_of,
    unfinished_jobs,
)

pytestmark = pytest.mark.e2e

RUNS = 20
DRINKS = ("flat white", "oat latte", "tea", "espresso", "cortado")


def _metric(port: int, name: str, **labels: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def _stop_all(service: Service) -> None:
    for proc in service.workers:
        proc.send_signal(signal.SIGTERM)
    for proc in service.workers:
        assert proc.wait(timeout=30) == 0


# ---- three workers, twenty runs --------------------------------------------------------------


@pytest.fixture
def three_workers(database_url: str, slack: FakeSlack) -> Iterator[Service]:
    extra = {
        # Two jobs at a time per worker, so that a burst needs more than one worker.
        "COFFEEBUDDY_WORKER_CONCURRENCY": "2",
        "COFFEEBUDDY_REFRESH_COALESCE_MS": "200",
    }
    with start_service(database_url, slack.base_url, workers=3, extra_env=extra) as service:
        yield service


def test_three_workers_run_every_job_exactly_once(
    three_workers: Service, slack: FakeSlack, sql: SqlFn, database_url: str
) -> None:
    service = three_workers
    channels = [f"C0MULTI{i:03d}" for i in range(RUNS)]
    for channel in channels:
        slack.add_channel(channel, name=channel.lower())
    # The first four posts take a while: the first runs' jobs can't all sit on one worker
    # (two slots each), so the others have to take part.
    slack.fail_next("chat.postMessage", delay=1.5, times=4)

    def play(index: int) -> tuple[str, list[str]]:
        thread_sql, conn = connect_sql(database_url)
        try:
            chan = Channel(service.client, None, thread_sql, channels[index], slack)
            starter = USERS[index % len(USERS)]
            run_id = chan.start(starter)
            orderers = [USERS[(index + k) % len(USERS)] for k in range(1, 4)]
            for user, drink in zip(orderers, DRINKS[index % 3 :], strict=False):
                assert chan.submit(user, drink) is None
            chan.click(starter, run_blocks.ACTION_CLOSE_RUN, run_id)
            return run_id, orderers
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        played = list(pool.map(play, range(RUNS)))
    run_ids = [run_id for run_id, _ in played]

    def all_sent() -> bool:
        rows = sql(
            "SELECT count(*) FROM runs WHERE id = ANY(%s::uuid[]) AND status = 'closed'"
            " AND message_ts IS NOT NULL AND summary_ts IS NOT NULL"
            " AND runner_dm_ts IS NOT NULL",
            run_ids,
        )
        return rows[0][0] == RUNS and not unfinished_jobs(sql)

    eventually(all_sent, timeout=60, what="every run posted, summarised and DMed")
    time.sleep(0.5)  # let any stray duplicate arrive before counting

    # Exactly one run message and one summary per channel, and they are the stored ones.
    for channel, run_id in zip(channels, run_ids, strict=True):
        posts = [
            c for c in slack.calls("chat.postMessage") if c.ok and c.args["channel"] == channel
        ]
        assert len(posts) == 2, (channel, posts)
        messages = slack.messages(channel)
        stored = sql("SELECT message_ts, summary_ts FROM runs WHERE id = %s", run_id)[0]
        # As a set: when Slack is slow the summary can land before the run message.
        assert {m["ts"] for m in messages} == set(stored), channel
    # Exactly one DM per run, to its runner, and it is the stored one.
    dm_posts = [
        c for c in slack.calls("chat.postMessage") if c.ok and str(c.args["channel"])[0] == "D"
    ]
    assert len(dm_posts) == RUNS
    stored_dms = sql(
        "SELECT u.slack_user_id, r.runner_dm_ts FROM runs r"
        " JOIN users u ON u.id = r.runner_user_id WHERE r.id = ANY(%s::uuid[])",
        run_ids,
    )
    sent_dms = {(user, m["ts"]) for user in USERS for m in slack.dms(user)}
    assert sent_dms == {(u, ts) for u, ts in stored_dms}
    # Every order confirmed once.
    confirmations = Counter(
        (e["channel"], e["user"]) for e in slack.ephemerals() if "Got your order" in e["text"]
    )
    expected = {(channels[i], user) for i, (_, users) in enumerate(played) for user in users}
    assert set(confirmations) == expected
    assert set(confirmations.values()) == {1}

    # Every job finished on its first attempt: none was ever claimed twice.
    rows = sql(
        "SELECT kind, status, attempts, locked_by FROM jobs WHERE kind <> ALL(%s)",
        list(HOUSEKEEPING),
    )
    assert {(status, attempts) for kind, status, attempts, _ in rows} <= {
        ("done", 1),
        # Reminders of the closed runs, still waiting for their time (none are due).
        ("queued", 0),
        # Inboxed actions applied in their run's batch (or a close's drain) without ever
        # being claimed themselves.
        *([("done", 0)] if any(kind == queue.APPLY_ACTION for kind, *_ in rows) else []),
    }
    assert all(a <= 1 for kind, _, a, _ in rows if kind == queue.APPLY_ACTION)
    assert not unfinished_jobs(sql)
    kinds = Counter(kind for kind, status, _, _ in rows if status == "done")
    # A message's link may still wait for the shared Slack budget (chat.getPermalink goes
    # last): its job is queued again, not failed; the messages themselves were posted.
    waiting = Counter(kind for kind, status, _, _ in rows if status == "queued")
    assert kinds[queue.POST_RUN_MESSAGE] + waiting[queue.POST_RUN_MESSAGE] == RUNS
    assert kinds[queue.POST_SUMMARY] + waiting[queue.POST_SUMMARY] == RUNS
    assert kinds[queue.DM_RUNNER] == RUNS
    # The work really was shared.
    assert len({locked_by for _, status, _, locked_by in rows if status == "done"}) >= 2
    # The three replicas keep exactly one prune job queued between them.
    prune = sql("SELECT status FROM jobs WHERE kind = %s", queue.PRUNE_JOBS)
    assert [s for (s,) in prune].count("queued") == 1
    assert {s for (s,) in prune} <= {"queued", "done"}

    assert all(proc.poll() is None for proc in service.workers)
    _stop_all(service)


# ---- SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_finishes_the_job_in_flight_claims_nothing_more_and_exits_0(
    database_url: str, slack: FakeSlack, sql: SqlFn, make_worker: Callable[..., Worker]
) -> None:
    with start_service(database_url, slack.base_url) as service:
        chan = Channel(service.client, None, sql, CHANNEL, slack)
        # The run message is accepted by Slack only after 2 s.
        slack.fail_next("chat.postMessage", delay=2)
        run_id = chan.start("U0ANA")
        eventually(
            lambda: (
                sql("SELECT status FROM jobs WHERE kind = %s", queue.POST_RUN_MESSAGE)
                == [("running",)]
            ),
            what="the post job claimed",
        )

        service.worker.send_signal(signal.SIGTERM)
        log = service.worker_log(0)
        eventually(lambda: "worker_stopping" in log.read_text(), what="SIGTERM handled")
        # Work written after SIGTERM is for the next worker, not for one that is leaving.
        slack.add_channel("C0LATER001", name="later")
        later = Channel(service.client, None, sql, "C0LATER001", slack)
        later_run = later.start("U0BEN")

        assert service.worker.wait(timeout=15) == 0

        # The job in flight completed: posted once, its ts stored, the job done.
        assert len(slack.messages(CHANNEL)) == 1
        assert sql("SELECT message_ts FROM runs WHERE id = %s", run_id) == [
            (slack.messages(CHANNEL)[0]["ts"],)
        ]
        assert sql(
            "SELECT status, attempts FROM jobs WHERE kind = %s AND run_id = %s",
            queue.POST_RUN_MESSAGE,
            run_id,
        ) == [("done", 1)]
        # The later one was never claimed, and is still there for the next worker.
        assert sql(
            "SELECT status, attempts, locked_by FROM jobs WHERE kind = %s AND run_id = %s",
            queue.POST_RUN_MESSAGE,
            later_run,
        ) == [("queued", 0, None)]
        events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
        assert events.index("worker_stopping") < events.index("worker_stopped")
        assert events[-1] == "worker_stopped"

    # The next worker picks it up; nothing was lost and nothing is sent twice.
    assert make_worker().run_until_idle() >= 1
    assert len(slack.messages("C0LATER001")) == 1
    assert len(slack.messages(CHANNEL)) == 1


# ---- SIGKILL ----------------------------------------------------------------------------------


def test_a_killed_worker_loses_no_job_and_its_dm_is_sent_once(
    database_url: str, slack: FakeSlack, sql: SqlFn
) -> None:
    extra = {"COFFEEBUDDY_JOB_LEASE_SECONDS": "5", "COFFEEBUDDY_REFRESH_COALESCE_MS": "0"}
    with start_service(database_url, slack.base_url, workers=3, extra_env=extra) as service:
        chan = Channel(service.client, None, sql, CHANNEL, slack)
        run_id = chan.start("U0ANA")
        slack.wait_for(lambda: slack.messages(CHANNEL))
        chan.submit("U0BEN", "tea")
        chan.submit("U0CAT", "latte")
        # Opening the runner's DM hangs; the DM itself can only be posted after it.
        slack.fail_next("conversations.open", delay=8)
        chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)

        def only_the_dm_is_left() -> list[tuple[Any, ...]]:
            # Everything else finished (so no other job is caught by the kill), and the DM
            # job is claimed and waiting for Slack.
            running = sql(
                "SELECT id, kind, locked_by FROM jobs WHERE status = 'running'"
                " OR (status = 'queued' AND run_at <= now())"
            )
            return running if [r[1] for r in running] == [queue.DM_RUNNER] else []

        [(job_id, _, locked_by)] = eventually(only_the_dm_is_left, what="DM job in flight")
        # Kill only once its conversations.open has reached Slack: killed earlier, the slow
        # answer would be the next worker's, and that worker would outlive its 5 s lease.
        eventually(lambda: slack.pending_faults("conversations.open") == 0, what="call sent")
        assert sql("SELECT summary_ts IS NOT NULL FROM runs WHERE id = %s", run_id) == [(True,)]
        pid = int(str(locked_by).split(":")[1])
        [victim] = [p for p in service.workers if p.pid == pid]
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL

        runner = runner_of(sql, run_id)
        slack.wait_for(lambda: slack.dms(runner), timeout=30)
        eventually(
            lambda: sql("SELECT status FROM jobs WHERE id = %s", job_id) == [("done",)],
            what="the DM job done by another worker",
        )
        # The killed worker's call is answered late too; wait for it so it is counted.
        slack.wait_for(lambda: len(slack.calls("conversations.open")) == 2, timeout=15)
        time.sleep(0.5)

        [(attempts, done_by)] = sql("SELECT attempts, locked_by FROM jobs WHERE id = %s", job_id)
        assert attempts == 2, "claimed by the killed worker, then once more after its lease"
        assert done_by != locked_by
        assert len(slack.dms(runner)) == 1
        dm_posts = [c for c in slack.calls("chat.postMessage") if str(c.args["channel"])[0] == "D"]
        assert len(dm_posts) == 1
        assert sql("SELECT runner_dm_ts FROM runs WHERE id = %s", run_id) == [
            (slack.dms(runner)[0]["ts"],)
        ]
        assert len(slack.messages(CHANNEL)) == 2  # run message and summary, once each
        assert not unfinished_jobs(sql)
        survivors = [p for p in service.workers if p is not victim]
        for proc in survivors:
            proc.send_signal(signal.SIGTERM)
        for proc in survivors:
            assert proc.wait(timeout=30) == 0


# ---- a dead job: seen on /metrics, re-run with one command -----------------------------------


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**coverage_env(), "PATH": "", "DATABASE_URL": database_url}
    return run_cli("jobs", *args, env=env, timeout=30)


def test_a_dead_job_shows_on_the_worker_metrics_and_one_command_reruns_it(
    database_url: str, slack: FakeSlack, sql: SqlFn
) -> None:
    extra = {"COFFEEBUDDY_WORKER_STATS_SECONDS": "0.2"}
    with start_service(database_url, slack.base_url, extra_env=extra) as service:
        port = service.metrics_ports[0]
        chan = Channel(service.client, None, sql, CHANNEL, slack)
        run_id = chan.start("U0ANA")
        chan.submit("U0BEN", "tea")
        slack.fail_next("conversations.open", error="missing_scope")
        chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)

        dead = eventually(
            lambda: sql("SELECT id FROM jobs WHERE kind = %s AND status = 'dead'", queue.DM_RUNNER),
            what="the DM job dead",
        )
        job_id = int(dead[0][0])
        eventually(
            lambda: _metric(port, "coffeebuddy_jobs_dead", kind=queue.DM_RUNNER) == 1,
            what="coffeebuddy_jobs_dead on the worker's /metrics",
        )
        assert _metric(port, "coffeebuddy_job_queue_depth", kind=queue.DM_RUNNER) == 0
        assert _metric(port, "coffeebuddy_job_oldest_due_age_seconds", kind=queue.DM_RUNNER) == 0
        log = service.worker_log(0).read_text().splitlines()
        dead_lines = [json.loads(line) for line in log if '"job_dead"' in line]
        assert [(e["level"], e["job_id"], e["error"]) for e in dead_lines] == [
            ("error", job_id, "missing_scope")
        ]

        listed = _cli(database_url, "list", "--status", "dead")
        assert listed.returncode == 0, listed.stderr
        assert [line.split()[:3] for line in listed.stdout.splitlines()[1:]] == [
            [str(job_id), queue.DM_RUNNER, "dead"]
        ]
        assert "missing_scope" in listed.stdout

        runner = runner_of(sql, run_id)
        assert slack.dms(runner) == []
        retried = _cli(database_url, "retry", str(job_id))
        assert retried.returncode == 0, retried.stderr
        assert f"job {job_id} ({queue.DM_RUNNER}) queued again" in retried.stdout

        slack.wait_for(lambda: slack.dms(runner), timeout=15)
        eventually(
            lambda: _metric(port, "coffeebuddy_jobs_dead", kind=queue.DM_RUNNER) == 0,
            what="the gauge back to 0",
        )
        again = _cli(database_url, "retry", str(job_id))
        assert again.returncode == 1
        assert f"job {job_id} is done, not dead" in again.stderr
        time.sleep(0.5)
        assert len(slack.dms(runner)) == 1
        _stop_all(service)
