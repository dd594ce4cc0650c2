"""`python -m simulator.demo` (`make demo`, `scripts/demo`): a whole coffee run played by
simulated people against the real service, printed the way they saw it.

It starts an embedded Postgres in the demo's own state directory (a fresh database every
time), applies the migrations, starts the fake Slack Web API, then the real web app
(gunicorn) and the real worker pointed at it with a signing secret and bot token made up
for this demo. Then five people play:

1. a short first run, so that Cat has a usual: Cat starts it, orders, closes it;
2. the main run: Ana starts it (`/coffee in 30m Lobby cafe`) and orders, Ben orders, Cat
   clicks "Use my usual", Dan orders, edits his order and taps "I'll go", Eve orders and
   then cancels (in the ⋯ menu), and Ana closes the run; Ben rates it, and the demo skips
   ahead to the runner's reminder (it would otherwise come 25 minutes later).

It prints the channel, what each person did and saw privately, and the DMs, and exits 0
only when the runs really completed: closed in the database, the summary in the channel,
the runner's DM with the same order list, the run message no longer taking orders.
Anything else prints why and exits 1. Everything it started is stopped when it exits,
also on failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from coffeebuddy.db.migrate import migrate
from coffeebuddy.jobs.worker import CHANNEL as JOBS_CHANNEL
from coffeebuddy.local import embedded
from coffeebuddy.slack import run_blocks
from simulator.people import Click, Person, SimulationError, Simulator
from simulator.transcript import render_text, render_transcript
from testkit.fakes.slack_api import SCHEMAS, FakeSlack
from testkit.processes import start_service

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / ".state" / "demo"
DEMO_DATABASE = "coffeebuddy_demo"
CHANNEL, CHANNEL_NAME = "C0DEMO0001", "coffee"
# user id -> (Slack name, real name); the order is the cast of `_play`.
PEOPLE = {
    "U0ANA": ("ana", "Ana Alves"),
    "U0BEN": ("ben", "Ben Brandt"),
    "U0CAT": ("cat", "Cat Costa"),
    "U0DAN": ("dan", "Dan Dietrich"),
    "U0EVE": ("eve", "Eve Engel"),
}
# The database the demo plays in (set by `_run`), for skipping ahead to the reminder.
_DATABASE_URL: list[str] = [""]
# "--refuse" means every call, for as long as a demo can last.
REFUSE_TIMES = 100_000


class _Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM: unwinds like Ctrl-C, so every `finally` stops what it started."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop_on_signals() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stopped(signum)

    signal.signal(signal.SIGINT, stop)
    # Python's default for SIGTERM ends the process without running `finally` or atexit
    # (which stops the embedded Postgres): turn it into the same orderly unwinding.
    signal.signal(signal.SIGTERM, stop)


def _say(text: str) -> None:
    print(f"demo: {text}", flush=True)


@dataclass(frozen=True)
class Finished:
    """A run that was closed, with what the channel and the runner got."""

    label: str
    run_id: str
    run_message_ts: str
    summary: dict[str, Any]
    runner: str  # user id of whoever got the runner DM
    dm: dict[str, Any]
    expected_orders: frozenset[str]  # "ana: espresso" lines the order list must show


def _order_list(message: dict[str, Any]) -> list[str]:
    """The order-list sections' text: the summary and the runner DM must carry the same."""
    return [
        str(block["text"]["text"])
        for block in message.get("blocks") or []
        if str(block.get("block_id", "")).startswith(run_blocks.ORDER_LIST_BLOCK_ID)
    ]


def _after(ts: str, than: str) -> bool:
    return tuple(map(int, ts.split("."))) > tuple(map(int, than.split(".")))


def _summary_after(sim: Simulator, ts: str) -> dict[str, Any] | None:
    for message in sim.fake.recent_messages(CHANNEL, 50):
        if _after(str(message["ts"]), ts) and _order_list(message):
            return message
    return None


