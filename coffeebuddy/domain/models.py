"""Plain data the domain rules, the store and the Slack block builders share.

Everything here is immutable and free of I/O: the store builds these from rows, the
domain functions compute over them, and the block builders render them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# Free-text limits; the database holds the same limits as CHECK constraints.
MAX_ORDER_CHARS = 150
MAX_NOTE_CHARS = 120


class RunStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    CANCELED = "canceled"
    FAILED = "failed"


@dataclass(frozen=True)
class OrderLine:
    """One participant's active order in a run."""

    slack_user_id: str
    text: str
    volunteer: bool = False
    # The person's name as shown in posts that must not notify them (never a mention).
    name: str = ""


@dataclass(frozen=True)
class RunView:
    """Everything the run message, the summary and the runner DM show about a run."""

    run_id: str
    slack_channel_id: str
    initiator_slack_id: str
    status: RunStatus
    started_at: datetime
    pickup_time: datetime | None = None
    note: str | None = None
    orders: tuple[OrderLine, ...] = ()
    runner_slack_id: str | None = None
    # One sentence, with Slack mentions, saying why the runner was chosen.
    runner_reason: str | None = None
    failure_reason: str | None = None
    # Why it was canceled, written by CoffeeBuddy (may hold mentions), e.g. "<@U1> canceled it."
    cancel_reason: str | None = None
    # The first run in a channel carries a short "how this works" line.
    first_in_channel: bool = False
    # CSAT: ratings given on the closed run so far, and their average (None before any).
    rating_count: int = 0
    rating_average: float | None = None
    # When an open run closes itself (its runner reminder); None when nothing closes it.
    order_by: datetime | None = None
    # Links to the run message and the summary, once the worker fetched them.
    message_permalink: str | None = None
    summary_permalink: str | None = None

    @property
    def participant_ids(self) -> tuple[str, ...]:
        return tuple(o.slack_user_id for o in self.orders)


@dataclass(frozen=True)
class Candidate:
    """A participant as the fairness rule sees them."""

    slack_user_id: str
    # Runs this person served among the channel's last `window` closed runs.
    runs_in_window: int = 0
    last_run_at: datetime | None = None
    # Pressed "I'll go" for this run: chosen ahead of everyone who did not.
    volunteered: bool = False
    # What explanations call them (plain text; the Slack id when unknown).
    name: str = ""


@dataclass(frozen=True)
class RunnerChoice:
    runner_slack_id: str
    # A one-line plain-text explanation that names people without mentioning them, e.g.
    # "Ana is going: fewest runs lately (a tie, picked at random); Cat went last time."
    reason: str
    # Machine-readable rule that decided: "volunteer", "fewest_runs", "longest_since",
    # "tie_break" or "only_participant".
    rule: str
    considered: tuple[str, ...] = field(default_factory=tuple)
    # The reason without "<name> is going: " (for "Next in line: Ana — <why>").
    why: str = ""
