"""CoffeeBuddy against its floor, at pilot load and in bursts of 300 people in one second.

    .venv/bin/python -m bench.burst [--users 300] [--spread 1.0] [--pilot-runs 12] [-w 4]

Starts the real service (gunicorn + worker + a fresh Postgres database, the fake Slack) and
the floor app (`bench.floor_app`: signature check and one insert, on the same gunicorn
settings and `-w` gunicorn workers: 4 by default), then, through the simulator:

1. pilot load (`bench.request_latency.pilot`): whole runs in a few channels at once, at a
   human pace;
2. modal burst: a run is open, `--users` people have the order form open and all press
   [Save order] within `--spread` seconds (this gives everyone a usual);
3. usual burst: the next run in that channel; the same people all press "Use my usual"
   within `--spread` seconds;
4. /coffee burst: each of them types `/coffee` in a channel of their own within
   `--spread` seconds.

After each phase the very same request bodies go to the floor app (signed afresh) with the
same timing and concurrency: one thread per person in a burst, one per channel at pilot
load. Each burst is checked: every request answered 200; every order recorded exactly once
(SQL); every person's confirmation delivered; the run message finally showing the right
count; the summary counting every item; `chat.update` within Slack's Tier 3 budget (at
most 50 a minute per method and workspace) in any 60 s window.

Prints, per phase and request kind, our p50/p95/p99 and the floor's, the ratio of the
p99s, our server-side p99 (the `latency_ms` of the service's own request log: the rest is
queueing in gunicorn's backlog and the client), and PASS/FAIL of each burst against the
goal: p99 < 50 ms and at most 3× the floor's p99; then the CPU each side spent per request
(gunicorn workers and their Postgres backends; for us also the job worker's share, from
the burst to its settling). Exits 1 when a check failed (the latency
goal is reported, not enforced). The machine is shared and noisy: compare figures from one
run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.cpu import CpuMeter, children
from bench.floor_app import FLOOR_APP_NAME, serve_floor
from bench.request_latency import (
    DRINKS,
    KINDS,
    Recorder,
    Sent,
    StartLine,
    check_answers,
    latencies,
    percentile,
    pilot,
    replay,
    ts_key,
)
from bench.sender import Sender
from bench.setup import Bench, add_inbox_option, bench_service, wait_for_no_due_jobs
from bench.soak import ServiceProcesses, autovacuum_on, vacuum
from coffeebuddy.slack import run_blocks
from simulator import Button, Click, Person, Simulator
from testkit.slack_payloads import SIGNING_SECRET

WEB_WORKERS = 4  # both sides; `-w` changes it
TIER3_PER_MINUTE = 50
GOAL_P99_MS = 50.0
GOAL_RATIO = 3.0
GOAL_COMPLETION_S = 5.0
# A burst's first request goes this long after its threads are released: time enough for
# every thread to hand its request to the sender process before it is due.
LEAD = 0.5
PHASES = ("modal", "usual", "command")
SUMMARY_PREFIX = "☕ Coffee run closed"


class Failures:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def check(self, ok: bool, text: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {text}", flush=True)
        if not ok:
            self.lines.append(text)

    def extend(self, problems: list[str]) -> None:
        for problem in problems:
            self.check(False, problem)


def fire(
    recorder: Recorder,
    phase: str,
    actions: Sequence[Callable[[], None]],
    spread: float,
    seed: int,
    sender: Sender,
) -> list[float]:
    """Run each action in a thread of its own, all released together and each sending its
    request at a random moment within `spread` seconds (the sender process waits for that
    moment, not the thread); returns the offsets used."""
    # One generator for all: a fresh one per action would give every action the same offset.
    rng = random.Random(seed)
    offsets = sorted(rng.uniform(0, spread) for _ in actions)
    line = StartLine(len(actions), lead=LEAD)
    errors: list[BaseException] = []

    def go(lane: int, action: Callable[[], None]) -> None:
        with recorder.measuring(phase, lane):
            due = line.wait() + offsets[lane]
            try:
                with sender.due(due):
                    action()
            except BaseException as exc:
                errors.append(exc)

    line.run([threading.Thread(target=go, args=item) for item in enumerate(actions)])
    if errors:
        raise errors[0]
    return offsets


def max_per_window(times: Sequence[float], window: float = 60.0) -> int:
    """The most events in any `window` seconds."""
    ordered = sorted(times)
    best, low = 0, 0
    for high, at in enumerate(ordered):
        while ordered[low] <= at - window:
            low += 1
        best = max(best, high - low + 1)
    return best


def server_latencies(log: Path, since: float, until: float) -> dict[str, list[float]]:
    """`latency_ms` by request kind from the service's request log, for the requests that
    ended between the wall-clock times `since` and `until` (the log's stamps are UTC, to
    the millisecond). An interaction is a modal submission when its request line's
    `action` says so (older versions: unless its correlation id logged a `block_action`)."""
    clicks: set[str] = set()
    requests: list[tuple[str, str, str, float]] = []
    for line in log.read_text(errors="replace").splitlines():
        if '"block_action"' not in line and '"latency_ms"' not in line:
            continue
        entry = json.loads(line)
        correlation = str(entry.get("correlation_id", ""))
        if entry.get("event") == "block_action":
            clicks.add(correlation)
        elif entry.get("event") == "request":
            at = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()
            if since - 0.002 <= at <= until + 0.002:
                action = str(entry.get("action", ""))
                ms = float(entry["latency_ms"])
                requests.append((str(entry.get("path")), correlation, action, ms))
    found: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for path, correlation, action, ms in requests:
        if path == "/slack/commands":
            found["/coffee"].append(ms)
        elif path == "/slack/interactions":
            click = not action.startswith("view_submission") if action else correlation in clicks
            found["button click" if click else "modal submit"].append(ms)
    return found


class Comparison:
    def __init__(
        self, bench: Bench, floor_url: str, spread: float, meter: CpuMeter, sender: Sender
    ) -> None:
        self.slack = bench.slack
        self.url = bench.url
        self.ours = Recorder()
        self.floor = Recorder()
        self.sender = sender
        self.sim = Simulator(
            self.slack,
            bench.client.base,
            record=False,
            observer=self.ours.observe,
            timeout=60,
            transport=sender.send,
        )
        self.floor_sim = Simulator(
            self.slack,
            floor_url,
            record=False,
            observer=self.floor.observe,
            timeout=60,
            transport=sender.send,
        )
        self.spread = spread
        self.log = ServiceProcesses.find().log_dir / "web.log"
        self.failures = Failures()
        self.bursts_began = float("inf")
        # phase -> (our requests, the floor's, our server-side latencies by kind)
        self.results: dict[str, tuple[list[Sent], list[Sent], dict[str, list[float]]]] = {}
        self.meter = meter
        self.autovacuum = autovacuum_on(self.url)
        # (what, seconds after the burst began) of the last confirmation / refresh
        self.completion: list[tuple[str, float]] = []
        # phase -> CPU seconds by process group, ours during the burst (the job worker's
        # until it settled) and the floor's during the replay
        self.cpu: dict[str, dict[str, float]] = {}
        self._cpu_at: dict[str, float] = {}

    # -- measuring ---------------------------------------------------------------------------

    def against_floor(self, phase: str, *, report: bool = True) -> None:
        """Our requests of `phase` again, to the floor, the same way; keep both."""
        ours = self.ours.phase(phase)
        self.failures.extend(check_answers(ours, f"{phase}: ours"))
        self.settle()
        if report and phase not in self.cpu:
            self.cpu_mark()
            self.cpu_used(phase)  # the phase's work ended when the worker settled
        before = self.meter.read()
        replay(ours, self.floor_sim, self.floor, phase, sender=self.sender)
        floor_cpu = self.meter.used(before, self.meter.read())
        if report:
            self.cpu.setdefault(phase, {}).update(
                floor=floor_cpu["floor"], pg_floor=floor_cpu["pg_floor"]
            )
        floor = self.floor.phase(phase)
        self.failures.extend(check_answers(floor, f"{phase}: floor"))
        since = min(s.wall for s in ours)
        until = max(s.wall + s.ms / 1000 for s in ours)
        if report:
            self.results[phase] = (ours, floor, server_latencies(self.log, since, until))

    def cpu_mark(self) -> None:
        """The start of a measured phase."""
        if not self._cpu_at:
            self._cpu_at = self.meter.read()

    def cpu_used(self, phase: str) -> None:
        now = self.meter.read()
        used = self.meter.used(self._cpu_at, now)
        self._cpu_at = {}
        self.cpu[phase] = {k: used[k] for k in ("web", "pg_web", "worker", "pg_worker", "slack")}

    def before_burst(self) -> None:
        """Nothing due, and (on a server running without autovacuum, as the shared test
        machine's does) the vacuum autovacuum would have done: otherwise the job queue's
        partial indexes fill with dead entries and every claim gets slower with each phase."""
        self.settle()
        if not self.autovacuum:
            vacuum(self.url)
        self.cpu_mark()

    def settle(self, timeout: float = 120) -> None:
        """Wait until the worker has nothing due (so it doesn't take the floor's CPU)."""
        with psycopg.connect(self.url) as conn:
            wait_for_no_due_jobs(conn, ahead="1 second", timeout=timeout, every=0.2)

    # -- the phases --------------------------------------------------------------------------

    def pilot(self, channels: list[str], users: list[str], runs: int, think: float) -> None:
        # First requests in a fresh process are slow (pool connections, imports, the first
        # profile look-ups): warm both apps up, unmeasured, with a small run per channel.
        pilot(
            self.sim,
            self.ours,
            channels,
            users,
            runs=len(channels),
            participants=5,
            think=0,
            phase="warm-up",
        )
        self.against_floor("warm-up", report=False)
        print(f"\n== pilot load: {runs} runs × 30 people in {len(channels)} channels at once")
        self.settle()
        self.cpu_mark()
        pilot(
            self.sim,
            self.ours,
            channels,
            users,
            runs=runs,
            participants=min(30, len(users)),
            think=think,
        )
        self.against_floor("pilot")
        self.clear_minute()

    def clear_minute(self) -> None:
        """Wait until the pilot's chat.update calls have left Slack's one-minute window. The
        pilot plays a human pace sped up many times and leaves the Tier 3 allowance nearly
        spent; the rate budget then holds the bursts' run-message refreshes (which go last)
        back for up to a minute, and the bursts would measure the pilot's leftovers."""
        calls = [c.at for c in self.slack.calls("chat.update")]
        wait = max(calls, default=0.0) + 61.0 - time.time()
        if wait > 0:
            print(f"  (waiting {wait:.0f} s for the pilot's chat.update calls to leave the minute)")
            time.sleep(wait)

    def start_run(self, starter: str, channel: str) -> tuple[Person, Button]:
        person = self.sim.person(starter, channel)
        place = person.start_run()
        return person, place

    def modal_burst(self, channel: str, users: list[str]) -> None:
        print(f"\n== modal burst: {len(users)} people press [Save order] within {self.spread} s")
        self.bursts_began = time.time()
        starter, place = self.start_run(users[0], channel)
        run_id = str(place.value)
        views: list[dict[str, Any]] = [{}] * len(users)
        opened: list[Click] = []  # the clicks that opened the forms: answered on save
        lock = threading.Lock()
        pending = list(enumerate(users))

        def open_forms() -> None:  # set-up, not measured: everyone opens the form first
            while True:
                with lock:
                    if not pending:
                        return
                    index, user = pending.pop()
                click = self.sim.click(user, place)
                view = self.sim.opened_view(click)
                if view is None:
                    raise AssertionError(f"@{user}'s order form never opened")
                views[index] = view
                opened.append(click)

        helpers = [threading.Thread(target=open_forms) for _ in range(8)]
        for helper in helpers:
            helper.start()
        for helper in helpers:
            helper.join()
        if not all(views):
            raise AssertionError("not every order form opened")

        drinks = {user: DRINKS[i % len(DRINKS)] for i, user in enumerate(users)}
        errors: list[str] = []

        def submit(user: str, view: dict[str, Any]) -> Callable[[], None]:
            def act() -> None:
                sent = self.sim.submit(user, view, {run_blocks.ORDER_BLOCK_ID: drinks[user]})
                if sent.errors:
                    errors.append(f"@{user}: {sent.errors}")

            return act

        actions = [submit(u, v) for u, v in zip(users, views, strict=True)]
        self.before_burst()
        began = time.time()
        fire(self.ours, "modal burst", actions, self.spread, 1, self.sender)
        self.failures.check(not errors, f"no form came back with errors {errors[:3]}")
        self.check_orders(run_id, users, "Got your order", began, opened)
        self.check_run_message(channel, place.message_ts, run_id, len(users), began)
        self.cpu_used("modal burst")
        self.close(starter, channel, place.message_ts, len(users))
        self.against_floor("modal burst")

    def usual_burst(self, channel: str, users: list[str]) -> None:
        print(f"\n== usual burst: {len(users)} people press [Use my usual] within {self.spread} s")
        starter, place = self.start_run(users[0], channel)
        run_id = str(place.value)
        usual = self.sim.find_button(channel, run_blocks.ACTION_USE_USUAL, value=run_id)
        assert usual is not None
        clicks: list[Click] = []

        def press(user: str) -> Callable[[], None]:
            return lambda: clicks.append(self.sim.click(user, usual))

        self.before_burst()
        began = time.time()
        fire(self.ours, "usual burst", [press(u) for u in users], self.spread, 2, self.sender)
        self.check_orders(run_id, users, "Ordered your usual", began, clicks)
        self.check_run_message(channel, place.message_ts, run_id, len(users), began)
        self.cpu_used("usual burst")
        self.close(starter, channel, place.message_ts, len(users))
        self.against_floor("usual burst")

    def command_burst(self, channels: list[str], users: list[str]) -> None:
        print(f"\n== /coffee burst: {len(users)} people type /coffee within {self.spread} s,")
        print("   each in a channel of their own")
        replies: list[str] = []

        def command(user: str, channel: str) -> Callable[[], None]:
            def act() -> None:
                result = self.sim.command(user, channel)
                reply = result.answer.json() if result.answer.ok else None
                replies.append(str((reply or {}).get("text", "")))

            return act

        actions = [command(u, c) for u, c in zip(users, channels, strict=True)]
        self.before_burst()
        began = time.time()
        fire(self.ours, "/coffee burst", actions, self.spread, 3, self.sender)
        started = sum(r.startswith("☕ Starting your coffee run") for r in replies)
        self.failures.check(started == len(users), f"{started} of {len(users)} told the run began")
        with psycopg.connect(self.url) as conn:
            deadline = time.monotonic() + 60
            while True:
                row = conn.execute(
                    "SELECT count(*), count(r.message_ts),"
                    " extract(epoch FROM max(r.message_posted_at))"
                    " FROM runs r JOIN channels c ON c.id = r.channel_id"
                    " WHERE r.status = 'open' AND c.slack_channel_id = ANY(%s)",
                    (channels,),
                ).fetchone()
                assert row is not None
                if row[1] >= len(users) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        runs, posted, last = row
        self.failures.check(runs == len(users), f"{runs} runs open in the {len(users)} channels")
        drained = f", the last {float(last) - began:.1f} s after the burst began" if last else ""
        if last:
            self.completion.append(("run messages", float(last) - began))
        self.failures.check(posted == len(users), f"{posted} run messages posted{drained}")
        self.against_floor("/coffee burst")

    # -- checks ------------------------------------------------------------------------------

    def check_orders(
        self, run_id: str, users: list[str], confirmation: str, began: float, clicks: list[Click]
    ) -> None:
        # Everyone's confirmation, once: through the response_url of the click (for the order
        # form, of the click that opened it), or chat.postEphemeral where the worker had to
        # fall back to it.
        names = {c.response_name for c in clicks}

        def told_at() -> dict[str, float]:
            first: dict[str, float] = {}
            for c in self.slack.calls("response_url"):
                name = str(c.args.get("name"))
                payload = c.args.get("payload") or {}
                if c.ok and name in names and confirmation in str(payload.get("text", "")):
                    first.setdefault(name, c.at)
            for e in self.slack.ephemerals():
                if confirmation in e["text"] and float(e["ts"]) >= began:
                    first.setdefault(str(e["user"]), float(e["ts"]))
            return first

        try:
            self.sim.wait_for(
                lambda: len(told_at()) >= len(users), "every confirmation", timeout=120
            )
        except Exception as exc:
            print(f"  ({exc})")
        # Counted once the confirmations are in: with the inbox the worker records orders.
        with psycopg.connect(self.url) as conn:
            rows = conn.execute(
                "SELECT u.slack_user_id, count(*), count(*) FILTER (WHERE o.canceled_at IS NULL)"
                " FROM orders o JOIN users u ON u.id = o.user_id WHERE o.run_id = %s GROUP BY 1",
                (run_id,),
            ).fetchall()
        once = {user for user, n, active in rows if n == 1 and active == 1}
        others = sorted((u, n) for u, n, active in rows if not (n == 1 and active == 1))
        missing = sorted(set(users) - {user for user, _, _ in rows})
        self.failures.check(
            once == set(users) and not others,
            f"{len(once)} of {len(users)} orders recorded exactly once"
            + (f"; missing {missing[:5]}" if missing else "")
            + (f"; more than once {others[:5]}" if others else ""),
        )
        times = list(told_at().values())
        fallbacks = sum(1 for e in self.slack.ephemerals() if confirmation in e["text"])
        last = f", the last {max(times) - began:.1f} s after the burst began" if times else ""
        self.failures.check(
            len(times) == len(users),
            f"{len(times)} of {len(users)} confirmations sent{last}"
            f" ({fallbacks} by chat.postEphemeral)",
        )
        if times:
            self.completion.append(("confirmations", max(times) - began))

    def check_run_message(
        self, channel: str, ts: str, run_id: str, count: int, began: float
    ) -> None:
        """The run message ends showing `count` people in, once no refresh is left to
        come; chat.update stays within Tier 3."""
        self.settle()
        deadline = time.monotonic() + 30
        while True:  # the last refresh job may be done a moment before its call is recorded
            message = next(
                (m for m in self.slack.recent_messages(channel, 5) if m["ts"] == ts), None
            )
            shown = _participants_line(message)
            if shown.startswith(f"{count} people are in") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.failures.check(
            shown.startswith(f"{count} people are in")
            and message is not None
            and message.get("text", "").endswith(f"— {count} in so far"),
            f"the run message ends with “{shown[:40]}…” / "
            f"“{(message or {}).get('text', '')[-22:]}”",
        )
        updates = [
            c.at
            for c in self.slack.calls("chat.update")
            if c.args.get("ts") == ts and c.at >= began
        ]
        last = f", the last {max(updates) - began:.1f} s after the burst began" if updates else ""
        if updates:
            self.completion.append(("run message", max(updates) - began))
        self.failures.check(
            len(updates) <= TIER3_PER_MINUTE,
            f"{len(updates)} chat.update calls of the run message for the burst{last}",
        )

    def close(self, starter: Person, channel: str, run_ts: str, count: int) -> None:
        starter.close_run()
        after = ts_key(run_ts)

        def posted() -> str | None:
            for message in self.slack.recent_messages(channel, 3):
                text = str(message.get("text", ""))
                if ts_key(message["ts"]) > after and text.startswith(SUMMARY_PREFIX):
                    return text
            return None

        summary = self.sim.wait_for(posted, "the summary", timeout=60)
        assert summary is not None
        self.failures.check(
            summary.endswith(f": {count} orders"), f"the summary says “…{summary[-12:]}”"
        )

    def tier3(self) -> None:
        """chat.update from the first burst on, workspace-wide, in any 60 s window. The
        pilot load is left out: it plays a human pace sped up many times, and refreshes
        coalesce per run message, so its rate says nothing about Slack's."""
        calls = self.slack.calls("chat.update")
        pilot = [c.at for c in calls if c.at < self.bursts_began]
        times = [c.at for c in calls if c.at >= self.bursts_began]
        worst = max_per_window(times)
        self.failures.check(
            worst <= TIER3_PER_MINUTE,
            f"chat.update during the bursts: {len(times)} calls, at most {worst} in any"
            f" 60 s window (Tier 3: {TIER3_PER_MINUTE}/min)",
        )
        print(
            f"  info chat.update at the (sped-up) pilot load: {len(pilot)} calls, at most"
            f" {max_per_window(pilot)} in any 60 s window; chat.postMessage in all:"
            f" {len(self.slack.calls('chat.postMessage'))}"
        )

    # -- the report --------------------------------------------------------------------------

    def report(self) -> bool:
        """Print the tables; True when every burst met the goal."""
        met = True
        print()
        head = (
            f"{'phase':<14} {'request':<13} {'n':>4} │ {'ours p50':>8} {'p95':>6} {'p99':>6}"
            f" │ {'floor p50':>9} {'p95':>6} {'p99':>6} │ {'p99 ×':>5} │ {'server p99':>10}"
            " │ goal"
        )
        print(head)
        print("─" * len(head))
        for phase, (ours, floor, server) in self.results.items():
            for kind in KINDS:
                mine, base = latencies(ours, kind), latencies(floor, kind)
                if not mine:
                    continue
                p99, floor_p99 = percentile(mine, 99), percentile(base, 99)
                ratio = p99 / floor_p99 if base else float("nan")
                own = server.get(kind) or []
                verdict = "–"
                if phase != "pilot":
                    good = p99 < GOAL_P99_MS and ratio <= GOAL_RATIO
                    met = met and good
                    verdict = "PASS" if good else "FAIL"
                print(
                    f"{phase:<14} {kind:<13} {len(mine):>4} │ {percentile(mine, 50):>8.1f}"
                    f" {percentile(mine, 95):>6.1f} {p99:>6.1f} │ {percentile(base, 50):>9.1f}"
                    f" {percentile(base, 95):>6.1f} {floor_p99:>6.1f} │ {ratio:>5.1f} │"
                    f" {percentile(own, 99) if own else float('nan'):>10.1f} │ {verdict}"
                )
        print(
            f"(ms, measured by the client; goal for the bursts: p99 < {GOAL_P99_MS:g} ms and"
            f" ≤ {GOAL_RATIO:g}× the floor's p99. server p99: the service's own latency_ms.)"
        )
        # `fire` starts the burst LEAD s after `began` and spreads it over `spread` seconds.
        ends = LEAD + self.spread
        worst = max((t - ends for _, t in self.completion), default=float("nan"))
        print(
            f"completion: the last confirmation or run-message update {worst:.1f} s after a"
            f" burst ended (goal ≤ {GOAL_COMPLETION_S:g} s):"
            f" {'PASS' if worst <= GOAL_COMPLETION_S else 'FAIL'}"
        )
        met = met and worst <= GOAL_COMPLETION_S
        self.report_cpu()
        return met

    def report_cpu(self) -> None:
        print()
        head = (
            f"{'phase':<14} {'n':>4} │ {'ours web':>8} {'+pg':>5} {'job worker':>10} {'+pg':>5}"
            f" {'fake Slack':>10} │ {'floor web':>9} {'+pg':>5} │ {'web+pg ×':>8}"
        )
        print(head)
        print("─" * len(head))
        for phase, cpu in self.cpu.items():
            n = len(self.results[phase][0]) if phase in self.results else 0
            if not n or "floor" not in cpu:
                continue

            def ms(key: str, cpu: dict[str, float] = cpu, n: int = n) -> float:
                return cpu.get(key, 0.0) * 1000 / n

            floor = ms("floor") + ms("pg_floor")
            ratio = (ms("web") + ms("pg_web")) / floor if floor else float("nan")
            print(
                f"{phase:<14} {n:>4} │ {ms('web'):>8.2f} {ms('pg_web'):>5.2f}"
                f" {ms('worker'):>10.2f} {ms('pg_worker'):>5.2f} {ms('slack'):>10.2f}"
                f" │ {ms('floor'):>9.2f}"
                f" {ms('pg_floor'):>5.2f} │ {ratio:>8.1f}"
            )
        print(
            "(CPU ms per request: gunicorn workers, and the Postgres backends serving them;"
            " the job worker's and the fake Slack's from the burst until it settled. /proc ticks"
            " are 10 ms:"
            " small figures are coarse.)"
        )


def _participants_line(message: dict[str, Any] | None) -> str:
    for block in (message or {}).get("blocks") or []:
        text = str((block.get("text") or {}).get("text", ""))
        if " in: " in text or text.startswith("Nobody"):
            return text
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300, help="people in each burst")
    parser.add_argument("--spread", type=float, default=1.0, help="a burst's length, s")
    parser.add_argument("--pilot-runs", type=int, default=12, help="runs at pilot load")
    parser.add_argument("--pilot-channels", type=int, default=3, help="channels at once")
    parser.add_argument("--think", type=float, default=0.05, help="pilot pause, mean s")
    parser.add_argument(
        "-w", "--web-workers", type=int, default=WEB_WORKERS, help="gunicorn workers, each side"
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"which bursts, comma-separated (default: all of {','.join(PHASES)})",
    )
    add_inbox_option(parser)
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    if not phases <= set(PHASES):
        parser.error(f"--phases: one or more of {', '.join(PHASES)}")
    channels = args.pilot_channels + 1 + args.users

    with (
        bench_service(
            "C0BURST",
            channels,
            users=max(args.users, 30),
            web_workers=args.web_workers,
            extra_env={"COFFEEBUDDY_INBOX": args.inbox},
        ) as service,
        serve_floor(service.url, SIGNING_SECRET, web_workers=args.web_workers) as floor_url,
        Sender() as sender,
    ):
        ours = ServiceProcesses.find()
        floor_masters = children(os.getpid(), "bench.floor_app")
        meter = CpuMeter(
            service.url,
            {
                "web": ours.web_workers,
                "worker": ours.job_workers,
                "floor": [p for m in floor_masters for p in children(m)],
                # This process: the fake Slack the worker calls (and the idle orchestration).
                "slack": [os.getpid()],
            },
            {
                "pg_web": "coffeebuddy-web",
                "pg_worker": "coffeebuddy-worker",
                "pg_floor": FLOOR_APP_NAME,
            },
        )
        bench = Comparison(service, floor_url, args.spread, meter, sender)
        print(
            f"ours (inbox {args.inbox}): gunicorn {args.web_workers} sync workers + 1 job worker"
            f" + Postgres, logs in"
            f" {bench.log.parent}; floor: {floor_url}, same gunicorn settings"
        )
        pilot_channels = service.channels[: args.pilot_channels]
        burst_channel = service.channels[args.pilot_channels]
        own_channels = service.channels[args.pilot_channels + 1 :]
        users = service.users[: args.users]
        bench.pilot(pilot_channels, service.users[:30], args.pilot_runs, args.think)
        if "modal" in phases or "usual" in phases:
            # The usual burst needs the usuals the modal burst saves.
            bench.modal_burst(burst_channel, users)
        if "usual" in phases:
            bench.usual_burst(burst_channel, users)
        if "command" in phases:
            bench.command_burst(own_channels, users)
        print()
        bench.tier3()
        met = bench.report()
        print(f"latency goal {'met' if met else 'NOT met'} for every burst")
        if bench.failures.lines:
            print(f"{len(bench.failures.lines)} checks FAILED:")
            for line in bench.failures.lines:
                print(f"  {line}")
        else:
            print("all correctness checks passed")
    sys.exit(1 if bench.failures.lines else 0)


if __name__ == "__main__":
    main()
