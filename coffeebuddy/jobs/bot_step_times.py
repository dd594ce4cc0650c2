"""The bot's own time per run (the pilot's outcome-time metric), observed by the job that
completes each step: the run message posted ends the start step; the later of the summary
and the first runner DM ends the close step."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from coffeebuddy.domain.pilot import OUTCOME_TARGET_SECONDS
from coffeebuddy.metrics import BOT_STEP_SECONDS

log = logging.getLogger(__name__)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def run_message_posted(row: Mapping[str, Any] | None) -> None:
    """`row` is what `set_run_message_ts` returned (None: an earlier attempt stored it)."""
    if row is None:
        return
    start = _seconds(row["command_at"], row["message_posted_at"])
    if start is None:
        return
    BOT_STEP_SECONDS.labels("start").observe(start)
    if start >= OUTCOME_TARGET_SECONDS:
        # The run's correlation id is in the log context of the job.
        log.warning("run_bot_steps_slow", extra={"step": "start", "latency_ms": start * 1000})


def close_part_delivered(row: Mapping[str, Any] | None) -> None:
    """`row` is what `set_summary_ts` / `set_runner_dm` returned. The close step is timed
    once, by whichever of the two finished second (the row lock orders them)."""
    if row is None or not row["first"]:
        return
    if row["summary_posted_at"] is None or row["runner_dm_posted_at"] is None:
        return
    close = _seconds(row["closed_at"], max(row["summary_posted_at"], row["runner_dm_posted_at"]))
    if close is None:
        return
    BOT_STEP_SECONDS.labels("close").observe(close)
    start = _seconds(row["command_at"], row["message_posted_at"]) or 0.0
    if start + close >= OUTCOME_TARGET_SECONDS:
        log.warning(
            "run_bot_steps_slow",
            extra={"step": "close", "latency_ms": round((start + close) * 1000, 1)},
        )
