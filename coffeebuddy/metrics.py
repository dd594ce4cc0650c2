"""Prometheus metrics.

With several gunicorn workers, prometheus-client's multiprocess mode is used: set
`PROMETHEUS_MULTIPROC_DIR` to an empty directory before the processes start (the dev
runner and the container entrypoint do) and `/metrics` aggregates every process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

RUNS = Counter(
    "coffeebuddy_runs_total",
    "Coffee runs by outcome: started, closed, canceled, failed.",
    ["status"],
)
RUN_DURATION = Histogram(
    "coffeebuddy_run_duration_seconds",
    "Time from run start to close.",
    buckets=(60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200),
)
REQUESTS = Counter(
    "coffeebuddy_requests_total",
    "Slack requests received, by type.",
    ["type"],
)
ERRORS = Counter(
    "coffeebuddy_errors_total",
    "Errors by type.",
    ["type"],
)
REQUEST_LATENCY = Histogram(
    "coffeebuddy_request_duration_seconds",
    "HTTP request latency by endpoint.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5),
)
SLACK_CALLS = Counter(
    "coffeebuddy_slack_api_calls_total",
    "Slack Web API calls by method and result (ok, or the Slack error code).",
    ["method", "result"],
)
# The shared Slack rate budget (coffeebuddy/slack/budget.py).
SLACK_BUDGET_LEFT = Gauge(
    "coffeebuddy_slack_budget_left",
    "Tokens left in the shared Slack rate budget of a workspace-wide method, as last seen "
    "by a job taking one (every replica shares one budget).",
    ["method"],
    multiprocess_mode="mostrecent",
)
SLACK_DEFERRED = Counter(
    "coffeebuddy_slack_calls_deferred_total",
    "Slack calls put back until the shared budget has a token, by method and priority "
    "(person: someone waits for it; refresh: a run message's count).",
    ["method", "priority"],
)
SLACK_RATE_LIMITED = Counter(
    "coffeebuddy_slack_rate_limited_total",
    "HTTP 429 answers from Slack, by method; each pauses the method for every replica "
    "until its Retry-After.",
    ["method"],
)
JOBS = Counter(
    "coffeebuddy_jobs_total",
    "Jobs processed by kind and outcome (done, retry, dead).",
    ["kind", "outcome"],
)
JOB_DURATION = Histogram(
    "coffeebuddy_job_duration_seconds",
    "Time a job handler took.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)

# The event relay. Every worker replica (leader or standby) reads the same outbox every
# second or few, so the freshest reading is the truth; a replica that died leaves an older
# value behind, which "mostrecent" ignores.
EVENT_BACKLOG = Gauge(
    "coffeebuddy_event_backlog",
    "Events written to the outbox but not yet acknowledged by Kafka.",
    multiprocess_mode="mostrecent",
)
EVENT_BACKLOG_AGE = Gauge(
    "coffeebuddy_event_backlog_age_seconds",
    "Age of the oldest event not yet acknowledged by Kafka (0 when none is waiting).",
    multiprocess_mode="mostrecent",
)
EVENTS_PUBLISHED = Counter(
    "coffeebuddy_events_published_total",
    "Events acknowledged by Kafka, by topic.",
    ["topic"],
)
RELAY_ERRORS = Counter(
    "coffeebuddy_relay_errors_total",
    "Event relay failures by kind: kafka (publish or connect) or database.",
    ["kind"],
)


def render() -> tuple[bytes, str]:
    """The exposition for this process, or for all processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


