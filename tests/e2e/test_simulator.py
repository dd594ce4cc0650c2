"""The Slack simulator against the real service (gunicorn + worker over HTTP), and the
demo (`scripts/demo`, `python -m simulator.demo`) as a person runs it: end to end, failing
honestly when Slack misbehaves, and leaving no process behind, also after Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient

from coffeebuddy.slack import run_blocks
from coffeebuddy.slack.modal_blocks import read_form_metadata
from simulator import HttpAnswer, Simulator, render_transcript
from testkit.fakes.slack_api import FakeSlack
from testkit.processes import Service, free_port, start_service
from tests.conftest import CHANNEL

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture
def service(database_url: str, slack: FakeSlack) -> Iterator[Service]:
    with start_service(database_url, slack.base_url, web_workers=1) as running:
        yield running


def _sections(transcript: str) -> dict[str, str]:
    """The transcript's parts by the first word of their "══ …" heading."""
    parts = re.split(r"^══ (\S+).*$", transcript, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _bullets(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("• ")]


def _messages(section: str) -> list[str]:
    """A channel or DM section cut into messages (each starts with its HH:MM:SS line)."""
    return re.split(r"^(?=\d\d:\d\d:\d\d  )", section, flags=re.MULTILINE)[1:]


def _dm_section(dms: str, name: str) -> str:
    match = re.search(rf"^— @{name}'s DM with CoffeeBuddy —$(.*?)(?=^— @|\Z)", dms, re.M | re.S)
    assert match, f"no DM to @{name} in:\n{dms}"
    return match.group(1)


def _payload(body: bytes) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(parse_qs(body.decode())["payload"][0])
    return payload


def test_simulated_people_play_a_run_against_the_real_service(
    service: Service, slack: FakeSlack, sql: Any
) -> None:
    sent: list[dict[str, Any]] = []

    def observe(path: str, body: bytes, answer: HttpAnswer) -> None:
        assert answer.ok, answer.describe()  # signed as Slack signs: the service took it
        if path == "/slack/interactions":
            sent.append(_payload(body))

    sim = Simulator(slack, service.client.base, observer=observe)
    ana, ben, cat = (sim.person(user, CHANNEL) for user in ("U0ANA", "U0BEN", "U0CAT"))

    run_button = ana.start_run("in 20m Lobby cafe")
    run_id = run_button.value
    assert sql("SELECT status FROM runs WHERE id = %s", run_id) == [("open",)]
    ana.order("flat white")
    assert "tea" in ben.order("tea", volunteer=True)
    cat.order("latte")
    assert "canceled" in cat.cancel_order()
    close = ana.close_run()

    # Ben volunteered, so Ben runs: his DM comes, and the run message stops taking orders.
    sim.wait_for(lambda: slack.dms("U0BEN"), "Ben's runner DM")
    sim.wait_for(
        lambda: sim.find_button(CHANNEL, run_blocks.ACTION_PLACE_ORDER) is None,
        "the run message to show the run closed",
    )
    # The summary is a job of its own: it may come after the DM and the update above.
    # (The run message says "closed" too; the summary is the channel's second message.)
    sim.wait_for(lambda: len(slack.messages(CHANNEL)) >= 2, "the summary in the channel")
    assert sql("SELECT status FROM runs WHERE id = %s", run_id) == [("closed",)]
    assert sim.replies(close) == []  # closing told Ana nothing: the summary says it all

    parts = _sections(render_transcript(sim, [CHANNEL]))
    channel, timeline, dms = parts["#coffee:"], parts["What"], parts["Direct"]
    run_message, summary = _messages(channel)
    assert re.search(r"@ana started a coffee run, pickup \d\d:\d\d \w+ · Lobby cafe", run_message)
    assert "*" not in run_message  # mrkdwn is rendered, not shown
    assert "2 people were in: @ana, @ben" in run_message
    # It links to the summary once the worker has the link ("See the orders in the
    # summary." until then).
    assert "Closed — @ben is going. See the orders" in run_message
    assert "[Order / change]" not in run_message
    assert "Coffee run closed — @ben is going" in summary
    # Plain names in the summary: a new post notifies everyone it mentions.
    assert sorted(_bullets(summary)) == ["• ana: flat white", "• ben: tea"]
    # The runner's DM carries the same list as the channel summary.
    assert _bullets(_dm_section(dms, "ben")) == _bullets(summary)
    assert "[I can't go]" in _dm_section(dms, "ben")
    for line in (
        r"@ana\s+types `/coffee in 20m Lobby cafe`",
        r"@ana\s+← only they see: ☕ Starting your coffee run…",
        r"@ben\s+clicks \[Order / change\]",
        r"@ben\s+fills “Coffee order”: Your order = “tea”; Runner = I'll go — make me the "
        r"runner → \[Save order\]",
        r"@ben\s+← only they see: ☕ Got your order: tea\.",
        r"@cat\s+picks ⋯ \[Cancel my order\]",
        r"@cat\s+← only they see: Your order is canceled\.",
        r"CoffeeBuddy\s+posts in #coffee: ☕ @ana started a coffee run, order by \d\d:\d\d",
        r"CoffeeBuddy\s+posts in @ben's DM: ☕ You're the runner",
    ):
        assert re.search(line, timeline), f"{line!r} not in:\n{timeline}"

    # Every click echoed the button and the message it was on, as Slack does.
    clicks = [p for p in sent if p["type"] == "block_actions"]
    assert [c["actions"][0]["action_id"] for c in clicks] == [
        run_blocks.ACTION_PLACE_ORDER,
        run_blocks.ACTION_PLACE_ORDER,
        run_blocks.ACTION_PLACE_ORDER,
        run_blocks.ACTION_RUN_MENU,
        run_blocks.ACTION_CLOSE_RUN,
    ]
    for click in clicks:
        action = click["actions"][0]
        assert action["block_id"] == run_blocks.RUN_ACTIONS_BLOCK_ID
        if action["type"] == "overflow":  # Slack sends the chosen option, not a value
            assert "value" not in action
            assert (
                action["selected_option"]["value"] == f"{run_blocks.ACTION_CANCEL_ORDER}:{run_id}"
            )
        else:
            assert action["value"] == run_id
            assert action["type"] == "button" and action["text"]["text"]
        assert click["container"] == {
            "type": "message",
            "message_ts": run_button.message_ts,
            "channel_id": CHANNEL,
            "is_ephemeral": False,
        }
        assert click["channel"] == {"id": CHANNEL, "name": "coffee"}
        assert click["message"]["ts"] == run_button.message_ts
        assert any(b.get("block_id") == "run_actions" for b in click["message"]["blocks"])
        assert click["response_url"].startswith(slack.root_url + "/response/")
        assert click["trigger_id"]
    assert len({c["response_url"] for c in clicks}) == len(clicks)

    # Each form was submitted from the view the click opened, filled in by its fields.
    submissions = [p for p in sent if p["type"] == "view_submission"]
    opened = slack.opened_views()
    assert [s["view"]["id"] for s in submissions] == [v["id"] for v in opened]
    bens = submissions[1]["view"]
    assert bens["callback_id"] == run_blocks.CALLBACK_ORDER_MODAL
    assert read_form_metadata(bens["private_metadata"])[0] == run_id
    option = opened[1]["blocks"][-1]["element"]["options"][0]
    assert bens["state"]["values"] == {
        "order": {"order_text": {"type": "plain_text_input", "value": "tea"}},
        "volunteer": {"volunteer_choice": {"type": "checkboxes", "selected_options": [option]}},
    }


def test_clicks_echo_blocks_without_an_id_the_same_way_every_time(slack: FakeSlack) -> None:
    """Slack gives a block posted without a block_id one of its own and echoes it; the
    simulator does too, stably. No service here: the observer sees what would be sent to
    a closed port, and the answer says nobody answered."""
    sent: list[tuple[bytes, HttpAnswer]] = []
    sim = Simulator(
        slack, f"http://127.0.0.1:{free_port()}", observer=lambda p, b, a: sent.append((b, a))
    )
    button = {"type": "button", "action_id": "cant_go", "text": {"type": "plain_text", "text": "X"}}
    bot = WebClient(token=slack.token, base_url=slack.base_url)
    bot.chat_postMessage(
        channel="U0ANA", text="hi", blocks=[{"type": "actions", "elements": [button]}]
    )
    found = sim.find_dm_button("U0ANA", "cant_go")
    assert found is not None and found.value is None
    sim.click("U0ANA", found)
    sim.click("U0ANA", found)
    first, second = (_payload(body) for body, _ in sent)
    block_id = first["actions"][0]["block_id"]
    assert block_id == second["actions"][0]["block_id"] != ""
    assert first["message"]["blocks"][0]["block_id"] == block_id  # the message shows it too
    assert "value" not in first["actions"][0]  # the button has none, so Slack sends none
    assert first["channel"] == {"id": "DU0ANA", "name": "directmessage"}
    assert first["container"]["message_ts"] == found.message_ts
    assert all(answer.status == 0 and answer.error for _, answer in sent)


# ---- the demo, as a person runs it -----------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped already


def _started(output: str) -> list[int]:
    match = re.search(r"web pid (\d+), worker pid (\d+), (?:Postgres pid (\d+))?", output)
    assert match, output
    return [int(pid) for pid in match.groups() if pid]


def _demo_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFEEBUDDY_DEMO_")}
    return {**env, **extra}


def test_scripts_demo_plays_a_whole_run_from_nothing(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"  # a fresh machine: no Postgres, no data yet
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo")],
        cwd=ROOT,
        env=_demo_env(COFFEEBUDDY_DEMO_STATE_DIR=str(state)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"✔ The coffee run completed: .* Took \d+\.\d s\.", out)
    parts = _sections(out)
    channel, timeline, dms = parts["#coffee:"], parts["What"], parts["Direct"]
    summaries = [m for m in _messages(channel) if "Coffee run closed — @" in m]
    assert len(summaries) == 2  # the first short run, then the main run
    main = summaries[-1]
    assert sorted(_bullets(main)) == [
        "• ana: espresso",
        "• ben: flat white",
        "• cat: oat flat white",
        "• dan: large cappuccino, extra shot",
    ]
    runner = re.search(r"Coffee run closed — @(\w+) is going", main)
    assert runner
    # Dan tapped "I'll go", so Dan runs; his DMs (runner DM, then the reminder) list
    # exactly what the channel summary lists.
    assert runner.group(1) == "dan"
    dan_dms = _messages(_dm_section(dms, "dan"))
    assert [_bullets(m) for m in dan_dms] == [_bullets(main), _bullets(main)]
    assert re.search(r"⏰ Pickup \d\d:\d\d \w+, Lobby cafe: 4 orders", dan_dms[-1])
    assert "Rated 5.0 / 5 from 1 rating" in main  # the rating, rendered: no asterisks
    assert re.search(r"@cat\s+clicks \[Use my usual\]", timeline)
    assert re.search(r"@cat\s+← only they see: ☕ Ordered your usual: oat flat white", timeline)
    assert re.search(r"@dan\s+clicks \[Order / change\]", timeline)
    assert re.search(r"@dan\s+← only they see: ☕ Updated your order", timeline)
    assert re.search(r"@dan\s+clicks \[I'll go\]", timeline)
    assert re.search(r"@eve\s+picks ⋯ \[Cancel my order\]", timeline)
    assert re.search(r"@eve\s+← only they see: Your order is canceled", timeline)
    assert re.search(r"@ben\s+clicks \[5 ⭐\]", timeline)
    # Nothing it started is left running: gunicorn, the worker, the embedded Postgres.
    assert not [pid for pid in _started(out) if _alive(pid)]
    assert not (state / "pgdata" / "postmaster.pid").exists()


@pytest.mark.parametrize(
    ("refuse", "why"),
    [
        (
            "chat.postMessage=not_in_channel",
            r"the run message never appeared\. @cat was told: .*⚠️ The coffee run couldn't start",
        ),
        (
            "conversations.open=missing_scope",
            r"the first run's runner got no DM\. @cat was told: ⚠️ The coffee runner's DM "
            r"couldn't be sent",
        ),
    ],
)
def test_the_demo_fails_with_the_reason_when_slack_refuses(
    database_url: str, refuse: str, why: str
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator.demo",
            "--database-url",
            database_url,
            "--refuse",
            refuse,
        ],
        cwd=ROOT,
        env=_demo_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "✘ The demo failed:" in done.stdout
    assert re.search(why, done.stdout), done.stdout
    assert "✔" not in done.stdout
    assert not [pid for pid in _started(done.stdout) if _alive(pid)]


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    demo = subprocess.Popen(
        [sys.executable, "-m", "simulator.demo", "--state-dir", str(state)],
        cwd=ROOT,
        env=_demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stream = demo.stdout
    assert stream is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        with stream:
            for line in stream:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        while not seen or not seen[-1].startswith("demo: playing"):
            line = lines.get(timeout=120)
            assert line is not None, "".join(seen)
            seen.append(line)
        demo.send_signal(signal.SIGINT)  # Ctrl-C while people are playing
        assert demo.wait(timeout=120) == 128 + signal.SIGINT
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    output = "".join(seen)
    assert "demo: stopped by SIGINT" in output
    assert "✔" not in output
    started = _started(output)
    assert len(started) == 3  # web, worker and the embedded Postgres
    assert not [pid for pid in started if _alive(pid)]
    assert not (state / "pgdata" / "postmaster.pid").exists()
