"""Who someone is to CoffeeBuddy: their Slack profile (time zone, workspace admin flag),
cached from users.info, and whether they may administer a channel."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from coffeebuddy.config import Config
from coffeebuddy.db import Conn, Database
from coffeebuddy.errors import CoffeeBuddyError
from coffeebuddy.slack.api import classify
from coffeebuddy.slack.gateway import Profile, SlackGateway
from coffeebuddy.store import people
from coffeebuddy.store.people import Person

log = logging.getLogger(__name__)


class People:
    def __init__(
        self,
        database: Database,
        slack: SlackGateway,
        config: Config,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = database
        self.slack = slack
        self.config = config
        self.clock = clock

    def profile(
        self,
        conn: Conn,
        user_id: str,
        *,
        remember: bool = True,
        max_age_seconds: int | None = None,
    ) -> Profile:
        """The user's Slack profile, from our cache while fresh (younger than
        `max_age_seconds`, by default the profile TTL), else from users.info (cached unless
        `remember` is False: a read-only command stores nothing). With a `max_age_seconds`
        an older copy is never used, even when Slack can't be reached."""
        person = people.find(conn, user_id)
        ttl = self.config.profile_ttl_seconds if max_age_seconds is None else max_age_seconds
        fresh_after = self.clock() - timedelta(seconds=ttl)
        fetched = person.profile_fetched_at if person is not None else None
        if person is not None and fetched and fetched > fresh_after:
            return person.profile()
        try:
            profile = self.slack.user_profile(user_id)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            log.warning("profile_fetch_failed", extra={"slack_error": failure.code})
            if person is not None and fetched and max_age_seconds is None:
                return person.profile()
            raise CoffeeBuddyError(
                failure.hint
                if failure.kind == "permanent" and failure.hint
                else "I couldn't reach Slack to look up your profile. Try again in a moment."
            ) from exc
        if not remember:
            return profile
        people.save_profile(conn, profile)
        return profile

    def time_zone(self, user_id: str) -> ZoneInfo:
        with self.db.transaction() as conn:
            tz_name = self.profile(conn, user_id).tz
        return _zone(tz_name)

    def cached_time_zone(self, user: Person | Mapping[str, Any]) -> ZoneInfo | None:
        """The time zone of a person whose profile is fresh; None when users.info must be
        asked first (`time_zone`). Takes a `users` row too, for callers that have one."""
        person = user if isinstance(user, Person) else Person.from_row(user)
        fetched = person.profile_fetched_at
        fresh_after = self.clock() - timedelta(seconds=self.config.profile_ttl_seconds)
        if not fetched or fetched <= fresh_after:
            return None
        return _zone(person.tz)

    def is_admin(
        self, user_id: str, channel_admins: Collection[str] = (), *, remember: bool = True
    ) -> bool:
        """A CoffeeBuddy admin here: listed in COFFEEBUDDY_ADMIN_USER_IDS, one of the
        channel's own admins, or a Slack workspace admin or owner."""
        if user_id in self.config.admin_user_ids or user_id in channel_admins:
            return True
        try:
            with self.db.transaction() as conn:
                # Rights follow Slack's flag within minutes (a demotion must take effect).
                return self.profile(
                    conn,
                    user_id,
                    remember=remember,
                    max_age_seconds=self.config.admin_check_ttl_seconds,
                ).is_workspace_admin
        except CoffeeBuddyError:
            # Slack unreachable and nothing cached: not proven an admin.
            return False


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
