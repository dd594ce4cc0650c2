"""One person's burst can't slow everyone down: a repeated action that changes nothing
writes nothing, one person's answers about a run coalesce (the latest wins), and jobs are
claimed fairly across people and runs."""

from __future__ import annotations

from typing import Any

from coffeebuddy.slack import run_blocks
from coffeebuddy.store import queue
from tests.driver import Channel, SqlFn


def _counts(sql: SqlFn) -> tuple[int, int, int]:
    return (
        int(sql("SELECT count(*) FROM jobs")[0][0]),
        int(sql("SELECT count(*) FROM events")[0][0]),
        int(sql("SELECT count(*) FROM orders")[0][0]),
    )


def test_repeated_use_my_usual_writes_nothing(chan: Channel, sql: SqlFn) -> None:
    first = chan.start("U0ANA")
    assert chan.submit("U0BEN", "flat white", run_id=first) is None
    chan.click_and_work("U0ANA", run_blocks.ACTION_CANCEL_RUN, first)
    run_id = chan.open_run("U0ANA")
    chan.click_and_work("U0BEN", run_blocks.ACTION_USE_USUAL, run_id)
    before = _counts(sql)
    updated = sql("SELECT updated_at FROM orders WHERE run_id = %s", run_id)
    for _ in range(20):
        chan.click("U0BEN", run_blocks.ACTION_USE_USUAL, run_id)
    assert _counts(sql) == before
    assert sql("SELECT updated_at FROM orders WHERE run_id = %s", run_id) == updated


def test_the_same_order_resubmitted_writes_nothing(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA")
    assert chan.submit("U0BEN", "tea", run_id=run_id) is None
    chan.work()
    before = _counts(sql)
    for _ in range(5):
        assert chan.submit("U0BEN", "tea", run_id=run_id) is None
    assert _counts(sql) == before
    # A real change still goes through.
    assert chan.submit("U0BEN", "green tea", run_id=run_id) is None
    assert _counts(sql) != before


def test_answers_to_one_person_about_one_run_coalesce_latest_wins(
    chan: Channel, sql: SqlFn
) -> None:
    run_id = chan.open_run("U0ANA")
    # Ben may not close or cancel Ana's run: each click is a refusal to him.
    for action in (run_blocks.ACTION_CLOSE_RUN, run_blocks.ACTION_CANCEL_RUN) * 10:
        chan.click("U0BEN", action, run_id)
    queued = sql(
        "SELECT payload->>'text' FROM jobs WHERE kind = %s AND status = 'queued'",
        queue.NOTIFY_USER,
    )
    assert len(queued) == 1
    chan.work()
    told = chan.told("U0BEN")
    assert len(told) == 1
    assert told[0] == queued[0][0]


def test_jobs_are_claimed_fairly_across_lanes(worker: Any, sql: SqlFn) -> None:
    with worker.database.transaction() as conn:
        for i in range(50):
            queue.enqueue(conn, queue.NOTIFY_USER, {"user": "U0SPAM", "text": f"{i}"})
        queue.enqueue(conn, queue.NOTIFY_USER, {"user": "U0COLLEAGUE", "text": "yours"})
    with worker.database.transaction() as conn:
        claimed = queue.claim(conn, worker_id="w", limit=4, lease_seconds=60)
    users = [j.payload["user"] for j in claimed]
    # First come, first served would hand out four of the burst; fair claiming serves the
    # colleague in the first round.
    assert "U0COLLEAGUE" in users
    assert users.count("U0SPAM") == 3
