"""The inbox keeps arrival order: several real workers apply a run's inboxed actions one
batch at a time, oldest first, so a person's usual, then edit, then edit again ends as
the last edit, every time; a failing action holds back only its person's later ones;
a claim whose worker died comes back when its lease runs out; a close counts everything
acknowledged before it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from psycopg.types.json import Jsonb

from coffeebuddy.db import Database
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.service import inbox
from coffeebuddy.slack import run_blocks
from testkit.fakes.slack_api import FakeSlack
from tests.conftest import CHANNEL
from tests.driver import Channel, SqlFn, eventually

PEOPLE = [f"U0P{i:02d}" for i in range(12)]


@pytest.fixture
def chan(inbox_chan: Channel, slack: FakeSlack) -> Channel:
    for person in PEOPLE:
        slack.add_user(person, name=person.lower(), tz="Europe/Berlin")
    # This worker only sets things up (run_until_idle); the real ones are `workers`.
    return inbox_chan


class Workers:
    """Several real worker loops, each with its own pool and threads."""

    def __init__(self, make_worker: Callable[..., Worker], count: int) -> None:
        self.workers = [
            make_worker(inbox=True, worker_concurrency=4, worker_poll_seconds=0.2)
            for _ in range(count)
        ]
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for worker in self.workers:
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for thread in self.threads:
            thread.join(timeout=30)


@pytest.fixture
def workers(make_worker: Callable[..., Worker]) -> Iterator[Workers]:
    pool = Workers(make_worker, 3)
    try:
        yield pool
    finally:
        pool.stop()


def _orders(sql: SqlFn, run_id: str) -> dict[str, str]:
    return {
        str(u): str(t)
        for u, t in sql(
            "SELECT u.slack_user_id, o.order_text FROM orders o JOIN users u ON u.id = o.user_id"
            " WHERE o.run_id = %s AND o.canceled_at IS NULL",
            run_id,
        )
    }


def _inbox_settled(sql: SqlFn) -> bool:
    return not sql(
        "SELECT 1 FROM jobs WHERE kind = 'apply_action' AND status IN ('queued', 'running')"
    )


def _changes(sql: SqlFn, run_id: str, user: str) -> list[str]:
    """The person's order_updated events, in the order they were recorded."""
    return [
        str(r[0])
        for r in sql(
            "SELECT envelope->'data'->>'change' FROM events WHERE event_type = 'order_updated'"
            " AND run_id = %s AND envelope->'data'->>'user' = %s ORDER BY id",
            run_id,
            user,
        )
    ]


def _with_usuals(chan: Channel) -> str:
    """A first run gives everyone a usual ("tea <who>"); returns the second, open run."""
    first = chan.start("U0ANA")
    for person in PEOPLE:
        chan.submit(person, f"tea {person}")
    chan.work()
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, first)
    run_id = chan.open_run("U0ANA")
    return run_id


def test_a_burst_of_each_persons_usual_then_edits_ends_as_their_last_edit(
    chan: Channel, workers: Workers, sql: SqlFn
) -> None:
    run_id = _with_usuals(chan)
    # Everyone's three actions are in the inbox before any worker runs, interleaved as a
    # burst would bring them; then three workers (12 threads) go at once.
    for person in PEOPLE:
        chan.click(person, run_blocks.ACTION_USE_USUAL, run_id)
    for person in PEOPLE:
        assert chan.submit(person, f"latte {person}") is None
    for person in PEOPLE:
        assert chan.submit(person, f"flat white {person}") is None
    assert not _orders(sql, run_id)  # all acknowledged, none applied yet
    last_job = int(sql("SELECT max(id) FROM jobs")[0][0])
    workers.start()
    eventually(lambda: _inbox_settled(sql), timeout=60, what="the inbox applied")
    assert _orders(sql, run_id) == {p: f"flat white {p}" for p in PEOPLE}
    # One batch (all 36 fit in one): one refresh of the run message, not one per action.
    assert sql(
        "SELECT count(*)::int FROM jobs WHERE kind = 'refresh_run_message' AND id > %s",
        last_job,
    ) == [(1,)]
    for person in PEOPLE:
        assert _changes(sql, run_id, person) == ["placed", "changed", "changed"]
    # Each action applied exactly once.
    assert sql(
        "SELECT status, count(*)::int FROM jobs WHERE kind = 'apply_action'"
        " AND run_id = %s GROUP BY status",
        run_id,
    ) == [("done", 3 * len(PEOPLE))]
    # Then, with the workers running, more rounds arrive while batches are being applied;
    # a cancel drains that person's inbox first and cancels last.
    for round_ in range(3):
        for person in PEOPLE:
            chan.submit(person, f"mocha {round_} {person}")
            chan.click(person, run_blocks.ACTION_USE_USUAL, run_id)
            chan.submit(person, f"cortado {round_} {person}")
        chan.click(PEOPLE[0], run_blocks.ACTION_CANCEL_ORDER, run_id)
        eventually(lambda: _inbox_settled(sql), timeout=60, what="the inbox applied")
        expected = {p: f"cortado {round_} {p}" for p in PEOPLE[1:]}
        assert _orders(sql, run_id) == expected
    # The run message settles on the right count.
    workers.stop()
    assert not sql(
        "SELECT 1 FROM jobs WHERE kind = 'apply_action' AND status <> 'done' AND run_id = %s",
        run_id,
    )