def _runner_dm_after(sim: Simulator, ts: str) -> tuple[str, dict[str, Any]] | None:
    for user in PEOPLE:
        for message in sim.fake.recent_dms(user, 20):
            if _after(str(message["ts"]), ts) and _order_list(message):
                return user, message
    return None


def _finish(sim: Simulator, label: str, close: Click, expected: dict[str, str]) -> Finished:
    """Wait for what closing a run produces: the summary in the channel, then the runner's
    DM. The worker tells the closer when it gives up on either, so a failure shows up as
    a reply to the close click rather than as a long wait."""
    run_id, opened = close.button.value or "", close.button.message_ts
    closer = "@" + sim.user_name(close.user)

    def after_close[T](find: Callable[[], T | None], what: str, missing: str) -> T:
        """What `find` finds once the worker made it, or fail with what the closer was told."""
        sim.wait_for(lambda: find() is not None or bool(sim.replies(close)), what)
        found = find()
        if found is None:
            replies = sim.replies(close)
            told = f"{closer} was told: {' | '.join(replies)}" if replies else ""
            raise SimulationError(f"the {label}{missing}. {told}")
        return found

    summary = after_close(
        lambda: _summary_after(sim, opened),
        f"the {label}'s summary in #{CHANNEL_NAME}",
        " got no summary in the channel",
    )
    found = after_close(
        lambda: _runner_dm_after(sim, opened), f"the {label}'s runner DM", "'s runner got no DM"
    )
    runner, dm = found
    return Finished(
        label,
        run_id,
        opened,
        summary,
        runner,
        dm,
        # The summary names people without mentioning them (a mention would notify).
        frozenset(f"{PEOPLE[user][0]}: {text}" for user, text in expected.items()),
    )


def _play(sim: Simulator) -> list[Finished]:
    ana, ben, cat, dan, eve = (Person(sim, user, CHANNEL) for user in PEOPLE)
    finished = []

    _say("first run: Cat orders on her own, so that she has a usual for the main run")
    cat.start_run()
    cat.order("oat flat white")
    finished.append(_finish(sim, "first run", cat.close_run(), {"U0CAT": "oat flat white"}))

    _say("main run: Ana starts it; Ben, Cat (her usual), Dan (edits) and Eve (cancels) join")
    ana.start_run("in 30m Lobby cafe")
    ana.order("espresso")
    ben.order("flat white")
    cat.use_usual()
    dan.order("cappuccino")
    dan.edit_order("large cappuccino, extra shot")
    dan.ill_go()
    eve.order("flat white")
    eve.cancel_order()
    _say("main run: Ana closes it")
    expected = {
        "U0ANA": "espresso",
        "U0BEN": "flat white",
        "U0CAT": "oat flat white",
        "U0DAN": "large cappuccino, extra shot",
    }
    main = _finish(sim, "main run", ana.close_run(), expected)
    finished.append(main)
    _say("main run: Ben rates it; skipping ahead to the runner's reminder")
    ben.click(run_blocks.ACTION_RATE_RUN + "_5", value=run_blocks.rating_value(main.run_id, 5))
    sim.wait_for(
        lambda: any(
            m["ts"] == main.summary["ts"] and "Rated *5.0*" in json.dumps(m.get("blocks"))
            for m in sim.fake.messages(CHANNEL)
        ),
        "the rating on the summary",
    )
    _skip_to_reminder(sim, main)
    return finished


def _skip_to_reminder(sim: Simulator, run: Finished) -> None:
    """Make the run's reminder due now (the demo can't wait 25 minutes) and wait for it.
    Only the times move: the worker sends it as it would at pickup minus the offset."""
    with psycopg.connect(_DATABASE_URL[0], autocommit=True) as conn:
        conn.execute("UPDATE runs SET reminder_at = now() WHERE id = %s", (run.run_id,))
        conn.execute(
            "UPDATE jobs SET run_at = now() WHERE run_id = %s AND kind = 'runner_reminder'"
            " AND status = 'queued'",
            (run.run_id,),
        )
        conn.execute("SELECT pg_notify(%s, '')", (JOBS_CHANNEL,))
    sim.wait_for(
        lambda: len([m for m in sim.fake.dms(run.runner) if _order_list(m)]) >= 2,
        "the runner's reminder",
    )


