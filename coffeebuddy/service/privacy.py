"""Privacy: a user's `/coffee forget me`, and the daily retention purge.

The purge (`purge`) takes its clock as an argument, so it can be tested against any "now";
the daily `retention_purge` job (see `coffeebuddy.jobs.maintenance`) passes the database's
`now()`.

What the purge deletes, in one transaction:

- finished runs (closed, canceled, failed; never open ones) that ended longer ago than
  their channel's `data_retention_days`, their orders (ON DELETE CASCADE) and their jobs
  still queued;
- usual orders (`user_preferences`) not used or saved within that retention;
- runner stats, recomputed from the runs that remain: the fairness rule reads run history,
  not this table, so the table is made to agree with that history again (a person who no
  longer served any remaining closed run in the channel loses the row);
- people who left no trace (no run started or served, no order, no usual, no runner stats)
  and were not touched within the last day;
- outbox events past their channel's retention or of runs that are gone (they carry user
  and channel ids).

The audit trail (`channel_admin_actions`) and channel settings are never touched.
"""

from __future__ import annotations

import logging
from datetime import datetime

import psycopg

from coffeebuddy.db import Conn, Database
from coffeebuddy.service.common import Actor, Reply
from coffeebuddy.store import privacy

log = logging.getLogger(__name__)

PURGE_COUNTS = (
    "runs",
    "orders",
    "jobs",
    "preferences",
    "runner_stats_deleted",
    "runner_stats_updated",
    "users",
    "events",
)


def purge(conn: Conn, now: datetime) -> dict[str, int]:
    """Delete what is past its channel's retention as of `now` (see the module docs), in
    the caller's transaction. Returns how many rows of each kind went; logs the counts."""
    if now.tzinfo is None:
        raise ValueError("purge needs an aware datetime")
    runs = privacy.purge_runs(conn, now)
    preferences = privacy.purge_preferences(conn, now)
    stats = privacy.recompute_runner_stats(conn, now, runs.channel_ids)
    counts = {
        "runs": runs.runs,
        "orders": runs.orders,
        "jobs": runs.jobs,
        "preferences": preferences,
        "runner_stats_deleted": stats.deleted,
        "runner_stats_updated": stats.updated,
        "users": _purge_users(conn, now),
        # After the runs: events of purged runs go with them.
        "events": privacy.purge_events(conn, now, runs.run_ids),
    }
    log.info("retention_purged", extra={"count": counts})
    return counts


def _purge_users(conn: Conn, now: datetime) -> int:
    """Traceless people, in a savepoint: if one of them just placed an order in a
    transaction that committed while this one ran, the delete fails on the foreign key;
    then nobody is removed today and the rest of the purge still commits."""
    try:
        with conn.transaction():
            return privacy.purge_traceless_users(conn, now)
    except psycopg.errors.ForeignKeyViolation:
        log.warning("retention_users_skipped", extra={"reason": "concurrent_activity"})
        return 0


def purge_now(conn: Conn) -> dict[str, int]:
    """The purge as of the database's clock: what the daily job runs."""
    return purge(conn, privacy.db_now(conn))


class PrivacyService:
    def __init__(self, database: Database) -> None:
        self.db = database

    def forget_me(self, actor: Actor) -> Reply:
        """Delete the person's stored usual in every channel and the outbox events that name
        them, and nothing else. Works in
        any channel, enabled or not: it is about the person, not the channel."""
        with self.db.transaction() as conn:
            count = privacy.forget(conn, actor.user_id)
        log.info("preferences_forgotten", extra={"count": count})
        if count == 0:
            return Reply(
                "You have no usual order stored with CoffeeBuddy, so there was nothing to delete."
            )
        what = "your usual order" if count == 1 else f"your usual orders in {count} channels"
        return Reply(
            f"🗑️ Done: I deleted {what}. Orders you already placed "
            "in a run that is still open stay as they are: cancel them there if you like. "
            "The next order you place will be remembered as your usual again."
        )
