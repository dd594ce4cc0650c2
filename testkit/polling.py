"""Waiting for something another thread or process does: the one polling loop the tests,
the simulator's checks and the benchmarks share."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually[T](
    predicate: Callable[[], T],
    timeout: float = 30.0,
    what: str = "",
    *,
    every: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> T:
    """Wait for `predicate` to return something truthy, and return it. On timeout fail with
    `what` (and `explain()`, e.g. the last value seen) rather than hang."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            detail = f"; {explain()}" if explain is not None else ""
            raise AssertionError(f"not within {timeout}s: {what}{detail}")
        time.sleep(every)
    return result
