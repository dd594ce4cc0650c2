"""Past the pilot: many busy channels at once under Slack's real rate limits (issue 16).

    .venv/bin/python -m bench.scale [--channels 40,100,200] [--replicas 1,2,4]
                                    [--budget on|off] [--people 8]

For each number of channels and of worker replicas: a fresh database, the fake Slack
enforcing Slack's tiers (Tier 3 50/min, Tier 4 100/min, chat.postMessage 1/s per channel:
`RateLimits()`), and the real service (gunicorn + that many worker processes). In every
channel someone types `/coffee` within the first 2 s; `--people` people (each with a usual
there, seeded in the database) press "Use my usual" within `--click-window` seconds of
the run message appearing; the starter closes the run at about `--close-at` seconds.

Prints per scenario: Slack calls per method (and 429s among them), the share of 429s
among the rate-limited calls, the time from each run's close until it settled (summary
posted, runner DM sent, run message showing the final count; max and p50 over runs), the
time from each run's last click until its run message showed the full count, and dead
jobs. With `--budget off` the worker runs without the shared budget (as before issue 16).

Goal (2 replicas, 40 and 100 channels): 429s at most 5 % of limited calls, every run
settled within 150 s of its close, no dead job. Exits 1 when a scenario misses a goal
figure or a run never settled. The machine is shared: compare figures within one run.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from bench.request_latency import percentile
from bench.setup import Bench, bench_service
from coffeebuddy.slack import run_blocks as blocks
from simulator import Button, Simulator
from testkit.fakes.slack_api import TIER_3_METHODS, TIER_4_METHODS, FakeSlack, RateLimits

LIMITED = TIER_3_METHODS | TIER_4_METHODS | {"chat.postMessage"}
GOAL_429_SHARE = 0.05
GOAL_SETTLE_SECONDS = 150.0
CLOSED_PREFIX = "☕ Coffee run closed"


@dataclass
class ChannelRun:
    channel: str
    people: list[str]
    started_at: float = 0.0
    last_click_at: float = 0.0
    closed_at: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Result:
    channels: int
    replicas: int
    budget: bool
    calls: Counter[str]
    refused: Counter[str]
    settle: list[float]  # per run: close -> settled
    full_count: list[float]  # per run: last click -> run message shows the full count
    unsettled: int
    dead: int
    errors: int

    @property
    def share_429(self) -> float:
        limited = sum(n for m, n in self.calls.items() if m in LIMITED)
        return sum(self.refused.values()) / limited if limited else 0.0

    def meets_goal(self) -> bool:
        return (
            self.share_429 <= GOAL_429_SHARE
            and not self.unsettled
            and max(self.settle, default=0.0) <= GOAL_SETTLE_SECONDS
            and not self.dead
            and not self.errors
        )


def seed(url: str, runs: list[ChannelRun]) -> None:
    """Everyone has a usual in their channel and a fresh profile: "Use my usual" orders at
    once, and no users.info is needed (what the pilot's regulars look like)."""
    with psycopg.connect(url) as conn:
        for run in runs:
            conn.execute(
                "INSERT INTO channels (slack_channel_id, name, onboarded_at)"
                " VALUES (%s, %s, now())",
                (run.channel, run.channel.lower()),
            )
            for i, user in enumerate(run.people):
                conn.execute(
                    "INSERT INTO users (slack_user_id, display_name, tz, profile_fetched_at)"
                    " VALUES (%s, %s, 'Europe/Berlin', now())",
                    (user, user.lower()),
                )
                conn.execute(
                    "INSERT INTO user_preferences (user_id, channel_id, last_order_text)"
                    " SELECT u.id, c.id, %s FROM users u, channels c"
                    " WHERE u.slack_user_id = %s AND c.slack_channel_id = %s",
                    (("flat white", "oat latte", "espresso", "tea")[i % 4], user, run.channel),
                )


def _button(sim: Simulator, channel: str, action_id: str, deadline: float) -> Button:
    while True:
        found = sim.find_button(channel, action_id)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {action_id} button in {channel}")
        time.sleep(0.2)


def play(sim: Simulator, run: ChannelRun, t0: float, args: argparse.Namespace) -> None:
    """One channel: /coffee, the clicks, the close; each at its time after `t0`."""
    rng = random.Random(run.channel)
    try:
        time.sleep(max(0.0, t0 + rng.uniform(0, 2) - time.monotonic()))
        run.started_at = time.time()
        if not sim.command(run.people[0], run.channel).answer.ok:
            run.errors.append("/coffee failed")
            return
        usual = _button(sim, run.channel, blocks.ACTION_USE_USUAL, time.monotonic() + 120)
        shown = time.monotonic()
        for at, user in sorted((rng.uniform(0, args.click_window), u) for u in run.people):
            time.sleep(max(0.0, shown + at - time.monotonic()))
            if not sim.click(user, usual).answer.ok:
                run.errors.append("click failed")
            run.last_click_at = time.time()
        time.sleep(max(0.0, t0 + args.close_at + rng.uniform(0, 1) - time.monotonic()))
        close = _button(sim, run.channel, blocks.ACTION_CLOSE_RUN, time.monotonic() + 60)
        run.closed_at = time.time()
        if not sim.click(run.people[0], close).answer.ok:
            run.errors.append("close failed")
    except Exception as exc:  # reported with the results; the other channels go on
        run.errors.append(f"{type(exc).__name__}: {exc}")


def settled_times(
    slack: FakeSlack, url: str, runs: list[ChannelRun]
) -> tuple[dict[str, float], dict[str, float], dict[str, tuple[float, float, float]]]:
    """Per channel: when the run settled (summary, runner DM, final run message: the
    latest of the three, epoch seconds), when its run message first showed the full count,
    and when each of the three came (summary, DM, final message). Missing when it has not
    (yet)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.slack_channel_id, r.id::text, r.message_ts, r.status,"
            " (SELECT count(*) FROM orders o WHERE o.run_id = r.id AND o.canceled_at IS NULL)"
            " FROM runs r JOIN channels c ON c.id = r.channel_id"
        ).fetchall()
    info = {row[0]: row[1:] for row in rows}
    posts: dict[tuple[str, str], float] = {}
    for call in slack.calls("chat.postMessage"):
        meta = (call.args.get("metadata") or {}).get("event_payload") or {}
        if call.ok and meta.get("run_id"):
            part = str(meta.get("part", "")).split(":")[0]
            posts.setdefault((str(meta["run_id"]), part), call.at)
    updates: dict[str, list[tuple[float, str]]] = {}
    for call in slack.calls("chat.update"):
        if call.ok:
            updates.setdefault(str(call.args.get("ts")), []).append(
                (call.at, str(call.args.get("text")))
            )
    settled: dict[str, float] = {}
    full: dict[str, float] = {}
    parts: dict[str, tuple[float, float, float]] = {}
    for run in runs:
        if run.channel not in info:
            continue
        run_id, message_ts, status, orders = info[run.channel]
        shown = [
            at
            for at, text in updates.get(str(message_ts), [])
            if text.startswith(CLOSED_PREFIX) or f"— {orders} in so far" in text
        ]
        if shown:
            full[run.channel] = min(shown)
        final = [at for at, text in updates.get(str(message_ts), [])
                 if text.startswith(CLOSED_PREFIX)]  # fmt: skip
        summary, dm = posts.get((run_id, "summary")), posts.get((run_id, "runner_dm"))
        if status == "closed" and summary and dm and final:
            settled[run.channel] = max(summary, dm, min(final))
            parts[run.channel] = (summary, dm, min(final))
    return settled, full, parts


def scenario(channels: int, replicas: int, args: argparse.Namespace) -> Result:
    env = {"COFFEEBUDDY_SLACK_BUDGET": "ON" if args.budget == "on" else "OFF"}
    with bench_service("CS", channels, users=0, workers=replicas, extra_env=env) as bench:
        return _measure(bench, channels, replicas, args)


def _measure(bench: Bench, channels: int, replicas: int, args: argparse.Namespace) -> Result:
    slack = bench.slack
    runs = [
        ChannelRun(channel, [f"U{n:04d}P{p}" for p in range(args.people)])
        for n, channel in enumerate(bench.channels)
    ]
    for run in runs:
        for user in run.people:
            slack.add_user(user, tz="Europe/Berlin")
    seed(bench.url, runs)
    slack.enforce_rate_limits(RateLimits())
    sim = Simulator(slack, bench.client.base, record=False, timeout=120)
    t0 = time.monotonic() + 1.0
    threads = [threading.Thread(target=play, args=(sim, run, t0, args)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + args.timeout
    while True:
        settled, full, parts = settled_times(slack, bench.url, runs)
        if len(settled) == len(runs) or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    with psycopg.connect(bench.url) as conn:
        row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'dead'").fetchone()
    dead = int(row[0]) if row else 0
    calls: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for call in slack.calls():
        calls[call.method] += 1
        if call.status == 429:
            refused[call.method] += 1
    errors = [e for run in runs for e in run.errors]
    closes = {r.channel: r.closed_at for r in runs}
    slowest = [max((parts[c][i] - closes[c] for c in parts), default=0.0) for i in range(3)]
    print(
        f"  slowest after its close: summary {slowest[0]:.1f} s, runner DM {slowest[1]:.1f} s,"
        f" closed run message {slowest[2]:.1f} s",
        file=sys.stderr,
    )
    for error in sorted(set(errors))[:5]:
        print(f"  ! {error}", file=sys.stderr)
    return Result(
        channels=channels,
        replicas=replicas,
        budget=args.budget == "on",
        calls=calls,
        refused=refused,
        settle=[settled[r.channel] - r.closed_at for r in runs if r.channel in settled],
        full_count=[full[r.channel] - r.last_click_at for r in runs if r.channel in full],
        unsettled=len(runs) - len(settled),
        dead=dead,
        errors=len(errors),
    )


def report(result: Result) -> None:
    methods = sorted(m for m in result.calls if m != "response_url")
    per_method = ", ".join(
        f"{m} {result.calls[m]}" + (f" ({result.refused[m]} 429)" if result.refused[m] else "")
        for m in methods
    )
    settle = sorted(result.settle)
    full = sorted(result.full_count)
    verdict = "PASS" if result.meets_goal() else "MISS"
    print(
        f"{result.channels:>4} ch × {result.replicas} replicas, budget "
        f"{'on' if result.budget else 'off'}: 429s {sum(result.refused.values())} "
        f"({result.share_429:.1%} of limited calls); settled after close "
        f"p50 {percentile(settle, 50):.1f} s, max {max(settle, default=0):.1f} s"
        f"{f', {result.unsettled} never' if result.unsettled else ''}; full count after "
        f"last click p50 {percentile(full, 50):.1f} s, max {max(full, default=0):.1f} s; "
        f"dead jobs {result.dead}; errors {result.errors}  [{verdict}]"
    )
    print(f"     calls: {per_method}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", default="40,100,200")
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument("--budget", choices=("on", "off"), default="on")
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--click-window", type=float, default=20.0)
    parser.add_argument("--close-at", type=float, default=40.0)
    parser.add_argument("--timeout", type=float, default=400.0, help="per scenario, after closes")
    args = parser.parse_args(argv)
    ok = True
    for channels in (int(c) for c in args.channels.split(",")):
        for replicas in (int(r) for r in args.replicas.split(",")):
            result = scenario(channels, replicas, args)
            report(result)
            ok = ok and result.meets_goal()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
