"""Who fetches the coffee: the fairness rule.

This module is pure: no I/O, no clock, no randomness. The same inputs always give the
same runner and the same explanation, so a choice can be recomputed and audited later.

The rule, applied to the participants of one run:

1. The candidates are the run's participants. There must be at least one, and each Slack
   user may appear only once; anything else is a caller bug and raises ValueError.
2. If anyone pressed "I'll go", only the volunteers are considered. Volunteering is an
   explicit opt-in, so it overrides step 3: a volunteer may run twice in a row.
3. Otherwise whoever ran the channel's previous closed run (``previous_runner``) sits
   out, unless nobody else is left.
4. Among those still considered, the runner is whoever
   a. served the fewest of the channel's last ``window`` closed runs (``runs_in_window``),
   b. then has gone the longest since their last run (never having run is longest of all),
   c. then has the lowest sha256(f"{seed}:{slack_user_id}"). The seed is the run id, so the
      draw is reproducible for a given run but doesn't favour whoever's Slack id sorts
      first, which a plain "lowest id wins" tie-break would do on every tie.

Reported rule (``RunnerChoice.rule``):

- "only_participant": there was a single participant (whether or not they volunteered or
  ran last time: they would have been chosen regardless).
- "volunteer": step 2 applied. With several volunteers step 4 picks among them and the
  reason says which criterion did.
- otherwise the step-4 criterion that separated the runner from the next in line:
  "fewest_runs", "longest_since" or "tie_break". When excluding the previous runner
  leaves a single person, that person trivially has the fewest runs among those
  considered, so the rule is "fewest_runs".

A consequence worth knowing (and tested): when a stable group all join every run and
nobody volunteers, the rule is exactly round-robin. The person who ran least recently
always has the fewest runs in any trailing window and the longest wait, so each person
serves once in every ``n`` consecutive runs, in a fixed order set by the first ``n`` draws.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from functools import cmp_to_key

from coffeebuddy.domain.models import Candidate, RunnerChoice

# The rule in the words a colleague would use. The first-run hint, `/coffee help`,
# `/coffee stats` and the Home tab all show exactly this, so they never disagree.
RULE_SUMMARY = (
    "A volunteer goes if anyone taps I'll go. Otherwise whoever went last time sits out, "
    "and it's whoever has the fewest runs lately, then the longest wait; a tie is picked "
    "at random."
)

# Named in every tie-break explanation: the draw is seeded with the run id, so it can be
# recomputed, but to people it is simply a random pick among those tied.
TIE_BREAK_PHRASE = "a tie, picked at random"
FEWEST_PHRASE = "fewest runs lately"


def choose_runner(
    candidates: Sequence[Candidate],
    *,
    previous_runner: str | None,
    window: int,
    seed: str,
    previous_runner_name: str | None = None,
) -> RunnerChoice:
    """Pick the runner for one run and explain why in one plain sentence.

    ``previous_runner`` is whoever ran the channel's previous closed run (None if there
    was none; they need not be among ``candidates``), ``previous_runner_name`` the name
    to call them by. ``window`` is how many recent runs ``runs_in_window`` counts over.
    ``seed`` is the run id and feeds the tie-break draw. The result never depends on the
    order of ``candidates``.

    The explanation names people by their names, never by Slack mentions: it is shown in a
    new channel post, where a mention would notify everyone it names. It is plain text
    (the block builders escape it), e.g. "Ana is going: fewest runs lately (a tie, picked
    at random); Cat went last time."
    """
    _validate(candidates, window)
    by_id = {c.slack_user_id: c for c in candidates}
    sat_name = previous_runner_name or (
        _name(by_id[previous_runner]) if previous_runner in by_id else previous_runner
    )

    if len(candidates) == 1:
        # Also covers step 3's "unless nobody else is left": with two or more distinct
        # participants, excluding one previous runner always leaves someone.
        only = candidates[0]
        why = "the only one in the run"
        if only.slack_user_id == previous_runner:
            why += ", so they go again although they went last time"
        return _choice(only, why, "only_participant", (only.slack_user_id,))

    volunteers = [c for c in candidates if c.volunteered]
    if volunteers:
        ranked = _rank(volunteers, seed)
        if len(ranked) == 1:
            why = "volunteered"
        else:
            _, detail = _decide(ranked)
            why = f"one of {len(ranked)} volunteers, {detail}"
        return _choice(ranked[0], why, "volunteer", _ids(ranked))

    eligible = [c for c in candidates if c.slack_user_id != previous_runner]
    # Only reached with >= 2 distinct participants, so at most one is dropped and
    # `eligible` is never empty.
    sat_out = previous_runner if len(eligible) < len(candidates) else None
    ranked = _rank(eligible, seed)

    if len(ranked) == 1:
        assert sat_out is not None  # two distinct participants minus at most one
        why = f"the only one besides {sat_name}, who went last time"
        return _choice(ranked[0], why, "fewest_runs", _ids(ranked))

    rule, detail = _decide(ranked)
    suffix = f"; {sat_name} went last time" if sat_out is not None else ""
    return _choice(ranked[0], detail + suffix, rule, _ids(ranked))


def _choice(runner: Candidate, why: str, rule: str, considered: tuple[str, ...]) -> RunnerChoice:
    return RunnerChoice(
        runner_slack_id=runner.slack_user_id,
        reason=f"{_name(runner)} is going: {why}.",
        rule=rule,
        considered=considered,
        why=why,
    )


def _validate(candidates: Sequence[Candidate], window: int) -> None:
    if not candidates:
        raise ValueError("a runner needs at least one participant")
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    seen: set[str] = set()
    for c in candidates:
        if c.slack_user_id in seen:
            # A duplicate would count one person twice in "among N participants" and
            # would make the result depend on which copy the caller listed first.
            raise ValueError(f"participant {c.slack_user_id} is listed more than once")
        seen.add(c.slack_user_id)
        if c.runs_in_window < 0:
            raise ValueError(f"participant {c.slack_user_id} has negative runs_in_window")


def _draw(seed: str, slack_user_id: str) -> str:
    # Hex digests of equal length compare like the numbers they spell, so comparing the
    # strings is "lowest hash wins" without converting.
    return hashlib.sha256(f"{seed}:{slack_user_id}".encode()).hexdigest()


def _compare_since(a: datetime | None, b: datetime | None) -> int:
    """Negative when ``a`` has waited longer than ``b`` (never having run is longest)."""
    if a is None or b is None:
        # None sorts first; two Nones are equal.
        return (a is not None) - (b is not None)
    return (a > b) - (a < b)


def _rank(candidates: Sequence[Candidate], seed: str) -> list[Candidate]:
    """Order candidates best-first by step 4. A total order, so input order is irrelevant."""
    draws = {c.slack_user_id: _draw(seed, c.slack_user_id) for c in candidates}

    def compare(a: Candidate, b: Candidate) -> int:
        if a.runs_in_window != b.runs_in_window:
            return a.runs_in_window - b.runs_in_window
        since = _compare_since(a.last_run_at, b.last_run_at)
        if since:
            return since
        da, db = draws[a.slack_user_id], draws[b.slack_user_id]
        return (da > db) - (da < db)

    return sorted(candidates, key=cmp_to_key(compare))


def _decide(ranked: Sequence[Candidate]) -> tuple[str, str]:
    """Which step-4 criterion separated ``ranked[0]`` from ``ranked[1]``, and the words for it."""
    runner, next_in_line = ranked[0], ranked[1]
    if runner.runs_in_window < next_in_line.runs_in_window:
        return "fewest_runs", FEWEST_PHRASE
    if _compare_since(runner.last_run_at, next_in_line.last_run_at) < 0:
        # Nobody shares both the runner's count and wait (they would rank next), so "the
        # longest" is strictly true against everyone with the same count.
        since = (
            "has never gone before"
            if runner.last_run_at is None
            else "waited longest since their last run"
        )
        return "longest_since", f"{FEWEST_PHRASE} (a tie), and {since}"
    return "tie_break", f"{FEWEST_PHRASE} ({TIE_BREAK_PHRASE})"


def _name(candidate: Candidate) -> str:
    # A Slack id only when no name is known: never a mention (see `choose_runner`).
    return candidate.name or candidate.slack_user_id


def _ids(candidates: Sequence[Candidate]) -> tuple[str, ...]:
    return tuple(sorted(c.slack_user_id for c in candidates))
