"""The job queue and its handlers against a real Postgres and the fake Slack Web API:
delivery survives restarts, nothing is sent twice, leases run out, Slack's failures are
retried, rescheduled or reported as the architecture says, and updates coalesce."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from coffeebuddy.config import Config
from coffeebuddy.db import Database
from coffeebuddy.jobs.worker import CHANNEL as NOTIFY_CHANNEL
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.slack import run_blocks
from coffeebuddy.store import queue
from coffeebuddy.web.app import create_app
from testkit.fakes.slack_api import Call, FakeSlack
from testkit.polling import eventually
from tests.blocks import text_of
from tests.conftest import BOT_TOKEN, CHANNEL, SignedClient
from tests.driver import Channel, SqlFn, runner_of

MakeWorker = Callable[..., Worker]


# ---- helpers ------------------------------------------------------------------------------


def _posts(slack: FakeSlack, channel: str) -> list[Call]:
    """chat.postMessage calls Slack accepted for `channel`."""
    return [c for c in slack.calls("chat.postMessage") if c.ok and c.args.get("channel") == channel]


def _job(sql: SqlFn, kind: str) -> dict[str, Any]:
    """The only job of `kind` (fails if there are several)."""
    rows = sql(
        "SELECT id, status, attempts, max_attempts, last_error,"
        " EXTRACT(EPOCH FROM run_at - now())::float8, locked_by"
        " FROM jobs WHERE kind = %s ORDER BY id",
        kind,
    )
    assert len(rows) == 1, f"expected one {kind} job, got {rows}"
    keys = ("id", "status", "attempts", "max_attempts", "last_error", "due_in", "locked_by")
    return dict(zip(keys, rows[0], strict=True))


def _force_due(sql: SqlFn) -> None:
    """Skip the wait of every queued job: scheduling is checked, never slept through."""
    sql("UPDATE jobs SET run_at = now() WHERE status = 'queued'")


def _run_row(sql: SqlFn, run_id: str) -> dict[str, Any]:
    rows = sql(
        "SELECT status, failure_reason, message_ts, correlation_id FROM runs WHERE id = %s",
        run_id,
    )
    keys = ("status", "failure_reason", "message_ts", "correlation_id")
    return dict(zip(keys, rows[0], strict=True))


# ---- durability and at-least-once delivery -------------------------------------------------


def test_jobs_survive_and_a_new_worker_posts_the_run_message(
    web: SignedClient, make_worker: MakeWorker, sql: SqlFn, slack: FakeSlack
) -> None:
    # No worker exists while the run starts: the job is only a row in Postgres.
    chan = Channel(web, None, sql, CHANNEL, slack)
    run_id = chan.start("U0ANA")
    assert slack.calls("chat.postMessage") == []
    assert _job(sql, queue.POST_RUN_MESSAGE)["status"] == "queued"

    fresh = make_worker()
    assert fresh.run_until_idle() == 1

    posts = _posts(slack, CHANNEL)
    assert len(posts) == 1
    stored_ts = _run_row(sql, run_id)["message_ts"]
    assert stored_ts is not None
    assert stored_ts == slack.messages(CHANNEL)[0]["ts"]
    assert _job(sql, queue.POST_RUN_MESSAGE)["status"] == "done"


def test_run_message_is_never_posted_twice(chan: Channel, slack: FakeSlack, sql: SqlFn) -> None:
    chan.open_run("U0ANA")
    assert len(_posts(slack, CHANNEL)) == 1
    # The worker died after Slack accepted the message but before the job was marked done:
    # its lease ran out and the job is due again.
    sql(
        "UPDATE jobs SET status = 'queued', locked_until = NULL, run_at = now() WHERE kind = %s",
        queue.POST_RUN_MESSAGE,
    )
    assert chan.work() == 1
    assert len(_posts(slack, CHANNEL)) == 1
    assert len(slack.messages(CHANNEL)) == 1
    assert _job(sql, queue.POST_RUN_MESSAGE)["status"] == "done"


def test_summary_and_runner_dm_are_never_sent_twice(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = chan.open_run("U0ANA")
    chan.submit("U0BEN", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    runner = runner_of(sql, run_id)
    assert len(_posts(slack, CHANNEL)) == 2  # the run message and the summary
    assert len(slack.dms(runner)) == 1

    sql(
        "UPDATE jobs SET status = 'queued', locked_until = NULL, run_at = now()"
        " WHERE kind IN (%s, %s)",
        queue.POST_SUMMARY,
        queue.DM_RUNNER,
    )
    assert chan.work() == 2
    assert len(_posts(slack, CHANNEL)) == 2
    assert len(slack.dms(runner)) == 1
    assert len(slack.calls("conversations.open")) == 1
    assert _job(sql, queue.POST_SUMMARY)["status"] == "done"
    assert _job(sql, queue.DM_RUNNER)["status"] == "done"


@pytest.mark.parametrize("answer", [{"status": 500}, {"error": "internal_error"}])
def test_a_post_slack_accepted_but_never_answered_is_adopted_not_repeated(
    chan: Channel,
    slack: FakeSlack,
    sql: SqlFn,
    answer: dict[str, Any],
    make_worker: Callable[..., Worker],
) -> None:
    """Slack stores the summary and the runner DM but the worker sees a failure (a 500, or
    a timeout's lost answer): the retry finds each message by its metadata in the history
    and records it; nobody sees anything twice (channel posts: with the opt-in setting)."""
    chan.worker = make_worker(channel_post_dedupe=True)
    run_id = chan.open_run("U0ANA")
    chan.submit("U0BEN", "tea")
    slack.fail_next("chat.postMessage", effect_first=True, times=2, **answer)
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert slack.pending_faults("chat.postMessage") == 0
    assert _job(sql, queue.POST_SUMMARY)["status"] == "queued"  # waiting out its backoff
    _force_due(sql)
    chan.work()
    runner = runner_of(sql, run_id)
    assert len(_posts(slack, CHANNEL)) == 2  # the run message and one summary
    assert len(slack.dms(runner)) == 1
    history = slack.calls("conversations.history")
    assert len(history) == 2
    assert all(c.args.get("include_all_metadata") in (True, "1", "true") for c in history)
    (row,) = sql("SELECT summary_ts, runner_dm_ts FROM runs WHERE id = %s", run_id)
    summary = [m for m in slack.messages(CHANNEL) if m["ts"] == row[0]]
    assert len(summary) == 1
    assert summary[0]["metadata"]["event_payload"] == {"run_id": run_id, "part": "summary"}
    assert slack.dms(runner)[0]["ts"] == row[1]


def test_by_default_a_retried_channel_post_never_reads_the_channel(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    """Without the opt-in setting the bot reads no channel history (no channels:history
    scope): a retried summary is posted again (the rare, accepted duplicate), while the
    runner's DM, the bot's own read-only conversation, is still found and adopted."""
    run_id = chan.open_run("U0ANA")
    chan.submit("U0BEN", "tea")
    slack.fail_next("chat.postMessage", effect_first=True, times=2, status=500)
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    _force_due(sql)
    chan.work()
    history = slack.calls("conversations.history")
    assert history, "the DM is still looked up"
    assert all(str(c.args.get("channel", "")).startswith("D") for c in history)
    runner = runner_of(sql, run_id)
    assert len(slack.dms(runner)) == 1


def test_a_first_attempt_never_reads_the_history(chan: Channel, slack: FakeSlack) -> None:
    run_id = chan.open_run("U0ANA")
    chan.submit("U0BEN", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    assert slack.calls("conversations.history") == []
    posts = slack.calls("chat.postMessage")
    assert {c.args["metadata"]["event_payload"]["part"].split(":")[0] for c in posts} == {
        "run_message",
        "summary",
        "runner_dm",
    }


def test_a_running_job_keeps_its_lease_while_its_worker_lives(
    chan: Channel, make_worker: MakeWorker, sql: SqlFn
) -> None:
    """A slow Slack call must not hand a live job to a second worker: the worker renews the
    leases of the jobs it runs, and only those; a job it no longer holds is left alone."""
    chan.start("U0ANA")
    worker = make_worker(job_lease_seconds=5)
    (job,) = worker._claim(5)
    other = make_worker()
    sql("UPDATE jobs SET locked_until = now() + interval '1 second' WHERE id = %s", job.id)
    worker._inflight[job.id] = Future()
    assert other.renew_leases() == 0  # not its job
    assert worker.renew_leases() == 1
    (left,) = sql("SELECT EXTRACT(EPOCH FROM locked_until - now())::float8 FROM jobs")[0]
    assert 4 < left <= 5
    # Once the job is done (or another worker took it over), nothing is renewed.
    sql("UPDATE jobs SET locked_by = 'someone-else' WHERE id = %s", job.id)
    assert worker.renew_leases() == 0


def test_an_expired_lease_lets_another_worker_finish_the_job(
    chan: Channel, make_worker: MakeWorker, slack: FakeSlack, sql: SqlFn
) -> None:
    chan.start("U0ANA")
    crashed = make_worker()
    with crashed.database.transaction() as conn:
        claimed = queue.claim(conn, worker_id=crashed.worker_id, limit=5, lease_seconds=60)
    assert [j.kind for j in claimed] == [queue.POST_RUN_MESSAGE]

    survivor = make_worker()
    assert survivor.run_until_idle() == 0, "a leased job must not be claimed again"

    sql("UPDATE jobs SET locked_until = now() - interval '1 second' WHERE id = %s", claimed[0].id)
    assert survivor.run_until_idle() == 1
    assert survivor.run_until_idle() == 0

    job = _job(sql, queue.POST_RUN_MESSAGE)
    assert job["status"] == "done"
    assert job["attempts"] == 2
    assert job["locked_by"] == survivor.worker_id
    assert len(_posts(slack, CHANNEL)) == 1
    # The crashed worker coming back late can't complete what it no longer owns.
    with crashed.database.transaction() as conn:
        assert not queue.complete(conn, claimed[0], worker_id=crashed.worker_id)


def test_two_workers_cannot_claim_the_same_job(
    chan: Channel, database_url: str, sql: SqlFn
) -> None:
    chan.start("U0ANA")
    with (
        psycopg.connect(database_url, row_factory=dict_row) as first,
        psycopg.connect(database_url, row_factory=dict_row) as second,
    ):
        # A claim that waited for the first one's row lock would fail here, not hang.
        second.execute("SET lock_timeout = '2s'")
        second.commit()
        mine = queue.claim(first, worker_id="w1", limit=10, lease_seconds=60)
        assert [j.kind for j in mine] == [queue.POST_RUN_MESSAGE]
        # `first` has not committed: its row lock makes the second claim skip the row.
        assert queue.claim(second, worker_id="w2", limit=10, lease_seconds=60) == []
        second.rollback()

        # A second due job is not held up by the first worker's lock: it is claimable now.
        sql("INSERT INTO jobs (kind, payload) VALUES (%s, '{}')", queue.NOTIFY_USER)
        theirs = queue.claim(second, worker_id="w2", limit=10, lease_seconds=60)
        assert [j.kind for j in theirs] == [queue.NOTIFY_USER]
        second.commit()
        first.commit()

    rows = sql("SELECT kind, locked_by, attempts FROM jobs ORDER BY id")
    assert rows == [(queue.POST_RUN_MESSAGE, "w1", 1), (queue.NOTIFY_USER, "w2", 1)]


# ---- Slack failures -------------------------------------------------------------------------


def test_rate_limit_reschedules_after_retry_after_without_using_an_attempt(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = chan.start("U0ANA")
    slack.fail_next("chat.postMessage", status=429, retry_after=7)
    chan.work()

    job = _job(sql, queue.POST_RUN_MESSAGE)
    assert job["status"] == "queued"
    assert job["attempts"] == 0, "waiting out a rate limit is not a failed attempt"
    assert job["last_error"] == "ratelimited"
    assert 5.0 <= job["due_in"] <= 8.0
    # Nobody slept and retried inside the handler: one call, and the job went back.
    assert len(slack.calls("chat.postMessage")) == 1
    assert _run_row(sql, run_id)["message_ts"] is None

    _force_due(sql)
    assert chan.work() == 1
    job = _job(sql, queue.POST_RUN_MESSAGE)
    assert job["status"] == "done"
    assert job["attempts"] == 1
    assert len(_posts(slack, CHANNEL)) == 1
    assert _run_row(sql, run_id)["message_ts"] is not None


def test_server_error_is_retried_with_backoff(chan: Channel, slack: FakeSlack, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA")
    slack.fail_next("chat.postMessage", status=500)
    chan.work()

    job = _job(sql, queue.POST_RUN_MESSAGE)
    assert job["status"] == "queued"
    assert job["attempts"] == 1
    assert job["last_error"] == "http_500"
    assert job["due_in"] > 0
    assert _run_row(sql, run_id)["status"] == "open"

    _force_due(sql)
    chan.work()
    job = _job(sql, queue.POST_RUN_MESSAGE)
    assert job["status"] == "done"
    assert job["attempts"] == 2
    assert job["last_error"] is None
    assert len(_posts(slack, CHANNEL)) == 1
    assert _run_row(sql, run_id)["message_ts"] is not None


def _assert_failed_permanently(
    chan: Channel, sql: SqlFn, run_id: str, error: str, fix_words: tuple[str, ...]
) -> None:
    job = _job(sql, queue.POST_RUN_MESSAGE)
    assert job["status"] == "dead"
    assert job["attempts"] == 1, "a permanent error is not retried"
    assert job["last_error"] == error
    run = _run_row(sql, run_id)
    assert run["status"] == "failed"
    assert error in run["failure_reason"]
    told = chan.told("U0ANA")
    assert len(told) == 1, told
    assert "couldn't start" in told[0]
    for word in fix_words:
        assert word in told[0], told[0]


def test_bot_not_in_channel_fails_the_run_and_says_how_to_fix_it(
    web: SignedClient, worker: Worker, sql: SqlFn, slack: FakeSlack
) -> None:
    slack.add_channel("C0PRIVATE1", name="secret-coffee", bot_member=False)
    chan = Channel(web, worker, sql, "C0PRIVATE1", slack)
    run_id = chan.open_run("U0ANA")

    assert [c.error for c in slack.calls("chat.postMessage")] == ["not_in_channel"]
    assert slack.messages("C0PRIVATE1") == []
    _assert_failed_permanently(chan, sql, run_id, "not_in_channel", ("/invite",))
    # The failed run does not block the channel once the bot is invited.
    slack.add_channel("C0PRIVATE1", name="secret-coffee", bot_member=True)
    assert "Starting your coffee run" in chan.command("U0ANA")["text"]


@pytest.mark.parametrize(
    ("error", "fix_words"),
    [
        ("not_in_channel", ("/invite",)),
        ("missing_scope", ("permission", "reinstall")),
        ("invalid_auth", ("credentials", "token")),
    ],
)
def test_permanent_slack_errors_fail_after_one_attempt(
    chan: Channel, slack: FakeSlack, sql: SqlFn, error: str, fix_words: tuple[str, ...]
) -> None:
    run_id = chan.start("U0ANA")
    slack.fail_next("chat.postMessage", error=error)
    chan.work()
    _force_due(sql)
    chan.work()  # nothing left to retry
    assert len(slack.calls("chat.postMessage")) == 1
    _assert_failed_permanently(chan, sql, run_id, error, fix_words)


def test_exhausted_retries_bury_the_job_and_tell_the_user(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = chan.start("U0ANA")
    sql("UPDATE jobs SET max_attempts = 3 WHERE kind = %s", queue.POST_RUN_MESSAGE)
    slack.fail_next("chat.postMessage", status=503, times=3)
    for attempt in (1, 2):
        chan.work()
        job = _job(sql, queue.POST_RUN_MESSAGE)
        assert (job["status"], job["attempts"]) == ("queued", attempt)
        assert chan.told("U0ANA") == []
        _force_due(sql)
    chan.work()

    job = _job(sql, queue.POST_RUN_MESSAGE)
    assert job["status"] == "dead"
    assert job["attempts"] == 3
    assert job["last_error"] == "http_503"
    run = _run_row(sql, run_id)
    assert run["status"] == "failed"
    assert "http_503" in run["failure_reason"]
    told = chan.told("U0ANA")
    assert len(told) == 1, told
    assert "couldn't start" in told[0]
    assert "try `/coffee` again" in told[0]
    assert f"reference `{run['correlation_id']}`" in told[0]
    # Dead stays dead.
    _force_due(sql)
    assert chan.work() == 0
    assert len(slack.calls("chat.postMessage")) == 3


# ---- coalescing and the post/refresh race ----------------------------------------------------


@pytest.fixture
def coalescing(
    config: Config, app_database: Database, make_worker: MakeWorker, sql: SqlFn, slack: FakeSlack
) -> Callable[[int], Channel]:
    """The test channel on an app that coalesces run-message refreshes for `ms`. Orders
    are applied in the request (the inbox off), so each joins the one queued refresh at
    once; with the inbox a batch of orders is one refresh (see test_inbox_order.py)."""

    def make(ms: int) -> Channel:
        app = create_app(
            replace(config, refresh_coalesce_ms=ms, inbox=False), database=app_database
        )
        return Channel(SignedClient(app), make_worker(), sql, CHANNEL, slack)

    return make


def test_a_burst_of_orders_is_one_chat_update(
    coalescing: Callable[[int], Channel], sql: SqlFn, slack: FakeSlack
) -> None:
    chan = coalescing(700)
    chan.open_run("U0ANA")
    assert len(slack.messages(CHANNEL)) == 1

    people = [f"U0P{i:02d}" for i in range(20)]
    for user in people:
        slack.add_user(user)
    for user in people:
        assert chan.submit(user, "flat white") is None
        queued = sql(
            "SELECT count(*) FROM jobs WHERE kind = %s AND status = 'queued'",
            queue.REFRESH_RUN_MESSAGE,
        )[0][0]
        assert queued <= 1
    rows = sql(
        "SELECT status, EXTRACT(EPOCH FROM run_at - created_at)::float8 FROM jobs WHERE kind = %s",
        queue.REFRESH_RUN_MESSAGE,
    )
    # All twenty clicks folded into the one refresh, scheduled at the end of the window.
    assert len(rows) == 1
    assert rows[0][0] == "queued"
    assert rows[0][1] == pytest.approx(0.7)

    _force_due(sql)
    chan.work()
    updates = slack.calls("chat.update")
    assert len(updates) == 1
    assert updates[0].ok
    message = slack.messages(CHANNEL)[0]
    assert "20 people" in text_of(message)
    assert all(f"<@{user}>" in text_of(message) for user in people)


def test_a_close_brings_a_coalesced_refresh_forward(
    coalescing: Callable[[int], Channel], sql: SqlFn, slack: FakeSlack
) -> None:
    """An order's refresh waits out the coalescing window; the close right after it wants
    the message updated now (its buttons must go), so the queued refresh moves up."""
    chan = coalescing(60_000)
    run_id = chan.open_run("U0ANA")
    assert chan.submit("U0BEN", "flat white", run_id=run_id) is None
    waiting = sql(
        "SELECT EXTRACT(EPOCH FROM run_at - now())::float8 FROM jobs WHERE kind = %s",
        queue.REFRESH_RUN_MESSAGE,
    )
    assert waiting[0][0] > 50
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    chan.work()  # nothing forced: only what is due now runs
    refreshes = sql(
        "SELECT status FROM jobs WHERE kind = %s ORDER BY id", queue.REFRESH_RUN_MESSAGE
    )
    # The moved-up refresh ran; the second is the summary's link, asked once it was posted.
    assert refreshes == [("done",), ("done",)]
    message = slack.messages(CHANNEL)[0]
    assert "closed" in message["text"]
    assert not [
        b for b in message["blocks"] if b.get("block_id") == run_blocks.RUN_ACTIONS_BLOCK_ID
    ]


class _HookedClient(WebClient):
    """Runs `hook` once, inside the handler, right before the next chat.postMessage."""

    def __init__(self, hook: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hook: Callable[[], None] | None = hook

    def chat_postMessage(self, **kwargs: Any) -> SlackResponse:
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return super().chat_postMessage(**kwargs)


def test_orders_placed_while_the_run_message_is_posted_are_rendered(
    chan: Channel, make_worker: MakeWorker, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = chan.start("U0ANA")
    other = make_worker()

    def orders_arrive() -> None:
        # The post job has loaded its view (nobody in yet) and is about to call Slack.
        assert chan.submit("U0BEN", "tea") is None
        assert chan.submit("U0CAT", "latte") is None
        # Another worker takes the refresh now; the message has no ts yet, so it can't
        # update anything and finishes.
        other.run_until_idle()

    poster = make_worker()
    hooked = _HookedClient(orders_arrive, token=BOT_TOKEN, base_url=slack.base_url)
    poster.context = replace(poster.context, slack=hooked)
    chan.worker = poster
    chan.work()

    assert len(_posts(slack, CHANNEL)) == 1
    message = slack.messages(CHANNEL)[0]
    assert "2 people" in text_of(message)
    assert "<@U0BEN>" in text_of(message) and "<@U0CAT>" in text_of(message)
    assert message["updates"] == 1
    assert sql("SELECT count(*) FROM runs WHERE id = %s AND message_ts IS NOT NULL", run_id) == [
        (1,)
    ]


# ---- notify_user and refresh edge cases ----------------------------------------------------


def test_notify_without_response_url_uses_post_ephemeral(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    chan.open_run("U0ANA")
    # A modal submission has no response_url: the confirmation goes by chat.postEphemeral.
    assert chan.submit("U0BEN", "cortado") is None
    chan.work()
    ephemerals = slack.ephemerals("U0BEN")
    assert len(ephemerals) == 1
    assert ephemerals[0]["channel"] == CHANNEL
    assert "Got your order" in ephemerals[0]["text"]
    assert [c for c in slack.calls("response_url")] == []
    assert _job(sql, queue.NOTIFY_USER)["status"] == "done"


def test_notify_to_someone_who_left_the_channel_is_dropped(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    chan.open_run("U0ANA")
    slack.add_channel(CHANNEL, name="coffee", members=["U0ANA"])  # U0BEN left
    assert chan.submit("U0BEN", "cortado") is None
    chan.work()

    assert [c.error for c in slack.calls("chat.postEphemeral")] == ["user_not_in_channel"]
    assert slack.ephemerals("U0BEN") == []
    job = _job(sql, queue.NOTIFY_USER)
    assert job["status"] == "done"
    assert job["attempts"] == 1
    _force_due(sql)
    chan.work()
    assert len(slack.calls("chat.postEphemeral")) == 1


def test_a_deleted_run_message_ends_the_refresh(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    chan.open_run("U0ANA")
    slack.fail_next("chat.update", error="message_not_found")
    assert chan.submit("U0BEN", "tea") is None
    chan.work()
    _force_due(sql)
    chan.work()

    assert [c.error for c in slack.calls("chat.update")] == ["message_not_found"]
    job = _job(sql, queue.REFRESH_RUN_MESSAGE)
    assert job["status"] == "done"
    assert job["attempts"] == 1


# ---- the worker loop --------------------------------------------------------------------


@pytest.fixture
def running_worker(
    make_worker: MakeWorker, sql: SqlFn
) -> Iterator[tuple[Worker, threading.Thread]]:
    # Polling every 30 s: anything picked up sooner was woken by NOTIFY.
    worker = make_worker(worker_poll_seconds=30)
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker, thread
    finally:
        worker.stop()
        thread.join(timeout=40)


def test_the_worker_loop_wakes_on_notify_and_stops(
    running_worker: tuple[Worker, threading.Thread],
    web: SignedClient,
    sql: SqlFn,
    slack: FakeSlack,
) -> None:
    worker, thread = running_worker
    # Wait until the worker listens, so the NOTIFY of the job below can't be missed.
    eventually(
        lambda: sql(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = %s",
            f"LISTEN {NOTIFY_CHANNEL}",
        )[0][0]
    )
    chan = Channel(web, None, sql, CHANNEL, slack)
    run_id = chan.start("U0ANA")
    slack.wait_for(lambda: slack.messages(CHANNEL), timeout=10)
    eventually(
        lambda: (
            sql("SELECT status FROM jobs WHERE kind = %s", queue.POST_RUN_MESSAGE) == [("done",)]
        )
    )
    assert _run_row(sql, run_id)["message_ts"] is not None

    worker.stop()
    thread.join(timeout=5)
    assert not thread.is_alive(), "the worker did not stop within 5 s"


# ---- backoff --------------------------------------------------------------------------------


def test_backoff_grows_is_capped_jittered_and_never_below_half_the_base() -> None:
    rng = random.Random(1234)
    samples = {n: [queue.backoff_seconds(n, rng=rng) for _ in range(400)] for n in range(1, 15)}
    floor = queue.BACKOFF_BASE_SECONDS / 2
    for n, values in samples.items():
        ceiling = min(queue.BACKOFF_CAP_SECONDS, queue.BACKOFF_BASE_SECONDS * 2 ** (n - 1))
        assert all(floor <= v <= ceiling for v in values), n
        assert len(set(values)) > 300, f"no jitter at attempt {n}"
    means = [sum(samples[n]) / len(samples[n]) for n in range(1, 15)]
    # Grows until the cap (2 s * 2^8 > 300 s), then stays put.
    assert all(a < b for a, b in itertools.pairwise(means[:9]))
    assert max(max(v) for v in samples.values()) <= queue.BACKOFF_CAP_SECONDS
    assert max(samples[14]) > queue.BACKOFF_CAP_SECONDS * 0.9
    assert queue.backoff_seconds(60, rng=random.Random(7)) <= queue.BACKOFF_CAP_SECONDS
    # Seeded: reproducible.
    again = random.Random(1234)
    assert [queue.backoff_seconds(1, rng=again) for _ in range(400)] == samples[1]
