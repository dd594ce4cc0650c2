"""`/coffee stats` through the HTTP endpoints as Slack calls them: history is built by real
runs (volunteers steer who serves), then the table, the last-run marker and "next in line"
are checked, and next in line against what a real close then picks. Also the window, an
unknown and a disabled channel, and that asking writes nothing."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from coffeebuddy.domain.fairness import RULE_SUMMARY
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.service.common import DISABLED_TEXT
from coffeebuddy.slack import run_blocks, stats_blocks
from testkit.fakes.slack_api import FakeSlack
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel, SqlFn, runner_of

ANA, BEN, CAT, DAN = "U0ANA", "U0BEN", "U0CAT", "U0DAN"
TABLES = (
    "users",
    "channels",
    "runs",
    "orders",
    "user_preferences",
    "runner_stats",
    "channel_admin_actions",
    "jobs",
    "events",
)
_ROW = re.compile(
    r"^(?P<pos>\d+)\. <@(?P<user>\w+)> — served \*(?P<served>\d+)\* of (?P<of>\d+)"
    r" · joined (?P<joined>\d+) · last ran (?P<last>.+?)(?P<marker> · _ran last time.*_)?$"
)


def _run(chan: Channel, orders: dict[str, bool]) -> str:
    """A whole run: the first person starts it, everyone orders (True = "I'll go"), the
    starter closes it. Returns who ran."""
    starter = next(iter(orders))
    run_id = chan.open_run(starter)
    for user, volunteer in orders.items():
        assert chan.submit(user, f"{user} latte", volunteer=volunteer, run_id=run_id) is None
    chan.click_and_work(starter, run_blocks.ACTION_CLOSE_RUN, run_id)
    assert chan.status(run_id) == "closed"
    return runner_of(chan.sql, run_id)


def _last_reason(sql: SqlFn) -> str:
    rows = sql("SELECT runner_reason FROM runs WHERE status = 'closed' ORDER BY closed_at DESC")
    return str(rows[0][0])


def _history(chan: Channel) -> None:
    """Four runs: Ana volunteers twice, then Ben, then Cat; Dan only joins the first."""
    assert _run(chan, {ANA: True, BEN: False, CAT: False, DAN: False}) == ANA
    assert _run(chan, {ANA: True, BEN: False, CAT: False}) == ANA
    assert _run(chan, {ANA: False, BEN: True, CAT: False}) == BEN
    assert _run(chan, {ANA: False, BEN: False, CAT: True}) == CAT


def _stats(chan: Channel, user: str = BEN) -> dict[str, Any]:
    body = chan.command(user, "stats")
    assert body["response_type"] == "ephemeral"
    return body


def _section(body: dict[str, Any], block_id: str) -> str:
    found = [b for b in body["blocks"] if b.get("block_id") == block_id]
    assert len(found) == 1, body["blocks"]
    block = found[0]
    if block["type"] == "context":
        return str(block["elements"][0]["text"])
    return str(block["text"]["text"])


def _table(body: dict[str, Any]) -> list[dict[str, str]]:
    lines: list[str] = []
    for block in body["blocks"]:
        if str(block.get("block_id", "")).startswith("stats_table_"):
            lines.extend(block["text"]["text"].split("\n"))
    rows = []
    for line in lines:
        match = _ROW.match(line)
        assert match is not None, line
        rows.append(match.groupdict())
    return rows


def _next_in_line(body: dict[str, Any]) -> tuple[str, str]:
    first = _section(body, "stats_next").split("\n")[0]
    match = re.match(r"^\*Next in line:\* <@(\w+)> — (.+)$", first)
    assert match is not None, first
    return match[1], match[2]


def _date_token(sql: SqlFn, user: str) -> str:
    rows = sql(
        "SELECT max(r.closed_at) FROM runs r JOIN users u ON u.id = r.runner_user_id"
        " WHERE u.slack_user_id = %s AND r.status = 'closed'",
        user,
    )
    at = rows[0][0]
    assert isinstance(at, datetime)
    return f"<!date^{int(at.timestamp())}^{{date_short}} {{time}}|"


def _counts(sql: SqlFn) -> dict[str, tuple[Any, ...]]:
    """Rows and the latest change of every table: what a write would move."""
    counts: dict[str, tuple[Any, ...]] = {}
    for table in TABLES:
        counts[table] = tuple(
            sql(f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t")[
                0
            ]
        )
    return counts


# ---- the table and next in line ------------------------------------------------------------


def test_stats_show_counts_marker_and_a_next_in_line_the_real_close_picks(
    chan: Channel, sql: SqlFn
) -> None:
    _history(chan)

    body = _stats(chan)
    table = _table(body)
    assert [(r["user"], r["served"], r["of"], r["joined"]) for r in table] == [
        # Dan: fewest served; Ben before Ana (fewer); Cat ran last, so sits out: last.
        (DAN, "0", "4", "1"),
        (BEN, "1", "4", "4"),
        (ANA, "2", "4", "4"),
        (CAT, "1", "4", "4"),
    ]
    assert [r["pos"] for r in table] == ["1", "2", "3", "4"]
    markers = {r["user"]: r["marker"] for r in table}
    assert markers[CAT] is not None
    assert [u for u, m in markers.items() if m is not None] == [CAT]
    last = {r["user"]: r["last"] for r in table}
    assert last[DAN] == "never"
    for user in (ANA, BEN, CAT):
        assert last[user].startswith(_date_token(sql, user)), last[user]
    assert "all 4 finished runs so far (the window is the last 10)" in _section(
        body, "stats_heading"
    )
    assert RULE_SUMMARY in _section(body, "stats_rule")
    # A member's answer is short: no assumptions paragraph (four people: nothing hidden).
    assert stats_blocks.ASSUMPTION_TEXT not in _section(body, "stats_next")
    assert not [b for b in body["blocks"] if b["type"] == "actions"]

    runner, reason = _next_in_line(body)
    assert runner == DAN
    assert body["text"] == f"Fairness in this channel: next in line is <@{DAN}>."
    # The same people order and nobody volunteers: the real close agrees, word for word.
    assert _run(chan, {ANA: False, BEN: False, CAT: False, DAN: False}) == DAN
    assert _last_reason(sql) == f"{runner.lower()} is going: {reason}."

    # Now everyone has served; Ben and Cat tie at one run but Ben has waited longer.
    body = _stats(chan, DAN)
    assert [(r["user"], r["served"], r["of"]) for r in _table(body)] == [
        (BEN, "1", "5"),
        (CAT, "1", "5"),
        (ANA, "2", "5"),
        (DAN, "1", "5"),
    ]
    runner, reason = _next_in_line(body)
    assert runner == BEN
    assert "longest since their last run" in reason
    assert _run(chan, {ANA: False, BEN: False, CAT: False, DAN: False}) == BEN
    assert _last_reason(sql) == f"{runner.lower()} is going: {reason}."


def test_stats_respect_the_fairness_window(chan: Channel, sql: SqlFn) -> None:
    _history(chan)
    sql("UPDATE channels SET fairness_window_runs = 2")

    body = _stats(chan)
    # Only runs 3 (Ben) and 4 (Cat) count; Dan ordered in neither, so he is not listed.
    # Ana served none of them, though she ran before the window.
    table = _table(body)
    assert [(r["user"], r["served"], r["of"], r["joined"]) for r in table] == [
        (ANA, "0", "2", "2"),
        (BEN, "1", "2", "2"),
        (CAT, "1", "2", "2"),
    ]
    assert {r["user"]: r["last"] for r in table}[ANA].startswith(_date_token(sql, ANA))
    assert "the last 2 finished runs" in _section(body, "stats_heading")
    runner, reason = _next_in_line(body)
    assert runner == ANA
    assert reason == "fewest runs lately; u0cat went last time"
    assert _run(chan, {ANA: False, BEN: False, CAT: False}) == ANA
    assert _last_reason(sql) == f"{runner.lower()} is going: {reason}."


def test_asking_for_stats_twice_gives_the_same_answer(chan: Channel) -> None:
    _history(chan)
    assert _stats(chan, ANA) == _stats(chan, DAN)


# ---- no history, unknown, disabled ---------------------------------------------------------


def test_stats_in_a_channel_coffeebuddy_never_saw(
    web: SignedClient, worker: Worker, sql: SqlFn, slack: FakeSlack
) -> None:
    elsewhere = Channel(web, worker, sql, "C0NOWHERE1", slack)
    before = _counts(sql)
    body = _stats(elsewhere)
    assert body["text"].startswith(stats_blocks.NO_RUNS_TEXT)
    assert RULE_SUMMARY in body["text"]
    assert "blocks" not in body
    assert _counts(sql) == before


def test_stats_before_any_run_closed(chan: Channel, sql: SqlFn) -> None:
    chan.open_run(ANA)
    assert chan.submit(BEN, "tea") is None
    body = _stats(chan)
    assert body["text"].startswith(stats_blocks.NO_CLOSED_RUNS_TEXT)
    assert "blocks" not in body


def test_stats_in_a_disabled_channel(chan: Channel, sql: SqlFn) -> None:
    _history(chan)
    sql("UPDATE channels SET enabled = false")
    before = _counts(sql)
    body = _stats(chan)
    assert body["text"] == DISABLED_TEXT
    assert "blocks" not in body
    assert _counts(sql) == before


# ---- read-only -----------------------------------------------------------------------------


def test_asking_for_stats_writes_nothing(chan: Channel, sql: SqlFn, slack: FakeSlack) -> None:
    _history(chan)
    # Someone new asks: not even their user row is written.
    slack.add_user("U0NEWBIE", name="newbie")
    before = _counts(sql)
    messages = len(slack.messages(CHANNEL))
    _stats(chan, "U0NEWBIE")
    _stats(chan, ANA)
    assert chan.work() == 0
    assert _counts(sql) == before
    assert len(slack.messages(CHANNEL)) == messages
