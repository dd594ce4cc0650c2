"""Request latency of `/coffee`, a button click and a modal submission at pilot load,
measured through the simulator against the real gunicorn + worker + Postgres with the fake
Slack on the other side.

    .venv/bin/python -m bench.request_latency [--runs 12] [--clients 3] [--participants 30]

Pilot load is a handful of channels at once, each running whole coffee runs at a human
pace: someone types `/coffee`, `--participants` people order (the first time through the
order form, after that mostly "Use my usual", now and then a new drink through the form),
and the starter closes the run. Each person waits for what they would see (the run
message, the form, their confirmation) and pauses before the next step.

Prints p50/p95/p99 per request kind. `bench.burst` runs this same load against the service
and against the floor app, next to its bursts. The machine is shared and noisy: compare
figures from one run, not across runs.

Also home to what the HTTP benchmarks share: `Recorder` (every request a `Simulator`
sent, its kind and latency, to report or to replay), `replay` and `percentile`.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs

from bench.sender import Sender
from bench.setup import add_inbox_option, bench_service
from simulator import HttpAnswer, SimulationError, Simulator

KINDS = ("/coffee", "button click", "modal submit")
DRINKS = ("flat white", "oat latte", "espresso", "cappuccino", "tea", "mocha", "cortado")
SUMMARY_PREFIX = "☕ Coffee run closed"


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ts_key(ts: str) -> tuple[int, int]:
    """A Slack message ts, comparable (it has more digits than a float holds exactly)."""
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def request_kind(path: str, body: bytes) -> str:
    if path == "/slack/commands":
        return "/coffee"
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    return "modal submit" if payload.get("type") == "view_submission" else "button click"


@dataclass(frozen=True)
class Sent:
    """One request a Simulator sent, and how the service answered."""

    phase: str | None  # what the sending thread was measuring; None: set-up, not measured
    lane: int  # the client (thread) that sent it: requests in one lane went one by one
    at: float  # time.monotonic() when it was sent
    wall: float  # time.time() when it was sent (to find the service's log lines)
    kind: str
    path: str
    body: bytes
    ms: float
    status: int


class Recorder:
    """A `Simulator` observer that keeps every request with its latency. Threads say what
    they are measuring with `measuring(phase, lane)`; requests sent outside it are set-up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.sent: list[Sent] = []

    @contextmanager
    def measuring(self, phase: str, lane: int) -> Iterator[None]:
        self._local.tag = (phase, lane)
        try:
            yield
        finally:
            self._local.tag = None

    def observe(self, path: str, body: bytes, answer: HttpAnswer) -> None:
        tag = getattr(self._local, "tag", None)
        now = time.monotonic()
        sent_at = answer.sent_at if answer.sent_at is not None else now - answer.elapsed
        sent = Sent(
            phase=tag[0] if tag else None,
            lane=tag[1] if tag else -1,
            at=sent_at,
            wall=time.time() - (now - sent_at),
            kind=request_kind(path, body),
            path=path,
            body=body,
            ms=answer.elapsed * 1000,
            status=answer.status,
        )
        with self._lock:
            self.sent.append(sent)

    def phase(self, phase: str) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.phase == phase]


class StartLine:
    """Threads released together: each waits at the line, and all then read one start
    time set a little ahead (`lead` s), so a thread that wakes late does not shift the
    others' schedule."""

    def __init__(self, threads: int, *, lead: float) -> None:
        self._barrier = threading.Barrier(threads + 1)
        self._lead = lead
        self._start = 0.0

    def wait(self) -> float:
        """In a thread: wait for the release, then the start time."""
        self._barrier.wait()
        return self._start

    def run(self, threads: Sequence[threading.Thread]) -> None:
        """Start `threads`, release them together and wait for them all to end."""
        for thread in threads:
            thread.start()
        self._start = time.monotonic() + self._lead
        self._barrier.wait()
        for thread in threads:
            thread.join()


def replay(
    sent: Sequence[Sent],
    sim: Simulator,
    recorder: Recorder,
    phase: str,
    *,
    sender: Sender | None = None,
) -> None:
    """Send the same bodies again, to `sim`'s service (signed afresh, as Slack would sign
    them now): one thread per lane, each request at the same offset from the start as the
    first time, or as soon as the lane's previous one is answered if that is later. With
    `sender` (the simulator's transport) its process keeps the time instead of the thread."""
    if not sent:
        return
    lanes: dict[int, list[Sent]] = {}
    for s in sorted(sent, key=lambda s: s.at):
        lanes.setdefault(s.lane, []).append(s)
    first = min(s.at for s in sent)
    line = StartLine(len(lanes), lead=0.1)

    def play(lane: int, requests: list[Sent]) -> None:
        with recorder.measuring(phase, lane):
            start = line.wait()
            for s in requests:
                due = start + (s.at - first)
                if sender is not None:
                    with sender.due(due):
                        sim._post(s.path, s.body)
                    continue
                if (delay := due - time.monotonic()) > 0:
                    time.sleep(delay)
                # Simulator's own send (signing, HTTP, timing, observer): no second client.
                sim._post(s.path, s.body)

    line.run([threading.Thread(target=play, args=item) for item in lanes.items()])


