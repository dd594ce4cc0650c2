"""The App Home tab: opened in Slack (the Events API's `app_home_opened`), published by
the worker with `views.publish`. Opening it records nothing about the person."""

from __future__ import annotations

from coffeebuddy.db import Conn, Database
from coffeebuddy.slack.home_blocks import MAX_CHANNELS, HomeChannel
from coffeebuddy.store import people, queue


class HomeService:
    def __init__(self, database: Database) -> None:
        self.db = database

    def opened(self, user_id: str, *, correlation_id: str) -> None:
        """Queue a fresh Home tab for `user_id`; opens in quick succession (and Slack's
        retries of the same event) become one publish."""
        with self.db.transaction() as conn:
            queue.enqueue(
                conn,
                queue.PUBLISH_HOME,
                {"user": user_id},
                correlation_id=correlation_id,
                dedupe_key=f"home:{user_id}",
            )


def home_channels(conn: Conn, user_id: str) -> list[HomeChannel]:
    return people.home_channels(conn, user_id, limit=MAX_CHANNELS)
