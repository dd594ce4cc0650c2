"""Rendering `/coffee stats` (pure), and the line-up the table is ordered by."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from coffeebuddy.domain.fairness import RULE_SUMMARY, choose_runner
from coffeebuddy.domain.models import Candidate, RunnerChoice
from coffeebuddy.service.stats import fairness_table, line_up
from coffeebuddy.slack import stats_blocks
from coffeebuddy.slack.stats_blocks import (
    MAX_ROWS,
    SECTION_LIMIT,
    FairnessTable,
    StatsRow,
    fairness_reply,
    last_run_text,
    no_history_text,
)
from coffeebuddy.store.stats import WindowPerson

T0 = datetime(2024, 5, 6, 9, 30, tzinfo=UTC)
CHOICE = RunnerChoice(
    runner_slack_id="U0BEN",
    reason="Ben is going: fewest runs lately.",
    rule="fewest_runs",
    why="fewest runs lately",
)


def _table(rows: list[StatsRow], **kwargs: Any) -> FairnessTable:
    fields: dict[str, Any] = {
        "window": 10,
        "runs_counted": 10,
        "rows": tuple(rows),
        "more": 0,
        "next_in_line": CHOICE,
        "rule_summary": RULE_SUMMARY,
    }
    fields.update(kwargs)
    return FairnessTable(**fields)


def _texts(blocks: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for b in blocks:
        if b["type"] == "context":
            out[b["block_id"]] = b["elements"][0]["text"]
        else:
            out[b["block_id"]] = b["text"]["text"]
    return out


def _table_lines(blocks: list[dict[str, Any]]) -> list[str]:
    return [
        line
        for b in blocks
        if b["block_id"].startswith("stats_table_")
        for line in b["text"]["text"].split("\n")
    ]


# ---- rendering -----------------------------------------------------------------------------


def test_rows_show_served_joined_last_run_and_the_marker() -> None:
    rows = [
        StatsRow("U0BEN", runs_in_window=0, runs_joined=3, last_run_at=None),
        StatsRow("U0ANA", runs_in_window=2, runs_joined=5, last_run_at=T0, ran_last=True),
    ]
    text, blocks = fairness_reply(_table(rows))
    assert text == "Fairness in this channel: next in line is <@U0BEN>."
    unix = int(T0.timestamp())
    assert _table_lines(blocks) == [
        "1. <@U0BEN> — served *0* of 10 · joined 3 · last ran never",
        f"2. <@U0ANA> — served *2* of 10 · joined 5 · last ran "
        f"<!date^{unix}^{{date_short}} {{time}}|2024-05-06 09:30 UTC>"
        " · _ran last time, sits out unless they volunteer_",
    ]
    texts = _texts(blocks)
    assert texts["stats_next"].startswith("*Next in line:* <@U0BEN> — fewest runs lately\n")
    assert stats_blocks.ASSUMPTION_TEXT in texts["stats_next"]
    assert stats_blocks.DRAW_NOTE not in texts["stats_next"]
    assert texts["stats_rule"] == f"*The rule:* {RULE_SUMMARY}"
    assert list(texts) == ["stats_heading", "stats_table_0", "stats_next", "stats_rule"]


def test_heading_says_whether_the_window_is_full() -> None:
    rows = [StatsRow("U0BEN", 0, 1, None)]
    _, early = fairness_reply(_table(rows, runs_counted=3))
    assert (
        "all 3 finished runs so far (the window is the last 10)" in _texts(early)["stats_heading"]
    )
    _, one = fairness_reply(_table(rows, runs_counted=1))
    assert "all 1 finished run so far" in _texts(one)["stats_heading"]
    _, full = fairness_reply(_table(rows, runs_counted=10))
    assert "— the last 10 finished runs," in _texts(full)["stats_heading"]
    _, single = fairness_reply(_table(rows, window=1, runs_counted=1))
    assert "— the last 1 finished run," in _texts(single)["stats_heading"]


def test_a_draw_is_flagged_as_decided_at_close() -> None:
    tie = RunnerChoice("U0BEN", "<@U0BEN> was chosen: tied with <@U0ANA> …", "tie_break")
    _, blocks = fairness_reply(_table([StatsRow("U0BEN", 1, 1, T0)], next_in_line=tie))
    assert stats_blocks.DRAW_NOTE in _texts(blocks)["stats_next"]


def test_the_rest_are_summarised() -> None:
    rows = [StatsRow(f"U0P{i:03d}", 1, 1, T0) for i in range(MAX_ROWS)]
    _, blocks = fairness_reply(_table(rows, more=7))
    lines = _table_lines(blocks)
    assert len(lines) == MAX_ROWS + 1
    assert lines[-1] == "…and 7 more people, picked after these."
    _, blocks = fairness_reply(_table(rows[:3], more=1))
    assert _table_lines(blocks)[-1] == "…and 1 more person, picked after these."


def test_more_rows_than_the_cap_are_cut() -> None:
    rows = [StatsRow(f"U0P{i:03d}", 1, 1, T0) for i in range(MAX_ROWS + 4)]
    _, blocks = fairness_reply(_table(rows, more=2))
    lines = _table_lines(blocks)
    assert len(lines) == MAX_ROWS + 1
    assert lines[-1] == "…and 6 more people, picked after these."


def test_every_section_stays_within_slacks_limit_and_no_row_is_split() -> None:
    # The longest Slack ids and every row with a date and the marker.
    rows = [
        StatsRow(f"U{i:030d}", 99, 100, T0 + timedelta(days=i), ran_last=True)
        for i in range(MAX_ROWS)
    ]
    long_reason = RunnerChoice("U" + "0" * 30, "x" * 5000, "fewest_runs")
    _, blocks = fairness_reply(
        _table(rows, more=500, next_in_line=long_reason, rule_summary="y" * 4000)
    )
    texts = _texts(blocks)
    assert all(len(t) <= SECTION_LIMIT for t in texts.values())
    table_sections = [k for k in texts if k.startswith("stats_table_")]
    assert len(table_sections) >= 2  # too long for one section
    lines = _table_lines(blocks)
    assert len(lines) == MAX_ROWS + 1
    assert [int(line.split(".")[0]) for line in lines[:-1]] == list(range(1, MAX_ROWS + 1))
    assert all(line.endswith("_") for line in lines[:-1])  # each row whole


def test_an_empty_table_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="at least one"):
        fairness_reply(_table([]))


def test_no_history_texts() -> None:
    unknown = no_history_text(RULE_SUMMARY, known_channel=False)
    assert unknown.startswith(stats_blocks.NO_RUNS_TEXT)
    assert "`/coffee`" in unknown
    assert unknown.endswith(RULE_SUMMARY)
    known = no_history_text(RULE_SUMMARY, known_channel=True)
    assert known.startswith(stats_blocks.NO_CLOSED_RUNS_TEXT)
    assert known != unknown


def test_last_run_text() -> None:
    assert last_run_text(None) == "never"
    naive = datetime(2024, 5, 6, 9, 30)  # taken as UTC
    assert last_run_text(naive) == last_run_text(T0)
    berlin = T0.astimezone(ZoneInfo("Europe/Berlin"))
    assert last_run_text(berlin) == last_run_text(T0)
    assert re.fullmatch(
        r"<!date\^\d+\^\{date_short\} \{time\}\|2024-05-06 09:30 UTC>", last_run_text(T0)
    )


# ---- the line-up ---------------------------------------------------------------------------


def _people() -> list[Candidate]:
    return [
        Candidate("U0ANA", runs_in_window=2, last_run_at=T0),
        Candidate("U0BEN", runs_in_window=1, last_run_at=T0 - timedelta(days=2)),
        Candidate("U0CAT", runs_in_window=1, last_run_at=T0 + timedelta(days=1)),
        Candidate("U0DAN", runs_in_window=0, last_run_at=None),
        Candidate("U0EVE", runs_in_window=1, last_run_at=T0 - timedelta(days=1)),
    ]


def test_line_up_follows_the_rule_and_the_previous_runner_comes_last() -> None:
    people = _people()
    order = line_up(people, previous_runner="U0CAT", window=10, seed="C1:5")
    assert [c.runner_slack_id for c in order] == ["U0DAN", "U0BEN", "U0EVE", "U0ANA", "U0CAT"]
    first = choose_runner(people, previous_runner="U0CAT", window=10, seed="C1:5")
    assert order[0] == first
    assert order[-1].rule == "only_participant"
    # The order people are listed in changes nothing.
    again = line_up(people[::-1], previous_runner="U0CAT", window=10, seed="C1:5")
    assert again == order


def test_line_up_stops_at_the_limit() -> None:
    order = line_up(_people(), previous_runner=None, window=10, seed="C1:5", limit=2)
    assert [c.runner_slack_id for c in order] == ["U0DAN", "U0BEN"]


def test_fairness_table_rows_follow_the_line_up() -> None:
    people = [
        WindowPerson(
            slack_user_id=c.slack_user_id,
            runs_in_window=c.runs_in_window,
            runs_joined=3,
            last_run_at=c.last_run_at,
        )
        for c in _people()
    ]
    table = fairness_table(people, previous_runner="U0DAN", window=4, runs_counted=4, seed="C1:5")
    assert [r.slack_user_id for r in table.rows] == ["U0BEN", "U0EVE", "U0CAT", "U0ANA", "U0DAN"]
    assert [r.ran_last for r in table.rows] == [False, False, False, False, True]
    assert table.next_in_line.runner_slack_id == "U0BEN"
    assert table.next_in_line.rule == "longest_since"
    assert table.more == 0
    assert (table.window, table.runs_counted, table.rule_summary) == (4, 4, RULE_SUMMARY)


def test_fairness_table_caps_the_rows() -> None:
    people = [
        WindowPerson(f"U0P{i:03d}", runs_in_window=0, runs_joined=1, last_run_at=None)
        for i in range(MAX_ROWS + 5)
    ]
    table = fairness_table(people, previous_runner=None, window=10, runs_counted=3, seed="C1:3")
    assert len(table.rows) == MAX_ROWS
    assert table.more == 5
    assert table.next_in_line.rule == "tie_break"
    assert table.rows[0].slack_user_id == table.next_in_line.runner_slack_id


def test_a_members_answer_is_short_with_the_rest_behind_a_button() -> None:
    """Issue 14 item 9: a member's /coffee stats was 1,550 characters."""
    rows = [
        StatsRow(f"U0P{i:03d}", 1, 4, T0 - timedelta(days=i), ran_last=i == 0) for i in range(8)
    ]
    table = _table(rows, more=0)
    _, full = fairness_reply(table)
    _, short = fairness_reply(table, short=True)
    assert len(_table_lines(full)) == 8
    lines = _table_lines(short)
    assert len(lines) == stats_blocks.SHORT_ROWS + 1
    assert lines[-1] == "…and 3 more people, picked after these."
    short_texts = _texts([b for b in short if b["type"] != "actions"])
    assert stats_blocks.ASSUMPTION_TEXT not in short_texts["stats_next"]
    (more,) = [b for b in short if b["type"] == "actions"]
    assert more["elements"][0]["action_id"] == stats_blocks.ACTION_STATS_ALL
    assert not [b for b in full if b["type"] == "actions"]

    def size(blocks: list[dict[str, Any]]) -> int:
        return sum(len(t) for t in _texts([b for b in blocks if b["type"] != "actions"]).values())

    assert size(short) < 0.75 * size(full)
    # Few enough people: nothing hidden, no button.
    _, small = fairness_reply(_table(rows[:3]), short=True)
    assert not [b for b in small if b["type"] == "actions"]
