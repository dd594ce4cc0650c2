"""Every Slack surface of a realistic coffee run, as the people in the channel get it.

    .venv/bin/python -m bench.slack_surfaces

Starts the real service (gunicorn + worker, a fresh database, the fake Slack) and plays the
run a Slack design review used (issue 14): Ana starts `/coffee in 30m Lobby cafe`; nine
people order (two long orders), Dan edits his, Fay volunteers, Eve cancels; the channel's
last call goes out; Ana closes the run; the runner says "I can't go"; the new runner is
reminded; three people rate the run; Ivy asks for help and for the stats. The last call
and the reminder are brought forward in the database (only their times move) so the play
takes seconds.

Prints each surface in order: where it went, how it arrived (a new post, an edit, a thread
reply, a DM, an ephemeral answer, a slash-command reply), its characters as a person sees
them (rendered like the simulator's transcript: names for mentions, times for date tokens,
mrkdwn marks applied), its block count, how many people it notifies, and its first line.
Then the totals per run: channel posts, edits, DMs, notifications and the summary's size.

Who is notified: a new channel post or thread reply notifies each person it mentions
(`<@U…>` in its text or blocks; `<!here>`-style mentions would count everyone); a DM
notifies its reader; an edit, an ephemeral answer and a slash-command reply notify nobody.
It also runs against older code that has no "I'll go" button or ⋯ menu (the volunteer
ticks the box in the form; cancel is then a button), to give the before figures.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.setup import bench_service
from coffeebuddy.jobs.worker import CHANNEL as JOBS_CHANNEL
from coffeebuddy.slack import run_blocks
from simulator.people import Person, Simulator
from simulator.transcript import render_blocks, render_text
from testkit.fakes.slack_api import FakeSlack

CAST = ("ana", "ben", "cat", "dan", "eve", "fay", "gus", "hal", "ivy")
ORDERS = {
    "ana": "flat white",
    "ben": "large oat milk latte, extra hot, half sweet vanilla syrup",
    "cat": "espresso",
    "dan": "cappuccino",
    "eve": "flat white",
    "fay": "chai latte with almond milk and a sprinkle of cinnamon",
    "gus": "flat white",
    "hal": "americano",
    "ivy": "tea",
}
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_EVERYONE = re.compile(r"<!(?:here|channel|everyone)(?:\|[^>]*)?>")


@dataclass(frozen=True)
class Surface:
    how: str  # "post", "edit", "reply in thread", "DM", "ephemeral", "command reply"
    where: str
    text: str
    blocks: list[dict[str, Any]]
    notifies: int
    shown: str  # as a person sees it


def _texts(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)


def _notified(text: str, body: list[dict[str, Any]], members: int, bot: str) -> int:
    everything = "\n".join([text, *_texts(body)])
    if _EVERYONE.search(everything):
        return members
    return len({m for m in _MENTION.findall(everything) if m != bot})


def _shown(text: str, body: list[dict[str, Any]] | None, fake: FakeSlack) -> str:
    if body:
        return "\n".join(render_blocks(body, fake))
    return render_text(text, fake, ansi=False)


def surfaces(sim: Simulator, channel: str) -> list[Surface]:
    """What the bot sent, in order, from the fake Slack's record of calls."""
    fake = sim.fake
    members = len(fake.users) - 1
    found = []
    for call in fake.calls():
        if not call.ok:
            continue
        args = call.args
        text, body = str(args.get("text") or ""), list(args.get("blocks") or [])
        target = str(args.get("channel") or "")
        if call.method == "chat.postMessage":
            if target == channel:
                how = "reply in thread" if args.get("thread_ts") else "post"
                notifies = _notified(text, body, members, fake.bot_user_id)
            else:
                how, notifies = "DM", 1
        elif call.method == "chat.update":
            how, notifies = "edit", 0
        elif call.method == "chat.postEphemeral":
            how, notifies = "ephemeral", 0
        else:
            continue
        where = "#channel" if target == channel else f"DM {target}"
        found.append(Surface(how, where, text, body, notifies, _shown(text, body, fake)))
    return found


