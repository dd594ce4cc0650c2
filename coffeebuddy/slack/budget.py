"""The Slack rate budget every worker replica shares, kept in Postgres.

Slack limits an app per workspace and per method (Tier 3: about 50 calls a minute, Tier 4:
about 100) and `chat.postMessage` to about one message a second per channel. For each
method (and channel, for chat.postMessage) `slack_budget` holds when the calls within the
last window were granted (`sql/queries/budget.sql`): a job takes its call's place right
before the call, or the job is put back (`OverBudget`) until a place frees up, so the
replicas stay under the limits instead of learning about them one 429 at a time. A sliding
window, as Slack counts, lets a quiet workspace burst (a pilot's handful of runs closing
together goes out at once) and a busy one go no faster than the limit. A 429 that still
comes pauses the method for every replica until its Retry-After.

Calls a person waits for (confirmations, run start, summaries, runner DMs) may use the
whole window; refreshes of the run message's count and other calls nobody waits for
(`low`) stop short of a reserve, so under pressure they go last, and while a refresh
waits, clicks keep joining its queued job (one dedupe key) and it renders the run as it
is when it goes: the tighter the budget, the more clicks one update carries.

The hook is one `with spend(ctx.budget, method, ...)` around each Slack call a job makes.
Calls made while Slack waits for the web's answer (views.open, users.info) and
response_url posts (not Web API methods) take no place: they cannot wait."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError

from coffeebuddy import db
from coffeebuddy.config import WorkerSettings
from coffeebuddy.db import Database
from coffeebuddy.metrics import (
    SLACK_BUDGET_LEFT,
    SLACK_DEFERRED,
    SLACK_RATE_LIMITED,
    start_at_zero,
)
from coffeebuddy.slack.api import classify

log = logging.getLogger(__name__)

# Slack's tier per method we call from jobs (slack/manifest.yaml's methods; tiers from
# Slack's method reference). chat.getPermalink has "special" limits Slack does not state:
# it is budgeted as Tier 3, the stricter guess.
TIER_3 = frozenset(
    {
        "chat.update",
        "chat.delete",
        "chat.getPermalink",
        "conversations.open",
        "conversations.history",
        "conversations.replies",
        "conversations.info",
    }
)
TIER_4 = frozenset(
    {"chat.postEphemeral", "views.open", "views.update", "views.publish", "users.info"}
)
# Limited per channel rather than per workspace.
PER_CHANNEL = frozenset({"chat.postMessage"})
BUDGETED = TIER_3 | TIER_4 | PER_CHANNEL

# Our window is this much longer than Slack's: a call is granted a few ms before Slack
# counts it, and Slack's window edges are not ours.
WINDOW_MARGIN_SECONDS = 1.5
CHANNEL_WINDOW_MARGIN_SECONDS = 0.25
# chat.postMessage: about one a second per channel, with short bursts (Slack grants them):
# this many posts in as many seconds, so a summary right after its run message goes at once.
CHANNEL_BURST = 3
# Share of a window's calls kept for calls a person waits for: refreshes stop short of it.
LOW_RESERVE = 0.3
# A refresh that has to wait waits at least this long: its job keeps collecting clicks.
LOW_MIN_WAIT_SECONDS = 1.0
# A deferral never comes back sooner than this (a retry storm costs the database too).
MIN_WAIT_SECONDS = 0.05


class OverBudget(Exception):
    """The call's method has no place in its window now; the job goes back to the queue
    (not a failed attempt) for `delay_seconds`."""

    def __init__(self, method: str, delay_seconds: float) -> None:
        super().__init__(f"{method} over budget; again in {delay_seconds:.2f}s")
        self.method = method
        self.delay_seconds = delay_seconds


@dataclass(frozen=True)
class Limit:
    """At most `calls` calls in any `window_seconds`."""

    calls: int
    window_seconds: float

    @classmethod
    def per_minute(cls, calls: int) -> Limit:
        return cls(calls, 60.0 + WINDOW_MARGIN_SECONDS)

    @property
    def spacing(self) -> float:
        """How far apart deferred calls come back once every place that frees in the
        window is promised: the window's share of one call."""
        return self.window_seconds / self.calls

    def allowed(self, *, low: bool) -> int:
        """Calls granted within a window before this one must wait: all of them for a call
        a person waits for, fewer (at least one) for a refresh."""
        return max(1, self.calls - round(self.calls * LOW_RESERVE)) if low else self.calls


