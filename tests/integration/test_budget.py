"""The Slack rate budget shared by every worker replica (issue 16), against a real Postgres
and the fake Slack enforcing Slack's tiers: several workers share one budget and stay
under the limit, a 429 pauses the method for every replica, and refreshes of the run
message go last, late ones showing the latest count."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from coffeebuddy.jobs.worker import Worker
from coffeebuddy.metrics import SLACK_DEFERRED, SLACK_RATE_LIMITED
from coffeebuddy.slack.budget import Budget, Limit
from coffeebuddy.store import queue
from testkit.fakes.slack_api import FakeSlack, RateLimits
from tests.conftest import CHANNEL
from tests.driver import Channel, SqlFn

MakeWorker = Callable[..., Worker]


def _budgeted(worker: Worker, sizes: dict[str, Limit]) -> Worker:
    """`worker` with a budget of its own connection pool: one replica of many."""
    worker.context = replace(worker.context, budget=Budget(worker.database, sizes))
    return worker


def _replace_jobs(sql: SqlFn, ts: str, n: int) -> None:
    """`n` chat.update calls a person waits for (replace_message), all due now."""
    for i in range(n):
        sql(
            "INSERT INTO jobs (kind, payload) VALUES (%s, jsonb_build_object("
            "'channel', %s::text, 'ts', %s::text, 'text', %s::text))",
            queue.REPLACE_MESSAGE,
            CHANNEL,
            ts,
            f"version {i}",
        )


def _updates(slack: FakeSlack) -> tuple[int, int]:
    """(chat.update calls Slack accepted, 429 answers of any method)."""
    ok = sum(1 for c in slack.calls("chat.update") if c.ok)
    return ok, sum(1 for c in slack.calls() if c.status == 429)


def _counter(counter: object, *labels: str) -> float:
    return float(counter.labels(*labels)._value.get())  # type: ignore[attr-defined]


@pytest.fixture
def posted(chan: Channel) -> Channel:
    """A channel whose run message is posted (by a worker without a budget)."""
    chan.open_run("U0ANA")
    return chan


def _message_ts(sql: SqlFn) -> str:
    return str(sql("SELECT message_ts FROM runs")[0][0])


@pytest.fixture
def running() -> Iterator[Callable[[Worker], None]]:
    """Run workers' real loops in threads; all stopped (and joined) at the end."""
    threads: list[tuple[Worker, threading.Thread]] = []

    def start(worker: Worker) -> None:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        threads.append((worker, thread))

    yield start
    for worker, _ in threads:
        worker.stop()
    for _, thread in threads:
        thread.join(timeout=30)


def test_replicas_share_one_budget_and_stay_under_the_tier(
    posted: Channel,
    make_worker: MakeWorker,
    sql: SqlFn,
    slack: FakeSlack,
    running: Callable[[Worker], None],
) -> None:
    ts = _message_ts(sql)
    # Tier 3 squeezed into 4 s so the test needn't wait minutes: 6 calls per window.
    slack.enforce_rate_limits(RateLimits(tier3_per_minute=6, window_seconds=4.0))
    sizes = {"chat.update": Limit(6, 4.0 + 0.3)}
    replicas = [_budgeted(make_worker(), sizes) for _ in range(2)]
    deferred_before = _counter(SLACK_DEFERRED, "chat.update", "person")
    jobs = 12
    _replace_jobs(sql, ts, jobs)
    for replica in replicas:
        running(replica)

    deadline = time.monotonic() + 60
    while sql("SELECT count(*) FROM jobs WHERE kind = %s AND status = 'done'",
              queue.REPLACE_MESSAGE)[0][0] < jobs:  # fmt: skip
        assert time.monotonic() < deadline, slack.dump()
        time.sleep(0.1)

    ok, refused = _updates(slack)
    assert (ok, refused) == (jobs, 0)
    # Both replicas did some of the work, and the budget did hold calls back.
    finishers = {r[0] for r in sql("SELECT locked_by FROM jobs WHERE kind = %s",
                                   queue.REPLACE_MESSAGE)}  # fmt: skip
    assert finishers == {r.worker_id for r in replicas}
    assert _counter(SLACK_DEFERRED, "chat.update", "person") > deferred_before
    assert sql("SELECT count(*) FROM jobs WHERE status = 'dead'")[0][0] == 0


def test_the_same_load_without_the_budget_is_refused(
    posted: Channel,
    make_worker: MakeWorker,
    sql: SqlFn,
    slack: FakeSlack,
    running: Callable[[Worker], None],
) -> None:
    """The control for the test above: the tier is real, two replicas go over it."""
    ts = _message_ts(sql)
    slack.enforce_rate_limits(RateLimits(tier3_per_minute=6, window_seconds=4.0))
    _replace_jobs(sql, ts, 12)
    for _ in range(2):
        running(make_worker())
    deadline = time.monotonic() + 30
    while _updates(slack)[1] == 0:
        assert time.monotonic() < deadline, "no 429 without the budget"
        time.sleep(0.05)


