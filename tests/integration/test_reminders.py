"""Reminders (FR6) through the HTTP endpoints, real Postgres and the worker's handlers.

Time is never slept through: a test "fast-forwards" by moving the reminder job's run_at
and the run's reminder_at to now(), exactly what the clock would have done.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from coffeebuddy.slack import run_blocks
from coffeebuddy.store.queue import LAST_CALL, RUNNER_REMINDER
from testkit.fakes.slack_api import FakeSlack
from tests.blocks import text_of
from tests.conftest import CHANNEL
from tests.driver import Channel, SqlFn, bring_reminder_forward

# ---- helpers ------------------------------------------------------------------------------


def _configure_channel(sql: SqlFn, **settings: Any) -> None:
    """Channel settings made before the first /coffee (the upsert keeps them)."""
    columns = ", ".join(settings)
    marks = ", ".join(["%s"] * len(settings))
    sql(
        f"INSERT INTO channels (slack_channel_id, {columns}) VALUES (%s, {marks})",
        CHANNEL,
        *settings.values(),
    )


def _jobs(sql: SqlFn, run_id: str, kind: str, status: str = "queued") -> list[dict[str, Any]]:
    rows = sql(
        "SELECT id, run_at, payload, dedupe_key FROM jobs"
        " WHERE kind = %s AND run_id = %s AND status = %s ORDER BY id",
        kind,
        run_id,
        status,
    )
    return [dict(zip(("id", "run_at", "payload", "dedupe_key"), r, strict=True)) for r in rows]


def _run(sql: SqlFn, run_id: str) -> dict[str, Any]:
    keys = ("status", "pickup_time", "reminder_at", "reminder_sent_at", "reminder_ts", "runner")
    rows = sql(
        "SELECT r.status, r.pickup_time, r.reminder_at, r.reminder_sent_at, r.reminder_ts,"
        " u.slack_user_id FROM runs r LEFT JOIN users u ON u.id = r.runner_user_id"
        " WHERE r.id = %s",
        run_id,
    )
    return dict(zip(keys, rows[0], strict=True))


def _now(sql: SqlFn) -> datetime:
    value = sql("SELECT now()")[0][0]
    assert isinstance(value, datetime)
    return value


def _events(sql: SqlFn, run_id: str, *types: str) -> list[dict[str, Any]]:
    rows = sql("SELECT event_type, envelope FROM events WHERE run_id = %s ORDER BY id", run_id)
    return [env for kind, env in rows if not types or kind in types]


def _fast_forward(sql: SqlFn, run_id: str) -> None:
    """The runner reminder's time has come: its job and runs.reminder_at move to now()."""
    moved = bring_reminder_forward(sql, run_id)
    assert moved, "no queued reminder job to fast-forward"


def _fast_forward_last_call(sql: SqlFn, run_id: str) -> None:
    moved = sql(
        "UPDATE jobs SET run_at = now() WHERE kind = %s AND run_id = %s AND status = 'queued'"
        " RETURNING id",
        LAST_CALL,
        run_id,
    )
    assert moved, "no queued last call job to fast-forward"


def _requeue(sql: SqlFn, run_id: str, kind: str) -> None:
    """At-least-once delivery: the job runs again (its worker died after Slack accepted)."""
    sql(
        "UPDATE jobs SET status = 'queued', run_at = now(), locked_until = NULL,"
        " finished_at = NULL WHERE kind = %s AND run_id = %s",
        kind,
        run_id,
    )


def _reminder_dms(slack: FakeSlack, user: str) -> list[dict[str, Any]]:
    # "⏰ Pickup 09:32, Lobby cafe: 3 orders" (or "⏰ Coffee run reminder: …" without a time)
    return [m for m in slack.dms(user) if str(m.get("text")).startswith("⏰")]


def _all_dms(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for c in slack.calls("conversations.open") for m in slack.dms(c.args["users"])]


def _closed_run_with_orders(chan: Channel, text: str = "in 20m Lobby cafe") -> str:
    run_id = chan.open_run("U0ANA", text)
    assert chan.submit("U0BEN", "oat flat white") is None
    assert chan.submit("U0CAT", "espresso") is None
    assert chan.submit("U0ANA", "oat flat white") is None
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert chan.status(run_id) == "closed"
    return run_id


