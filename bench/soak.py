"""Soak: thousands of coffee runs through the simulator against the real gunicorn + worker
+ Postgres, checking every one, with the database size and the processes' memory printed
at the start, as it goes and at the end.

    .venv/bin/python -m bench.soak --runs 10000 --participants 30 [--channels 10]

Each client thread plays one channel at a time: `/coffee`, then `--participants` people
press "Use my usual" (someone without a usual in that channel gets the order form, fills it
in and submits it), then the starter closes the run. A run counts as good when every HTTP
answer was 200, every "Use my usual" was confirmed through its response_url, and the
channel summary and the runner's DM both arrived naming the runner and the right number of
orders. At the end the database is checked too: every run closed with a runner, summary and
DM, one active order per participant, no dead jobs and no jobs left behind.

Exits 1 when anything failed. The machine is shared: throughput figures are only
comparable within one run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import queue
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.request_latency import percentile, ts_key
from bench.setup import bench_service, wait_for_no_due_jobs
from coffeebuddy.slack import run_blocks
from simulator import Button, Click, HttpAnswer, SimulationError, Simulator
from testkit.fakes.slack_api import FakeSlack

DRINKS = ("flat white", "oat latte", "espresso", "cappuccino", "tea", "mocha", "cortado")
SUMMARY_PREFIX = "☕ Coffee run closed — <@"
USUAL_CONFIRMATION = "☕ Ordered your usual"
RUNNER_DM_PREFIX = "☕ You're the runner"


# -- the processes under test ------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, command line) of a process; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # The command name (2nd field) may hold spaces and parentheses: split after the last ")".
    ppid = int(stat.rpartition(")")[2].split()[1])
    return ppid, cmdline.replace(b"\0", b" ").decode(errors="replace")


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) and info[0] == pid:
            found.append((int(entry.name), info[1]))
    return sorted(found)


@dataclass(frozen=True)
class ServiceProcesses:
    """The service `bench_service` started as children of this process (found in /proc):
    gunicorn's master and its workers, and the job worker(s)."""

    web_master: int
    web_workers: list[int]
    job_workers: list[int]

    @classmethod
    def find(cls) -> ServiceProcesses:
        children = _children(os.getpid())
        masters = [pid for pid, cmd in children if "gunicorn" in cmd and "app:app" in cmd]
        jobs = [pid for pid, cmd in children if cmd.rstrip().endswith("worker.py")]
        if len(masters) != 1 or not jobs:
            raise RuntimeError(f"can't tell the service's processes apart: {children}")
        return cls(masters[0], [pid for pid, _ in _children(masters[0])], jobs)

    @property
    def log_dir(self) -> Path:
        """Where start_service writes web.log and worker.log (gunicorn's stdout)."""
        return Path(os.readlink(f"/proc/{self.web_master}/fd/1")).parent


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS) in MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def database_mb(url: str) -> float:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0]) / 2**20


