"""Orders and usuals: the queries on `orders` and `user_preferences`, returning typed rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coffeebuddy import db
from coffeebuddy.db import Conn


@dataclass(frozen=True)
class Order:
    """A person's active order in a run."""

    text: str
    volunteer: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Order:
        return cls(text=row["order_text"], volunteer=bool(row["volunteer"]))


@dataclass(frozen=True)
class Saved:
    """What `upsert` wrote: a new order (`inserted`) or a changed one."""

    id: uuid.UUID
    inserted: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Saved:
        return cls(id=row["id"], inserted=bool(row["inserted"]))


@dataclass(frozen=True)
class ActiveOrder:
    """An active order in a run with who placed it (`active_orders`, in arrival order)."""

    user_id: uuid.UUID
    slack_user_id: str
    # The person's display name ("" when not known).
    name: str
    text: str
    volunteer: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ActiveOrder:
        return cls(
            user_id=row["user_id"],
            slack_user_id=row["slack_user_id"],
            name=row["display_name"],
            text=row["order_text"],
            volunteer=row["volunteer"],
        )


def active(conn: Conn, run_id: uuid.UUID | str) -> list[ActiveOrder]:
    return [ActiveOrder.from_row(r) for r in db.all_rows(conn, "active_orders", {"run_id": run_id})]


def finalize(conn: Conn, run_id: uuid.UUID) -> None:
    """The run closed: its active orders are final."""
    db.run(conn, "finalize_orders", {"run_id": run_id})


def current(conn: Conn, run_id: uuid.UUID, user_id: uuid.UUID) -> Order | None:
    row = db.one(conn, "get_active_order", {"run_id": run_id, "user_id": user_id})
    return Order.from_row(row) if row is not None else None


def upsert(
    conn: Conn, run_id: uuid.UUID, user_id: uuid.UUID, text: str, *, volunteer: bool
) -> Saved | None:
    """Place or replace the person's order; None when it is the same order again."""
    row = db.one(
        conn,
        "upsert_order",
        {"run_id": run_id, "user_id": user_id, "order_text": text, "volunteer": volunteer},
    )
    return Saved.from_row(row) if row is not None else None


def cancel(conn: Conn, run_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Cancel the person's active order; False when they had none."""
    return db.one(conn, "cancel_order", {"run_id": run_id, "user_id": user_id}) is not None


def count_active(conn: Conn, run_id: uuid.UUID) -> int:
    row = db.one(conn, "count_active_orders", {"run_id": run_id})
    return int(row["n"]) if row else 0


def usual(conn: Conn, user_id: uuid.UUID, channel_id: uuid.UUID) -> str | None:
    """The person's usual order in this channel (their last one), if any."""
    row = db.one(conn, "get_preference", {"user_id": user_id, "channel_id": channel_id})
    return row["last_order_text"] if row is not None else None


def save_usual(conn: Conn, user_id: uuid.UUID, channel_id: uuid.UUID, text: str) -> None:
    db.run(
        conn,
        "save_preference",
        {"user_id": user_id, "channel_id": channel_id, "order_text": text},
    )


def touch_usual(conn: Conn, user_id: uuid.UUID, channel_id: uuid.UUID) -> None:
    """The usual was used again (it stays the usual; its last use moves)."""
    db.run(conn, "touch_preference", {"user_id": user_id, "channel_id": channel_id})
