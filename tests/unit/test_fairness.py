"""Tests for the fairness rule: one table row per branch and sentence, then properties.

The properties simulate a channel's run history instead of timing anything: every run
gets a synthetic timestamp one hour after the previous one, so "longest since their last
run" is decided by history order alone.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coffeebuddy.domain.fairness import RULE_SUMMARY, TIE_BREAK_PHRASE, choose_runner
from coffeebuddy.domain.models import Candidate, RunnerChoice

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
WINDOW = 10
RULES = {"volunteer", "fewest_runs", "longest_since", "tie_break", "only_participant"}

# Hypothesis' deadline is a wall-clock check; the rule has no timing behaviour to test and
# a slow CI box must not turn into a flaky failure.
PROPERTY = settings(deadline=None)


def c(uid: str, runs: int = 0, last: datetime | None = None, *, vol: bool = False) -> Candidate:
    return Candidate(slack_user_id=uid, runs_in_window=runs, last_run_at=last, volunteered=vol)


def days_ago(n: int) -> datetime:
    return T0 - timedelta(days=n)


# ---------------------------------------------------------------------------------------
# Table: each branch and each sentence, exactly.
# Tie-break winners below were read off sha256(f"{seed}:{uid}"); test_tie_break_is_the_
# lowest_seeded_hash checks that correspondence independently.
# ---------------------------------------------------------------------------------------

CASES: list[tuple[str, list[Candidate], str | None, str, str, str, str, tuple[str, ...]]] = [
    # (id, candidates, previous_runner, seed, runner, rule, reason, considered)
    (
        "only participant",
        [c("U1", 3, days_ago(1))],
        None,
        "run-1",
        "U1",
        "only_participant",
        "U1 is going: the only one in the run.",
        ("U1",),
    ),
    (
        "only participant who ran last time",
        [c("U1", 3, days_ago(1))],
        "U1",
        "run-1",
        "U1",
        "only_participant",
        "U1 is going: the only one in the run, so they go again although they went last time.",
        ("U1",),
    ),
    (
        "only participant who volunteered",
        [c("U1", vol=True)],
        None,
        "run-1",
        "U1",
        "only_participant",
        "U1 is going: the only one in the run.",
        ("U1",),
    ),
    (
        "single volunteer beats fewer runs",
        [c("U1", 4, days_ago(1), vol=True), c("U2"), c("U3", 1, days_ago(9))],
        None,
        "run-1",
        "U1",
        "volunteer",
        "U1 is going: volunteered.",
        ("U1",),
    ),
    (
        "volunteer may run twice in a row",
        [c("U1", 5, days_ago(0), vol=True), c("U2")],
        "U1",
        "run-1",
        "U1",
        "volunteer",
        "U1 is going: volunteered.",
        ("U1",),
    ),
    (
        "several volunteers: fewest runs",
        [c("U1", 1, days_ago(3), vol=True), c("U2", 3, days_ago(9), vol=True), c("U3")],
        None,
        "run-1",
        "U1",
        "volunteer",
        "U1 is going: one of 2 volunteers, fewest runs lately.",
        ("U1", "U2"),
    ),
    (
        "several volunteers: longest since",
        [c("U1", 2, days_ago(5), vol=True), c("U2", 2, days_ago(1), vol=True)],
        "U1",
        "run-1",
        "U1",
        "volunteer",
        "U1 is going: one of 2 volunteers, fewest runs lately (a tie), and waited longest "
        "since their last run.",
        ("U1", "U2"),
    ),
    (
        "several volunteers: tie break",
        [c("U1", vol=True), c("U4", vol=True), c("U2")],
        None,
        "run-2",
        "U4",
        "volunteer",
        "U4 is going: one of 2 volunteers, fewest runs lately (a tie, picked at random).",
        ("U1", "U4"),
    ),
    (
        "fewest runs, previous runner not participating",
        [
            c("U1", 0, days_ago(20)),
            c("U2", 1, days_ago(2)),
            c("U3", 2, days_ago(4)),
            c("U4", 1, days_ago(6)),
            c("U5", 3, days_ago(3)),
            c("U6", 2, days_ago(8)),
        ],
        "U9",
        "run-1",
        "U1",
        "fewest_runs",
        "U1 is going: fewest runs lately.",
        ("U1", "U2", "U3", "U4", "U5", "U6"),
    ),
    (
        "fewest runs, previous runner sat out",
        [
            c("U1"),
            c("U2", 1, days_ago(0)),
            c("U3", 2, days_ago(4)),
            c("U4", 1, days_ago(6)),
            c("U5", 3, days_ago(3)),
            c("U6", 2, days_ago(8)),
        ],
        "U2",
        "run-1",
        "U1",
        "fewest_runs",
        "U1 is going: fewest runs lately; U2 went last time.",
        ("U1", "U3", "U4", "U5", "U6"),
    ),
    (
        "previous runner sits out even with the fewest runs",
        [c("U1", 2, days_ago(9)), c("U2", 1, days_ago(0)), c("U3", 3, days_ago(2))],
        "U2",
        "run-1",
        "U1",
        "fewest_runs",
        "U1 is going: fewest runs lately; U2 went last time.",
        ("U1", "U3"),
    ),
    (
        "two participants, one ran last time",
        [c("U2", 1, days_ago(0)), c("U1", 4, days_ago(3))],
        "U2",
        "run-1",
        "U1",
        "fewest_runs",
        "U1 is going: the only one besides U2, who went last time.",
        ("U1",),
    ),
    (
        "longest since last run",
        [c("U1", 2, days_ago(10)), c("U3", 2, days_ago(2)), c("U4", 4, days_ago(30))],
        None,
        "run-1",
        "U1",
        "longest_since",
        "U1 is going: fewest runs lately (a tie), and waited longest since their last run.",
        ("U1", "U3", "U4"),
    ),
    (
        "longest since, two with the same count",
        [c("U1", 2, days_ago(10)), c("U3", 2, days_ago(5)), c("U4", 2, days_ago(2))],
        None,
        "run-1",
        "U1",
        "longest_since",
        "U1 is going: fewest runs lately (a tie), and waited longest since their last run.",
        ("U1", "U3", "U4"),
    ),
    (
        "longest since, many with the same count, previous runner sat out",
        [
            c("U1", 1, days_ago(10)),
            c("U3", 1, days_ago(7)),
            c("U4", 1, days_ago(5)),
            c("U5", 1, days_ago(3)),
            c("U2", 1, days_ago(0)),
        ],
        "U2",
        "run-1",
        "U1",
        "longest_since",
        "U1 is going: fewest runs lately (a tie), and waited longest since their last run; "
        "U2 went last time.",
        ("U1", "U3", "U4", "U5"),
    ),
    (
        "never ran counts as longest",
        [c("U3", 0, days_ago(40)), c("U1")],
        None,
        "run-1",
        "U1",
        "longest_since",
        "U1 is going: fewest runs lately (a tie), and has never gone before.",
        ("U1", "U3"),
    ),
    (
        "tie break: the lower id loses this draw",
        [c("U1"), c("U2"), c("U3", 1, days_ago(1))],
        None,
        "run-2",
        "U2",
        "tie_break",
        "U2 is going: fewest runs lately (a tie, picked at random).",
        ("U1", "U2", "U3"),
    ),
    (
        "tie break: same seed rule, another run id",
        [c("U1"), c("U2"), c("U3", 1, days_ago(1))],
        None,
        "run-1",
        "U1",
        "tie_break",
        "U1 is going: fewest runs lately (a tie, picked at random).",
        ("U1", "U2", "U3"),
    ),
    (
        "tie break on equal last run, previous runner sat out",
        [c("U1", 1, days_ago(0)), c("U2", 1, T0), c("U4", 1, T0), c("U5", 3, days_ago(9))],
        "U1",
        "run-3",
        "U2",
        "tie_break",
        "U2 is going: fewest runs lately (a tie, picked at random); U1 went last time.",
        ("U2", "U4", "U5"),
    ),
    (
        "tie break among many",
        [c("U1"), c("U2"), c("U3"), c("U4")],
        None,
        "run-2",
        "U4",
        "tie_break",
        "U4 is going: fewest runs lately (a tie, picked at random).",
        ("U1", "U2", "U3", "U4"),
    ),
]


@pytest.mark.parametrize(
    ("candidates", "previous", "seed", "runner", "rule", "reason", "considered"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_choice_and_sentence(
    candidates: list[Candidate],
    previous: str | None,
    seed: str,
    runner: str,
    rule: str,
    reason: str,
    considered: tuple[str, ...],
) -> None:
    choice = choose_runner(candidates, previous_runner=previous, window=WINDOW, seed=seed)
    assert choice == RunnerChoice(
        runner_slack_id=runner, reason=reason, rule=rule, considered=considered, why=choice.why
    )
    assert choice.reason == f"{runner} is going: {choice.why}."
    assert_one_sentence(choice)


def test_reason_names_people_in_plain_words_and_mentions_nobody() -> None:
    """Issue 14 item 6: "Ana is going: fewest runs lately (a tie, picked at random); Cat
    went last time." The summary is a new post: a mention there would notify."""
    people = [
        Candidate("U1", name="Ana"),
        Candidate("U2", name="Ivy"),
        Candidate("U3", 1, T0, name="Cat"),
    ]
    choice = choose_runner(people, previous_runner="U3", window=10, seed="run-1")
    assert choice.reason == (
        "Ana is going: fewest runs lately (a tie, picked at random); Cat went last time."
    )
    assert choice.why == "fewest runs lately (a tie, picked at random); Cat went last time"
    # The previous runner's name comes from the caller when they are not in this run.
    choice = choose_runner(
        people[:2], previous_runner="U9", previous_runner_name="Gus", window=10, seed="run-1"
    )
    assert "<@" not in choice.reason
    assert choice.reason.startswith("Ana is going: ")


