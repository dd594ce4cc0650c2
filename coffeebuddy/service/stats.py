"""`/coffee stats`: the channel's fairness table and its fairness share over 28 days;
for admins also the pilot report (runs, bot time, CSAT, fairness over 7 and 28 days).

Read-only: one read-only snapshot, nothing written (not even the channel or the user).
"Next in line" is the real fairness rule (`choose_runner`) applied to everyone who served
or ordered in the channel's window, as if they all ordered in the next run and nobody
volunteered. Its seed is the channel and its count of closed runs, so asking twice gives
the same answer; only a tie settled by the draw can come out differently at the real close,
whose seed is the new run's id (the reply says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from coffeebuddy.config import Config
from coffeebuddy.db import Database
from coffeebuddy.domain.fairness import RULE_SUMMARY, choose_runner
from coffeebuddy.domain.models import Candidate, RunnerChoice
from coffeebuddy.domain.pilot import REPORT_PERIODS
from coffeebuddy.service import pilot
from coffeebuddy.service.common import DISABLED_TEXT, Actor, Reply
from coffeebuddy.service.people import People
from coffeebuddy.slack import pilot_blocks, stats_blocks
from coffeebuddy.slack.stats_blocks import FairnessTable, StatsRow
from coffeebuddy.store import stats
from coffeebuddy.store.stats import WindowPerson


class StatsService:
    def __init__(
        self,
        database: Database,
        config: Config,
        clock: Callable[[], datetime],
        people: People,
    ) -> None:
        self.db = database
        self.config = config
        self.clock = clock
        self.people = people

    def show(self, actor: Actor, *, everyone: bool = False) -> Reply:
        """`/coffee stats`: short for a member (the next few picks); the whole table for an
        admin, or with `everyone` (the "Show everyone" button)."""
        now = self.clock()
        with self.db.transaction() as conn:
            stats.read_only(conn)
            channel = stats.channel(conn, actor.channel_id)
            if channel is None:
                return Reply(stats_blocks.no_history_text(RULE_SUMMARY, known_channel=False))
            if not channel.enabled:
                return Reply(DISABLED_TEXT)
            window = channel.fairness_window_runs
            history = stats.history(conn, channel.id)
            people = stats.window(conn, channel.id, window)
            share = pilot.fairness_share(conn, channel.id, now)
            # Cheap to read with the rest in one snapshot; shown to admins only.
            periods = [pilot.read_period(conn, channel.id, now, d) for d in REPORT_PERIODS]
        # After the snapshot: this may ask Slack whether they are a workspace admin (and,
        # stats being read-only, does not cache the answer).
        admin = self.people.is_admin(actor.user_id, channel.admin_user_ids, remember=False)
        report = pilot_blocks.pilot_report_blocks(periods) if admin else []
        closed_runs = history.closed_runs
        if closed_runs == 0 or not people:
            text = stats_blocks.no_history_text(RULE_SUMMARY, known_channel=True)
            if not report:
                return Reply(text)
            return Reply(text, blocks=[stats_blocks.text_section(text), *report])
        table = fairness_table(
            people,
            previous_runner=history.previous_runner,
            window=window,
            runs_counted=min(window, closed_runs),
            seed=f"{actor.channel_id}:{closed_runs}",
        )
        text, blocks = stats_blocks.fairness_reply(table, short=not (admin or everyone))
        return Reply(text, blocks=[*blocks, *pilot_blocks.fairness_share_blocks(share), *report])


def fairness_table(
    people: Sequence[WindowPerson],
    *,
    previous_runner: str | None,
    window: int,
    runs_counted: int,
    seed: str,
) -> FairnessTable:
    """The table for `people` (the channel's fairness window), ordered by who the rule
    picks first."""
    candidates = [
        Candidate(
            slack_user_id=p.slack_user_id,
            runs_in_window=p.runs_in_window,
            last_run_at=p.last_run_at,
            name=p.display_name,
        )
        for p in people
    ]
    order = line_up(
        candidates,
        previous_runner=previous_runner,
        window=window,
        seed=seed,
        limit=stats_blocks.MAX_ROWS,
    )
    by_id = {p.slack_user_id: p for p in people}
    rows = tuple(
        StatsRow(
            slack_user_id=choice.runner_slack_id,
            runs_in_window=by_id[choice.runner_slack_id].runs_in_window,
            runs_joined=by_id[choice.runner_slack_id].runs_joined,
            last_run_at=by_id[choice.runner_slack_id].last_run_at,
            ran_last=choice.runner_slack_id == previous_runner,
        )
        for choice in order
    )
    return FairnessTable(
        window=window,
        runs_counted=runs_counted,
        rows=rows,
        more=len(people) - len(rows),
        next_in_line=order[0],
        rule_summary=RULE_SUMMARY,
    )


def line_up(
    candidates: Sequence[Candidate],
    *,
    previous_runner: str | None,
    window: int,
    seed: str,
    limit: int | None = None,
) -> list[RunnerChoice]:
    """The first `limit` people (everyone when None) in the order the fairness rule would
    pick them: the first choice is who runs next, the second who would run if the first
    didn't order, and so on. Uses `choose_runner` itself, so the table can never disagree
    with the rule."""
    left = list(candidates)
    order: list[RunnerChoice] = []
    while left and (limit is None or len(order) < limit):
        choice = choose_runner(left, previous_runner=previous_runner, window=window, seed=seed)
        order.append(choice)
        left = [c for c in left if c.slack_user_id != choice.runner_slack_id]
    return order
