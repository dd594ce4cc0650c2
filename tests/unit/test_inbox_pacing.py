"""How long a run's inboxed actions wait for a burst to end (`Pacing.wait`)."""

from __future__ import annotations

import pytest

from coffeebuddy.service.inbox import Pacing

PACING = Pacing(quiet=0.2, max_wait=1.5)


@pytest.mark.parametrize(
    ("since_newest", "since_oldest", "wait"),
    [
        (0.05, 0.5, 0.15),  # still arriving: until a pause of 0.2 s
        (0.0, 1.45, 0.05),  # still arriving, but the oldest has nearly waited its longest
        (0.2, 0.9, 0.0),  # paused long enough
        (0.01, 1.5, 0.0),  # the oldest has waited its longest: apply, arrivals or not
        (None, None, 0.0),  # nothing unapplied
    ],
)
def test_a_burst_is_waited_for_until_it_pauses_or_the_oldest_waited_long_enough(
    since_newest: float | None, since_oldest: float | None, wait: float
) -> None:
    assert PACING.wait(since_newest, since_oldest) == pytest.approx(wait)


def test_without_pacing_nothing_waits() -> None:
    assert Pacing().wait(0.0, 0.0) == 0.0
    assert Pacing(quiet=0.2, max_wait=0.0).wait(0.0, 0.0) == 0.0
