"""The pilot's figures read from run history: the admins' report in `/coffee stats` and
the worker's Prometheus gauges. Windows end at the caller's clock, so tests can move it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from coffeebuddy import db
from coffeebuddy.db import Conn
from coffeebuddy.domain.pilot import (
    FAIRNESS_DAYS,
    OUTCOME_TARGET_SECONDS,
    Csat,
    FairnessShare,
    OutcomeTimes,
    PilotPeriod,
    RunCounts,
)
from coffeebuddy.metrics import (
    PILOT_CSAT_AVERAGE,
    PILOT_CSAT_RATINGS,
    PILOT_FAILED_RATIO,
    PILOT_FAIRNESS_ELIGIBLE,
    PILOT_FAIRNESS_MAX_SHARE,
    PILOT_OUTCOME_WITHIN_TARGET,
    PILOT_RUNS,
)


def _window(now: datetime, days: int) -> dict[str, Any]:
    # `until` is a little past now: a run started this instant by the database's clock
    # (which may run a hair ahead of ours) still counts.
    return {"since": now - timedelta(days=days), "until": now + timedelta(seconds=1)}


def read_period(conn: Conn, channel_id: uuid.UUID | None, now: datetime, days: int) -> PilotPeriod:
    params = {"channel_id": channel_id, **_window(now, days)}
    runs = db.one(conn, "pilot_runs", {**params, "target_seconds": OUTCOME_TARGET_SECONDS})
    csat = db.one(conn, "pilot_csat", params)
    # Aggregates always give a row.
    assert runs is not None
    assert csat is not None
    fairness = db.all_rows(conn, "pilot_fairness", params)
    return PilotPeriod(
        days=days,
        runs=RunCounts(
            started=runs["started"],
            closed=runs["closed"],
            canceled=runs["canceled"],
            failed=runs["failed"],
            failed_slack=runs["failed_slack"],
            failed_timeout=runs["failed_timeout"],
            failed_internal=runs["failed_internal"],
        ),
        outcome=OutcomeTimes(
            measured=runs["measured"],
            within_target=runs["within_target"],
            median_seconds=runs["median_seconds"],
        ),
        csat=Csat(ratings=csat["ratings"], average=csat["average"]),
        fairness=_share(fairness[0]) if fairness and channel_id is not None else FairnessShare(),
    )


def fairness_share(conn: Conn, channel_id: uuid.UUID, now: datetime) -> FairnessShare:
    """The channel's fairness figure over the last FAIRNESS_DAYS."""
    rows = db.all_rows(
        conn, "pilot_fairness", {"channel_id": channel_id, **_window(now, FAIRNESS_DAYS)}
    )
    return _share(rows[0]) if rows else FairnessShare()


def _share(row: Mapping[str, Any]) -> FairnessShare:
    return FairnessShare(
        runs=row["runs"],
        eligible=row["eligible"],
        top_runner=row["top_runner"],
        top_runs=row["top_runs"],
        top_volunteered=row["top_volunteered"],
        orders=row["orders"],
    )


class PilotGauges:
    """Publishes the pilot's figures over the last 28 days as gauges. A channel that drops
    out of the window is set to 0 rather than left showing its last figure."""

    def __init__(self) -> None:
        self._channels: set[str] = set()

    def publish(self, conn: Conn, now: datetime) -> None:
        period = read_period(conn, None, now, FAIRNESS_DAYS)
        for status, count in (
            ("started", period.runs.started),
            ("closed", period.runs.closed),
            ("canceled", period.runs.canceled),
            ("failed", period.runs.failed),
        ):
            PILOT_RUNS.labels(status).set(count)
        PILOT_FAILED_RATIO.set(period.runs.failed_ratio)
        PILOT_OUTCOME_WITHIN_TARGET.set(period.outcome.within_share)
        PILOT_CSAT_AVERAGE.set(period.csat.average or 0.0)
        PILOT_CSAT_RATINGS.set(period.csat.ratings)
        window = {"channel_id": None, **_window(now, FAIRNESS_DAYS)}
        rows = db.all_rows(conn, "pilot_fairness", window)
        seen = set()
        for row in rows:
            share = _share(row)
            channel = row["slack_channel_id"]
            seen.add(channel)
            PILOT_FAIRNESS_MAX_SHARE.labels(channel).set(share.share)
            PILOT_FAIRNESS_ELIGIBLE.labels(channel).set(share.eligible)
        for channel in self._channels - seen:
            PILOT_FAIRNESS_MAX_SHARE.labels(channel).set(0)
            PILOT_FAIRNESS_ELIGIBLE.labels(channel).set(0)
        self._channels |= seen