def test_a_failing_action_holds_back_only_its_persons_later_actions(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = _with_usuals(chan)
    ben, cy = PEOPLE[0], PEOPLE[1]
    chan.click(ben, run_blocks.ACTION_USE_USUAL, run_id)
    # An action this code can't apply (as if written by a newer release), between Ben's
    # usual and his edit.
    sql(
        "INSERT INTO jobs (kind, payload, run_at, max_attempts, run_id, lane)"
        " VALUES ('apply_action', %s, now(), 2, %s, 'inbox:' || %s)",
        Jsonb(
            {"action": "from_the_future", "run_id": run_id, "user_id": ben, "channel_id": CHANNEL}
        ),
        run_id,
        run_id,
    )
    chan.submit(ben, "latte")
    chan.submit_and_work(cy, "mocha")
    # Ben's usual and Cy's edit are applied; Ben's edit waits behind the failed action.
    assert _orders(sql, run_id) == {ben: f"tea {ben}", cy: "mocha"}
    rows = sql(
        "SELECT payload->>'action', status, attempts, run_at > now() FROM jobs"
        " WHERE kind = 'apply_action' AND payload->>'user_id' = %s AND run_id = %s ORDER BY id",
        ben,
        run_id,
    )
    assert rows == [
        ("use_usual", "done", 1, False),
        ("from_the_future", "queued", 1, True),
        ("submit_order", "queued", 0, True),
    ]
    # Its retry fails again, its last: it is given up, Ben is told, and his edit lands.
    sql("UPDATE jobs SET run_at = now() WHERE kind = 'apply_action' AND status = 'queued'")
    chan.work()
    assert sql(
        "SELECT status, attempts FROM jobs WHERE payload->>'action' = 'from_the_future'"
    ) == [("dead", 2)]
    assert _orders(sql, run_id) == {ben: "latte", cy: "mocha"}
    assert any("couldn't save your order" in t for t in chan.told(ben))
    assert _changes(sql, run_id, ben) == ["placed", "changed"]


def test_a_claim_whose_worker_died_is_applied_in_order_after_its_lease(
    chan: Channel, make_worker: Callable[..., Worker], sql: SqlFn
) -> None:
    run_id = _with_usuals(chan)
    ben = PEOPLE[0]
    chan.click(ben, run_blocks.ACTION_USE_USUAL, run_id)
    chan.submit(ben, "latte")
    chan.submit(ben, "cortado")
    # A worker claims the first and dies before applying it.
    dead = make_worker(inbox=True)
    claimed = dead._claim(4)
    assert [j.kind for j in claimed] == ["apply_action"]  # one per run, never more
    # While its lease runs, nobody else may apply the run's actions out from under it.
    survivor = make_worker(inbox=True)
    assert survivor.run_until_idle() == 0
    assert not _orders(sql, run_id)
    sql("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE id = %s", claimed[0].id)
    survivor.run_until_idle()
    assert _orders(sql, run_id) == {ben: "cortado"}
    assert _changes(sql, run_id, ben) == ["placed", "changed", "changed"]
    assert sql(
        "SELECT DISTINCT status FROM jobs WHERE kind = 'apply_action' AND run_id = %s", run_id
    ) == [("done",)]


def test_a_close_during_a_burst_counts_every_acknowledged_order_once(
    chan: Channel, workers: Workers, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = _with_usuals(chan)
    workers.start()
    for person in PEOPLE:
        chan.click(person, run_blocks.ACTION_USE_USUAL, run_id)
        chan.submit(person, f"latte {person}")
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert chan.status(run_id) == "closed"
    # Everything acknowledged before the close is in it, each person's last word.
    assert _orders(sql, run_id) == {p: f"latte {p}" for p in PEOPLE}
    eventually(lambda: _inbox_settled(sql), timeout=60, what="the inbox applied")
    for person in PEOPLE:
        assert _changes(sql, run_id, person) == ["placed", "changed"]
    eventually(
        lambda: any(f"{len(PEOPLE)} orders" in str(m) for m in slack.messages(CHANNEL)),
        timeout=30,
        what="the summary",
    )


def test_a_drain_waits_for_the_batch_being_applied(
    chan: Channel, app_database: Database, sql: SqlFn
) -> None:
    run_id = _with_usuals(chan)
    ben = PEOPLE[0]
    chan.submit(ben, "latte")
    # Someone (a worker's batch) holds the run's inbox: a close's drain waits for it
    # instead of applying around it.
    holder = app_database.pool.getconn()
    try:
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('coffeebuddy:inbox:' || %s, 0))",
            (run_id,),
        )
        done = threading.Event()

        def drain() -> None:
            runs = chan.worker.context.runs if chan.worker else None
            assert runs is not None
            inbox.drain(runs, run_id)
            done.set()

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        assert not done.wait(0.5)
        assert not _orders(sql, run_id)
        holder.rollback()
        assert done.wait(10)
        assert _orders(sql, run_id) == {ben: "latte"}
    finally:
        app_database.pool.putconn(holder)