def latencies(sent: Sequence[Sent], kind: str) -> list[float]:
    return [s.ms for s in sent if s.kind == kind]


# -- pilot load ----------------------------------------------------------------------------


@dataclass
class PilotChannel:
    """One client: a channel where runs happen one after the other."""

    sim: Simulator
    channel: str
    users: Sequence[str]
    participants: int
    think: float
    rng: random.Random

    def __post_init__(self) -> None:
        self.has_usual: set[str] = set()

    def pause(self) -> None:
        time.sleep(self.rng.uniform(0, 2 * self.think))

    def run(self) -> None:
        people = self.rng.sample(list(self.users), self.participants)
        starter = self.sim.person(people[0], self.channel)
        button = starter.start_run("in 30m Lobby")
        for user in people:
            self.pause()
            person = self.sim.person(user, self.channel)
            if user in self.has_usual and self.rng.random() < 0.8:
                person.use_usual()
            else:
                person.order(self.rng.choice(DRINKS))
                self.has_usual.add(user)
        self.pause()
        starter.close_run()
        after = ts_key(button.message_ts)
        self.sim.wait_for(
            lambda: any(
                ts_key(m["ts"]) > after and m.get("text", "").startswith(SUMMARY_PREFIX)
                for m in self.sim.fake.recent_messages(self.channel, 3)
            ),
            f"the summary in {self.channel}",
        )


def pilot(
    sim: Simulator,
    recorder: Recorder,
    channels: Sequence[str],
    users: Sequence[str],
    *,
    runs: int,
    participants: int,
    think: float,
    phase: str = "pilot",
    seed: int = 1,
) -> None:
    """`runs` coffee runs, spread over `channels` that run at the same time (one client
    thread each). Raises SimulationError when someone didn't see what they should."""
    failures: list[BaseException] = []

    def client(lane: int, channel: str) -> None:
        play = PilotChannel(sim, channel, users, participants, think, random.Random(seed + lane))
        with recorder.measuring(phase, lane):
            for _ in range(lane, runs, len(channels)):
                try:
                    play.run()
                except Exception as exc:
                    failures.append(exc)
                    return

    threads = [
        threading.Thread(target=client, args=(lane, channel))
        for lane, channel in enumerate(channels)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SimulationError(f"pilot load failed: {failures[0]}") from failures[0]


def print_latencies(title: str, sent: Sequence[Sent]) -> None:
    print(title)
    print(f"{'request':<14} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind in KINDS:
        samples = latencies(sent, kind)
        print(
            f"{kind:<14} {len(samples):>5} {percentile(samples, 50):>8.1f} "
            f"{percentile(samples, 95):>8.1f} {percentile(samples, 99):>8.1f} "
            f"{max(samples, default=float('nan')):>8.1f}"
        )


def check_answers(sent: Sequence[Sent], what: str) -> list[str]:
    bad = [s for s in sent if s.status != 200]
    return [f"{what}: {len(bad)} of {len(sent)} requests not answered 200"] if bad else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=12, help="coffee runs in all")
    parser.add_argument("--clients", type=int, default=3, help="channels running at once")
    parser.add_argument("--participants", type=int, default=30, help="people ordering per run")
    parser.add_argument("--think", type=float, default=0.05, help="mean pause between steps, s")
    add_inbox_option(parser)
    args = parser.parse_args()

    with bench_service(
        "C0PILOT",
        args.clients,
        users=args.participants,
        extra_env={"COFFEEBUDDY_INBOX": args.inbox},
    ) as bench:
        recorder = Recorder()
        sim = Simulator(bench.slack, bench.client.base, record=False, observer=recorder.observe)
        # A fresh process's first requests are slow (pool connections, imports, the first
        # profile look-ups): one small run per channel first, unmeasured.
        pilot(
            sim,
            recorder,
            bench.channels,
            bench.users,
            runs=args.clients,
            participants=5,
            think=0,
            phase="warm-up",
        )
        started = time.monotonic()
        pilot(
            sim,
            recorder,
            bench.channels,
            bench.users,
            runs=args.runs,
            participants=args.participants,
            think=args.think,
        )
        sent = recorder.phase("pilot")
        print(
            f"pilot load: {args.runs} runs × {args.participants} people in {args.clients}"
            f" channels at once, {time.monotonic() - started:.0f} s; gunicorn 2 sync workers"
        )
        print_latencies("", sent)
        for problem in check_answers(sent, "pilot"):
            raise SystemExit(problem)


if __name__ == "__main__":
    main()
