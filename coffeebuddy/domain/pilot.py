"""The pilot's success metrics (spec "Success Metrics") as plain data and pure rules.

The store reads the figures from run history; these types say what they mean against
the spec's targets, and why a channel misses the fairness target when it does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# Bot steps (command → run message visible, close → summary and runner DM delivered)
# should take under this long in at least OUTCOME_TARGET_SHARE of runs.
OUTCOME_TARGET_SECONDS: Final = 120.0
OUTCOME_TARGET_SHARE: Final = 0.8
# At most this share of runs may fail for system reasons.
FAILED_TARGET_RATIO: Final = 0.02
CSAT_TARGET: Final = 4.2
# Nobody serves more than this share of a channel's runs over FAIRNESS_DAYS...
FAIRNESS_TARGET_SHARE: Final = 0.2
FAIRNESS_DAYS: Final = 28
# ...given enough participants: with fewer than this many, someone must serve more.
MIN_ELIGIBLE: Final = math.ceil(1 / FAIRNESS_TARGET_SHARE)
# The periods of the admins' pilot report, in days.
REPORT_PERIODS: Final = (7, 28)


@dataclass(frozen=True)
class RunCounts:
    """Runs started in a period, by where they are now."""

    started: int = 0
    closed: int = 0
    canceled: int = 0
    failed: int = 0
    failed_slack: int = 0
    failed_timeout: int = 0
    failed_internal: int = 0

    @property
    def finished(self) -> int:
        return self.closed + self.canceled + self.failed

    @property
    def failed_ratio(self) -> float:
        """Failed share of finished runs (an open run has not failed yet)."""
        return self.failed / self.finished if self.finished else 0.0


@dataclass(frozen=True)
class OutcomeTimes:
    """The bot's own time for runs that went all the way (closed, summary and DM sent)."""

    measured: int = 0
    within_target: int = 0
    median_seconds: float | None = None

    @property
    def within_share(self) -> float:
        return self.within_target / self.measured if self.measured else 0.0


@dataclass(frozen=True)
class Csat:
    ratings: int = 0
    average: float | None = None


@dataclass(frozen=True)
class FairnessShare:
    """Who served the most of a channel's closed runs in the last FAIRNESS_DAYS, and the
    facts that explain a share above the target."""

    runs: int = 0
    # People who ordered in those runs: everyone the rule could have picked.
    eligible: int = 0
    top_runner: str | None = None
    top_runs: int = 0
    # Of the top runner's runs, how many they volunteered for ("I'll go" opts in).
    top_volunteered: int = 0
    # Active orders across those runs: the rule only picks among a run's participants.
    orders: int = 0

    @property
    def share(self) -> float:
        return self.top_runs / self.runs if self.runs else 0.0

    @property
    def over_target(self) -> bool:
        return self.share > FAIRNESS_TARGET_SHARE

    def warning(self) -> str | None:
        """Why the share is above the target, in words an office manager can act on;
        None when it is within the target."""
        if not self.over_target or self.top_runner is None:
            return None
        who = f"<@{self.top_runner}>"
        pct = percent(self.share)
        if self.runs < MIN_ELIGIBLE:
            return (
                f"{who} served {pct} of runs, but there were only {self.runs} finished "
                f"runs — too few to spread (each one is more than "
                f"{percent(FAIRNESS_TARGET_SHARE)})."
            )
        if self.eligible < MIN_ELIGIBLE:
            return (
                f"{who} served {pct} of runs: only {self.eligible} people ordered, so "
                f"someone has to serve more than {percent(FAIRNESS_TARGET_SHARE)}. It evens "
                f"out with {MIN_ELIGIBLE} or more people taking part."
            )
        if self.top_volunteered * 2 >= self.top_runs:
            return (
                f"{who} served {pct} of runs, {self.top_volunteered} of {self.top_runs} "
                "of them as a volunteer (“I'll go” opts in)."
            )
        per_run = self.orders / self.runs
        if per_run < MIN_ELIGIBLE:
            return (
                f"{who} served {pct} of runs: runs had only {per_run:.1f} people ordering "
                "on average, and the runner is always one of them."
            )
        return (
            f"{who} served {pct} of runs although {self.eligible} people took part — "
            "the fairness rule is not keeping up; tell your CoffeeBuddy operators."
        )


@dataclass(frozen=True)
class PilotPeriod:
    """One period of the pilot report."""

    days: int
    runs: RunCounts
    outcome: OutcomeTimes
    csat: Csat
    fairness: FairnessShare


def percent(value: float) -> str:
    return f"{round(value * 100)}%"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "no runs measured yet"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{round(seconds)} s"
    return f"{seconds / 60:.1f} min"