def _check(sim: Simulator, database_url: str, run: Finished) -> list[str]:
    """Why `run` did not really complete; empty when it did."""
    problems = []
    # The worker records the summary's ts just after Slack accepted it: give it a moment.
    deadline = time.monotonic() + 5
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT r.status, r.failure_reason, u.slack_user_id, r.summary_ts"
                " FROM runs r LEFT JOIN users u ON u.id = r.runner_user_id WHERE r.id = %s",
                (run.run_id,),
            ).fetchone()
            if row is None or row[3] == run.summary["ts"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    if row is None:
        return [f"{run.label}: run {run.run_id} is not in the database"]
    status, failure, runner, summary_ts = row
    if status != "closed":
        problems.append(f"{run.label}: the database says {status!r} ({failure or 'no reason'})")
    if runner != run.runner:
        problems.append(
            f"{run.label}: the database's runner is {runner}, but the DM went to {run.runner}"
        )
    if summary_ts != run.summary["ts"]:
        problems.append(f"{run.label}: the database knows no summary at {run.summary['ts']}")
    listed, dm_listed = _order_list(run.summary), _order_list(run.dm)
    if listed != dm_listed:
        problems.append(f"{run.label}: the runner's DM lists {dm_listed}, the summary {listed}")
    shown = {
        line.removeprefix("• ")
        for line in render_text("\n".join(listed), sim.fake).split("\n")
        if line.startswith("• ")
    }
    if shown != run.expected_orders:
        problems.append(
            f"{run.label}: the summary lists {sorted(shown)}, "
            f"expected {sorted(run.expected_orders)}"
        )
    dms = [m for m in sim.fake.dms(run.runner) if _after(str(m["ts"]), run.run_message_ts)]
    runner_dms = [m for m in dms if _order_list(m) and "You're the runner" in str(m["text"])]
    if len(runner_dms) != 1:
        problems.append(f"{run.label}: the runner got {len(runner_dms)} runner DMs, not one")
    # People would notice a closed run whose message still takes orders.
    try:
        sim.wait_for(
            lambda: (
                sim.find_button(CHANNEL, run_blocks.ACTION_PLACE_ORDER, value=run.run_id) is None
            ),
            f"the {run.label}'s message to show it closed",
        )
    except SimulationError as exc:
        problems.append(str(exc))
    return problems


def _postgres_pid(state_dir: Path) -> str:
    pid_file = state_dir / "pgdata" / "postmaster.pid"
    with contextlib.suppress(OSError):
        return pid_file.read_text().split("\n", 1)[0].strip()
    return "?"


def _fresh_database(state_dir: Path) -> str:
    """A new, empty database in the demo's own embedded Postgres (started if needed).

    The data directory stays between demos (starting the server is quick once it exists),
    and the server is stopped when the demo ends; the database is dropped and created
    again, so every demo starts from empty: nobody has a usual and nobody has run yet."""
    state_env = {"COFFEEBUDDY_STATE_DIR": str(state_dir)}
    _say(f"starting the embedded Postgres in {embedded.pgdata(state_env)}")
    url = embedded.start(state_env)
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    return make_conninfo(url, dbname=DEMO_DATABASE)


def _setup_workspace(fake: FakeSlack) -> None:
    fake.add_channel(CHANNEL, CHANNEL_NAME)
    for user, (name, real_name) in PEOPLE.items():
        fake.add_user(user, name, real_name=real_name, tz="Europe/Berlin")


def _refusal(text: str) -> tuple[str, str]:
    method, sep, error = text.partition("=")
    if method not in SCHEMAS:
        raise argparse.ArgumentTypeError(f"the fake Slack has no method {method!r}")
    return method, (error if sep and error else "not_in_channel")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.demo",
        description="Play a whole coffee run against the real service with simulated "
        "people and a fake Slack; print what they saw. Exit 0 only when the run completed.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("COFFEEBUDDY_DEMO_STATE_DIR") or DEFAULT_STATE_DIR),
        help="where the demo's embedded Postgres lives (default: $COFFEEBUDDY_DEMO_STATE_DIR "
        "or .state/demo; separate from `scripts/run`'s data)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("COFFEEBUDDY_DEMO_DATABASE_URL") or None,
        help="use this empty database instead of starting the embedded Postgres",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for each thing a person expects to see (default 30)",
    )
    parser.add_argument(
        "--refuse",
        type=_refusal,
        action="append",
        default=[],
        metavar="METHOD[=ERROR]",
        help="for testing the demo: the fake Slack refuses every call of this Web API method "
        "with this error (default not_in_channel), e.g. chat.postMessage",
    )
    return parser


