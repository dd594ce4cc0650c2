"""Retention and privacy against a real Postgres: the daily purge deletes what is past each
channel's retention (tested with a clock the test controls) and keeps open runs, recent
data and the audit trail; it runs as one recurring job across workers; and `/coffee
forget me` deletes only that person's stored usuals."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coffeebuddy.config import WorkerSettings
from coffeebuddy.jobs import maintenance
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.service import privacy
from coffeebuddy.slack import run_blocks
from coffeebuddy.store import queue
from testkit.fakes.slack_api import FakeSlack
from testkit.polling import eventually
from tests.conftest import CHANNEL
from tests.driver import Channel, SqlFn, ensured_once, runner_of

TEA = "C0TEA0001"
MakeWorker = Callable[..., Worker]


@pytest.fixture
def coffee(chan: Channel) -> Channel:
    return chan


@pytest.fixture
def tea(web: Any, worker: Worker, sql: SqlFn, slack: FakeSlack) -> Channel:
    slack.add_channel(TEA, name="tea")
    return Channel(web, worker, sql, TEA, slack)


def _closed_run(chan: Channel, starter: str, orders: dict[str, str], runner: str) -> str:
    """A run closed through the app; `runner` volunteers, so they are the runner."""
    run_id = chan.start(starter)
    for user, text in orders.items():
        assert chan.submit(user, text, volunteer=user == runner, run_id=run_id) is None
    chan.click_and_work(starter, run_blocks.ACTION_CLOSE_RUN, run_id)
    assert chan.status(run_id) == "closed"
    assert runner_of(chan.sql, run_id) == runner
    return run_id


def _recent_and_expired_runs(chan: Channel, sql: SqlFn) -> tuple[str, str]:
    """Two closed runs: Ana's, recent, and Ben's, 91 days old (past the 90-day default)."""
    recent = _closed_run(chan, "U0ANA", {"U0ANA": "flat white"}, runner="U0ANA")
    old = _closed_run(chan, "U0BEN", {"U0BEN": "tea"}, runner="U0BEN")
    _age_run(sql, old, 91)
    return recent, old


def _age_run(sql: SqlFn, run_id: str, days: int) -> None:
    """Move a run (its orders, and its runner's stats if they point at it) `days` back."""
    shift = timedelta(days=days)
    sql(
        "UPDATE runner_stats s SET last_run_at = last_run_at - %s FROM runs r"
        " WHERE r.id = %s AND s.user_id = r.runner_user_id AND s.channel_id = r.channel_id"
        " AND s.last_run_at = r.closed_at",
        shift,
        run_id,
    )
    sql(
        "UPDATE runs SET started_at = started_at - %s, closed_at = closed_at - %s WHERE id = %s",
        shift,
        shift,
        run_id,
    )
    sql(
        "UPDATE orders SET created_at = created_at - %s, updated_at = updated_at - %s"
        " WHERE run_id = %s",
        shift,
        shift,
        run_id,
    )


def _use_preference(sql: SqlFn, user: str, channel: str, days_ago: int) -> None:
    sql(
        "UPDATE user_preferences p SET last_used_at = now() - %s FROM users u, channels c"
        " WHERE u.id = p.user_id AND c.id = p.channel_id AND u.slack_user_id = %s"
        " AND c.slack_channel_id = %s",
        timedelta(days=days_ago),
        user,
        channel,
    )


def _preferences(sql: SqlFn) -> set[tuple[str, str]]:
    rows = sql(
        "SELECT u.slack_user_id, c.slack_channel_id FROM user_preferences p"
        " JOIN users u ON u.id = p.user_id JOIN channels c ON c.id = p.channel_id"
    )
    return {(str(u), str(c)) for u, c in rows}


def _users(sql: SqlFn) -> set[str]:
    return {str(u) for (u,) in sql("SELECT slack_user_id FROM users")}


def _runner_stats(sql: SqlFn) -> dict[tuple[str, str], tuple[int, datetime]]:
    rows = sql(
        "SELECT u.slack_user_id, c.slack_channel_id, s.runs_served_count, s.last_run_at"
        " FROM runner_stats s JOIN users u ON u.id = s.user_id"
        " JOIN channels c ON c.id = s.channel_id"
    )
    return {(str(u), str(c)): (int(n), at) for u, c, n, at in rows}


def _closed_at(sql: SqlFn, run_id: str) -> datetime:
    at: datetime = sql("SELECT closed_at FROM runs WHERE id = %s", run_id)[0][0]
    return at


def _add_user(sql: SqlFn, slack_id: str, *, touched: str) -> None:
    """A user row with nothing else (a cached profile), last touched `touched` ago."""
    sql(
        "INSERT INTO users (slack_user_id, display_name, profile_fetched_at, created_at,"
        " updated_at) VALUES (%s, 'ghost', now() - %s::interval, now() - %s::interval,"
        " now() - %s::interval)",
        slack_id,
        touched,
        touched,
        touched,
    )


def _audit(sql: SqlFn) -> list[tuple[Any, ...]]:
    return sql(
        "SELECT id, channel_id, slack_channel_id, admin_slack_user_id, action_type,"
        " action_details, created_at FROM channel_admin_actions ORDER BY id"
    )


def _purge(worker: Worker, now: datetime) -> dict[str, int]:
    with worker.database.transaction() as conn:
        return privacy.purge(conn, now)


# ---- the purge -----------------------------------------------------------------------------


def test_purge_keeps_each_channels_retention_open_runs_and_the_audit_trail(
    coffee: Channel, tea: Channel, worker: Worker, sql: SqlFn
) -> None:
    # The coffee channel keeps 30 days; tea keeps the default 90.
    a1 = _closed_run(coffee, "U0ANA", {"U0ANA": "flat white", "U0BEN": "tea"}, runner="U0BEN")
    a2 = _closed_run(coffee, "U0BEN", {"U0BEN": "espresso", "U0CAT": "latte"}, runner="U0BEN")
    canceled = coffee.start("U0DAN")
    coffee.click("U0DAN", run_blocks.ACTION_CLOSE_RUN, canceled)  # nobody ordered
    coffee.work()
    assert coffee.status(canceled) == "canceled"
    open_run = coffee.start("U0EVE")
    assert coffee.submit("U0FAY", "mocha", run_id=open_run) is None
    coffee.work()
    b1 = _closed_run(tea, "U0CAT", {"U0CAT": "green tea"}, runner="U0CAT")
    b2 = _closed_run(tea, "U0GUS", {"U0GUS": "chai", "U0DAN": "rooibos"}, runner="U0GUS")
    sql("UPDATE channels SET data_retention_days = 30 WHERE slack_channel_id = %s", CHANNEL)
    assert sql("SELECT data_retention_days FROM channels WHERE slack_channel_id = %s", TEA) == [
        (90,)
    ]
    # BEN served a1 and a2: two of the coffee channel's runs.
    assert _runner_stats(sql)[("U0BEN", CHANNEL)][0] == 2

    # The purge will run "in 20 days". Ages below are from today.
    _age_run(sql, a1, 50)  # 70 days old by then: past 30
    _age_run(sql, canceled, 50)  # likewise
    _age_run(sql, b1, 50)  # 70 days: within tea's 90
    _age_run(sql, b2, 100)  # 120 days: past 90
    # An open run is never purged, however old.
    sql("UPDATE runs SET started_at = now() - interval '200 days' WHERE id = %s", open_run)
    for user, channel, days in [
        ("U0ANA", CHANNEL, 50),  # gone
        ("U0BEN", CHANNEL, 0),
        ("U0CAT", CHANNEL, 50),  # gone
        ("U0FAY", CHANNEL, 50),  # gone: FAY stays for her order in the open run
        ("U0CAT", TEA, 50),
        ("U0GUS", TEA, 100),  # gone
        ("U0DAN", TEA, 0),
    ]:
        _use_preference(sql, user, channel, days)
    # Jobs still queued for a purged run go with it; other runs' jobs stay.
    doomed_job = queue_job(sql, a1)
    kept_job = queue_job(sql, a2)
    # The audit trail, with an entry far older than any retention.
    channel_pk = sql("SELECT id FROM channels WHERE slack_channel_id = %s", CHANNEL)[0][0]
    sql(
        "INSERT INTO channel_admin_actions (channel_id, slack_channel_id, admin_slack_user_id,"
        " action_type, action_details, created_at) VALUES"
        " (%s, %s, 'U0ANA', 'update_config', '{\"x\": 1}', now() - interval '400 days'),"
        " (%s, %s, 'U0GHOST', 'data_reset', '{}', now() - interval '100 days'),"
        " (NULL, 'C0GONE01', 'U0ANA', 'disable', '{}', now() - interval '500 days')",
        channel_pk,
        CHANNEL,
        channel_pk,
        CHANNEL,
    )
    audit_before = _audit(sql)
    _add_user(sql, "U0GHOST", touched="3 days")  # a profile cached, and nothing else
    b1_closed = _closed_at(sql, b1)
    a2_closed = _closed_at(sql, a2)

    purged_events = sql(
        "SELECT count(*) FROM events WHERE run_id IN (%s, %s, %s)", a1, canceled, b2
    )[0][0]
    assert purged_events > 0
    counts = _purge(worker, datetime.now(UTC) + timedelta(days=20))

    assert counts == {
        "events": purged_events,  # the outbox entries of the purged runs
        "runs": 3,  # a1, the canceled run, b2
        "orders": 4,
        "jobs": 1,
        "preferences": 4,
        "runner_stats_deleted": 1,  # GUS served only b2
        "runner_stats_updated": 1,  # BEN: a1 is gone, a2 remains
        "users": 3,  # ANA, GUS, GHOST
    }
    remaining = {str(r) for (r,) in sql("SELECT id::text FROM runs")}
    assert remaining == {a2, open_run, b1}
    assert sql("SELECT status FROM runs WHERE id = %s", open_run) == [("open",)]
    assert sql("SELECT count(*) FROM orders WHERE run_id = %s", open_run) == [(1,)]
    assert sql("SELECT count(*) FROM orders WHERE run_id = ANY(%s::uuid[])", [a1, b2]) == [(0,)]
    assert sql("SELECT count(*) FROM orders") == [(4,)]  # a2: 2, b1: 1, open run: 1
    assert _preferences(sql) == {
        ("U0BEN", CHANNEL),
        ("U0CAT", TEA),
        ("U0DAN", TEA),
    }
    # Runner stats agree with the runs that remain.
    assert _runner_stats(sql) == {
        ("U0BEN", CHANNEL): (1, a2_closed),
        ("U0CAT", TEA): (1, b1_closed),
    }
    jobs = {int(i) for (i,) in sql("SELECT id FROM jobs WHERE status = 'queued'")}
    assert doomed_job not in jobs and kept_job in jobs
    # Nobody who still has a run, an order or a usual is removed; the rest are.
    assert _users(sql) == {"U0BEN", "U0CAT", "U0DAN", "U0EVE", "U0FAY"}
    assert _audit(sql) == audit_before
    # Channel settings stay.
    assert sql("SELECT count(*) FROM channels") == [(2,)]

    # Nothing more to do the same day.
    again = _purge(worker, datetime.now(UTC) + timedelta(days=20))
    assert set(again.values()) == {0}


def queue_job(sql: SqlFn, run_id: str) -> int:
    rows = sql(
        "INSERT INTO jobs (kind, payload, run_id, run_at) VALUES (%s, '{}', %s,"
        " now() + interval '1 day') RETURNING id",
        queue.NOTIFY_USER,
        run_id,
    )
    return int(rows[0][0])


def test_a_run_is_kept_until_its_retention_has_passed(
    coffee: Channel, worker: Worker, sql: SqlFn
) -> None:
    run_id = _closed_run(coffee, "U0ANA", {"U0ANA": "flat white"}, runner="U0ANA")
    closed = _closed_at(sql, run_id)
    assert _purge(worker, closed + timedelta(days=90) - timedelta(seconds=1))["runs"] == 0
    assert sql("SELECT count(*) FROM runs") == [(1,)]
    counts = _purge(worker, closed + timedelta(days=90, seconds=1))
    assert (counts["runs"], counts["orders"]) == (1, 1)
    assert sql("SELECT count(*) FROM runs") == [(0,)]
    # Its usual was saved a moment before the close, so it is past retention too.
    assert counts["preferences"] == 1 and counts["users"] == 1
    assert _users(sql) == set()


def test_only_people_without_any_trace_and_untouched_for_a_day_are_removed(
    coffee: Channel, worker: Worker, sql: SqlFn
) -> None:
    run_id = coffee.start("U0ANA")
    assert coffee.submit("U0BEN", "tea", run_id=run_id) is None
    coffee.work()
    _add_user(sql, "U0OLD", touched="3 days")
    _add_user(sql, "U0FRESH", touched="2 hours")  # a profile cached mid-command
    sql("UPDATE users SET created_at = now() - interval '1 year',"
        " updated_at = now() - interval '1 year'")  # fmt: skip
    # ...but the fresh one's profile was fetched just now.
    sql("UPDATE users SET profile_fetched_at = now() - interval '2 hours'"
        " WHERE slack_user_id = 'U0FRESH'")  # fmt: skip

    counts = _purge(worker, datetime.now(UTC))

    assert counts["users"] == 1 and counts["runs"] == 0
    # ANA started the open run, BEN ordered in it; FRESH was touched within the day.
    assert _users(sql) == {"U0ANA", "U0BEN", "U0FRESH"}


def test_a_user_delete_that_hits_a_foreign_key_skips_users_but_keeps_the_rest(
    coffee: Channel, worker: Worker, sql: SqlFn, caplog: pytest.LogCaptureFixture
) -> None:
    """As when someone ordered in a transaction that committed while the purge ran: the
    users step gives up for the day and the rest of the purge still commits."""
    run_id = _closed_run(coffee, "U0ANA", {"U0ANA": "flat white"}, runner="U0ANA")
    _age_run(sql, run_id, 100)
    _add_user(sql, "U0GHOST", touched="3 days")
    # A reference the purge does not know about stands in for the concurrent order.
    sql("CREATE TABLE held (user_id uuid REFERENCES users (id))")
    sql("INSERT INTO held SELECT id FROM users WHERE slack_user_id = 'U0GHOST'")
    caplog.set_level("INFO", logger="coffeebuddy.service.privacy")

    counts = _purge(worker, datetime.now(UTC))

    assert (counts["runs"], counts["users"]) == (1, 0)
    assert sql("SELECT count(*) FROM runs") == [(0,)]
    assert _users(sql) == {"U0ANA", "U0GHOST"}
    [line] = [r for r in caplog.records if r.getMessage() == "retention_purged"]
    # One line with the counts, and no ids.
    assert line.__dict__["count"] == counts
    assert any(r.getMessage() == "retention_users_skipped" for r in caplog.records)


def test_purge_refuses_a_naive_clock(worker: Worker) -> None:
    with worker.database.transaction() as conn, pytest.raises(ValueError, match="aware"):
        privacy.purge(conn, datetime.now())  # naive on purpose


# ---- the daily job -------------------------------------------------------------------------


def _retention_jobs(sql: SqlFn) -> list[tuple[Any, ...]]:
    return sql(
        "SELECT id, status, dedupe_key, EXTRACT(EPOCH FROM run_at - now())::float8"
        " FROM jobs WHERE kind = %s ORDER BY id",
        queue.RETENTION_PURGE,
    )


def test_two_starting_workers_keep_one_retention_job_which_runs_once_a_day(
    looping: Callable[[WorkerSettings], Worker], sql: SqlFn
) -> None:
    _add_user(sql, "U0GHOST", touched="3 days")
    settings = WorkerSettings(stats_interval_seconds=0.1)
    looping(settings)
    looping(settings)

    # The first purge runs at once, as of the database's clock, and queues the next.
    eventually(lambda: [r[1] for r in _retention_jobs(sql)] == ["done", "queued"])
    assert _users(sql) == set()
    # Both workers keep doing their housekeeping rounds: still exactly one queued.
    time.sleep(1.0)
    jobs = _retention_jobs(sql)
    assert [r[1] for r in jobs] == ["done", "queued"]
    [(_, _, key, due_in)] = jobs[1:]
    assert key == maintenance.RETENTION_KEY
    day = maintenance.RETENTION_INTERVAL_SECONDS
    assert day - 60 < due_in <= day


def test_the_retention_job_is_ensured_once_and_its_handler_reschedules_it(
    make_worker: MakeWorker, coffee: Channel, sql: SqlFn
) -> None:
    recent, _old = _recent_and_expired_runs(coffee, sql)
    _add_user(sql, "U0GHOST", touched="3 days")

    first, second = make_worker(), make_worker()
    ensured_once(maintenance.ensure_retention_job, first, second)
    [(job_id, status, key, due_in)] = _retention_jobs(sql)
    assert (status, key, due_in <= 0) == ("queued", maintenance.RETENTION_KEY, True)

    with first.database.transaction() as conn:
        [claimed] = queue.claim(conn, worker_id=first.worker_id, limit=10, lease_seconds=60)
    assert (claimed.id, claimed.kind) == (job_id, queue.RETENTION_PURGE)
    with second.database.transaction() as conn:
        assert not maintenance.ensure_retention_job(conn), "one is running"

    first.execute(claimed)

    # The real purge ran, as of the database clock.
    assert {str(r) for (r,) in sql("SELECT id::text FROM runs")} == {recent}
    assert "U0GHOST" not in _users(sql)
    jobs = _retention_jobs(sql)
    assert [(r[0], r[1]) for r in jobs[:1]] == [(job_id, "done")]
    [(_, status, key, due_in)] = jobs[1:]
    assert (status, key) == ("queued", maintenance.RETENTION_KEY)
    day = maintenance.RETENTION_INTERVAL_SECONDS
    assert day - 60 < due_in <= day
    # Tomorrow's is not due, so nothing else runs now.
    assert second.run_until_idle() == 0


# ---- /coffee forget me ---------------------------------------------------------------------


def test_forget_me_deletes_only_that_persons_usuals_even_in_a_disabled_channel(
    coffee: Channel, tea: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    _closed_run(coffee, "U0ANA", {"U0ANA": "flat white", "U0BEN": "tea"}, runner="U0BEN")
    tea_run = tea.start("U0CAT")
    assert tea.submit("U0ANA", "green tea", run_id=tea_run) is None
    tea.work()
    assert _preferences(sql) == {("U0ANA", CHANNEL), ("U0BEN", CHANNEL), ("U0ANA", TEA)}
    orders_before = sql("SELECT id, run_id, order_text, canceled_at FROM orders ORDER BY id")
    runs_before = sql("SELECT id, status FROM runs ORDER BY id")
    sql("UPDATE channels SET enabled = false WHERE slack_channel_id = %s", CHANNEL)

    answer = coffee.command("U0ANA", "forget me")

    assert answer["response_type"] == "ephemeral"
    assert "deleted your usual orders in 2 channels" in answer["text"]
    assert "still open stay" in answer["text"]
    assert _preferences(sql) == {("U0BEN", CHANNEL)}
    # Nothing else changed: the order in the open tea run is still there.
    assert sql("SELECT id, run_id, order_text, canceled_at FROM orders ORDER BY id") == (
        orders_before
    )
    assert sql("SELECT id, status FROM runs ORDER BY id") == runs_before
    assert "U0ANA" in _users(sql)

    again = coffee.command("U0ANA", "forget me")
    assert "nothing to delete" in again["text"]
    assert _preferences(sql) == {("U0BEN", CHANNEL)}

    # With no usual left, "Use my usual" opens the order form instead of ordering.
    sql("UPDATE channels SET enabled = true WHERE slack_channel_id = %s", CHANNEL)
    run_id = coffee.start("U0DAN")
    coffee.work()
    views_before = len(slack.opened_views())
    coffee.click("U0ANA", run_blocks.ACTION_USE_USUAL, run_id)
    coffee.work()
    views = slack.opened_views()
    assert len(views) == views_before + 1
    assert views[-1]["callback_id"] == run_blocks.CALLBACK_ORDER_MODAL
    assert sql("SELECT count(*) FROM orders WHERE run_id = %s", run_id) == [(0,)]
    # BEN's usual still works with one click.
    coffee.click("U0BEN", run_blocks.ACTION_USE_USUAL, run_id)
    coffee.work()
    assert len(slack.opened_views()) == views_before + 1
    assert sql("SELECT order_text FROM orders WHERE run_id = %s", run_id) == [("tea",)]


def test_forget_me_with_nothing_stored_says_so(coffee: Channel, sql: SqlFn) -> None:
    answer = coffee.command("U0GUS", "forget me")
    assert answer["response_type"] == "ephemeral"
    assert "no usual order stored" in answer["text"]
    assert "Done" not in answer["text"]


def test_forget_me_in_one_channel_answers_in_the_singular(coffee: Channel, sql: SqlFn) -> None:
    run_id = coffee.start("U0ANA")
    assert coffee.submit("U0ANA", "flat white", run_id=run_id) is None
    answer = coffee.command("U0ANA", "forget me")
    assert "deleted your usual order." in answer["text"]
    assert _preferences(sql) == set()
    # Their order in the open run stays.
    assert sql("SELECT count(*) FROM orders WHERE run_id = %s AND canceled_at IS NULL", run_id) == [
        (1,)
    ]


# ---- the event outbox follows the same rules ------------------------------------------------


def _events_naming(sql: SqlFn, user: str) -> int:
    return int(
        sql(
            "SELECT count(*) FROM events WHERE jsonb_path_exists(envelope->'data',"
            " '$.** ? (@ == $u)', jsonb_build_object('u', %s::text))",
            user,
        )[0][0]
    )


def test_the_purge_deletes_the_events_of_purged_runs_and_old_events(
    coffee: Channel, worker: Worker, sql: SqlFn
) -> None:
    recent, old = _recent_and_expired_runs(coffee, sql)
    # An event without a run (a reminder, say) that is older than the channel's retention.
    sql(
        "UPDATE events SET created_at = now() - interval '91 days'"
        " WHERE id = (SELECT min(id) FROM events WHERE run_id = %s)",
        recent,
    )
    sql("UPDATE events SET run_id = NULL WHERE created_at < now() - interval '90 days'")
    assert sql("SELECT count(*) FROM events WHERE run_id = %s", old)[0][0] > 0
    kept = sql("SELECT count(*) FROM events WHERE run_id = %s", recent)[0][0]

    with worker.database.transaction() as conn:
        counts = privacy.purge_now(conn)

    assert sql("SELECT count(*) FROM events WHERE run_id = %s", old) == [(0,)]
    assert sql("SELECT count(*) FROM events WHERE run_id IS NULL") == [(0,)]
    assert sql("SELECT count(*) FROM events WHERE run_id = %s", recent) == [(kept,)]
    assert counts["events"] >= 2


def test_forget_me_deletes_the_events_that_name_the_person(coffee: Channel, sql: SqlFn) -> None:
    _closed_run(coffee, "U0ANA", {"U0ANA": "flat white", "U0BEN": "tea"}, runner="U0BEN")
    assert _events_naming(sql, "U0ANA") > 0
    ben = _events_naming(sql, "U0BEN")
    assert ben > 0

    coffee.command("U0ANA", "forget me")

    assert _events_naming(sql, "U0ANA") == 0
    # Events that name only others stay.
    assert _events_naming(sql, "U0BEN") > 0


def test_without_a_relay_old_events_are_pruned_anyway(
    coffee: Channel, make_worker: MakeWorker, sql: SqlFn
) -> None:
    # The base ConfigMap's default: no Kafka, so nothing is ever marked sent.
    run_id = _closed_run(coffee, "U0ANA", {"U0ANA": "flat white"}, runner="U0ANA")
    total = sql("SELECT count(*) FROM events")[0][0]
    assert total > 1
    assert sql("SELECT count(*) FROM events WHERE sent_at IS NOT NULL") == [(0,)]
    sql(
        "UPDATE events SET created_at = now() - interval '8 days'"
        " WHERE id = (SELECT min(id) FROM events WHERE run_id = %s)",
        run_id,
    )
    worker = make_worker(event_retention_days=7)
    assert not worker.config.kafka_bootstrap_servers
    with worker.database.transaction() as conn:
        maintenance.ensure_prune_job(conn)
    worker.run_until_idle()
    assert sql("SELECT count(*) FROM events") == [(total - 1,)]
    assert sql("SELECT count(*) FROM events WHERE created_at < now() - interval '7 days'") == [(0,)]