def test_tie_break_is_the_lowest_seeded_hash() -> None:
    ids = [f"U{i}" for i in range(1, 7)]
    for seed in ("run-1", "run-2", "run-3", "8f14e45f-ceea-467f-a8f0-5f3c7b1a2d9e"):
        choice = choose_runner([c(u) for u in ids], previous_runner=None, window=10, seed=seed)
        expected = min(ids, key=lambda u: hashlib.sha256(f"{seed}:{u}".encode()).hexdigest())
        assert choice.runner_slack_id == expected
        assert choice.rule == "tie_break"
        assert TIE_BREAK_PHRASE in choice.reason


def test_tie_break_does_not_follow_id_order() -> None:
    # Fixed seeds, so this is deterministic; it shows the draw is spread over people rather
    # than always going to whoever's id sorts first (or last).
    wins = Counter(
        choose_runner(
            [c("U1"), c("U2")], previous_runner=None, window=10, seed=f"run-{i}"
        ).runner_slack_id
        for i in range(200)
    )
    assert set(wins) == {"U1", "U2"}
    assert 60 <= wins["U1"] <= 140


def test_same_inputs_same_choice() -> None:
    people = [c("U1"), c("U2"), c("U3", 1, T0)]
    first = choose_runner(people, previous_runner="U3", window=10, seed="run-7")
    assert choose_runner(people, previous_runner="U3", window=10, seed="run-7") == first