REMINDER_LATENESS = Histogram(
    "coffeebuddy_reminder_lateness_seconds",
    "How late a runner reminder was sent after its due time.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

# The job queue, read from the jobs table by the worker every few seconds. Every replica
# reads the same table, so the freshest reading is the truth: a replica that died (or was
# killed) leaves an older value behind, which "mostrecent" ignores where "max" would not.
JOBS_DEAD = Gauge(
    "coffeebuddy_jobs_dead",
    "Jobs that exhausted their attempts or failed permanently, by kind (see `python -m "
    "coffeebuddy jobs list --status dead`; `jobs retry ID` runs one again).",
    ["kind"],
    multiprocess_mode="mostrecent",
)
JOB_QUEUE_DEPTH = Gauge(
    "coffeebuddy_job_queue_depth",
    "Jobs that could start now but have not, by kind (queued and due, or leased by a "
    "worker that went away).",
    ["kind"],
    multiprocess_mode="mostrecent",
)
JOB_OLDEST_DUE_AGE = Gauge(
    "coffeebuddy_job_oldest_due_age_seconds",
    "How long the oldest job that could start has been waiting, by kind (0 when none).",
    ["kind"],
    multiprocess_mode="mostrecent",
)
JOBS_PRUNED = Counter(
    "coffeebuddy_jobs_pruned_total",
    "Finished jobs deleted by the prune job, by status (done, dead).",
    ["status"],
)
RETENTION_PURGED = Counter(
    "coffeebuddy_retention_purged_total",
    "Rows deleted (or runner stats recomputed) by the daily retention purge, by what.",
    ["what"],
)

# The pilot's success metrics (spec "Success Metrics"). Counters and histograms count what
# this process saw; the gauges are the product's own figures over the last 28 days, read
# from the database by the worker (every replica reads the same rows: "mostrecent").
RUNS_FAILED = Counter(
    "coffeebuddy_runs_failed_total",
    "Runs that failed for system reasons, by category (slack_error, timeout, internal).",
    ["category"],
)
BOT_STEP_SECONDS = Histogram(
    "coffeebuddy_bot_step_seconds",
    "The bot's own time per run, human time excluded: step=start (command received to run "
    "message visible) and step=close (close to summary and runner DM delivered).",
    ["step"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
CSAT_RATINGS = Counter(
    "coffeebuddy_csat_ratings_total",
    "Ratings given on run summaries (a changed rating counts again), by score 1-5.",
    ["score"],
)
PILOT_RUNS = Gauge(
    "coffeebuddy_pilot_runs",
    "Runs started in the last 28 days, by current status.",
    ["status"],
    multiprocess_mode="mostrecent",
)
PILOT_FAILED_RATIO = Gauge(
    "coffeebuddy_pilot_failed_run_ratio",
    "Share of the last 28 days' finished runs that failed for system reasons (target <= 0.02).",
    multiprocess_mode="mostrecent",
)
PILOT_OUTCOME_WITHIN_TARGET = Gauge(
    "coffeebuddy_pilot_outcome_within_target_ratio",
    "Share of the last 28 days' measured runs whose bot steps took under 2 minutes "
    "(target >= 0.8).",
    multiprocess_mode="mostrecent",
)
PILOT_CSAT_AVERAGE = Gauge(
    "coffeebuddy_pilot_csat_average",
    "Average rating (1-5) of runs started in the last 28 days; 0 when nobody rated "
    "(target >= 4.2).",
    multiprocess_mode="mostrecent",
)
PILOT_CSAT_RATINGS = Gauge(
    "coffeebuddy_pilot_csat_ratings",
    "Ratings given on runs started in the last 28 days.",
    multiprocess_mode="mostrecent",
)
PILOT_FAIRNESS_MAX_SHARE = Gauge(
    "coffeebuddy_pilot_fairness_max_share",
    "Per channel: the largest share of the last 28 days' closed runs served by one person "
    "(target <= 0.2 given at least 5 eligible people).",
    ["channel"],
    multiprocess_mode="mostrecent",
)
PILOT_FAIRNESS_ELIGIBLE = Gauge(
    "coffeebuddy_pilot_fairness_eligible_people",
    "Per channel: people who ordered in the last 28 days' closed runs (could have been picked).",
    ["channel"],
    multiprocess_mode="mostrecent",
)

# Labelled counters exist at 0 from the start for every label value they are known to take
# (Prometheus' instrumentation guidelines): otherwise a series appears only with its first
# event, and rate(), increase() and the alerts see nothing, not zero, until then.
# tests/unit/test_metrics_zero.py checks every literal label value in the code is here.
KNOWN_LABELS: dict[Counter, tuple[tuple[str, ...], ...]] = {
    RUNS: (("started",), ("closed",), ("canceled",), ("failed",)),
    REQUESTS: (("slash",), ("interaction",), ("event",)),
    ERRORS: tuple(
        (t,)
        for t in (
            "bad_request",
            "bad_signature",
            "body_too_large",
            "database",
            "domain",
            "internal",
            "unknown_action",
            "unknown_view",
        )
    ),
    RUNS_FAILED: (("slack_error",), ("timeout",), ("internal",)),
    CSAT_RATINGS: tuple((str(score),) for score in range(1, 6)),
    EVENTS_PUBLISHED: (("coffeebuddy.run.events",), ("coffeebuddy.reminder.events",)),
    RELAY_ERRORS: (("database",), ("kafka",), ("internal",)),
    JOBS_PRUNED: (("done",), ("dead",)),
    RETENTION_PURGED: tuple(
        (what,)
        for what in (
            "runs",
            "orders",
            "jobs",
            "preferences",
            "runner_stats_deleted",
            "runner_stats_updated",
            "users",
        )
    ),
}
# What a job can come to (coffeebuddy.jobs.worker counts each kind's jobs by these).
JOB_OUTCOMES = ("done", "deferred", "rate_limited", "retry", "dead")


def start_at_zero(counter: Counter, label_sets: Iterable[Sequence[str]]) -> None:
    for labels in label_sets:
        counter.labels(*labels)


for _counter, _label_sets in KNOWN_LABELS.items():
    start_at_zero(_counter, _label_sets)
