"""What every job handler is given (`Context`), and what a handler may raise to wait."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from slack_sdk import WebClient

from coffeebuddy.config import WorkerSettings
from coffeebuddy.db import Database
from coffeebuddy.service.runs import RunService
from coffeebuddy.slack.budget import Budget
from coffeebuddy.slack.response_url import ResponseUrlPolicy
from coffeebuddy.store.queue import Job
from coffeebuddy.store.runs import RunRecord, load_run


@dataclass(frozen=True)
class Upkeep:
    """What the worker's own housekeeping jobs need (see `coffeebuddy.jobs.maintenance`)."""

    settings: WorkerSettings = field(default_factory=WorkerSettings)
    # Set when no relay runs: nothing else deletes old events then, so the prune job
    # deletes them past this age.
    event_retention_seconds: float | None = None


@dataclass(frozen=True)
class Context:
    database: Database
    slack: WebClient
    response_timeout: float = 3.0
    # Where a job may POST an interaction's response_url (see slack/response_url.py).
    response_urls: ResponseUrlPolicy = field(default_factory=lambda: ResponseUrlPolicy(()))
    # Whether retried channel posts may read the channel's history (see
    # `channel_post_dedupe` in config/settings.py).
    channel_history: bool = False
    # How long a cached profile is trusted (Config.profile_ttl_seconds).
    profile_ttl_seconds: int = 24 * 3600
    # Applies the actions the web acknowledged through the inbox.
    runs: RunService | None = None
    # Filled in by the worker from its settings.
    upkeep: Upkeep = field(default_factory=Upkeep)
    # The Slack rate budget shared by every worker replica; None calls Slack unbudgeted.
    budget: Budget | None = None


Handler = Callable[[Context, Job], None]


class NotYet(Exception):
    """Raised by a handler whose job must wait for others; the worker requeues it after
    `delay_seconds` without counting an attempt."""

    def __init__(self, delay_seconds: float) -> None:
        super().__init__(f"not yet; again in {delay_seconds}s")
        self.delay_seconds = delay_seconds


def load_job_run(ctx: Context, job: Job) -> RunRecord | None:
    """The run a job is about (`run_id` in its payload), as it is now."""
    with ctx.database.transaction() as conn:
        return load_run(conn, job.payload["run_id"])
