"""Prometheus metrics.

With several gunicorn workers, prometheus-client's multiprocess mode is used: set
`PROMETHEUS_MULTIPROC_DIR` to an empty directory before the processes start (the dev
runner and the container entrypoint do) and `/metrics` aggregates every process.
"""

from __future__ import annotations

import os

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
# The event relay. Every worker replica reports the same database facts, so the gauges
# take the largest value among live processes rather than a sum.
EVENT_BACKLOG = Gauge(
    "coffeebuddy_event_backlog",
    "Events written to the outbox but not yet acknowledged by Kafka.",
    multiprocess_mode="livemax",
)
EVENT_BACKLOG_AGE = Gauge(
    "coffeebuddy_event_backlog_age_seconds",
    "Age of the oldest event not yet acknowledged by Kafka (0 when none is waiting).",
    multiprocess_mode="livemax",
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