def _run(args: argparse.Namespace, began: float) -> int:
    signing_secret = secrets.token_hex(16)
    bot_token = "xoxb-demo-" + secrets.token_hex(12)
    with contextlib.ExitStack() as stack:
        if args.database_url:
            database_url = args.database_url
            postgres = "the given database"
        else:
            # Stopped again when the demo ends, however it ends.
            stack.callback(embedded.stop, {"COFFEEBUDDY_STATE_DIR": str(args.state_dir)})
            database_url = _fresh_database(args.state_dir)
            postgres = f"Postgres pid {_postgres_pid(args.state_dir)}"
        migrate(database_url)
        _DATABASE_URL[:] = [database_url]
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM runs").fetchone()
        if row is not None and row[0]:
            _say(f"the database already holds {row[0]} runs; the demo needs an empty one")
            return 1
        fake = stack.enter_context(FakeSlack(token=bot_token))
        _setup_workspace(fake)
        for method, error in args.refuse:
            _say(f"the fake Slack refuses every {method} with {error!r} (--refuse)")
            fake.fail_next(method, error=error, times=REFUSE_TIMES)
        secrets_env = {"SLACK_SIGNING_SECRET": signing_secret, "SLACK_BOT_TOKEN": bot_token}
        _say("starting the web app (gunicorn) and the worker")
        service = stack.enter_context(
            start_service(database_url, fake.base_url, extra_env=secrets_env)
        )
        _say(
            f"processes: web pid {service.web.pid}, worker pid {service.worker.pid}, "
            f"{postgres}; service logs in {service.logs} (kept if the demo fails)"
        )
        sim = Simulator(
            fake, service.client.base, signing_secret=signing_secret, timeout=args.timeout
        )
        _say(f"playing in #{CHANNEL_NAME} against {service.client.base}")
        problems: list[str] = []
        finished: list[Finished] = []
        try:
            finished = _play(sim)
            for run in finished:
                problems += _check(sim, database_url, run)
        except SimulationError as exc:
            problems.append(str(exc))
        print(render_transcript(sim, [CHANNEL]))
        took = time.monotonic() - began
        if problems:
            service.keep_logs = True  # the only way to see what went wrong
            print("✘ The demo failed:", *(f"  - {p}" for p in problems), sep="\n")
            print(f"  (service logs: {service.logs}; took {took:.1f} s)", flush=True)
            return 1
        main = finished[-1]
        items = re.search(r"^(\d+ orders?)$", "\n".join(_order_list(main.summary)), re.M)
        print(
            f"✔ The coffee run completed: closed in the database, the summary is in "
            f"#{CHANNEL_NAME}, and @{PEOPLE[main.runner][0]} (the runner) got the same list "
            f"({items.group(1) if items else 'the order list'}) by DM. Took {took:.1f} s.",
            flush=True,
        )
        return 0
    raise AssertionError("unreachable")  # for mypy: the with block always returns


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _stop_on_signals()
    began = time.monotonic()
    try:
        return _run(args, began)
    except _Stopped as stopped:
        print(f"\ndemo: stopped by {stopped}; its processes are stopped.", file=sys.stderr)
        return 128 + stopped.signum


if __name__ == "__main__":
    sys.exit(main())
