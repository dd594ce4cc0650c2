"""Block Kit for `/coffee stats`: the channel's fairness table, who is next in line and
why, and the rule. Pure functions of data; Slack's limits are kept here (a section's
text is at most 3000 characters, a long table is cut with "and N more")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from slack_sdk.models.blocks import ActionsBlock, ButtonElement, ContextBlock

from coffeebuddy.domain.models import RunnerChoice
from coffeebuddy.slack.blockkit import BlockDict, escape, mrkdwn, plural, section

# Slack refuses a section whose text is longer than this.
SECTION_LIMIT: Final = 3000
# Rows shown before the rest are summarised as "and N more".
MAX_ROWS: Final = 25
# A member's short answer: the next few picks; "Show everyone" gives the whole table.
SHORT_ROWS: Final = 5
ACTION_STATS_ALL: Final = "stats_all"

NO_RUNS_TEXT: Final = "No coffee runs here yet — start one with `/coffee`."
NO_CLOSED_RUNS_TEXT: Final = (
    "No finished coffee runs here yet, so nobody has served — start one with `/coffee`."
)
ASSUMPTION_TEXT: Final = (
    "_Assumes everyone in the table orders in the next run and nobody volunteers: "
    "pressing “I'll go” puts a volunteer first._"
)
DRAW_NOTE: Final = (
    "_It comes down to the draw, which happens when the run closes (seeded with that "
    "run's id), so it may pick someone else among those tied._"
)


@dataclass(frozen=True)
class StatsRow:
    """One person in the table, as the fairness rule sees them."""

    slack_user_id: str
    # Runs served among the window's runs.
    runs_in_window: int
    # Window runs they ordered in.
    runs_joined: int
    # Last time they served in this channel, inside the window or not.
    last_run_at: datetime | None
    # Served the channel's latest closed run, so sits out next time unless they volunteer.
    ran_last: bool = False


@dataclass(frozen=True)
class FairnessTable:
    """What `/coffee stats` shows; `rows` are ordered by who would be picked first."""

    window: int  # the channel's fairness_window_runs
    runs_counted: int  # closed runs in the window (fewer than `window` early on)
    rows: tuple[StatsRow, ...]  # at most MAX_ROWS, the first picks
    more: int  # people in the window not shown (picked after `rows`)
    next_in_line: RunnerChoice
    rule_summary: str


def no_history_text(rule_summary: str, *, known_channel: bool) -> str:
    """The answer before any run has closed in the channel."""
    first = NO_CLOSED_RUNS_TEXT if known_channel else NO_RUNS_TEXT
    return f"{first}\n*Who runs:* {rule_summary}"


def fairness_reply(table: FairnessTable, *, short: bool = False) -> tuple[str, list[BlockDict]]:
    """The notification text and the blocks for the table. `short` (a member's answer)
    shows the next SHORT_ROWS picks and a "Show everyone" button for the rest."""
    if not table.rows:
        raise ValueError("a fairness table needs at least one person")
    runner = table.next_in_line.runner_slack_id
    text = f"Fairness in this channel: next in line is <@{runner}>."
    blocks: list[BlockDict] = [section(_heading(table), block_id="stats_heading")]
    lines = _table_lines(table, limit=SHORT_ROWS if short else MAX_ROWS)
    for i, chunk in enumerate(_chunks(lines)):
        blocks.append(section(chunk, block_id=f"stats_table_{i}"))
    # Ephemeral, so the mention notifies nobody; the reason's own words are plain text.
    why = escape(table.next_in_line.why or table.next_in_line.reason)
    next_lines = [f"*Next in line:* <@{runner}> — {why}"]
    if not short:
        next_lines.append(ASSUMPTION_TEXT)
        if table.next_in_line.rule == "tie_break":
            next_lines.append(DRAW_NOTE)
    blocks.append(section(_clip("\n".join(next_lines)), block_id="stats_next"))
    blocks.append(
        ContextBlock(
            elements=[mrkdwn(_clip(f"*The rule:* {table.rule_summary}"))],
            block_id="stats_rule",
        ).to_dict()
    )
    if short and len(table.rows) + table.more > SHORT_ROWS:
        button = ButtonElement(text="Show everyone", action_id=ACTION_STATS_ALL, value="all")
        blocks.append(ActionsBlock(elements=[button], block_id="stats_more").to_dict())
    return text, blocks


def last_run_text(at: datetime | None) -> str:
    """A date every reader sees in their own time zone, with a UTC fallback; or "never"."""
    if at is None:
        return "never"
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    unix = int(aware.timestamp())
    fallback = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{unix}^{{date_short}} {{time}}|{fallback}>"


def _heading(table: FairnessTable) -> str:
    if table.runs_counted < table.window:
        scope = (
            f"all {plural(table.runs_counted, 'finished run', 'finished runs')} so far "
            f"(the window is the last {table.window})"
        )
    else:
        scope = f"the last {plural(table.window, 'finished run', 'finished runs')}"
    return f"*☕ Who ran lately in this channel* — {scope}, next pick first:"


def _table_lines(table: FairnessTable, *, limit: int = MAX_ROWS) -> list[str]:
    lines = [
        _row_line(i, row, table.runs_counted) for i, row in enumerate(table.rows[:limit], start=1)
    ]
    more = table.more + max(0, len(table.rows) - limit)
    if more > 0:
        lines.append(f"…and {plural(more, 'more person', 'more people')}, picked after these.")
    return lines


def _row_line(position: int, row: StatsRow, runs_counted: int) -> str:
    line = (
        f"{position}. <@{row.slack_user_id}> — served *{row.runs_in_window}* of "
        f"{runs_counted} · joined {row.runs_joined} · last ran {last_run_text(row.last_run_at)}"
    )
    if row.ran_last:
        line += " · _ran last time, sits out unless they volunteer_"
    return line


def _chunks(lines: Sequence[str]) -> list[str]:
    """Join lines into texts of at most SECTION_LIMIT characters, never splitting a line."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        candidate = f"{current}\n{line}" if current else line
        if current and len(candidate) > SECTION_LIMIT:
            chunks.append(current)
            candidate = line
        current = _clip(candidate)
    if current:
        chunks.append(current)
    return chunks


def _clip(text: str) -> str:
    return text if len(text) <= SECTION_LIMIT else text[: SECTION_LIMIT - 1] + "…"


def text_section(text: str) -> BlockDict:
    """A plain answer as a block, for replies that add blocks after it."""
    return section(_clip(text), block_id="stats_text")
