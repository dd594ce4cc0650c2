"""A burst of inboxed actions is applied after it, not beside it: an action is due a short
pause after it arrived (COFFEEBUDDY_INBOX_QUIET_MS), a worker that finds the run's actions
still arriving puts them all back (no attempt counted), and once they pause, or the oldest
has waited COFFEEBUDDY_INBOX_MAX_WAIT_MS, the run's due actions go in one batch. Arrival
times are set in SQL, so nothing here depends on how fast the machine is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from coffeebuddy.config import Config
from coffeebuddy.db import Database
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.slack import run_blocks
from coffeebuddy.web.app import create_app
from testkit.fakes.slack_api import FakeSlack
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel, SqlFn

PEOPLE = ("U0BEN", "U0CAT", "U0DAN")


@pytest.fixture
def paced(
    config: Config,
    app_database: Database,
    make_worker: Callable[..., Worker],
    sql: SqlFn,
    slack: FakeSlack,
) -> Channel:
    settings = {"inbox": True, "inbox_quiet_ms": 200, "inbox_max_wait_ms": 1500}
    return Channel(
        SignedClient(create_app(replace(config, **settings), database=app_database)),
        make_worker(**settings),
        sql,
        CHANNEL,
        slack,
    )


def _inbox(sql: SqlFn) -> list[tuple[str, int, bool]]:
    """(status, attempts, due now) of every inboxed action, oldest first."""
    return [
        (str(s), int(a), bool(d))
        for s, a, d in sql(
            "SELECT status, attempts, run_at <= now() FROM jobs"
            " WHERE kind = 'apply_action' ORDER BY id"
        )
    ]


def _burst(paced: Channel) -> str:
    run_id = paced.open_run("U0ANA")
    for person in PEOPLE:
        assert paced.submit(person, f"tea for {person}") is None  # acknowledged
    return run_id


def _arrived(sql: SqlFn, seconds_ago: float, *, which: str = "TRUE") -> None:
    """Make the inboxed actions (those `which` selects) have arrived `seconds_ago`, and
    be due now."""
    sql(
        "UPDATE jobs SET created_at = now() - make_interval(secs => %s), run_at = now()"
        f" WHERE kind = 'apply_action' AND {which}",
        seconds_ago,
    )


def _orders(sql: SqlFn, run_id: str) -> int:
    return int(sql("SELECT count(*) FROM orders WHERE run_id = %s", run_id)[0][0])


def test_an_action_is_due_a_pause_after_it_arrived(paced: Channel, sql: SqlFn) -> None:
    _burst(paced)
    delays = sql(
        "SELECT EXTRACT(EPOCH FROM run_at - created_at)::float8 FROM jobs"
        " WHERE kind = 'apply_action'"
    )
    assert [round(d, 3) for (d,) in delays] == [0.2] * len(PEOPLE)
    assert paced.work() == 0  # none due yet
    assert [s for s, _, _ in _inbox(sql)] == ["queued"] * len(PEOPLE)


def test_a_burst_still_arriving_is_put_back_whole_without_counting_an_attempt(
    paced: Channel, sql: SqlFn
) -> None:
    run_id = _burst(paced)
    _arrived(sql, 0.05)  # due, but the newest came 50 ms ago: the burst goes on
    paced.work()
    assert _orders(sql, run_id) == 0
    # All of them wait (not just the one claimed), none lost an attempt.
    assert _inbox(sql) == [("queued", 0, False)] * len(PEOPLE)


def test_once_the_burst_pauses_it_is_applied_in_one_batch(
    paced: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = _burst(paced)
    updates = len(slack.calls("chat.update"))
    _arrived(sql, 0.3)
    paced.work()
    assert _orders(sql, run_id) == len(PEOPLE)
    assert {s for s, _, _ in _inbox(sql)} == {"done"}
    assert len(slack.calls("chat.update")) == updates + 1  # one refresh for the batch
    for person in PEOPLE:
        assert any(f"Got your order: *tea for {person}*" in t for t in paced.told(person))


def test_a_stream_that_never_pauses_is_applied_once_the_oldest_waited_its_longest(
    paced: Channel, sql: SqlFn
) -> None:
    run_id = _burst(paced)
    _arrived(sql, 2.0, which=f"payload->>'user_id' <> '{PEOPLE[-1]}'")
    # The newest arrived just now (and is not due yet): the others go anyway.
    _arrived(sql, 0.0, which=f"payload->>'user_id' = '{PEOPLE[-1]}'")
    sql(
        "UPDATE jobs SET run_at = now() + interval '1 hour'"
        " WHERE kind = 'apply_action' AND payload->>'user_id' = %s",
        PEOPLE[-1],
    )
    paced.work()
    assert _orders(sql, run_id) == len(PEOPLE) - 1
    assert [s for s, _, _ in _inbox(sql)] == ["done", "done", "queued"]


def test_a_close_does_not_wait_for_the_burst(paced: Channel, sql: SqlFn) -> None:
    """What the inbox holds is applied before a close, however fresh."""
    run_id = _burst(paced)
    paced.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert paced.status(run_id) == "closed"
    assert _orders(sql, run_id) == len(PEOPLE)
