"""The pilot's figures read from run history: the admins' report in `/coffee stats` and
the worker's Prometheus gauges. Windows end at the caller's clock, so tests can move it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from coffeebuddy.db import Conn
from coffeebuddy.domain.pilot import FAIRNESS_DAYS, FairnessShare, PilotPeriod
from coffeebuddy.metrics import (
    PILOT_CSAT_AVERAGE,
    PILOT_CSAT_RATINGS,
    PILOT_FAILED_RATIO,
    PILOT_FAIRNESS_ELIGIBLE,
    PILOT_FAIRNESS_MAX_SHARE,
    PILOT_OUTCOME_WITHIN_TARGET,
    PILOT_RUNS,
)
from coffeebuddy.store import pilot


def _window(channel_id: uuid.UUID | None, now: datetime, days: int) -> pilot.Window:
    # `until` is a little past now: a run started this instant by the database's clock
    # (which may run a hair ahead of ours) still counts.
    return pilot.Window(
        channel_id=channel_id, since=now - timedelta(days=days), until=now + timedelta(seconds=1)
    )


def read_period(conn: Conn, channel_id: uuid.UUID | None, now: datetime, days: int) -> PilotPeriod:
    window = _window(channel_id, now, days)
    counts, times = pilot.runs(conn, window)
    fairness = pilot.fairness(conn, window) if channel_id is not None else []
    return PilotPeriod(
        days=days,
        runs=counts,
        outcome=times,
        csat=pilot.csat(conn, window),
        fairness=fairness[0].share if fairness else FairnessShare(),
    )


def fairness_share(conn: Conn, channel_id: uuid.UUID, now: datetime) -> FairnessShare:
    """The channel's fairness figure over the last FAIRNESS_DAYS."""
    rows = pilot.fairness(conn, _window(channel_id, now, FAIRNESS_DAYS))
    return rows[0].share if rows else FairnessShare()


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
        seen = set()
        for row in pilot.fairness(conn, _window(None, now, FAIRNESS_DAYS)):
            channel = row.slack_channel_id
            seen.add(channel)
            PILOT_FAIRNESS_MAX_SHARE.labels(channel).set(row.share.share)
            PILOT_FAIRNESS_ELIGIBLE.labels(channel).set(row.share.eligible)
        for channel in self._channels - seen:
            PILOT_FAIRNESS_MAX_SHARE.labels(channel).set(0)
            PILOT_FAIRNESS_ELIGIBLE.labels(channel).set(0)
        self._channels |= seen
