"""The runner's "I can't go": a closed run goes to the next person by the same rule.

Pressed in the runner's DM. Only the run's current runner may use it, once per run (who
declined is kept in `runs.declined_user_ids`, and they are never picked again for that
run). The next runner is the fairness rule (`choose_fair_runner`, as at closing) applied to
the participants who haven't declined; the previous-run rule and volunteers work as usual.

One transaction, holding the run row's lock, changes the runner and the explanation,
moves the runner stats (the decliner loses the credit, the new runner gets it, both as the
run history now says), writes a `runner_assigned` event and the jobs: the channel summary
and the run message are updated in place, the new runner gets the usual DM (and the
reminder, if the old runner already had theirs) and the old runner's DM says they're off
the hook.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from coffeebuddy.db import Conn, Database
from coffeebuddy.domain.models import RunnerChoice, RunStatus
from coffeebuddy.service.closing import choose_fair_runner, runner_history
from coffeebuddy.service.common import DISABLED_TEXT, Interaction
from coffeebuddy.service.effects import queue_ephemeral, refresh_run_message
from coffeebuddy.store import orders, outbox, people, queue, runners, runs
from coffeebuddy.store.orders import ActiveOrder
from coffeebuddy.store.runners import Served
from coffeebuddy.store.runs import RunRow

log = logging.getLogger(__name__)


class SwapService:
    def __init__(self, database: Database) -> None:
        self.db = database

    def cant_go(self, ia: Interaction) -> None:
        """The runner pressed "I can't go". Anyone else, or a run that can't be handed on,
        gets a short ephemeral answer and nothing changes."""
        actor, run_id = ia.actor, ia.run
        response_url, correlation_id = ia.response_url, ia.correlation_id
        with self.db.transaction() as conn:
            run = runs.lock(conn, run_id)
            refusal = _refusal(conn, run, actor.user_id)
            if refusal is None:
                assert run is not None
                refusal = _hand_on(conn, run, actor.user_id)
            if refusal is not None:
                queue_ephemeral(
                    conn,
                    run_id,
                    channel=actor.channel_id,
                    user=actor.user_id,
                    text=refusal,
                    response_url=response_url,
                    correlation_id=run.correlation_id if run else correlation_id,
                )
                log.info("cant_go_refused", extra={"user_id": actor.user_id})


def _refusal(conn: Conn, run: RunRow | None, user: str) -> str | None:
    """Why `user` can't hand this run on, or None when they can."""
    if run is None:
        return "That coffee run doesn't exist any more."
    if not run.channel_enabled:
        return DISABLED_TEXT
    status = run.status
    if status == RunStatus.OPEN:
        return "This coffee run is still open: its runner is chosen when it closes."
    if status == RunStatus.CANCELED:
        return "This coffee run was canceled, so nobody needs to go."
    if status != RunStatus.CLOSED:
        return "This coffee run couldn't complete, so there's nothing to hand on."
    # A closed run has both (the `closed_has_runner` constraint).
    assert run.runner_user_id is not None
    assert run.closed_at is not None
    current = people.slack_id(conn, run.runner_user_id)
    if user in run.declined_user_ids:
        return (
            f"You already said you can't go on this run (once per run) — <@{current}> is "
            "going instead."
        )
    if user != current:
        return f"Only <@{current}>, the runner of this coffee run, can hand it on."
    if runners.newer_closed_run(
        conn, channel_id=run.channel_id, run_id=run.id, closed_at=run.closed_at
    ):
        return (
            f"A newer coffee run has closed in <#{run.slack_channel_id}> since, so this one "
            "can't be handed on any more — please sort it out in the channel."
        )
    return None


def _hand_on(conn: Conn, run: RunRow, decliner: str) -> str | None:
    """Make the next person by the rule the runner of the locked, closed `run`, whose
    runner is `decliner`. Returns the answer for `decliner` when nobody is left."""
    declined = [*run.declined_user_ids, decliner]
    active = orders.active(conn, run.id)
    remaining = [o for o in active if o.slack_user_id not in declined]
    if not remaining:
        log.info("cant_go_nobody_left", extra={"participants": len(active)})
        return (
            "Sorry — there's nobody else in this run left to go, so you're still the runner. "
            f"If you really can't make it, let <#{run.slack_channel_id}> know."
        )

    choice, history = choose_fair_runner(conn, run, remaining)
    runner = next(o for o in remaining if o.slack_user_id == choice.runner_slack_id)
    closed_at = _swap_runner(conn, run, choice, runner, declined)
    _move_credit(conn, run, runner, history[runner.slack_user_id], decliner, closed_at)
    _queue_messages(conn, run, new_runner=runner.slack_user_id, old_runner=decliner)
    outbox.record_run(
        conn,
        "runner_assigned",
        run,
        runner=choice.runner_slack_id,
        rule=choice.rule,
        replaced=decliner,
        candidates=len(choice.considered),
    )
    log.info(
        "runner_swapped",
        extra={"rule": choice.rule, "user_id": choice.runner_slack_id, "count": len(declined)},
    )
    return None