@pytest.mark.parametrize(
    ("candidates", "window", "message"),
    [
        pytest.param([], 10, "at least one participant", id="empty"),
        pytest.param([c("U1"), c("U2"), c("U1", 3)], 10, "U1 is listed more than once", id="dup"),
        pytest.param([c("U1")], 0, "window must be at least 1", id="window"),
        pytest.param([c("U1", -1)], 10, "negative runs_in_window", id="negative-runs"),
    ],
)
def test_invalid_input(candidates: list[Candidate], window: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_runner(candidates, previous_runner=None, window=window, seed="run-1")


def test_rule_summary_is_two_short_sentences() -> None:
    sentences = re.findall(r"[^.!?]+[.!?](?=\s|$)", RULE_SUMMARY)
    assert len(sentences) == 2
    assert "".join(sentences).replace(" ", "") == RULE_SUMMARY.replace(" ", "")
    assert all(len(s.split()) <= 25 for s in sentences)
    assert "picked at random" in RULE_SUMMARY
    assert "least recently" not in RULE_SUMMARY


def assert_one_sentence(choice: RunnerChoice) -> None:
    reason = choice.reason
    assert reason.startswith(f"{choice.runner_slack_id} is going: ")
    assert "<@" not in reason
    assert reason.endswith(".")
    # One sentence: no sentence break before the final full stop.
    assert not re.search(r"[.!?]\s", reason)
    assert "\n" not in reason


# ---------------------------------------------------------------------------------------
# Simulation
# ---------------------------------------------------------------------------------------


def at(run_index: int) -> datetime:
    """Synthetic close time of run `run_index`: strictly increasing, no clock involved."""
    return T0 + timedelta(hours=run_index)


@dataclass
class Channel:
    """A channel's closed-run history, feeding candidates the way the store would."""

    window: int = WINDOW
    runners: list[str] = field(default_factory=list)  # oldest first

    @property
    def previous_runner(self) -> str | None:
        return self.runners[-1] if self.runners else None

    def candidates(self, ids: Sequence[str], volunteers: frozenset[str]) -> list[Candidate]:
        recent = Counter(self.runners[-self.window :])
        last = {uid: i for i, uid in enumerate(self.runners)}  # later runs overwrite
        return [
            Candidate(
                slack_user_id=uid,
                runs_in_window=recent[uid],
                last_run_at=at(last[uid]) if uid in last else None,
                volunteered=uid in volunteers,
            )
            for uid in ids
        ]

    def run(
        self, ids: Sequence[str], seed: str, volunteers: frozenset[str] = frozenset()
    ) -> tuple[list[Candidate], RunnerChoice]:
        people = self.candidates(ids, volunteers)
        choice = choose_runner(
            people,
            previous_runner=self.previous_runner,
            window=self.window,
            seed=f"{seed}-{len(self.runners)}",
        )
        self.runners.append(choice.runner_slack_id)
        return people, choice


def person_ids(n: int) -> list[str]:
    return [f"U{i:02d}" for i in range(n)]


@PROPERTY
@given(n=st.integers(5, 12), runs=st.integers(20, 80), seed=st.text(max_size=8))
def test_stable_group_is_round_robin(n: int, runs: int, seed: str) -> None:
    """Everyone joins every run, nobody volunteers.

    What is exactly provable here is stronger than a share bound: the rule is round-robin.
    The person who ran least recently has the fewest runs in any trailing window and the
    longest wait, so they go next; everyone else's turn comes once per `n` runs.
    """
    channel = Channel()
    ids = person_ids(n)
    for _ in range(runs):
        _, choice = channel.run(ids, seed)
        assert choice.rule != "volunteer"
    history = channel.runners

    assert all(a != b for a, b in itertools.pairwise(history))
    assert sorted(history[:n]) == ids  # the first n runs are a permutation
    assert all(history[i] == history[i - n] for i in range(n, runs))  # then it repeats

    # What that means for shares over any k >= 20 consecutive runs: everyone serves
    # floor(k/n) or ceil(k/n) times. So the share is at most ceil(k/n)/k, which is exactly
    # 1/n <= 20% when n divides k, and otherwise at most 0.2 + 0.8/k (<= 24% at k = 20):
    # a flat "never above 20%" is not true, see test_twenty_percent_is_not_a_hard_cap.
    prefix = {uid: [0] for uid in ids}
    for runner in history:
        for uid in ids:
            prefix[uid].append(prefix[uid][-1] + (runner == uid))
    for start in range(runs):
        for end in range(start + 20, runs + 1):
            k = end - start
            counts = [prefix[uid][end] - prefix[uid][start] for uid in ids]
            assert set(counts) <= {k // n, math.ceil(k / n)}
            share = max(counts) / k
            assert share <= 0.2 + 0.8 / k
            if k % n == 0:
                assert share == 1 / n


def test_twenty_percent_is_not_a_hard_cap() -> None:
    # Five people, 21 runs: round-robin gives someone a fifth turn, 5/21 ≈ 23.8%. No rule
    # can do better (21 runs over 5 people), so the bound asserted above is the honest one.
    channel = Channel()
    for _ in range(21):
        channel.run(person_ids(5), "run")
    assert max(Counter(channel.runners).values()) == 5


@st.composite
def run_plans(draw: st.DrawFn) -> tuple[list[str], list[tuple[list[str], frozenset[str]]]]:
    """A pool of people and, per run, who joined (>= 2) and who volunteered (often nobody)."""
    pool = person_ids(draw(st.integers(2, 12)))
    plan = []
    for _ in range(draw(st.integers(1, 40))):
        joined = draw(st.lists(st.sampled_from(pool), min_size=2, unique=True))
        volunteers = draw(
            st.one_of(
                st.just(frozenset[str]()),
                st.frozensets(st.sampled_from(joined), max_size=2),
            )
        )
        plan.append((joined, volunteers))
    return pool, plan


@PROPERTY
@given(plan=run_plans(), seed=st.text(max_size=8))
def test_changing_participants(
    plan: tuple[list[str], list[tuple[list[str], frozenset[str]]]], seed: str
) -> None:
    _, runs = plan
    channel = Channel()
    for joined, volunteers in runs:
        previous = channel.previous_runner
        people, choice = channel.run(joined, seed, volunteers)
        runner = choice.runner_slack_id

        if runner == previous:
            assert runner in volunteers or len(joined) == 1

        if volunteers:
            eligible = set(volunteers)
            assert runner in volunteers
        else:
            eligible = (set(joined) - {previous}) or set(joined)
        assert choice.considered == tuple(sorted(eligible))

        runs_of = {p.slack_user_id: p.runs_in_window for p in people}
        assert runs_of[runner] == min(runs_of[uid] for uid in eligible)


@st.composite
def candidate_lists(draw: st.DrawFn) -> list[Candidate]:
    # Few distinct values on purpose, so ties at every step of the rule are common.
    ids = draw(st.lists(st.sampled_from(person_ids(12)), min_size=1, max_size=8, unique=True))
    return [
        Candidate(
            slack_user_id=uid,
            runs_in_window=draw(st.integers(0, 3)),
            last_run_at=draw(st.sampled_from([None, at(0), at(1), at(2)])),
            volunteered=draw(st.booleans()),
        )
        for uid in ids
    ]


@PROPERTY
@given(data=st.data(), people=candidate_lists(), seed=st.text(max_size=8))
def test_order_of_candidates_does_not_matter(
    data: st.DataObject, people: list[Candidate], seed: str
) -> None:
    ids = [p.slack_user_id for p in people]
    previous = data.draw(st.sampled_from([None, "U99", *ids]))
    shuffled = data.draw(st.permutations(people))

    choice = choose_runner(people, previous_runner=previous, window=WINDOW, seed=seed)
    assert choose_runner(shuffled, previous_runner=previous, window=WINDOW, seed=seed) == choice

    # And the choice is the documented rule, restated plainly as an oracle.
    volunteers = [p for p in people if p.volunteered]
    if len(people) == 1:
        eligible = people
    elif volunteers:
        eligible = volunteers
    else:
        eligible = [p for p in people if p.slack_user_id != previous]

    def rank(p: Candidate) -> tuple[int, bool, datetime, str]:
        # All timestamps here are aware, so T0 - 1 day safely stands for "never".
        return (
            p.runs_in_window,
            p.last_run_at is not None,
            p.last_run_at or T0 - timedelta(days=1),
            hashlib.sha256(f"{seed}:{p.slack_user_id}".encode()).hexdigest(),
        )

    assert choice.runner_slack_id == min(eligible, key=rank).slack_user_id
    assert choice.considered == tuple(sorted(p.slack_user_id for p in eligible))
    assert choice.rule in RULES
    assert_one_sentence(choice)
    if previous in ids and not volunteers and len(people) > 1:
        # Whoever sat out is named, so nobody wonders why they were skipped.
        assert f"{previous}, who went last time" in choice.reason or (
            f"{previous} went last time" in choice.reason
        )
