"""The work a burst leaves the worker is done after the burst, not beside it: inboxed
actions and new runs' messages are due a short pause after they arrived
(COFFEEBUDDY_BURST_QUIET_MS); a worker that finds jobs of the kind still arriving puts
them all back (no attempt counted), and once they pause, or the oldest has waited
COFFEEBUDDY_BURST_MAX_WAIT_MS, they go (a run's actions in one batch). Arrival times are
set in SQL, so nothing here depends on how fast the machine is."""

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
PACED = {"inbox": True, "burst_quiet_ms": 200, "burst_max_wait_ms": 1500}


@pytest.fixture
def paced(
    config: Config,
    app_database: Database,
    make_worker: Callable[..., Worker],
    sql: SqlFn,
    slack: FakeSlack,
) -> Channel:
    return Channel(
        SignedClient(create_app(replace(config, **PACED), database=app_database)),
        make_worker(**PACED),
        sql,
        CHANNEL,
        slack,
    )


def _jobs(sql: SqlFn, kind: str) -> list[tuple[str, int, bool]]:
    """(status, attempts, due now) of every job of `kind`, oldest first."""
    return [
        (str(s), int(a), bool(d))
        for s, a, d in sql(
            "SELECT status, attempts, run_at <= now() FROM jobs WHERE kind = %s ORDER BY id",
            kind,
        )
    ]


def _arrived(sql: SqlFn, kind: str, seconds_ago: float, *, which: str = "TRUE") -> None:
    """Make the jobs of `kind` (those `which` selects) have arrived `seconds_ago`, and be
    due now."""
    sql(
        "UPDATE jobs SET created_at = now() - make_interval(secs => %s), run_at = now()"
        f" WHERE kind = %s AND status = 'queued' AND {which}",
        seconds_ago,
        kind,
    )


def _open_run(paced: Channel, sql: SqlFn) -> str:
    run_id = paced.start("U0ANA")
    _arrived(sql, "post_run_message", 1.0)
    paced.work()
    return run_id


def _burst(paced: Channel, sql: SqlFn) -> str:
    run_id = _open_run(paced, sql)
    for person in PEOPLE:
        assert paced.submit(person, f"tea for {person}") is None  # acknowledged
    return run_id


def _orders(sql: SqlFn, run_id: str) -> int:
    return int(sql("SELECT count(*) FROM orders WHERE run_id = %s", run_id)[0][0])


@pytest.mark.parametrize("kind", ["apply_action", "post_run_message"])
def test_work_a_burst_leaves_is_due_a_pause_after_it_arrived(
    paced: Channel, sql: SqlFn, kind: str
) -> None:
    if kind == "apply_action":
        _burst(paced, sql)
    else:
        paced.start("U0ANA")
    delays = sql(
        "SELECT EXTRACT(EPOCH FROM run_at - created_at)::float8 FROM jobs WHERE kind = %s", kind
    )
    assert delays and [round(d, 3) for (d,) in delays] == [0.2] * len(delays)
    assert paced.work() == 0  # none due yet
    assert {s for s, _, _ in _jobs(sql, kind)} == {"queued"}


def test_a_burst_still_arriving_is_put_back_whole_without_counting_an_attempt(
    paced: Channel, sql: SqlFn
) -> None:
    run_id = _burst(paced, sql)
    _arrived(sql, "apply_action", 0.05)  # due, but the newest came 50 ms ago
    paced.work()
    assert _orders(sql, run_id) == 0
    # All of them wait (not just the one claimed), none lost an attempt.
    assert _jobs(sql, "apply_action") == [("queued", 0, False)] * len(PEOPLE)


def test_once_the_burst_pauses_it_is_applied_in_one_batch(
    paced: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = _burst(paced, sql)
    updates = len(slack.calls("chat.update"))
    _arrived(sql, "apply_action", 0.3)
    paced.work()
    assert _orders(sql, run_id) == len(PEOPLE)
    assert {s for s, _, _ in _jobs(sql, "apply_action")} == {"done"}
    assert len(slack.calls("chat.update")) == updates + 1  # one refresh for the batch
    for person in PEOPLE:
        assert any(f"Got your order: *tea for {person}*" in t for t in paced.told(person))


def test_a_stream_that_never_pauses_goes_once_the_oldest_waited_its_longest(
    paced: Channel, sql: SqlFn
) -> None:
    run_id = _burst(paced, sql)
    newest = f"payload->>'user_id' = '{PEOPLE[-1]}'"
    _arrived(sql, "apply_action", 2.0, which=f"NOT ({newest})")
    _arrived(sql, "apply_action", 0.0, which=newest)
    # The newest arrived just now and is not due yet: the others go anyway.
    sql(f"UPDATE jobs SET run_at = now() + interval '1 hour' WHERE {newest}")
    paced.work()
    assert _orders(sql, run_id) == len(PEOPLE) - 1
    assert [s for s, _, _ in _jobs(sql, "apply_action")] == ["done", "done", "queued"]


def test_run_messages_wait_while_commands_still_arrive(
    paced: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    """Across channels: /coffee in many channels at once is one burst for the worker."""
    paced.start("U0ANA")
    other = Channel(paced.web, paced.worker, sql, "C0OTHER0001", slack)
    slack.add_channel("C0OTHER0001", name="other")
    other.start("U0BEN")
    first = "(SELECT min(id) FROM jobs WHERE kind = 'post_run_message')"
    _arrived(sql, "post_run_message", 1.0, which=f"id = {first}")
    _arrived(sql, "post_run_message", 0.05, which=f"id > {first}")  # the other: just now
    paced.work()
    assert slack.calls("chat.postMessage") == []
    assert _jobs(sql, "post_run_message") == [("queued", 0, False)] * 2
    _arrived(sql, "post_run_message", 0.5)
    paced.work()
    assert len([c for c in slack.calls("chat.postMessage") if c.ok]) == 2


def test_a_close_does_not_wait_for_the_burst(paced: Channel, sql: SqlFn) -> None:
    """What the inbox holds is applied before a close, however fresh."""
    run_id = _burst(paced, sql)
    paced.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert paced.status(run_id) == "closed"
    assert _orders(sql, run_id) == len(PEOPLE)