def _bring_forward(url: str, run_id: str, kind: str) -> None:
    """Make a scheduled job of the run due now; the worker then sends it as it would (the
    runner reminder also checks the run's own reminder time)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if kind == "runner_reminder":
            conn.execute("UPDATE runs SET reminder_at = now() WHERE id = %s", (run_id,))
        conn.execute(
            "UPDATE jobs SET run_at = now() WHERE run_id = %s AND kind = %s AND status = 'queued'",
            (run_id, kind),
        )
        conn.execute("SELECT pg_notify(%s, '')", (JOBS_CHANNEL,))


def play(sim: Simulator, url: str, channel: str, users: dict[str, str]) -> dict[str, Any]:
    people = {name: Person(sim, uid, channel) for name, uid in users.items()}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO channels (slack_channel_id, slack_team_id, name, last_call_enabled)"
            " VALUES (%s, '', 'coffee', true)",
            (channel,),
        )
    ana = people["ana"]
    start = ana.start_run("in 30m Lobby cafe")
    run_id = start.value or ""
    for name, person in people.items():
        person.order(ORDERS[name])
    people["dan"].edit_order("large cappuccino, extra shot")
    if sim.find_button(channel, "ill_go") is not None:
        people["fay"].click("ill_go")
    else:  # older code: tick "I'll go" in the form
        people["fay"].edit_order(ORDERS["fay"], volunteer=True)
    people["eve"].cancel_order()
    posts_before = len(sim.fake.messages(channel))
    _bring_forward(url, run_id, "last_call")
    sim.wait_for(lambda: len(sim.fake.messages(channel)) > posts_before, "the last call")
    ana.close_run()
    runner = sim.wait_for(lambda: _runner(url, run_id), "the runner")
    sim.wait_for(lambda: sim.find_dm_button(runner, run_blocks.ACTION_CANT_GO), "the runner's DM")
    first = next(name for name, uid in users.items() if uid == runner)
    people[first].click_in_dm(run_blocks.ACTION_CANT_GO)
    new_runner = sim.wait_for(lambda: (r := _runner(url, run_id)) != runner and r, "a new runner")
    sim.wait_for(lambda: len(sim.fake.dms(str(new_runner))) >= 1, "the new runner's DM")
    _bring_forward(url, run_id, "runner_reminder")
    sim.wait_for(lambda: len(sim.fake.dms(str(new_runner))) >= 2, "the reminder")
    for name, score in (("ana", 5), ("ben", 4), ("cat", 5)):
        people[name].click(
            f"{run_blocks.ACTION_RATE_RUN}_{score}", value=run_blocks.rating_value(run_id, score)
        )
    help_reply = people["ivy"].command("help")
    stats_reply = people["ivy"].command("stats")
    sim.wait_for(
        lambda: len(sim.fake.ephemerals()) + sum(1 for _ in sim.private_messages()) > 0,
        "the answers",
    )
    return {"help": help_reply.answer.json(), "stats": stats_reply.answer.json()}


def _runner(url: str, run_id: str) -> str | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT u.slack_user_id FROM runs r JOIN users u ON u.id = r.runner_user_id"
            " WHERE r.id = %s",
            (run_id,),
        ).fetchone()
    return str(row[0]) if row else None


def _line(label: str, shown: str, blocks: int, notifies: int | str) -> str:
    first = shown.strip().split("\n")[0][:70]
    return f"{label:<22} {len(shown):>6} {blocks:>6} {notifies!s:>9}  {first}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slack_surfaces")
    parser.parse_args(argv)
    with bench_service("CS", 1, users=0) as bench:
        fake = bench.slack
        users = {name: f"U0S{name.upper()}" for name in CAST}
        for name, uid in users.items():
            fake.add_user(uid, name, real_name=name.title(), tz="Europe/Berlin")
        channel = bench.channels[0]
        sim = Simulator(fake, bench.client.base, timeout=30.0)
        replies = play(sim, bench.url, channel, users)
        found = surfaces(sim, channel)
        print(f"{'surface':<22} {'chars':>6} {'blocks':>6} {'notifies':>9}  first line")
        for s in found:
            label = f"{s.how} {s.where}"[:22]
            print(_line(label, s.shown, len(s.blocks), s.notifies))
        for name, reply in replies.items():
            body = list(reply.get("blocks") or [])
            shown = _shown(str(reply.get("text") or ""), body, fake)
            print(_line(f"/coffee {name} reply", shown, len(body), 0))
        posts = [s for s in found if s.where == "#channel" and s.how in ("post", "reply in thread")]
        summary = next(s for s in found if s.how == "post" and "closed" in s.text.casefold())
        print()
        print(f"channel posts per run:      {len(posts)}")
        print(f"channel edits per run:      {sum(1 for s in found if s.how == 'edit')}")
        print(f"DMs per run:                {sum(1 for s in found if s.how == 'DM')}")
        print(f"notifications per run:      {sum(s.notifies for s in found)}")
        size = f"{len(summary.shown)} chars, {len(summary.blocks)} blocks"
        print(f"summary as posted:          {size}")
        for name, reply in replies.items():
            shown = _shown(str(reply.get("text") or ""), reply.get("blocks"), fake)
            print(f"/coffee {name + ':':<20}{len(shown)} chars")
    return 0


if __name__ == "__main__":
    sys.exit(main())
