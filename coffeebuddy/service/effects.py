"""Side effects a change asks for, written as jobs in the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from coffeebuddy.db import Conn
from coffeebuddy.store import queue


def refresh_run_message(
    conn: Conn,
    run_id: uuid.UUID | str,
    correlation_id: str | None,
    *,
    delay_seconds: float,
    link_only: bool = False,
) -> None:
    """One chat.update of the run message; requests within `delay_seconds` coalesce. One
    due at once (a close, an edit) brings a queued one forward; a click's, due after the
    coalescing window like the queued one, just joins it without locking it. `link_only`:
    all it adds is a link (nobody waits for it; see slack/budget.py); joining a queued
    refresh, it keeps that one's payload."""
    payload: dict[str, Any] = {"run_id": str(run_id)}
    if link_only:
        payload["link_only"] = True
    queue.enqueue(
        conn,
        queue.REFRESH_RUN_MESSAGE,
        payload,
        run_id=run_id,
        correlation_id=correlation_id,
        delay_seconds=delay_seconds,
        dedupe_key=f"refresh:{run_id}",
        bring_forward=delay_seconds == 0,
    )


def queue_ephemeral(
    conn: Conn,
    run_id: uuid.UUID | str | None,
    *,
    channel: str,
    user: str,
    text: str,
    response_url: str | None,
    correlation_id: str | None,
    blocks: list[dict[str, Any]] | None = None,
) -> None:
    """Queue an ephemeral answer to one person; the worker sends it (`send_ephemeral` in
    `coffeebuddy.jobs.delivery`). `text` is its notification and fallback when it has
    `blocks`. Answers about one run to one person coalesce while
    queued, the latest winning: a burst of clicks is one message saying how things stand
    now, not a backlog that delays everyone else's."""
    payload: dict[str, Any] = {
        "channel": channel, "user": user, "text": text, "response_url": response_url,
    }  # fmt: skip
    if blocks:
        payload["blocks"] = blocks
    queue.enqueue(
        conn,
        queue.NOTIFY_USER,
        payload,
        run_id=run_id,
        correlation_id=correlation_id,
        dedupe_key=f"notify:{run_id}:{user}" if run_id is not None else None,
        replace_payload=True,
    )


def warm_profile(conn: Conn, user_id: str, correlation_id: str | None) -> None:
    """Fetch this person's profile (users.info) in the worker, so that a later `/coffee
    10:30` or admin check finds it cached instead of calling Slack while Slack waits."""
    queue.enqueue(
        conn,
        queue.WARM_PROFILE,
        {"user": user_id},
        correlation_id=correlation_id,
        dedupe_key=f"profile:{user_id}",
        # After the confirmations of a burst this person may be part of (the queue is
        # first due, first served): warming is never urgent.
        delay_seconds=10.0,
        bring_forward=False,
    )
