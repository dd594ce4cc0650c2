"""The pilot's figures as the run history gives them, for a window of time: run outcomes
and the bot's own time, CSAT, and per channel the fairness share. Rows become the domain's
figures (`coffeebuddy.domain.pilot`) here."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coffeebuddy import db
from coffeebuddy.db import Conn
from coffeebuddy.domain.pilot import (
    OUTCOME_TARGET_SECONDS,
    Csat,
    FairnessShare,
    OutcomeTimes,
    RunCounts,
)
from coffeebuddy.store import columns


@dataclass(frozen=True)
class Window:
    """Runs started (or closed, for fairness) in [since, until), in one channel or all
    (None)."""

    channel_id: uuid.UUID | None
    since: datetime
    until: datetime

    def params(self) -> dict[str, Any]:
        return {"channel_id": self.channel_id, "since": self.since, "until": self.until}


@dataclass(frozen=True)
class ChannelFairness:
    slack_channel_id: str
    share: FairnessShare


def runs(conn: Conn, window: Window) -> tuple[RunCounts, OutcomeTimes]:
    row = db.one(conn, "pilot_runs", {**window.params(), "target_seconds": OUTCOME_TARGET_SECONDS})
    assert row is not None  # an aggregate always gives a row
    return RunCounts(**columns(RunCounts, row)), OutcomeTimes(**columns(OutcomeTimes, row))


def csat(conn: Conn, window: Window) -> Csat:
    row = db.one(conn, "pilot_csat", window.params())
    assert row is not None  # an aggregate always gives a row
    return Csat(**columns(Csat, row))


def fairness(conn: Conn, window: Window) -> list[ChannelFairness]:
    """Per channel with closed runs in the window (or just the window's channel)."""
    return [
        ChannelFairness(slack_channel_id=row["slack_channel_id"], share=_share(row))
        for row in db.all_rows(conn, "pilot_fairness", window.params())
    ]


def _share(row: Mapping[str, Any]) -> FairnessShare:
    return FairnessShare(**columns(FairnessShare, row))
