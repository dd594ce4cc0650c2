"""A run's CSAT ratings: one per person and run, which they may change."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coffeebuddy import db
from coffeebuddy.db import Conn
from coffeebuddy.store import columns


@dataclass(frozen=True)
class RatedRun:
    """The run being rated, seen by the person rating it."""

    id: uuid.UUID
    status: str
    correlation_id: str
    slack_channel_id: str
    slack_team_id: str
    # Our id of the person rating; None when they were never seen.
    user_id: uuid.UUID | None
    # Whether they started it, served it or have an order in it.
    took_part: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RatedRun:
        # `took_part` is NULL when the comparisons with a run without a runner say nothing.
        return cls(**{**columns(cls, row), "took_part": bool(row["took_part"])})


def run_for(conn: Conn, run_id: uuid.UUID, slack_user_id: str) -> RatedRun | None:
    row = db.one(conn, "rating_run", {"run_id": run_id, "slack_user_id": slack_user_id})
    return RatedRun.from_row(row) if row is not None else None


def save(conn: Conn, run_id: uuid.UUID, user_id: uuid.UUID, score: int) -> int | None:
    """Record the person's score; returns the score it replaced (None: the first)."""
    row = db.one(conn, "upsert_rating", {"run_id": run_id, "user_id": user_id, "score": score})
    return row["previous_score"] if row is not None else None