def limits(settings: WorkerSettings) -> dict[str, Limit]:
    """Every budgeted method's window, sized from the configured tiers."""
    tier3 = Limit.per_minute(settings.slack_tier3_per_minute)
    tier4 = Limit.per_minute(settings.slack_tier4_per_minute)
    per_burst = CHANNEL_BURST / settings.slack_channel_posts_per_second
    channel = Limit(CHANNEL_BURST, per_burst + CHANNEL_WINDOW_MARGIN_SECONDS)
    found = {m: tier3 for m in TIER_3} | {m: tier4 for m in TIER_4}
    return found | {m: channel for m in PER_CHANNEL}


@dataclass(frozen=True)
class Taken:
    granted: bool
    wait_seconds: float
    # Calls left in the window after this one.
    calls_left: int


class Budget:
    """The shared windows, for one process's jobs."""

    def __init__(self, database: Database, sizes: dict[str, Limit]) -> None:
        self.database = database
        self.limits = sizes

    @classmethod
    def from_settings(cls, database: Database, settings: WorkerSettings) -> Budget | None:
        return cls(database, limits(settings)) if settings.slack_budget else None

    def try_take(self, method: str, *, channel: str | None = None, low: bool = False) -> Taken:
        limit = self.limits.get(method)
        if limit is None:
            return Taken(True, 0.0, 0)
        scope = (channel or "") if method in PER_CHANNEL else ""
        params = {
            "method": method,
            "scope": scope,
            "calls": limit.calls,
            "window_seconds": limit.window_seconds,
            "allowed": limit.allowed(low=low),
            "spacing": limit.spacing,
            "low": low,
            "min_wait": LOW_MIN_WAIT_SECONDS if low else MIN_WAIT_SECONDS,
        }
        with self.database.transaction() as conn:
            db.run(conn, "ensure_budget", params)
            row = db.one(conn, "take_budget", params)
        if row is None:  # the row was just ensured; only a concurrent DELETE gets here
            return Taken(True, 0.0, 0)
        taken = Taken(bool(row["granted"]), float(row["wait_seconds"]), int(row["calls_left"]))
        if not scope:
            SLACK_BUDGET_LEFT.labels(method).set(taken.calls_left)
        return taken

    def take(self, method: str, *, channel: str | None = None, low: bool = False) -> None:
        """Take one call's place in the window, or raise OverBudget with how long to wait."""
        taken = self.try_take(method, channel=channel, low=low)
        if not taken.granted:
            SLACK_DEFERRED.labels(method, "refresh" if low else "person").inc()
            raise OverBudget(method, taken.wait_seconds)

    def pause(self, method: str, seconds: float, *, channel: str | None = None) -> None:
        """Slack answered 429: the method waits `seconds` for every replica."""
        scope = (channel or "") if method in PER_CHANNEL else ""
        with self.database.transaction() as conn:
            db.run(conn, "pause_budget", {"method": method, "scope": scope, "seconds": seconds})


@contextmanager
def spend(
    budget: Budget | None, method: str, *, channel: str | None = None, low: bool = False
) -> Iterator[None]:
    """Around one Slack call: take its token first (or raise OverBudget), and when Slack
    answers 429 anyway, pause the method for every replica before the error goes on to
    the worker (which puts the job back until Retry-After)."""
    if budget is not None:
        budget.take(method, channel=channel, low=low)
    try:
        yield
    except SlackApiError as exc:
        failure = classify(exc)
        if failure is not None and failure.kind == "rate_limited":
            SLACK_RATE_LIMITED.labels(method).inc()
            log.warning(
                "slack_rate_limited",
                extra={"method": method, "retry_after_s": failure.retry_after},
            )
            if budget is not None:
                budget.pause(method, failure.retry_after or 30.0, channel=channel)
        raise


# Every method's series exist at 0 before the first deferral or 429 (metrics.KNOWN_LABELS).
start_at_zero(SLACK_RATE_LIMITED, [(m,) for m in sorted(BUDGETED)])
start_at_zero(SLACK_DEFERRED, [(m, p) for m in sorted(BUDGETED) for p in ("person", "refresh")])
