"""How long the jobs of a paced kind wait for a burst to end (`queue.Pacing.wait`)."""

from __future__ import annotations

import pytest

from coffeebuddy.jobs.kinds import KINDS
from coffeebuddy.store import queue
from coffeebuddy.store.queue import Pacing

PACING = Pacing(quiet=0.2, max_wait=1.5)


@pytest.mark.parametrize(
    ("since_newest", "since_oldest", "wait"),
    [
        (0.05, 0.5, 0.15),  # still arriving: until a pause of 0.2 s
        (0.0, 1.45, 0.05),  # still arriving, but the oldest has nearly waited its longest
        (0.2, 0.9, 0.0),  # paused long enough
        (0.01, 1.5, 0.0),  # the oldest has waited its longest: go, arrivals or not
        (None, None, 0.0),  # nothing unfinished
    ],
)
def test_a_burst_is_waited_for_until_it_pauses_or_the_oldest_waited_long_enough(
    since_newest: float | None, since_oldest: float | None, wait: float
) -> None:
    assert PACING.wait(since_newest, since_oldest) == pytest.approx(wait)


def test_without_pacing_nothing_waits() -> None:
    assert Pacing().wait(0.0, 0.0) == 0.0
    assert Pacing(quiet=0.2, max_wait=0.0).wait(0.0, 0.0) == 0.0


def test_only_the_work_a_burst_leaves_behind_is_paced() -> None:
    """Inboxed actions and new runs' messages; not what a person waits for after a click
    (a confirmation, a summary), which has no burst of its own to wait for."""
    paced = {name for name, kind in KINDS.items() if kind.paced}
    assert paced == {queue.APPLY_ACTION, queue.POST_RUN_MESSAGE}
