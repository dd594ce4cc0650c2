"""End to end: the real worker process sends the runner reminder on time (FR6: once, within
5 seconds of its due time). The reminder is moved to a few seconds from now through the
database, so the test measures the scheduler, not a 15-minute wait."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from coffeebuddy.slack import run_blocks
from coffeebuddy.store.queue import RUNNER_REMINDER
from testkit.fakes.slack_api import FakeSlack
from testkit.processes import Service, start_service
from tests.conftest import CHANNEL
from tests.driver import Channel, runner_of

pytestmark = pytest.mark.e2e

DUE_IN_SECONDS = 3
ALLOWED_LATENESS_SECONDS = 5


@pytest.fixture
def service(database_url: str, slack: FakeSlack) -> Iterator[Service]:
    with start_service(database_url, slack.base_url) as running:
        yield running


def _reminders(slack: FakeSlack, user: str) -> list[dict[str, Any]]:
    # "⏰ Pickup 09:32, Lobby cafe: 2 orders"
    return [m for m in slack.dms(user) if str(m.get("text")).startswith("⏰")]


def test_reminder_is_sent_once_within_five_seconds(
    service: Service, slack: FakeSlack, sql: Any
) -> None:
    chan = Channel(service.client, None, sql, CHANNEL, slack)
    assert "Starting your coffee run" in chan.command("U0ANA", "in 20m Lobby cafe")["text"]
    run_id = chan.run_id()
    slack.wait_for(lambda: slack.messages(CHANNEL))
    assert chan.submit("U0BEN", "flat white") is None
    assert chan.submit("U0CAT", "tea") is None
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    slack.wait_for(lambda: len(slack.messages(CHANNEL)) >= 2, timeout=15)
    runner = runner_of(sql, run_id)
    slack.wait_for(lambda: slack.dms(runner), timeout=15)  # the "you're the runner" DM
    assert _reminders(slack, runner) == []

    # The reminder's time comes in a few seconds: its job and the run move together.
    moved = sql(
        "WITH j AS (UPDATE jobs SET run_at = now() + make_interval(secs => %s)"
        "           WHERE kind = %s AND run_id = %s AND status = 'queued' RETURNING id)"
        " UPDATE runs SET reminder_at = now() + make_interval(secs => %s)"
        " WHERE id = %s AND EXISTS (SELECT 1 FROM j) RETURNING reminder_at",
        DUE_IN_SECONDS,
        RUNNER_REMINDER,
        run_id,
        DUE_IN_SECONDS,
        run_id,
    )
    assert moved, "no queued reminder job"

    slack.wait_for(lambda: _reminders(slack, runner), timeout=DUE_IN_SECONDS + 15)

    def recorded() -> tuple[Any, ...] | None:
        row = sql("SELECT reminder_sent_at, reminder_at FROM runs WHERE id = %s", run_id)[0]
        return row if row[0] is not None else None

    # The worker records the send right after Slack accepted it.
    deadline = time.monotonic() + 10
    while (row := recorded()) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert row is not None, "the reminder was never recorded as sent"
    sent_at, due_at = row
    lateness = (sent_at - due_at).total_seconds()
    assert 0 <= lateness < ALLOWED_LATENESS_SECONDS, f"reminder {lateness:.3f}s late"

    time.sleep(1.0)  # let any stray duplicate arrive before counting
    assert len(_reminders(slack, runner)) == 1
    assert sql(
        "SELECT count(*) FROM events WHERE run_id = %s AND event_type = 'reminder_sent'", run_id
    ) == [(1,)]
    assert sql(
        "SELECT status FROM jobs WHERE kind = %s AND run_id = %s", RUNNER_REMINDER, run_id
    ) == [("done",)]
