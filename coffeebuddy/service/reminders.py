"""When a run's reminders fire, kept in step with its pickup time.

The runner reminder is due `reminder_offset_minutes` before pickup; the optional last call
to the channel `last_call_minutes` before that. When the pickup is so close that the
reminder time has already passed, the reminder goes halfway between now and pickup, so a
run started for "in 3m" doesn't close the moment it opens.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Protocol

from coffeebuddy.db import Conn
from coffeebuddy.store import outbox, reminders
from coffeebuddy.store.queue import LAST_CALL, RUNNER_REMINDER


class ReminderSettings(Protocol):
    """A channel's reminder settings: its row (`store.channels.Channel`), or a run's
    (`store.runs.RunRow`), which carries them."""

    @property
    def reminder_offset_minutes(self) -> int: ...
    @property
    def last_call_enabled(self) -> bool: ...
    @property
    def last_call_minutes(self) -> int: ...


def reminder_time(pickup: datetime, offset_minutes: int, now: datetime) -> datetime:
    due = pickup - timedelta(minutes=offset_minutes)
    if due > now:
        return due
    return now + (pickup - now) / 2 if pickup > now else now


def schedule(
    conn: Conn,
    run_id: uuid.UUID | str,
    *,
    pickup: datetime | None,
    settings: ReminderSettings,
    channel_id: str,
    correlation_id: str,
    now: datetime,
) -> datetime | None:
    """(Re)schedule the run's reminder jobs for `pickup`; None pickup removes them.
    `settings` are the channel's. Returns the runner reminder time."""
    keys = {RUNNER_REMINDER: f"reminder:{run_id}", LAST_CALL: f"last_call:{run_id}"}
    if pickup is None:
        reminders.set_due(conn, run_id, None)
        for key in keys.values():
            reminders.unschedule(conn, key)
        return None
    due = reminder_time(pickup, settings.reminder_offset_minutes, now)
    reminders.set_due(conn, run_id, due)
    reminders.schedule(
        conn,
        RUNNER_REMINDER,
        run_id,
        at=due,
        key=keys[RUNNER_REMINDER],
        correlation_id=correlation_id,
    )
    outbox.record(
        conn,
        "reminder_scheduled",
        run_id=run_id,
        channel_id=channel_id,
        correlation_id=correlation_id,
        kind=RUNNER_REMINDER,
        due_at=due.isoformat(),
    )
    last_call = due - timedelta(minutes=settings.last_call_minutes)
    if settings.last_call_enabled and last_call > now:
        reminders.schedule(
            conn,
            LAST_CALL,
            run_id,
            at=last_call,
            key=keys[LAST_CALL],
            correlation_id=correlation_id,
        )
        outbox.record(
            conn,
            "reminder_scheduled",
            run_id=run_id,
            channel_id=channel_id,
            correlation_id=correlation_id,
            kind=LAST_CALL,
            due_at=last_call.isoformat(),
        )
    else:
        reminders.unschedule(conn, keys[LAST_CALL])
    return due
