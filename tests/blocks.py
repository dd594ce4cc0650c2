"""Test builders for Block Kit: a run view to render, and readers that walk what the
builders (or the fake Slack) hold."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from coffeebuddy.domain.models import RunStatus, RunView

PICKUP = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)


def run_view(**changes: Any) -> RunView:
    """An open run in C42 that U0 started half an hour before its pickup at PICKUP, with no
    orders unless `changes` say otherwise."""
    base = RunView(
        run_id="run-123",
        slack_channel_id="C42",
        initiator_slack_id="U0",
        status=RunStatus.OPEN,
        started_at=PICKUP - timedelta(minutes=30),
        pickup_time=PICKUP,
        note="Lobby cafe",
        orders=(),
    )
    return replace(base, **changes)


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a tree of blocks, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def buttons_by_action(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The buttons in `blocks`, by action id."""
    return {n["action_id"]: n for n in walk(blocks) if n.get("type") == "button"}


def text_of(message: dict[str, Any]) -> str:
    """A posted message's blocks and fallback text as one string, to search in."""
    return json.dumps(message.get("blocks"), ensure_ascii=False) + str(message.get("text"))
