"""End to end under faults (issue 6): the real gunicorn and worker processes while Postgres
goes away mid-load, a worker is SIGKILLed while Slack holds its answer, Slack answers 429,
5xx or not at all, and two web and two worker processes race on the same runs.

Most tests share one service (two gunicorn workers, two worker processes) on a database of
their own, reached through a TCP proxy that the outage test cuts. Each test uses channels
of its own, so the shared Slack fake only needs its traffic reset in between.

What "exactly once" needs from the worker: Slack has no idempotency key, so a post whose
answer was lost (the worker timed out, or died waiting) can only be found again in the
channel. Every chat.postMessage carries message metadata naming the run and the part
(run message, summary, runner DM, reminder); a retried job reads `conversations.history`
and adopts the message it finds instead of posting again. The fake keeps a message that it
accepted even when its answer never arrives (`fail_next(..., effect_first=True)`).

Kafka going away and coming back is covered by tests/integration/test_relay.py against a
real Kafka-protocol broker.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from coffeebuddy.slack import run_blocks
from coffeebuddy.store import queue
from coffeebuddy.store.queue import RUNNER_REMINDER
from coffeebuddy.web.app import WEB_FAIL_FAST_SECONDS
from coffeebuddy.web.slack_resources import DB_DOWN_TEXT
from testkit.databases import scratch_database
from testkit.fakes.slack_api import FakeSlack, JsonDict
from testkit.processes import ROOT, HttpClient, Service, coverage_env, start_service
from testkit.slack_payloads import (
    SIGNING_SECRET,
    block_action_body,
    command_body,
    sign,
    view_submission_body,
)
from tests.conftest import BOT_TOKEN, CHANNEL, USERS
from tests.driver import (
    Channel,
    SqlFn,
    bring_reminder_forward,
    connect_sql,
    eventually,
    runner_of,
    unfinished_jobs,
)
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e

# Slack shows the user an error when an answer takes longer than this.
SLACK_DEADLINE_SECONDS = 3.0
# The worker's Slack client gives up after this long (COFFEEBUDDY_WORKER_SLACK_TIMEOUT_SECONDS;
# COFFEEBUDDY_SLACK_TIMEOUT_SECONDS is for the calls the web makes).
WORKER_SLACK_TIMEOUT_SECONDS = 3
# Longer than the longest job here (one Slack call that times out), so no job in flight is
# taken over by the other worker; short enough that a job stranded by the outage comes back
# within the test.
SHARED_LEASE_SECONDS = 15
# Longer than a first retry's backoff (at most 2 s): a worker that ignored Retry-After and
# backed off as for any error would come back too early.
RETRY_AFTER_SECONDS = 3
ADMIN = "U0BOSS"
MESSAGE_EVENT_TYPE = "coffeebuddy_message"


# ---- helpers ----------------------------------------------------------------------------------


def _posted_text(message: JsonDict) -> str:
    """A message's text as it was posted (a run message is updated later)."""
    history = message.get("history") or []
    return str(history[0]["text"] if history else message.get("text", ""))


def _part(message: JsonDict) -> str:
    """Which of our messages this is, from the text it was posted with."""
    text = _posted_text(message)
    # "☕ Coffee run closed — <@U1> is going: 3 orders" (a run message posted after its
    # close reads the same, without the count).
    if re.match(r"☕ Coffee run closed\b.*: \d+ orders?$", text):
        return "summary"
    if text.startswith("🔁 Runner changed"):
        return "runner_change"
    if "You're the runner" in text:
        return "runner_dm"
    if "reminder" in text.lower() or text.startswith("⏰"):
        return "reminder"
    return "run_message"


def _parts(messages: list[JsonDict]) -> Counter[str]:
    return Counter(_part(m) for m in messages)


def _click_body(
    slack: FakeSlack, name: str, *, user: str, channel: str, action: str, run_id: str
) -> bytes:
    """A button click as Slack sends it, its response_url named `name` in the fake."""
    return block_action_body(
        user_id=user,
        channel_id=channel,
        action_id=action,
        value=run_id,
        response_url=slack.response_url(name),
        trigger_id=slack.trigger_id(),
    )


def _runner_dms(slack: FakeSlack, channel: str) -> list[tuple[str, JsonDict]]:
    """(user, message) for every "you're the runner" DM about a run in `channel`."""
    users = list(slack.users)
    return [
        (user, m)
        for user in users
        for m in slack.dms(user)
        if _part(m) == "runner_dm" and f"<#{channel}>" in _posted_blocks(m)
    ]


def _posted_blocks(message: JsonDict) -> str:
    """A message's blocks as they were posted, as JSON text."""
    history = message.get("history") or []
    return json.dumps((history[0] if history else message).get("blocks"))


def _in_channel(channel: str) -> Callable[[JsonDict], bool]:
    return lambda args: args.get("channel") == channel


def _in_a_dm(args: JsonDict) -> bool:
    return str(args.get("channel", "")).startswith("D")