def autovacuum_on(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    return row is not None and row[0] == "on"


def vacuum(url: str) -> None:
    """What autovacuum would have done by now (for servers that run without it)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def dead_tuples(url: str) -> str:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables"
            " ORDER BY n_dead_tup DESC, n_live_tup DESC LIMIT 5"
        ).fetchall()
    return ", ".join(f"{name} {live} live/{dead} dead" for name, live, dead in rows)


# -- keeping the fake Slack small ----------------------------------------------------------


class LeanFake:
    """Cheap looks at a long-lived FakeSlack, and `trim()` to forget what a soak no longer
    needs. FakeSlack keeps every call, message version, ephemeral and response_url for
    the tests that inspect them; over 10,000 runs that is gigabytes, and the response_url
    look-up (a scan of every URL ever issued) grows quadratic. Until FakeSlack has a public
    way to forget, this reaches into its state, always under its lock."""

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake

    def newest(self, channel: str, n: int) -> list[dict[str, Any]]:
        """The newest `n` messages in `channel`, oldest first: the stored objects, not
        copies. Only for wait predicates (they run under the fake's lock); don't mutate."""
        with self.fake._lock:
            return [s.message for s in self.fake._messages.get(channel, [])[-n:]]

    def answered(self, names: Iterable[str]) -> bool:
        """Has every one of these response_urls been posted to?"""
        with self.fake._lock:
            return all(self.fake._responses.get(name) for name in names)

    def trim(
        self,
        sim: Simulator,
        *,
        keep_messages: int = 8,
        keep_calls: int = 20_000,
        keep_urls: int = 20_000,
        keep_ephemerals: int = 5_000,
    ) -> None:
        """Forget all but the newest of each kind. Removing only from the old end keeps
        `view_opened_with` right (it pairs calls and views counting from the newest)."""
        fake = self.fake
        with fake._lock:
            for stored in fake._messages.values():
                del stored[:-keep_messages]
            del fake._calls[:-keep_calls]
            del fake._ephemerals[:-keep_ephemerals]
            extra = len(fake._response_ids) - keep_urls
            for name in list(itertools.islice(fake._response_ids, max(extra, 0))):
                del fake._response_ids[name]
                fake._responses.pop(name, None)
            extra = len(fake._triggers_issued) - keep_urls
            for trigger in list(itertools.islice(fake._triggers_issued, max(extra, 0))):
                del fake._triggers_issued[trigger]
                fake._triggers_used.discard(trigger)
        with sim._lock:
            extra = len(sim._owners) - keep_urls
            for name in list(itertools.islice(sim._owners, max(extra, 0))):
                del sim._owners[name]


# -- the soak ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the soak saw, shared by the client threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    requests: int = 0
    bad_answers: int = 0
    errors: list[str] = field(default_factory=list)
    runs_done: int = 0
    runs_good: int = 0

    def observe(self, path: str, body: bytes, answer: HttpAnswer) -> None:
        kind = "/coffee" if path == "/slack/commands" else "interaction"
        with self.lock:
            self.requests += 1
            self.latencies.setdefault(kind, []).append(answer.elapsed * 1000)
            if not answer.ok:
                self.bad_answers += 1

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)
        print(f"ERROR {text}", flush=True)


class Failed(Exception):
    pass


def _check(answer: HttpAnswer, what: str) -> None:
    if not answer.ok:
        raise Failed(f"{what}: {answer.describe()}")


@dataclass(eq=False)  # compared by identity, as before
class Soak:
    sim: Simulator
    lean: LeanFake
    users: list[str]
    participants: int
    seed: int
    tally: Tally = field(default_factory=Tally, init=False)
    _usual_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _has_usual: set[tuple[str, str]] = field(default_factory=set, init=False)

    def run(self, channel: str, number: int) -> None:
        """One whole run in `channel`; raises Failed or SimulationError saying what broke."""
        rng = random.Random(self.seed * 1_000_003 + number)
        people = rng.sample(self.users, self.participants)
        starter = people[0]
        sim = self.sim
        before = [m["ts"] for m in self.lean.newest(channel, 1)]
        started = sim.command(starter, channel)
        _check(started.answer, "/coffee")
        usual = sim.wait_for(
            lambda: sim.find_button(
                channel,
                run_blocks.ACTION_USE_USUAL,
                newer_than=before[0] if before else None,
                limit=2,
            ),
            f"the run message in {channel}",
        )
        assert usual is not None  # wait_for returns only a truthy value
        clicks = [self._order(person, usual, rng) for person in people]
        waiting = [c for c in clicks if c is not None]
        names = [c.response_name for c in waiting]
        sim.wait_for(lambda: self.lean.answered(names), f"{len(names)} usual-order confirmations")
        for click in waiting:
            said = sim.answers(click)[0]
            if not said.startswith(USUAL_CONFIRMATION):
                raise Failed(f"@{click.user} was told {said!r} after [Use my usual]")
        close = sim.find_button(channel, run_blocks.ACTION_CLOSE_RUN, value=usual.value, limit=2)
        if close is None:
            raise Failed("the run message lost its [Close run]")
        closed_at = time.time()
        _check(sim.click(starter, close).answer, "[Close run]")
        # "N orders" in the summary's and the DM's notification text (one order per person).
        items = f": {self.participants} orders"
        run_ts = ts_key(usual.message_ts)
        summary = sim.wait_for(
            lambda: self._newest_with(
                channel,
                3,
                lambda m: ts_key(m["ts"]) > run_ts and m["text"].startswith(SUMMARY_PREFIX),
            ),
            f"the summary in {channel}",
        )
        assert summary is not None  # wait_for returns only a truthy value
        if items not in summary:
            raise Failed(f"the summary says {summary!r}, not {items}")
        runner = re.match(r".*— <@(\w+)> is going", summary)
        if runner is None or runner.group(1) not in people:
            raise Failed(f"the summary names no participant as runner: {summary!r}")
        dm = sim.wait_for(
            lambda: self._newest_with(
                "D" + runner.group(1),
                8,
                lambda m: m["text"].startswith(RUNNER_DM_PREFIX) and float(m["ts"]) >= closed_at,
            ),
            f"the runner's DM for {channel}",
        )
        assert dm is not None
        if items not in dm:
            raise Failed(f"the runner's DM says {dm!r}, not {items}")

    def _newest_with(
        self, channel: str, n: int, wanted: Callable[[dict[str, Any]], bool]
    ) -> str | None:
        """The text of the newest of the last `n` messages in `channel` that is `wanted`."""
        for message in reversed(self.lean.newest(channel, n)):
            if "text" in message and wanted(message):
                return str(message["text"])
        return None

    def _order(self, person: str, usual: Button, rng: random.Random) -> Click | None:
        """[Use my usual]; someone without one gets the form and submits it. Returns the
        click whose response_url answer confirms the usual order, None for a form."""
        key = (usual.channel, person)
        with self._usual_lock:
            has_usual = key in self._has_usual
        click = self.sim.click(person, usual)
        _check(click.answer, f"@{person}'s [Use my usual]")
        if has_usual:
            return click
        view = self.sim.opened_view(click)
        if view is None:
            raise Failed(f"@{person} has no usual in {usual.channel} yet but no form opened")
        sent = self.sim.submit(person, view, {run_blocks.ORDER_BLOCK_ID: rng.choice(DRINKS)})
        _check(sent.answer, f"@{person}'s order form")
        if sent.errors:
            raise Failed(f"@{person}'s order form shows {sent.errors}")
        with self._usual_lock:
            self._has_usual.add(key)
        return None


def _open_run(url: str, channel: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM runs r JOIN channels c ON c.id = r.channel_id"
            " WHERE c.slack_channel_id = %s AND r.status = 'open'",
            (channel,),
        ).fetchone()
    return bool(row and row[0])


def final_checks(url: str, runs: int, participants: int) -> list[str]:
    """What the database says about the whole soak; each problem as one line."""
    problems = []
    with psycopg.connect(url) as conn:
        # Give the worker a moment to finish what the last runs asked for.
        wait_for_no_due_jobs(conn, ahead="5 seconds", timeout=60, every=0.5)
        by_status: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM runs GROUP BY 1").fetchall()
        )
        print(f"runs by status: {by_status}")
        if by_status.get("closed", 0) < runs or len(by_status) != 1:
            problems.append(f"expected {runs} closed runs and no other, got {by_status}")
        row = conn.execute(
            "SELECT count(*) FROM runs WHERE status = 'closed' AND (runner_user_id IS NULL"
            " OR message_ts IS NULL OR summary_ts IS NULL OR runner_dm_ts IS NULL)"
        ).fetchone()
        if row and row[0]:
            problems.append(f"{row[0]} closed runs lack a runner, message, summary or DM")
        rows = conn.execute(
            "SELECT n, count(*) FROM (SELECT r.id, count(o.id) AS n FROM runs r"
            " LEFT JOIN orders o ON o.run_id = r.id AND o.canceled_at IS NULL"
            " GROUP BY r.id) t GROUP BY n ORDER BY n"
        ).fetchall()
        if [n for n, _ in rows] != [participants]:
            problems.append(f"runs by active order count (want all {participants}): {rows}")
        jobs: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM jobs GROUP BY 1").fetchall()
        )
        print(f"jobs by status: {jobs}")
        for kind, error, n in conn.execute(
            "SELECT kind, last_error, count(*) FROM jobs WHERE status = 'dead' GROUP BY 1, 2"
        ).fetchall():
            problems.append(f"{n} dead {kind} jobs: {error}")
        for kind, n in conn.execute(
            "SELECT kind, count(*) FROM jobs WHERE status IN ('queued', 'running')"
            " AND run_at <= now() GROUP BY 1"
        ).fetchall():
            problems.append(f"{n} {kind} jobs still due after the soak")
    return problems


def _memory(procs: ServiceProcesses) -> str:
    workers = ", ".join(f"{rss_mb(pid):.1f}" for pid in procs.job_workers)
    web = ", ".join(f"{rss_mb(pid):.1f}" for pid in procs.web_workers)
    return f"job worker RSS {workers} MiB; gunicorn workers RSS {web} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--participants", type=int, default=30)
    parser.add_argument("--channels", type=int, default=10, help="runs in flight, one thread each")
    parser.add_argument("--users", type=int, default=60, help="people in the workspace")
    parser.add_argument("--progress", type=int, default=250, help="print every N runs")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait for the bot")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--vacuum-every",
        type=int,
        default=None,
        help="VACUUM (ANALYZE) every N runs; default: every 500 if the server's autovacuum is"
        " off (the queue's indexes fill with dead entries and every job claim slows), else never",
    )
    args = parser.parse_args()
    if args.participants > args.users:
        parser.error("--participants can't exceed --users")

    with bench_service("C0SOAK", args.channels, users=args.users) as bench:
        procs = ServiceProcesses.find()
        lean = LeanFake(bench.slack)
        sim = Simulator(bench.slack, bench.client.base, record=False, timeout=args.timeout)
        soak_ = Soak(sim, lean, bench.users, args.participants, args.seed)
        tally = soak_.tally
        sim.observer = tally.observe
        print(
            f"soak: {args.runs} runs × {args.participants} participants, {args.channels}"
            f" channels in flight, {args.users} users; gunicorn 2 sync workers + 1 job worker",
            flush=True,
        )
        print(f"logs: {procs.log_dir}")
        vacuum_every = args.vacuum_every
        if vacuum_every is None:
            vacuum_every = 0 if autovacuum_on(bench.url) else 500
        print(
            f"autovacuum {'on' if autovacuum_on(bench.url) else 'off'} on this server; the soak"
            + (
                f" runs VACUUM (ANALYZE) every {vacuum_every} runs"
                if vacuum_every
                else " never vacuums"
            )
        )
        print(f"start: database {database_mb(bench.url):.1f} MiB; {_memory(procs)}", flush=True)

        idle: queue.Queue[str] = queue.Queue()
        for channel in bench.channels:
            idle.put(channel)
        numbers = itertools.count(1)
        started = time.monotonic()
        last = [started, 0]
        lock = threading.Lock()
        retired: list[str] = []

        def progress() -> None:
            now = time.monotonic()
            done = tally.runs_done
            rate = done / (now - started) * 60
            recent = (done - last[1]) / max(now - last[0], 1e-9) * 60
            last[:] = [now, done]
            with tally.lock:
                lat = [x for xs in tally.latencies.values() for x in xs[-5000:]]
                reqs, errs = tally.requests, len(tally.errors)
            print(
                f"{done:>6}/{args.runs} runs {now - started:7.0f}s  {rate:6.1f} runs/min"
                f" (last {recent:6.1f})  {reqs} requests, recent p50 {percentile(lat, 50):.0f}"
                f" p99 {percentile(lat, 99):.0f} ms  errors {errs}  DB"
                f" {database_mb(bench.url):.0f} MiB  {_memory(procs)}",
                flush=True,
            )

        def client() -> None:
            while True:
                with lock:
                    number = next(numbers)
                    if number > args.runs:
                        return
                try:
                    channel = idle.get(timeout=args.timeout)
                except queue.Empty:
                    tally.error(f"run {number}: no channel left to run in")
                    return
                good = False
                try:
                    soak_.run(channel, number)
                    good = True
                except (Failed, SimulationError) as exc:
                    tally.error(f"run {number} in {channel}: {exc}")
                except Exception as exc:
                    tally.error(f"run {number} in {channel}: {type(exc).__name__}: {exc}")
                if good or not _open_run(bench.url, channel):
                    idle.put(channel)
                else:
                    retired.append(channel)  # a run left open would block every next one
                with tally.lock:
                    tally.runs_done += 1
                    tally.runs_good += good
                    done = tally.runs_done
                if done % 100 == 0:
                    lean.trim(sim)
                if vacuum_every and done % vacuum_every == 0:
                    vacuum(bench.url)
                if done % args.progress == 0:
                    progress()

        threads = [threading.Thread(target=client, daemon=True) for _ in range(args.channels)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        if tally.runs_done % args.progress:
            progress()

        problems = final_checks(bench.url, tally.runs_good, args.participants)
        with tally.lock:
            lat = {k: list(v) for k, v in tally.latencies.items()}
        print()
        print(
            f"soak done: {tally.runs_done} runs ({tally.runs_good} good) in {elapsed:.0f} s"
            f" ({tally.runs_done / elapsed * 60:.1f} runs/min), {tally.requests} requests,"
            f" {tally.bad_answers} non-200 answers, {len(tally.errors)} run errors,"
            f" {len(problems)} database problems"
        )
        for kind, samples in sorted(lat.items()):
            print(
                f"  {kind:<12} n={len(samples):>7}  p50 {percentile(samples, 50):6.1f}"
                f"  p95 {percentile(samples, 95):6.1f}  p99 {percentile(samples, 99):6.1f} ms"
            )
        print(f"end:   database {database_mb(bench.url):.1f} MiB; {_memory(procs)}")
        print(f"dead tuples: {dead_tuples(bench.url)}")
        if retired:
            print(f"channels retired after a run stayed open: {retired}")
        for problem in problems:
            print(f"PROBLEM {problem}")
        failed = bool(tally.errors or problems or tally.bad_answers)
        print("SOAK FAILED" if failed else "SOAK PASSED", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
