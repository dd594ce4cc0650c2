"""People: their row with the cached Slack profile, their names, and what their App Home
shows about them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coffeebuddy import db
from coffeebuddy.db import Conn
from coffeebuddy.slack.gateway import Profile
from coffeebuddy.slack.home_blocks import HomeChannel
from coffeebuddy.store import columns


@dataclass(frozen=True)
class Person:
    id: uuid.UUID
    slack_user_id: str
    display_name: str
    tz: str | None
    is_workspace_admin: bool
    # When users.info was last asked (None: never; the profile fields are then defaults).
    profile_fetched_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Person:
        return cls(**columns(cls, row))

    def profile(self) -> Profile:
        return Profile(
            slack_user_id=self.slack_user_id,
            display_name=self.display_name,
            tz=self.tz,
            is_workspace_admin=self.is_workspace_admin,
        )


def find(conn: Conn, slack_user_id: str) -> Person | None:
    row = db.one(conn, "get_user_by_slack_id", {"slack_user_id": slack_user_id})
    return Person.from_row(row) if row is not None else None


def upsert(conn: Conn, slack_user_id: str, display_name: str) -> Person:
    """The person, added on first sight; a non-empty name is kept up to date."""
    params = {"slack_user_id": slack_user_id, "display_name": display_name}
    row = db.one(conn, "upsert_user", params)
    assert row is not None  # an upsert always returns the row
    return Person.from_row(row)


def save_profile(conn: Conn, profile: Profile) -> Person:
    """Cache what users.info said (adding the person if new)."""
    row = db.one(
        conn,
        "save_user_profile",
        {
            "slack_user_id": profile.slack_user_id,
            "display_name": profile.display_name,
            "tz": profile.tz,
            "is_workspace_admin": profile.is_workspace_admin,
        },
    )
    assert row is not None  # an upsert always returns the row
    return Person.from_row(row)


def refresh_profile(conn: Conn, profile: Profile) -> None:
    """Cache what users.info said, only for someone still on record (a "forget me" in
    between must stay forgotten)."""
    db.run(
        conn,
        "refresh_user_profile",
        {
            "slack_user_id": profile.slack_user_id,
            "display_name": profile.display_name,
            "tz": profile.tz,
            "is_workspace_admin": profile.is_workspace_admin,
        },
    )


def slack_id(conn: Conn, user_id: uuid.UUID) -> str | None:
    """The Slack id of the person with our id `user_id`."""
    row = db.one(conn, "swap_user_slack_id", {"user_id": user_id})
    return row["slack_user_id"] if row is not None else None


def names(conn: Conn, slack_user_ids: Sequence[str]) -> dict[str, str]:
    """Plain display names by Slack id, for messages that must not notify who they name."""
    rows = db.all_rows(conn, "user_names", {"slack_user_ids": list(slack_user_ids)})
    return {row["slack_user_id"]: row["display_name"] for row in rows}


def home_channels(conn: Conn, slack_user_id: str, *, limit: int) -> list[HomeChannel]:
    """Per channel where the person has a usual, served or ordered: what their Home shows."""
    rows = db.all_rows(conn, "home_channels", {"slack_user_id": slack_user_id, "limit": limit})
    return [HomeChannel(**columns(HomeChannel, row)) for row in rows]