# ---- scheduling ---------------------------------------------------------------------------


def _the_reminder(
    sql: SqlFn, run_id: str, before_pickup: timedelta
) -> tuple[datetime, dict[str, Any]]:
    """The run's one reminder job and when it is due: `before_pickup` ahead of the pickup,
    within 2 s, in the job and in the run's reminder_at alike."""
    run = _run(sql, run_id)
    assert run["pickup_time"] is not None and run["reminder_at"] is not None
    expected = run["pickup_time"] - before_pickup
    jobs = _jobs(sql, run_id, RUNNER_REMINDER)
    assert len(jobs) == 1
    assert abs((jobs[0]["run_at"] - expected).total_seconds()) <= 2
    assert abs((run["reminder_at"] - expected).total_seconds()) <= 2
    return expected, jobs[0]


def test_pickup_schedules_one_reminder_at_pickup_minus_five(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.open_run("U0ANA", "in 20m Lobby cafe")

    expected, job = _the_reminder(sql, run_id, timedelta(minutes=5))
    assert abs((job["run_at"] - (_now(sql) + timedelta(minutes=15))).total_seconds()) <= 2
    assert job["payload"]["run_id"] == run_id

    scheduled = _events(sql, run_id, "reminder_scheduled")
    assert len(scheduled) == 1
    assert scheduled[0]["data"]["kind"] == RUNNER_REMINDER
    due = datetime.fromisoformat(scheduled[0]["data"]["due_at"])
    assert abs((due - expected).total_seconds()) <= 2
    assert scheduled[0]["run_id"] == run_id and scheduled[0]["channel_id"] == CHANNEL

    # Not due yet: the worker leaves it alone and nothing is sent.
    chan.work()
    assert len(_jobs(sql, run_id, RUNNER_REMINDER)) == 1
    assert _run(sql, run_id)["reminder_sent_at"] is None
    # Last call is off by default.
    assert _jobs(sql, run_id, LAST_CALL) == []


def test_channel_offset_moves_the_reminder(chan: Channel, sql: SqlFn) -> None:
    _configure_channel(sql, reminder_offset_minutes=10)
    run_id = chan.start("U0ANA", "in 20m")
    _the_reminder(sql, run_id, timedelta(minutes=10))


def test_near_pickup_reminds_halfway_not_at_once(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA", "in 3m")
    # pickup − 5 min is already past: halfway between now and pickup instead.
    _, job = _the_reminder(sql, run_id, timedelta(seconds=90))
    assert (job["run_at"] - _now(sql)).total_seconds() > 60
    chan.work()
    assert chan.status(run_id) == "open"


def test_no_pickup_schedules_no_reminder(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.open_run("U0ANA", "Lobby cafe")
    assert _jobs(sql, run_id, RUNNER_REMINDER) == []
    assert sql("SELECT count(*) FROM jobs WHERE kind IN (%s, %s)", RUNNER_REMINDER, LAST_CALL) == [
        (0,)
    ]
    assert _run(sql, run_id)["reminder_at"] is None
    assert _events(sql, run_id, "reminder_scheduled") == []


# ---- firing -------------------------------------------------------------------------------


def test_reminder_on_closed_run_dms_the_runner_once(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = _closed_run_with_orders(chan)
    runner = _run(sql, run_id)["runner"]
    assert runner in ("U0ANA", "U0BEN", "U0CAT")
    assert _reminder_dms(slack, runner) == []  # only the "you're the runner" DM so far

    _fast_forward(sql, run_id)
    chan.work()

    reminders = _reminder_dms(slack, runner)
    assert len(reminders) == 1
    text = text_of(reminders[0])
    pickup = _run(sql, run_id)["pickup_time"]
    assert f"<!date^{int(pickup.timestamp())}^" in text  # by when
    assert "Lobby cafe" in text  # where
    assert "3 orders" in text  # how many
    assert "*To buy:* 2× oat flat white" in text and "espresso" in text  # what to buy
    order_list = [
        b for b in reminders[0]["blocks"] if str(b.get("block_id", "")).startswith("order_list")
    ]
    assert order_list
    # Nobody else got a reminder, and the channel got nothing new.
    assert sum(len(_reminder_dms(slack, u)) for u in ("U0ANA", "U0BEN", "U0CAT")) == 1
    assert len(slack.messages(CHANNEL)) == 2  # the run message and the summary

    run = _run(sql, run_id)
    assert run["reminder_sent_at"] is not None and run["reminder_ts"] == reminders[0]["ts"]
    assert [e["type"] for e in _events(sql, run_id, "reminder_due", "reminder_sent")] == [
        "reminder_due",
        "reminder_sent",
    ]
    sent = _events(sql, run_id, "reminder_sent")[0]
    assert sent["data"]["runner"] == runner and sent["channel_id"] == CHANNEL

    # The job runs again (at-least-once delivery): nothing more is sent.
    _requeue(sql, run_id, RUNNER_REMINDER)
    assert chan.work() >= 1
    assert len(_reminder_dms(slack, runner)) == 1
    assert len(_events(sql, run_id, "reminder_sent")) == 1
    assert _run(sql, run_id)["reminder_ts"] == reminders[0]["ts"]


def test_reminder_closes_a_still_open_run_then_reminds(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.open_run("U0ANA", "in 20m Lobby cafe")
    chan.submit("U0BEN", "oat flat white")
    chan.submit_and_work("U0CAT", "tea")

    _fast_forward(sql, run_id)
    chan.work()
    # The reminder waited for the summary and the runner's DM; its short wait is over.
    deferred = sql(
        "UPDATE jobs SET run_at = now() WHERE kind = %s AND run_id = %s AND status = 'queued'"
        " RETURNING last_error",
        RUNNER_REMINDER,
        run_id,
    )
    assert deferred == [("not_yet",)]
    chan.work()

    run = _run(sql, run_id)
    assert run["status"] == "closed"
    runner = run["runner"]
    assert runner in ("U0BEN", "U0CAT")
    summaries = [m for m in slack.messages(CHANNEL) if _has_order_list(m)]
    assert len(summaries) == 1
    assert "2 orders" in text_of(summaries[0])
    # The run message shows the close too.
    assert "Closed" in text_of(slack.messages(CHANNEL)[0])

    dms = slack.dms(runner)
    reminders = _reminder_dms(slack, runner)
    assert len(reminders) == 1
    assert len(dms) == 2, "the runner DM and the reminder"
    assert dms[1]["ts"] == reminders[0]["ts"], "the reminder comes after the runner DM"
    assert "2 orders" in text_of(reminders[0]) and "Lobby cafe" in text_of(reminders[0])
    assert run["reminder_sent_at"] is not None
    loser = ({"U0BEN", "U0CAT"} - {runner}).pop()
    assert slack.dms(loser) == []

    types = [e["type"] for e in _events(sql, run_id)]
    assert types.index("reminder_due") < types.index("run_closed") < types.index("reminder_sent")
    closed = _events(sql, run_id, "run_closed")[0]
    assert closed["data"]["by"] is None  # the reminder closed it, not a person


def test_reminder_cancels_an_open_run_nobody_ordered_in(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.open_run("U0ANA", "in 20m")
    _fast_forward(sql, run_id)
    chan.work()

    assert chan.status(run_id) == "canceled"
    assert _all_dms(slack) == []
    assert slack.calls("conversations.open") == []
    assert "canceled" in text_of(slack.messages(CHANNEL)[0])
    assert len(slack.messages(CHANNEL)) == 1  # no summary
    assert _run(sql, run_id)["reminder_sent_at"] is None
    canceled = _events(sql, run_id, "run_canceled")
    assert len(canceled) == 1 and canceled[0]["data"]["reason"] == "no_orders"
    assert _events(sql, run_id, "reminder_sent") == []


def test_canceled_run_gets_no_reminder(chan: Channel, sql: SqlFn, slack: FakeSlack) -> None:
    run_id = chan.open_run("U0ANA", "in 20m")
    chan.submit("U0BEN", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)
    assert chan.status(run_id) == "canceled"
    posts_before = len(slack.calls("chat.postMessage"))

    if _jobs(sql, run_id, RUNNER_REMINDER):
        _fast_forward(sql, run_id)
    chan.work()

    assert slack.calls("conversations.open") == []
    assert len(slack.calls("chat.postMessage")) == posts_before
    assert chan.status(run_id) == "canceled"
    assert _run(sql, run_id)["reminder_sent_at"] is None
    assert _events(sql, run_id, "reminder_due", "reminder_sent") == []


def test_reminders_disabled_at_firing_time_send_nothing(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.open_run("U0ANA", "in 20m")
    chan.submit_and_work("U0BEN", "tea")
    assert len(_jobs(sql, run_id, RUNNER_REMINDER)) == 1
    sql("UPDATE channels SET reminders_enabled = false WHERE slack_channel_id = %s", CHANNEL)
    posts_before = len(slack.calls("chat.postMessage"))

    _fast_forward(sql, run_id)
    chan.work()

    assert chan.status(run_id) == "open"
    assert slack.calls("conversations.open") == []
    assert len(slack.calls("chat.postMessage")) == posts_before
    assert _run(sql, run_id)["reminder_sent_at"] is None
    assert _events(sql, run_id, "reminder_due", "reminder_sent") == []


def test_reminders_disabled_on_a_closed_run_send_nothing(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = _closed_run_with_orders(chan)
    runner = _run(sql, run_id)["runner"]
    sql("UPDATE channels SET reminders_enabled = false WHERE slack_channel_id = %s", CHANNEL)
    _fast_forward(sql, run_id)
    chan.work()
    assert _reminder_dms(slack, runner) == []
    assert _run(sql, run_id)["reminder_sent_at"] is None


def test_a_reminder_job_that_is_early_sends_nothing(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    # The job became due while the run's reminder time is still ahead (the pickup moved
    # later and this is a stale job): the handler must not remind early.
    run_id = _closed_run_with_orders(chan)
    runner = _run(sql, run_id)["runner"]
    sql("UPDATE jobs SET run_at = now() WHERE kind = %s AND run_id = %s", RUNNER_REMINDER, run_id)
    chan.work()
    assert _reminder_dms(slack, runner) == []
    assert _run(sql, run_id)["reminder_sent_at"] is None


# ---- last call ------------------------------------------------------------------------------


def _last_calls(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL) if "last call" in text_of(m).lower()]


def test_last_call_is_scheduled_and_mentions_nobody(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    _configure_channel(sql, last_call_enabled=True, last_call_minutes=5)
    run_id = chan.open_run("U0ANA", "in 30m")
    chan.submit("U0BEN", "tea")
    chan.submit_and_work("U0CAT", "espresso")

    run = _run(sql, run_id)
    jobs = _jobs(sql, run_id, LAST_CALL)
    assert len(jobs) == 1
    expected = run["reminder_at"] - timedelta(minutes=5)
    assert abs((jobs[0]["run_at"] - expected).total_seconds()) <= 2
    assert (
        abs((jobs[0]["run_at"] - (run["pickup_time"] - timedelta(minutes=10))).total_seconds()) < 2
    )
    kinds = [e["data"]["kind"] for e in _events(sql, run_id, "reminder_scheduled")]
    assert sorted(kinds) == [LAST_CALL, RUNNER_REMINDER]

    _fast_forward_last_call(sql, run_id)
    chan.work()

    calls = _last_calls(slack)
    assert len(calls) == 1
    text = text_of(calls[0])
    assert "Last call" in text
    assert "<@" not in text and "<!" not in text
    assert chan.status(run_id) == "open"  # the last call doesn't close the run

    _requeue(sql, run_id, LAST_CALL)
    chan.work()
    assert len(_last_calls(slack)) == 1


def test_no_last_call_for_a_closed_run(chan: Channel, sql: SqlFn, slack: FakeSlack) -> None:
    _configure_channel(sql, last_call_enabled=True, last_call_minutes=5)
    run_id = _closed_run_with_orders(chan, "in 30m")
    if _jobs(sql, run_id, LAST_CALL):
        _fast_forward_last_call(sql, run_id)
    chan.work()
    assert _last_calls(slack) == []


def test_no_last_call_when_disabled(chan: Channel, sql: SqlFn, slack: FakeSlack) -> None:
    run_id = chan.open_run("U0ANA", "in 30m")
    assert _jobs(sql, run_id, LAST_CALL) == []
    _fast_forward(sql, run_id)  # even at the reminder itself
    chan.work()
    assert _last_calls(slack) == []


def _has_order_list(message: dict[str, Any]) -> bool:
    """The summary (not the closed run message): it carries the order list."""
    return any(
        str(b.get("block_id", "")).startswith("order_list") for b in message.get("blocks") or []
    )
