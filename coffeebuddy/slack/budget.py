"""The Slack rate budget every worker replica shares, kept in Postgres.

Slack limits an app per workspace and per method (Tier 3: about 50 calls a minute, Tier 4:
about 100) and `chat.postMessage` to about one message a second per channel. Each method
has a token bucket in `slack_budget` (`sql/queries/budget.sql`); a job takes its call's
token right before the call, or the job is put back (`OverBudget`) until one frees up, so
the replicas stay under the limits instead of learning about them one 429 at a time. A 429
that still comes pauses the method for every replica until its Retry-After.

Calls a person waits for (confirmations, run start, summaries, runner DMs) may empty a
bucket; refreshes of the run message's count (`low`) only take a token while a reserve is
left, so under pressure they go last, and while one waits, clicks keep joining its queued
job (one dedupe key): the tighter the budget, the more clicks one update carries.

The hook is one `with spend(ctx.budget, method, ...)` around each Slack call a job makes.
Calls made while Slack waits for the web's answer (views.open, users.info) and
response_url posts (not Web API methods) do not take tokens: they cannot wait.
"""

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

# A bucket holds this share of its minute's calls as a burst; the rest refills evenly.
BURST_SHARE = 0.1
# The refill runs this much below the limit: a call's token is taken a few ms before Slack
# counts the call, and Slack's own window edges are not ours.
MARGIN = 0.95
# Share of a bucket kept for calls a person waits for: a refresh needs more left than this.
LOW_RESERVE = 0.5
# A refresh that has to wait waits at least this long: its job keeps collecting clicks.
LOW_MIN_WAIT_SECONDS = 1.0
# A deferral never comes back sooner than this (a retry storm costs the database too).
MIN_WAIT_SECONDS = 0.05


class OverBudget(Exception):
    """The call's method has no token for now; the job goes back to the queue (not a
    failed attempt) for `delay_seconds`."""

    def __init__(self, method: str, delay_seconds: float) -> None:
        super().__init__(f"{method} over budget; again in {delay_seconds:.2f}s")
        self.method = method
        self.delay_seconds = delay_seconds


@dataclass(frozen=True)
class Limit:
    """One bucket's size: `burst` tokens, refilled at `per_second`."""

    burst: float
    per_second: float

    @classmethod
    def per_minute(cls, calls: int) -> Limit:
        """A bucket that never allows more than `calls` in any 60 s: the burst plus a
        minute's refill add up to `calls` (less the margin)."""
        burst = max(1.0, float(int(calls * BURST_SHARE)))
        return cls(burst, max(calls - burst, 1.0) * MARGIN / 60.0)


def limits(settings: WorkerSettings) -> dict[str, Limit]:
    """Every budgeted method's bucket, sized from the configured tiers."""
    tier3 = Limit.per_minute(settings.slack_tier3_per_minute)
    tier4 = Limit.per_minute(settings.slack_tier4_per_minute)
    channel = Limit(1.0, settings.slack_channel_posts_per_second * MARGIN * 0.85)
    found = {m: tier3 for m in TIER_3} | {m: tier4 for m in TIER_4}
    return found | {m: channel for m in PER_CHANNEL}


@dataclass(frozen=True)
class Taken:
    granted: bool
    wait_seconds: float
    tokens_left: float


class Budget:
    """The shared buckets, for one process's jobs."""

    def __init__(self, database: Database, bucket_sizes: dict[str, Limit]) -> None:
        self.database = database
        self.limits = bucket_sizes

    @classmethod
    def from_settings(cls, database: Database, settings: WorkerSettings) -> Budget | None:
        return cls(database, limits(settings)) if settings.slack_budget else None

    def try_take(self, method: str, *, channel: str | None = None, low: bool = False) -> Taken:
        limit = self.limits.get(method)
        if limit is None:
            return Taken(True, 0.0, 0.0)
        scope = (channel or "") if method in PER_CHANNEL else ""
        floor = limit.burst * LOW_RESERVE if low else 0.0
        params = {
            "method": method,
            "scope": scope,
            "burst": limit.burst,
            "per_second": limit.per_second,
            "floor": floor,
            "low": low,
            "min_wait": LOW_MIN_WAIT_SECONDS if low else MIN_WAIT_SECONDS,
        }
        with self.database.transaction() as conn:
            db.run(conn, "ensure_budget", params)
            row = db.one(conn, "take_budget", params)
        if row is None:  # the row was just ensured; only a concurrent DELETE gets here
            return Taken(True, 0.0, 0.0)
        taken = Taken(bool(row["granted"]), float(row["wait_seconds"]), float(row["tokens_left"]))
        if not scope:
            SLACK_BUDGET_LEFT.labels(method).set(taken.tokens_left)
        return taken

    def take(self, method: str, *, channel: str | None = None, low: bool = False) -> None:
        """Take a token for one call, or raise OverBudget with how long to wait."""
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