def _proxied(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


# ---- the shared service -----------------------------------------------------------------------


@dataclass
class Shared:
    service: Service
    slack: FakeSlack
    sql: SqlFn
    proxy: TcpProxy
    database_url: str  # direct, for the test's own connections

    def channel(self, channel_id: str) -> Channel:
        self.slack.add_channel(channel_id, name=channel_id.lower())
        return Channel(self.service.client, None, self.sql, channel_id, self.slack)


@pytest.fixture(scope="module")
def fault_db(template_db: str) -> Iterator[str]:
    with scratch_database("cb_flt", template=template_db) as url:
        yield url


@pytest.fixture(scope="module")
def fault_slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=BOT_TOKEN) as fake:
        for user in (*USERS, ADMIN):
            fake.add_user(user, name=user.lower()[2:], tz="Europe/Berlin")
        yield fake


@pytest.fixture(scope="module")
def db_proxy(fault_db: str) -> Iterator[TcpProxy]:
    parts = urlsplit(fault_db)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def shared_service(fault_db: str, db_proxy: TcpProxy, fault_slack: FakeSlack) -> Iterator[Service]:
    extra = {
        "COFFEEBUDDY_JOB_LEASE_SECONDS": str(SHARED_LEASE_SECONDS),
        "COFFEEBUDDY_SLACK_TIMEOUT_SECONDS": "1",
        "COFFEEBUDDY_WORKER_SLACK_TIMEOUT_SECONDS": str(WORKER_SLACK_TIMEOUT_SECONDS),
        "COFFEEBUDDY_ADMIN_USER_IDS": ADMIN,
        "COFFEEBUDDY_WORKER_STATS_SECONDS": "5",
        # Exactly-once channel posts are the opt-in mode (channels:history, groups:history).
        "COFFEEBUDDY_CHANNEL_POST_DEDUPE": "true",
    }
    with start_service(
        _proxied(fault_db, db_proxy.port),
        fault_slack.base_url,
        web_workers=2,
        workers=2,
        extra_env=extra,
    ) as service:
        yield service


@pytest.fixture
def shared(
    shared_service: Service, fault_slack: FakeSlack, db_proxy: TcpProxy, fault_db: str
) -> Iterator[Shared]:
    db_proxy.restore()
    fault_slack.reset()  # this test's traffic only; users and channels stay
    sql, conn = connect_sql(fault_db)
    try:
        yield Shared(shared_service, fault_slack, sql, db_proxy, fault_db)
    finally:
        db_proxy.restore()
        conn.close()
        assert all(p.poll() is None for p in (shared_service.web, *shared_service.workers)), (
            "a process of the shared service died"
        )


# ---- 1. Postgres goes away under load ---------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One request a simulated user made, and what they were told."""

    what: str
    user: str
    started: float
    ended: float
    # "ok" (nothing to say), "answered" (a normal answer: done, or a normal no), "db_down",
    # "internal" (the generic error with a reference), "http_<n>", "error" (no answer)
    outcome: str
    detail: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Crowd:
    """Simulated people in several channels, acting at once until told to stop: hosts close
    their run and start the next one, the others order, repeat their usual, cancel."""

    def __init__(self, shared: Shared, hosts: dict[str, str], users: list[str]) -> None:
        self.shared = shared
        self.hosts = hosts
        self.users = users
        self.stop = threading.Event()
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for channel, host in self.hosts.items():
            self._spawn(self._host, channel, host)
        for i, user in enumerate(self.users):
            self._spawn(self._orderer, user, i)

    def answered_since(self, moment: float) -> set[str]:
        """Who made a request after `moment` and has their answer."""
        with self._lock:
            return {a.user for a in self.attempts if a.started >= moment}

    def join(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads), "a simulated user hung"

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- people ---------------------------------------------------------------------------

    def _host(self, channel: str, host: str) -> None:
        sql, conn = connect_sql(self.shared.database_url)
        try:
            while not self.stop.is_set():
                run_id = _open_run(sql, channel)
                if run_id is not None:
                    time.sleep(0.4)  # let people order first
                    self._click(host, channel, run_blocks.ACTION_CLOSE_RUN, run_id, "close")
                else:
                    self._command(host, channel)
                time.sleep(0.1)
        finally:
            conn.close()

    def _orderer(self, user: str, seed: int) -> None:
        rng = random.Random(seed)
        sql, conn = connect_sql(self.shared.database_url)
        channels = list(self.hosts)
        try:
            while not self.stop.is_set():
                channel = rng.choice(channels)
                # The channel's latest run: open, or just closed (people click on the
                # message they see).
                run_id = _latest_run(sql, channel)
                if run_id is None:
                    time.sleep(0.05)
                    continue
                action = rng.choice(("order", "order", "usual", "cancel"))
                if action == "order":
                    self._submit(user, run_id, rng.choice(("tea", "flat white", "cortado")))
                elif action == "usual":
                    self._click(user, channel, run_blocks.ACTION_USE_USUAL, run_id, "usual")
                else:
                    self._click(user, channel, run_blocks.ACTION_CANCEL_ORDER, run_id, "cancel")
                time.sleep(rng.uniform(0.02, 0.15))
        finally:
            conn.close()

    # -- requests, timed ------------------------------------------------------------------

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def _timed(self, path: str, body: bytes) -> tuple[float, float, int | None, str]:
        started = time.monotonic()
        try:
            status, text = _request(self.shared.service.client, path, body)
        except OSError as exc:
            status, text = None, repr(exc)
        return started, time.monotonic(), status, text

    def _command(self, user: str, channel: str) -> None:
        body = command_body(
            user_id=user, channel_id=channel, trigger_id=self.shared.slack.trigger_id()
        )
        started, ended, status, text = self._timed("/slack/commands", body)
        if status != 200:
            outcome = "error" if status is None else f"http_{status}"
            self._record(Attempt("command", user, started, ended, outcome, text[:200]))
            return
        answer = str(json.loads(text).get("text", ""))
        self._record(Attempt("command", user, started, ended, _classify(answer), answer[:200]))

    def _submit(self, user: str, run_id: str, drink: str) -> None:
        body = view_submission_body(user_id=user, run_id=run_id, order_text=drink)
        started, ended, status, text = self._timed("/slack/interactions", body)
        if status != 200:
            outcome = "error" if status is None else f"http_{status}"
            self._record(Attempt("order", user, started, ended, outcome, text[:200]))
            return
        if not text:
            self._record(Attempt("order", user, started, ended, "ok"))
            return
        errors = json.loads(text).get("errors", {})
        answer = " ".join(str(v) for v in errors.values())
        self._record(Attempt("order", user, started, ended, _classify(answer), answer[:200]))

    def _click(self, user: str, channel: str, action: str, run_id: str, what: str) -> None:
        slack = self.shared.slack
        name = f"{what}-{user}-{uuid.uuid4().hex[:8]}"
        body = _click_body(slack, name, user=user, channel=channel, action=action, run_id=run_id)
        started, ended, status, text = self._timed("/slack/interactions", body)
        if status != 200:
            outcome = "error" if status is None else f"http_{status}"
            self._record(Attempt(what, user, started, ended, outcome, text[:200]))
            return
        # What the request itself said through the response_url before it answered; a
        # normal answer comes later, from a job.
        told = " ".join(str(r.get("text", "")) for r in slack.responses(name))
        outcome = _classify(told) if told else "ok"
        self._record(Attempt(what, user, started, ended, outcome, told[:200]))