def test_a_429_pauses_the_method_for_every_replica(
    posted: Channel, make_worker: MakeWorker, sql: SqlFn, slack: FakeSlack
) -> None:
    ts = _message_ts(sql)
    sizes = {"chat.update": Limit(10, 1.0)}
    one, two = (_budgeted(make_worker(), sizes) for _ in range(2))
    limited_before = _counter(SLACK_RATE_LIMITED, "chat.update")
    slack.fail_next("chat.update", status=429, retry_after=5)

    _replace_jobs(sql, ts, 1)
    assert one.run_until_idle() == 1
    first = sql("SELECT last_error, EXTRACT(EPOCH FROM run_at - now()) FROM jobs"
                " WHERE kind = %s", queue.REPLACE_MESSAGE)[0]  # fmt: skip
    assert first[0] == "ratelimited" and first[1] > 4

    # The other replica has tokens of its own to spend, but the pause is shared: its job
    # waits for the end of the pause without calling Slack.
    _replace_jobs(sql, ts, 1)
    assert two.run_until_idle() == 1
    rows = sql("SELECT last_error, EXTRACT(EPOCH FROM run_at - now()) FROM jobs"
               " WHERE kind = %s ORDER BY id", queue.REPLACE_MESSAGE)  # fmt: skip
    assert rows[1][0] == "over_budget"
    assert rows[1][1] > 4
    assert len(slack.calls("chat.update")) == 1
    assert _counter(SLACK_RATE_LIMITED, "chat.update") == limited_before + 1

    # Once the pause is over, both go out.
    sql("UPDATE slack_budget SET paused_until = now(), granted = '{}'")
    sql("UPDATE jobs SET run_at = now() WHERE status = 'queued'")
    assert one.run_until_idle() == 2
    assert _updates(slack) == (2, 1)


def test_refreshes_go_last_and_a_late_one_shows_the_latest_count(
    posted: Channel, make_worker: MakeWorker, sql: SqlFn, slack: FakeSlack
) -> None:
    chan = posted
    ts = _message_ts(sql)
    # Five calls an hour: what is spent stays spent. Refreshes leave the last one.
    replica = _budgeted(make_worker(), {"chat.update": Limit(5, 3600.0)})
    chan.worker = replica
    budget = replica.context.budget
    assert budget is not None
    for _ in range(4):  # calls someone waited for: only the reserve is left
        budget.take("chat.update")

    chan.submit_and_work("U0BEN", "tea")
    # The reserve is for people: the refresh waits, and says why.
    refresh = sql("SELECT status, last_error FROM jobs WHERE kind = %s",
                  queue.REFRESH_RUN_MESSAGE)  # fmt: skip
    assert refresh == [("queued", "over_budget")]
    assert len(slack.calls("chat.update")) == 0

    # Meanwhile a call a person waits for still gets the last place, and more people order.
    assert budget.try_take("chat.update").granted
    for user in ("U0CAT", "U0DAN", "U0EVE", "U0FAY", "U0GUS"):
        chan.submit(user, "flat white")
    sql("UPDATE jobs SET run_at = now() WHERE status = 'queued'")
    chan.work()
    # Six orders, one refresh still waiting: the clicks joined it.
    assert sql("SELECT count(*) FROM jobs WHERE kind = %s AND status = 'queued'",
               queue.REFRESH_RUN_MESSAGE)[0][0] == 1  # fmt: skip
    assert len(slack.calls("chat.update")) == 0

    # The budget frees up: one update, showing everyone who ordered meanwhile.
    sql("UPDATE slack_budget SET granted = '{}'")
    sql("UPDATE jobs SET run_at = now() WHERE status = 'queued'")
    chan.work()
    updates = [c for c in slack.calls("chat.update") if c.args.get("ts") == ts]
    assert len(updates) == 1
    assert "6 in so far" in updates[0].args["text"]


def test_deferred_calls_come_back_spread_out(make_worker: MakeWorker) -> None:
    """No thundering herd: calls that could not go come back spread one share of the
    window apart, and refreshes queue apart from the calls people wait for."""
    replica = make_worker()
    budget = Budget(replica.database, {"chat.update": Limit(1, 1.0)})
    assert budget.try_take("chat.update").granted
    waits = [budget.try_take("chat.update").wait_seconds for _ in range(3)]
    assert all(0.9 <= b - a <= 1.1 for a, b in itertools.pairwise(waits)), waits
    low = budget.try_take("chat.update", low=True)
    assert not low.granted and low.wait_seconds >= 1.0
    # Places that free together are promised one each, then one share of the window apart.
    burst = Budget(replica.database, {"views.publish": Limit(3, 2.0)})
    assert all(burst.try_take("views.publish").granted for _ in range(3))
    waits = [burst.try_take("views.publish").wait_seconds for _ in range(4)]
    assert all(1.5 <= w <= 2.0 for w in waits[:3]), waits
    assert waits[3] >= waits[2] + 0.6, waits
    # chat.postMessage is budgeted per channel: one channel's posts don't hold another's.
    assert budget.limits.get("chat.postMessage") is None
    per_channel = Budget(replica.database, {"chat.postMessage": Limit(1, 2.0)})
    assert per_channel.try_take("chat.postMessage", channel="C1").granted
    assert not per_channel.try_take("chat.postMessage", channel="C1").granted
    assert per_channel.try_take("chat.postMessage", channel="C2").granted