def _swap_runner(
    conn: Conn,
    run: RunRow,
    choice: RunnerChoice,
    runner: ActiveOrder,
    declined: Sequence[str],
) -> datetime:
    """Write the new runner (their active order) and why; `declined` ends with who just
    did. Returns the run's close time."""
    names = people.names(conn, declined)
    assert run.runner_user_id is not None  # a closed run has its runner
    closed_at = runners.hand_on(
        conn,
        run.id,
        runner_user_id=runner.user_id,
        reason=swap_reason(
            choice,
            [names.get(d) or d for d in declined],
            runner.name or runner.slack_user_id,
        ),
        rule=choice.rule,
        declined=declined[-1],
        old_runner_user_id=run.runner_user_id,
    )
    if closed_at is None:
        raise RuntimeError("_hand_on needs the closed run locked, with its runner declining")
    return closed_at


def _move_credit(
    conn: Conn,
    run: RunRow,
    runner: ActiveOrder,
    served: Served,
    decliner: str,
    closed_at: datetime,
) -> None:
    """runner_stats mirror the run history: the credit moves from the decliner to the new
    runner (`served` is their history before this run), counted the way closing counts it."""
    channel_id, old_runner = run.channel_id, run.runner_user_id
    assert old_runner is not None  # a closed run has its runner
    runners.record_stats(
        conn,
        user_id=runner.user_id,
        channel_id=channel_id,
        runs_served_count=served.runs_in_window + 1,
        last_run_at=closed_at,
    )
    # Read after the update, so this run no longer counts for the decliner.
    own = runner_history(conn, run, [old_runner])[decliner]
    if own.last_run_at is None:
        runners.drop_stats(conn, user_id=old_runner, channel_id=channel_id)
    else:
        runners.record_stats(
            conn,
            user_id=old_runner,
            channel_id=channel_id,
            runs_served_count=own.runs_in_window,
            last_run_at=own.last_run_at,
        )


def _queue_messages(conn: Conn, run: RunRow, *, new_runner: str, old_runner: str) -> None:
    """Everything Slack shows about the runner catches up; `run` is the row as locked,
    before the swap, so it still holds the old runner's DM and reminder."""
    run_id = run.id
    corr = run.correlation_id
    payload = {"run_id": str(run_id)}
    refresh_run_message(conn, run_id, corr, delay_seconds=0)
    queue.enqueue(
        conn,
        queue.UPDATE_SUMMARY,
        payload,
        run_id=run_id,
        correlation_id=corr,
        dedupe_key=f"summary:{run_id}",
    )
    queue.enqueue(conn, queue.DM_RUNNER, payload, run_id=run_id, correlation_id=corr)
    queue.enqueue(
        conn,
        queue.POST_RUNNER_CHANGE,
        {**payload, "new_runner": new_runner, "old_runner": old_runner},
        run_id=run_id,
        correlation_id=corr,
    )
    off_the_hook = (
        f"👍 You're off the hook for the coffee run in <#{run.slack_channel_id}> — "
        f"<@{new_runner}> is going instead."
    )
    dm_channel = run.runner_dm_channel
    # The reminder went to the same DM as the runner DM (both open the runner's IM).
    for ts in (run.runner_dm_ts, run.reminder_ts):
        if dm_channel and ts:
            queue.enqueue(
                conn,
                queue.REPLACE_MESSAGE,
                {"channel": dm_channel, "ts": ts, "text": off_the_hook},
                run_id=run_id,
                correlation_id=corr,
            )
    if run.reminder_sent_at is not None:
        # The old runner was already reminded; a reminder still due finds the new runner
        # by itself.
        queue.enqueue(
            conn,
            queue.REMIND_NEW_RUNNER,
            payload,
            run_id=run_id,
            correlation_id=corr,
            dedupe_key=f"remind_new_runner:{run_id}",
        )


def swap_reason(choice: RunnerChoice, declined: Sequence[str], runner_name: str) -> str:
    """The explanation shown in the summary, in plain words like every runner reason:
    the new runner, who couldn't go (names, in the order they said so), then the rule's
    own words ("Ana is going instead: Gus can't go; fewest runs lately.")."""
    who = declined[0] if len(declined) == 1 else f"{', '.join(declined[:-1])} and {declined[-1]}"
    why = choice.why
    if choice.rule == "only_participant":
        # The rule saw only those left, not everyone in the run.
        why = "the only one left"
    return f"{runner_name} is going instead: {who} can't go; {why}."