def _request(client: HttpClient, path: str, body: bytes | None = None) -> tuple[int, str]:
    """A GET, or a POST signed as Slack signs it; waits long enough that a slow answer is
    measured as slow rather than lost."""
    headers = sign(body) if body is not None else {}
    request = urllib.request.Request(client.base + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def _classify(answer: str) -> str:
    if answer == DB_DOWN_TEXT:
        return "db_down"
    if "reference `" in answer:
        return "internal"
    return "answered" if answer else "ok"


def _open_run(sql: SqlFn, channel: str) -> str | None:
    rows = sql(
        "SELECT r.id::text FROM runs r JOIN channels c ON c.id = r.channel_id"
        " WHERE c.slack_channel_id = %s AND r.status = 'open'",
        channel,
    )
    return str(rows[0][0]) if rows else None


def _latest_run(sql: SqlFn, channel: str) -> str | None:
    rows = sql(
        "SELECT r.id::text FROM runs r JOIN channels c ON c.id = r.channel_id"
        " WHERE c.slack_channel_id = %s ORDER BY r.started_at DESC LIMIT 1",
        channel,
    )
    return str(rows[0][0]) if rows else None


def _integrity_problems(sql: SqlFn) -> dict[str, list[tuple[Any, ...]]]:
    """Everything that would show a change written only in part."""
    checks = {
        "run in an unknown state": "SELECT id, status FROM runs"
        " WHERE status NOT IN ('open', 'closed', 'canceled', 'failed')",
        "order without its run": "SELECT o.id FROM orders o"
        " LEFT JOIN runs r ON r.id = o.run_id WHERE r.id IS NULL",
        "closed run without runner": "SELECT id FROM runs WHERE status = 'closed'"
        " AND (runner_user_id IS NULL OR closed_at IS NULL OR runner_reason IS NULL)",
        "closed run with an order not finalized": "SELECT o.id FROM orders o"
        " JOIN runs r ON r.id = o.run_id WHERE r.status = 'closed'"
        " AND o.canceled_at IS NULL AND NOT o.is_final",
        "open run with a finalized order": "SELECT o.id FROM orders o"
        " JOIN runs r ON r.id = o.run_id WHERE r.status = 'open' AND o.is_final",
        "two open runs in a channel": "SELECT channel_id FROM runs WHERE status = 'open'"
        " GROUP BY channel_id HAVING count(*) > 1",
        "run without its post job": "SELECT r.id FROM runs r WHERE NOT EXISTS"
        " (SELECT 1 FROM jobs j WHERE j.run_id = r.id AND j.kind = 'post_run_message')",
        "closed run without its summary or DM job": "SELECT r.id FROM runs r"
        " WHERE r.status = 'closed' AND (SELECT count(DISTINCT kind) FROM jobs j"
        "  WHERE j.run_id = r.id AND j.kind IN ('post_summary', 'dm_runner')) < 2",
        "run without its run_created event": "SELECT r.id FROM runs r WHERE NOT EXISTS"
        " (SELECT 1 FROM events e WHERE e.run_id = r.id AND e.event_type = 'run_created')",
        "closed run without its run_closed event": "SELECT r.id FROM runs r"
        " WHERE r.status = 'closed' AND NOT EXISTS (SELECT 1 FROM events e"
        "  WHERE e.run_id = r.id AND e.event_type = 'run_closed')",
    }
    return {name: rows for name, query in checks.items() if (rows := sql(query))}


def _wait_ready(client: HttpClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "readiness never came back"
        time.sleep(0.2)


def test_database_cut_mid_load_answers_try_again_in_time_and_recovers_by_itself(
    shared: Shared,
) -> None:
    slack, sql, client = shared.slack, shared.sql, shared.service.client
    channels = ["C0FLTDB01", "C0FLTDB02", "C0FLTDB03"]
    hosts = dict(zip(channels, USERS[:3], strict=True))
    for channel in channels:
        shared.channel(channel)
    crowd = Crowd(shared, hosts, list(USERS[3:]))

    crowd.start()
    try:
        # Under way: runs started, orders written, runs closed.
        eventually(
            lambda: (
                sum(a.outcome == "ok" for a in crowd.attempts) >= 30
                and sql("SELECT count(*) FROM runs WHERE status = 'closed'")[0][0] >= 2
            ),
            timeout=30,
            what="the load under way",
        )
        before_cut = len(crowd.attempts)
        shared.proxy.cut()
        cut_at = time.monotonic()
        ready_during = _request(client, "/health/ready")
        # The outage lasts a few seconds, and until everyone has tried and been answered.
        time.sleep(3.0)
        everyone = set(hosts.values()) | set(crowd.users)
        eventually(
            lambda: crowd.answered_since(cut_at) == everyone,
            timeout=30,
            what="everyone to try while the database is away",
        )
    finally:
        crowd.join()
        shared.proxy.restore()

    attempts = crowd.attempts
    # The cut fell in the middle of the load: people were busy right up to it, and each of
    # them tried again while the database was away.
    assert before_cut >= 30
    assert any(cut_at - 0.5 < a.started < cut_at for a in attempts)
    during = [a for a in attempts if a.started >= cut_at]
    assert len(during) >= len(everyone)
    # Nobody was ever told anything but a normal answer or the clear "try again" ...
    bad = [a for a in attempts if a.outcome not in ("ok", "answered", "db_down")]
    assert not bad, bad[:5]
    # ... and once the database was gone, only the "try again", whatever they did.
    assert {a.outcome for a in during} == {"db_down"}, Counter(a.outcome for a in during)
    assert ready_during[0] == 503, ready_during
    # Checked at the end, after the recovery: every "try again" within Slack's deadline,
    # time spent queueing for a free web worker included.
    slow = sorted(
        (round(a.seconds, 1), a.what) for a in during if a.seconds >= SLACK_DEADLINE_SECONDS
    )

    # Back by itself. Each web process fails fast for a moment after its last failure
    # (WEB_FAIL_FAST_SECONDS); readiness answered by one of them says nothing of the other.
    _wait_ready(client, timeout=20)
    time.sleep(WEB_FAIL_FAST_SECONDS)
    assert not _integrity_problems(sql)

    # A new run works end to end: posted, ordered, closed, summarised, runner told.
    chan = shared.channel("C0FLTDB99")
    run_id = chan.start("U0ANA")
    slack.wait_for(lambda: slack.messages(chan.channel_id), timeout=20)
    assert chan.submit("U0BEN", "tea") is None
    assert chan.submit("U0CAT", "latte") is None
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    slack.wait_for(lambda: _parts(slack.messages(chan.channel_id))["summary"] == 1, timeout=20)
    slack.wait_for(lambda: slack.dms(runner_of(sql, run_id)), timeout=20)

    # Work the outage stranded (claimed, then cut off) comes back after its lease: every
    # run the load left behind gets its messages, each exactly once.
    def settled() -> bool:
        missing = sql(
            "SELECT count(*) FROM runs WHERE message_ts IS NULL AND status <> 'failed'"
            " OR (status = 'closed' AND (summary_ts IS NULL OR runner_dm_ts IS NULL))"
        )[0][0]
        return missing == 0 and not unfinished_jobs(sql)

    eventually(settled, timeout=SHARED_LEASE_SECONDS + 30, what="the stranded work done")
    time.sleep(0.5)  # let any stray duplicate arrive before counting
    assert not _integrity_problems(sql)
    for channel in [*channels, chan.channel_id]:
        runs = sql(
            "SELECT count(*), count(*) FILTER (WHERE r.status = 'closed') FROM runs r"
            " JOIN channels c ON c.id = r.channel_id WHERE c.slack_channel_id = %s",
            channel,
        )[0]
        posted = _parts(slack.messages(channel))
        assert (posted["run_message"], posted["summary"]) == tuple(runs), (channel, posted)
        assert len(_runner_dms(slack, channel)) == runs[1], channel
    assert not slow, (
        f"{len(slow)} of {len(during)} answers during the outage came after Slack's "
        f"{SLACK_DEADLINE_SECONDS:.0f} s deadline (seconds, action): {slow}"
    )


# ---- 2. A worker SIGKILLed while Slack holds its answer -----------------------------------------

# The fake keeps the answer back this long: far past the kill.
HOLD_SECONDS = 60
KILL_LEASE_SECONDS = 5


def _spawn_worker(
    service: Service, database_url: str, slack: FakeSlack, n: int
) -> subprocess.Popen[bytes]:
    """One more `python worker.py`, configured as `start_service` configures its own."""
    env = {
        **coverage_env(),
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_BASE_URL": slack.base_url,
        "PROMETHEUS_MULTIPROC_DIR": str(service.logs / "metrics"),
        "COFFEEBUDDY_WORKER_METRICS_PORT": "0",
        "COFFEEBUDDY_JOB_LEASE_SECONDS": str(KILL_LEASE_SECONDS),
        "COFFEEBUDDY_CHANNEL_POST_DEDUPE": "true",
    }
    log = (service.logs / f"worker-replacement-{n}.log").open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        log.close()  # the child has its own copy


def _job(sql: SqlFn, kind: str, run_id: str) -> tuple[str, int]:
    [(status, attempts)] = sql(
        "SELECT status, attempts FROM jobs WHERE kind = %s AND run_id = %s", kind, run_id
    )
    return str(status), int(attempts)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


def test_a_worker_killed_while_slack_holds_the_answer_sends_nothing_twice(
    database_url: str, slack: FakeSlack, sql: SqlFn
) -> None:
    extra = {
        "COFFEEBUDDY_JOB_LEASE_SECONDS": str(KILL_LEASE_SECONDS),
        "COFFEEBUDDY_CHANNEL_POST_DEDUPE": "true",
    }
    spawned: list[subprocess.Popen[bytes]] = []
    with start_service(database_url, slack.base_url, workers=1, extra_env=extra) as service:
        try:
            chan = Channel(service.client, None, sql, CHANNEL, slack)
            victim = service.worker

            def kill_and_replace(kinds: list[str], run_id: str) -> None:
                """Kill the worker while Slack holds the answers of `kinds` (it already
                keeps the messages), and start another one in its place."""
                nonlocal victim
                eventually(
                    lambda: all(_job(sql, k, run_id) == ("running", 1) for k in kinds),
                    what=f"{kinds} in flight",
                )
                _kill(victim)
                victim = _spawn_worker(service, database_url, slack, len(spawned) + 1)
                spawned.append(victim)
                eventually(
                    lambda: all(_job(sql, k, run_id)[0] == "done" for k in kinds),
                    timeout=KILL_LEASE_SECONDS + 20,
                    what=f"{kinds} done by the new worker",
                )
                for kind in kinds:
                    # Taken over once after the lease; not retried by a worker that lived on.
                    assert _job(sql, kind, run_id) == ("done", 2), kind

            # The run message: Slack keeps it, the worker dies waiting for the answer.
            slack.fail_next(
                "chat.postMessage", delay=HOLD_SECONDS, effect_first=True, when=_in_channel(CHANNEL)
            )
            assert "Starting your coffee run" in chan.command("U0ANA", "in 20m Lobby cafe")["text"]
            run_id = chan.run_id()
            slack.wait_for(lambda: slack.messages(CHANNEL))
            kill_and_replace([queue.POST_RUN_MESSAGE], run_id)

            assert chan.submit("U0BEN", "flat white") is None
            assert chan.submit("U0CAT", "tea") is None
            eventually(lambda: not unfinished_jobs(sql), what="order confirmations sent")

            # The summary and the runner's DM: both kept by Slack, the worker dies.
            slack.fail_next(
                "chat.postMessage", delay=HOLD_SECONDS, effect_first=True, when=_in_channel(CHANNEL)
            )
            slack.fail_next(
                "chat.postMessage", delay=HOLD_SECONDS, effect_first=True, when=_in_a_dm
            )
            chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
            slack.wait_for(lambda: len(slack.messages(CHANNEL)) == 2)
            runner = runner_of(sql, run_id)
            slack.wait_for(lambda: slack.dms(runner))
            kill_and_replace([queue.POST_SUMMARY, queue.DM_RUNNER], run_id)

            # The reminder, brought forward to now: kept by Slack, the worker dies.
            slack.fail_next(
                "chat.postMessage", delay=HOLD_SECONDS, effect_first=True, when=_in_a_dm
            )
            assert bring_reminder_forward(sql, run_id), "no queued reminder"
            slack.wait_for(lambda: len(slack.dms(runner)) == 2)
            kill_and_replace([RUNNER_REMINDER], run_id)

            eventually(lambda: not unfinished_jobs(sql), what="nothing left to do")
            time.sleep(0.5)  # let any stray duplicate arrive before counting

            # Exactly one of each, and the stored timestamps are the messages Slack kept.
            channel_messages, dms = slack.messages(CHANNEL), slack.dms(runner)
            assert _parts(channel_messages) == {"run_message": 1, "summary": 1}
            assert _parts(dms) == {"runner_dm": 1, "reminder": 1}
            [(message_ts, summary_ts, dm_ts, reminder_ts)] = sql(
                "SELECT message_ts, summary_ts, runner_dm_ts, reminder_ts FROM runs WHERE id = %s",
                run_id,
            )
            by_part = {_part(m): m for m in channel_messages + dms}
            assert {p: m["ts"] for p, m in by_part.items()} == {
                "run_message": message_ts,
                "summary": summary_ts,
                "runner_dm": dm_ts,
                "reminder": reminder_ts,
            }
            # Each carries the metadata a retried job looks for (a DM names its recipient:
            # after "I can't go" the next runner gets a DM of their own).
            for part, message in by_part.items():
                tag = f"{part}:{runner}" if part in ("runner_dm", "reminder") else part
                assert message.get("metadata") == {
                    "event_type": MESSAGE_EVENT_TYPE,
                    "event_payload": {"run_id": run_id, "part": tag},
                }, part
            # The new workers looked in the history instead of posting again.
            looked = [c for c in slack.calls("conversations.history") if c.ok]
            assert {c.args["channel"] for c in looked} == {CHANNEL, dms[0]["channel"]}
            posts = [c for c in slack.calls("chat.postMessage") if c.ok]
            assert len(posts) == 4, [c.args.get("text") for c in posts]

            victim.send_signal(signal.SIGTERM)
            assert victim.wait(timeout=30) == 0
        finally:
            for proc in spawned:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


# ---- 3. Slack says 429, fails with 5xx, or does not answer ------------------------------------


def _play_run(shared: Shared, channel: str, arm_close: Callable[[], None]) -> tuple[str, str]:
    """Start a run, order, close it (after `arm_close`); wait until every message is out.
    Returns (run id, runner)."""
    slack, sql = shared.slack, shared.sql
    chan = shared.channel(channel)
    run_id = chan.start("U0ANA")
    slack.wait_for(lambda: slack.messages(channel), timeout=40)
    assert chan.submit("U0BEN", "flat white") is None
    assert chan.submit("U0CAT", "tea") is None
    eventually(
        lambda: not unfinished_jobs(sql), timeout=40, what="the run message and confirmations"
    )
    arm_close()
    chan.click("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    eventually(
        lambda: (
            sql(
                "SELECT summary_ts IS NOT NULL AND runner_dm_ts IS NOT NULL FROM runs"
                " WHERE id = %s",
                run_id,
            )
            == [(True,)]
            and not unfinished_jobs(sql)
        ),
        timeout=60,
        what="the summary and the runner's DM",
    )
    time.sleep(0.5)  # let any stray duplicate arrive before counting
    return run_id, runner_of(sql, run_id)


def _assert_each_once(shared: Shared, channel: str, run_id: str, runner: str) -> None:
    slack, sql = shared.slack, shared.sql
    messages = slack.messages(channel)
    assert _parts(messages) == {"run_message": 1, "summary": 1}, [_posted_text(m) for m in messages]
    dms = _runner_dms(slack, channel)
    assert [user for user, _ in dms] == [runner]
    [(message_ts, summary_ts, dm_ts)] = sql(
        "SELECT message_ts, summary_ts, runner_dm_ts FROM runs WHERE id = %s", run_id
    )
    assert {_part(m): m["ts"] for m in messages} == {
        "run_message": message_ts,
        "summary": summary_ts,
    }
    assert dms[0][1]["ts"] == dm_ts
    for kind in (queue.POST_RUN_MESSAGE, queue.POST_SUMMARY, queue.DM_RUNNER):
        assert _job(sql, kind, run_id)[0] == "done", kind


def test_rate_limits_are_waited_out_and_each_message_lands_once(shared: Shared) -> None:
    slack = shared.slack
    channel = "C0FLTRL01"
    # The run message.
    slack.fail_next("chat.postMessage", retry_after=RETRY_AFTER_SECONDS, when=_in_channel(channel))

    def arm_close() -> None:  # the summary, and the runner's DM
        slack.fail_next(
            "chat.postMessage", retry_after=RETRY_AFTER_SECONDS, when=_in_channel(channel)
        )
        slack.fail_next("chat.postMessage", retry_after=RETRY_AFTER_SECONDS, when=_in_a_dm)

    run_id, runner = _play_run(shared, channel, arm_close)
    _assert_each_once(shared, channel, run_id, runner)

    posts = slack.calls("chat.postMessage")
    limited = [c for c in posts if c.status == 429]
    assert len(limited) == 3
    for hit in limited:
        # Slack limits chat.postMessage per channel: nothing went to that channel again
        # before Retry-After was over, and then it went through.
        after = [c for c in posts if c.args["channel"] == hit.args["channel"] and c.at > hit.at]
        assert after, hit
        assert after[0].ok
        waited = after[0].at - hit.at
        assert waited >= RETRY_AFTER_SECONDS - 0.05, (hit.args["channel"], waited)
    rows = shared.sql(
        "SELECT kind, attempts FROM jobs WHERE run_id = %s AND kind = ANY(%s)",
        run_id,
        [queue.POST_RUN_MESSAGE, queue.POST_SUMMARY, queue.DM_RUNNER],
    )
    # Waiting out a rate limit is not a failed attempt.
    assert {kind: attempts for kind, attempts in rows} == {
        queue.POST_RUN_MESSAGE: 1,
        queue.POST_SUMMARY: 1,
        queue.DM_RUNNER: 1,
    }


def test_server_errors_are_retried_and_each_message_lands_once(shared: Shared) -> None:
    slack = shared.slack
    channel = "C0FLTSE01"
    slack.fail_next("chat.postMessage", status=500, when=_in_channel(channel))
    slack.fail_next("chat.postMessage", status=503, when=_in_channel(channel))

    def arm_close() -> None:
        slack.fail_next("chat.postMessage", status=502, when=_in_channel(channel))
        slack.fail_next("conversations.open", status=500)
        slack.fail_next("chat.postMessage", status=503, when=_in_a_dm)

    run_id, runner = _play_run(shared, channel, arm_close)
    _assert_each_once(shared, channel, run_id, runner)
    failed = [c for c in slack.calls() if c.injected and c.status >= 500]
    assert len(failed) == 5
    assert all(slack.pending_faults(m) == 0 for m in ("chat.postMessage", "conversations.open"))
    assert _job(shared.sql, queue.POST_RUN_MESSAGE, run_id) == ("done", 3)
    assert _job(shared.sql, queue.POST_SUMMARY, run_id) == ("done", 2)
    assert _job(shared.sql, queue.DM_RUNNER, run_id) == ("done", 3)


def test_slack_timeouts_are_retried_and_a_kept_message_is_not_sent_again(shared: Shared) -> None:
    slack = shared.slack
    channel = "C0FLTTO01"
    late = WORKER_SLACK_TIMEOUT_SECONDS + 2
    # The run message: Slack never answers in time and keeps nothing.
    slack.fail_next("chat.postMessage", status=503, delay=late, when=_in_channel(channel))

    def arm_close() -> None:
        # The summary and the DM: Slack keeps them, but the answers come too late.
        slack.fail_next(
            "chat.postMessage", delay=late, effect_first=True, when=_in_channel(channel)
        )
        slack.fail_next("chat.postMessage", delay=late, effect_first=True, when=_in_a_dm)

    run_id, runner = _play_run(shared, channel, arm_close)
    _assert_each_once(shared, channel, run_id, runner)
    for kind in (queue.POST_RUN_MESSAGE, queue.POST_SUMMARY, queue.DM_RUNNER):
        assert _job(shared.sql, kind, run_id) == ("done", 2), kind


def test_slack_timeouts_in_the_request_path_answer_within_the_deadline(shared: Shared) -> None:
    """The web's own Slack calls (COFFEEBUDDY_SLACK_TIMEOUT_SECONDS=1 here): a slow
    users.info or views.open becomes a clear answer in time, and nothing is written."""
    slack, sql = shared.slack, shared.sql
    chan = shared.channel("C0FLTTO02")
    slack.add_user("U0SLOWTZ", name="slowtz")  # a profile not cached yet
    slack.fail_next("users.info", delay=SLACK_DEADLINE_SECONDS + 2)
    started = time.monotonic()
    answer = chan.command("U0SLOWTZ", "10:30 Lobby")
    assert time.monotonic() - started < SLACK_DEADLINE_SECONDS
    assert "couldn't reach Slack" in answer["text"]
    assert _open_run(sql, chan.channel_id) is None

    run_id = chan.start("U0ANA")
    slack.fail_next("views.open", delay=SLACK_DEADLINE_SECONDS + 2)
    started = time.monotonic()
    chan.click("U0BEN", run_blocks.ACTION_PLACE_ORDER, run_id)
    assert time.monotonic() - started < SLACK_DEADLINE_SECONDS
    eventually(
        lambda: any("please click again" in t for t in chan.told("U0BEN")),
        what="told to click again",
    )
    assert sql("SELECT count(*) FROM orders WHERE run_id = %s", run_id) == [(0,)]


# ---- 4. Two web and two worker processes racing on the same runs ------------------------------


def test_concurrent_closes_and_clicks_on_two_webs_and_two_workers_yield_one_of_everything(
    shared: Shared,
) -> None:
    slack, sql, service = shared.slack, shared.sql, shared.service
    assert len(service.workers) == 2
    channels = [f"C0FLTRC{i:02d}" for i in range(6)]
    people = list(USERS[1:6])
    run_ids: dict[str, str] = {}
    for channel in channels:
        chan = shared.channel(channel)
        run_ids[channel] = chan.start("U0ANA")
        for user, drink in zip(people, ("tea", "latte", "mocha", "cortado", "chai"), strict=True):
            assert chan.submit(user, drink) is None
    eventually(
        lambda: all(slack.messages(c) for c in channels) and not unfinished_jobs(sql),
        what="every run posted",
    )

    def act(task: tuple[str, str, str]) -> tuple[str, str, str]:
        """One click or order, as Slack sends it; returns (channel, action, response name)."""
        channel, user, action = task
        run_id = run_ids[channel]
        if action == "order":
            body = view_submission_body(user_id=user, run_id=run_id, order_text="flat white")
            name = ""
        else:
            name = f"{channel}-{action}-{user}-{uuid.uuid4().hex[:8]}"
            body = _click_body(
                slack, name, user=user, channel=channel, action=action, run_id=run_id
            )
        answer = service.client.post("/slack/interactions", body)
        assert answer.status_code == 200, answer.text
        return channel, action, name

    closes = 6
    tasks = []
    for channel in channels:
        # The starter and an admin both close, several times each (double clicks), while
        # people still cancel, repeat their usual and order.
        tasks += [(channel, "U0ANA", run_blocks.ACTION_CLOSE_RUN)] * (closes - 2)
        tasks += [(channel, ADMIN, run_blocks.ACTION_CLOSE_RUN)] * 2
        tasks += [(channel, people[0], run_blocks.ACTION_CANCEL_ORDER)]
        tasks += [(channel, people[0], run_blocks.ACTION_USE_USUAL)]
        tasks += [(channel, people[1], "order"), (channel, "U0FAY", "order")]
    random.Random(6).shuffle(tasks)
    # Every click leaves at the same instant: both web processes work on the same runs at
    # once (a version without the run row lock fails here).
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        start = threading.Barrier(len(tasks))

        def at_once(task: tuple[str, str, str]) -> tuple[str, str, str]:
            start.wait(timeout=30)
            return act(task)

        done = list(pool.map(at_once, tasks))

    def all_out() -> bool:
        rows = sql(
            "SELECT count(*) FROM runs WHERE id = ANY(%s::uuid[]) AND status = 'closed'"
            " AND summary_ts IS NOT NULL AND runner_dm_ts IS NOT NULL",
            list(run_ids.values()),
        )
        return rows[0][0] == len(channels) and not unfinished_jobs(sql)

    eventually(all_out, timeout=60, what="every run closed, summarised and DMed")
    time.sleep(1.0)  # let any stray duplicate arrive before counting

    assert not _integrity_problems(sql)
    for channel, run_id in run_ids.items():
        # One close did it; the others were told the run is already closed. One person's
        # answers about a run coalesce while queued (the latest wins), so each closer whose
        # click did nothing heard it at least once, and nobody more often than they clicked.
        told = [
            (name.split("-")[2], " ".join(str(r.get("text", "")) for r in slack.responses(name)))
            for chan_id, action, name in done
            if chan_id == channel and action == run_blocks.ACTION_CLOSE_RUN
        ]
        assert len(told) == closes
        # The answer links to the summary once the worker has its permalink.
        already = re.compile(
            r"This coffee run is already closed\.(?: <[^<>|]+\|See the orders>\.)?"
        )
        assert all(not already.sub("", t).strip() for _, t in told), told
        assert 1 <= sum(len(already.findall(t)) for _, t in told) <= closes - 1, (channel, told)
        for closer in ("U0ANA", ADMIN):
            assert any(u == closer and "already closed" in t for u, t in told), (closer, told)
        runner = runner_of(sql, run_id)
        messages = slack.messages(channel)
        assert _parts(messages) == {"run_message": 1, "summary": 1}, channel
        [summary] = [m for m in messages if _part(m) == "summary"]
        assert f"— <@{runner}> is going" in _posted_text(summary)
        assert [user for user, _ in _runner_dms(slack, channel)] == [runner], channel
        final = sql(
            "SELECT u.slack_user_id FROM orders o JOIN users u ON u.id = o.user_id"
            " WHERE o.run_id = %s AND o.is_final",
            run_id,
        )
        assert runner in {u for (u,) in final}
        items = "1 order" if len(final) == 1 else f"{len(final)} orders"
        assert _posted_text(summary).endswith(f": {items}"), (channel, _posted_text(summary))
        events = Counter(
            t
            for (t,) in sql(
                "SELECT event_type FROM events WHERE run_id = %s AND event_type"
                " IN ('run_closed', 'runner_assigned')",
                run_id,
            )
        )
        assert events == {"run_closed": 1, "runner_assigned": 1}, channel
        [(served,)] = sql(
            "SELECT coalesce(sum(s.runs_served_count), 0) FROM runner_stats s"
            " JOIN channels c ON c.id = s.channel_id WHERE c.slack_channel_id = %s",
            channel,
        )
        assert served == 1, channel
    # Exactly one of the closes per run did it; one post job of each kind per run.
    kinds = Counter(
        kind
        for (kind,) in sql(
            "SELECT kind FROM jobs WHERE run_id = ANY(%s::uuid[])", list(run_ids.values())
        )
    )
    for kind in (queue.POST_RUN_MESSAGE, queue.POST_SUMMARY, queue.DM_RUNNER):
        assert kinds[kind] == len(channels), kind
