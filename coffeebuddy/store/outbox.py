"""Recording a domain event: a JSON envelope written to the `events` outbox in the same
transaction as the change it describes; the relay (`coffeebuddy.events.relay`) publishes
them to Kafka.

Events carry ids, counts and Slack ids only — never order text or message bodies.

This is a contract with other teams: each type has a JSON Schema in `events/schemas/`
and both topics are described in `events/asyncapi.yaml`. A new type, or a change to a
payload, goes there too (the tests check every event written against its schema), and
follows the versioning rules in the README.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from coffeebuddy import db
from coffeebuddy.db import Conn
from coffeebuddy.store.runs import RunRow

SCHEMA_VERSION = 1
RUN_TOPIC = "coffeebuddy.run.events"
REMINDER_TOPIC = "coffeebuddy.reminder.events"

RUN_EVENTS = frozenset(
    {
        "run_created",
        # Only the run's own details (pickup time, note); orders have `order_updated`.
        "run_updated",
        "order_updated",
        "run_closed",
        "runner_assigned",
        "run_canceled",
        "run_failed",
    }
)
REMINDER_EVENTS = frozenset({"reminder_scheduled", "reminder_due", "reminder_sent"})
EVENT_TYPES = RUN_EVENTS | REMINDER_EVENTS


def topic_for(event_type: str) -> str:
    if event_type in RUN_EVENTS:
        return RUN_TOPIC
    if event_type in REMINDER_EVENTS:
        return REMINDER_TOPIC
    raise ValueError(f"unknown event type {event_type!r}")


def envelope(
    event_type: str,
    *,
    run_id: uuid.UUID | str,
    channel_id: str,
    correlation_id: str,
    data: dict[str, Any],
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    topic_for(event_type)  # validates the type
    return {
        "event_id": str(event_id or uuid.uuid4()),
        "type": event_type,
        "schema_version": SCHEMA_VERSION,
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        "run_id": str(run_id),
        "channel_id": channel_id,
        "correlation_id": correlation_id,
        "data": data,
    }


def record(
    conn: Conn,
    event_type: str,
    *,
    run_id: uuid.UUID | str,
    channel_id: str,
    correlation_id: str,
    **data: Any,
) -> str:
    """Write one event to the outbox in the caller's transaction; returns its event id.

    Every event is about one run: its id is the Kafka key (per-run order) and its
    correlation id lets an operator follow the run through logs and events alike."""
    body = envelope(
        event_type,
        run_id=run_id,
        channel_id=channel_id,
        correlation_id=correlation_id,
        data=data,
    )
    db.run(
        conn,
        "insert_event",
        {
            "event_id": body["event_id"],
            "topic": topic_for(event_type),
            "event_type": event_type,
            "run_id": run_id,
            "envelope": Jsonb(body),
        },
    )
    return str(body["event_id"])


def record_run(conn: Conn, event_type: str, run: RunRow, **data: Any) -> str:
    """`record` for a run the caller has read: its id, channel and correlation id."""
    return record(
        conn,
        event_type,
        run_id=run.id,
        channel_id=run.slack_channel_id,
        correlation_id=run.correlation_id,
        **data,
    )
