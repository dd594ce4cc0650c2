"""What every action on a run shares: may this person act on it, is it still open, and
the answers, refreshes and events that follow a change. The base of `RunService`."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from coffeebuddy.config import Config
from coffeebuddy.db import Conn, Database
from coffeebuddy.domain.models import RunStatus
from coffeebuddy.service.common import Actor, Interaction, misplaced
from coffeebuddy.service.effects import queue_ephemeral, refresh_run_message, warm_profile
from coffeebuddy.service.people import People
from coffeebuddy.slack import run_blocks
from coffeebuddy.slack.api import classify
from coffeebuddy.slack.gateway import SlackGateway
from coffeebuddy.store import orders, outbox, people, runs
from coffeebuddy.store.people import Person
from coffeebuddy.store.runs import RunRecord, RunRow, load_run

log = logging.getLogger(__name__)
# `order_updated`'s kinds of change (events/schemas/order_updated.schema.json).
OrderChange = Literal["placed", "changed", "canceled"]


class RunAccess:
    """Checks and answers; `RunService` (service/runs.py) sets these in its __init__."""

    db: Database
    slack: SlackGateway
    config: Config
    clock: Callable[[], datetime]
    people: People

    def _may_manage(self, ia: Interaction) -> bool:
        """May the actor close or cancel this run? Tells them why not. Checked before the
        run row is locked, because it may have to ask Slack whether they are an admin."""
        with self.db.transaction() as conn:
            run = runs.view(conn, ia.run)
            if run is None:
                self._tell(conn, ia, not_open_text(None), run_id=ia.run)
                return False
            if refusal := _misplaced(ia.actor, run):
                self._tell(conn, ia, refusal, run_id=None)
                return False
        allowed = self._is_manager(ia.actor, run)
        if not allowed:
            with self.db.transaction() as conn:
                self._tell(
                    conn,
                    ia,
                    f"Only <@{run.initiator_slack_id}>, who started this run, or a CoffeeBuddy "
                    "admin can change, close or cancel it.",
                    run_id=ia.run,
                    correlation_id=run.correlation_id,
                )
                log.info("not_allowed", extra={"action": "manage_run", "user_id": ia.actor.user_id})
        return allowed

    def _load_open(self, ia: Interaction) -> RunRecord | None:
        """The run, if it is still open; otherwise tell the actor why not."""
        with self.db.transaction() as conn:
            record = load_run(conn, ia.run)
            refusal = record and misplaced(
                ia.actor, team_id=record.slack_team_id, channel_id=record.view.slack_channel_id
            )
            if refusal:
                self._tell(conn, ia, refusal, run_id=None)
                return None
            if record is None or record.view.status is not RunStatus.OPEN:
                self._tell(conn, ia, not_open_text(record), run_id=ia.run)
                return None
        return record

    def _is_manager(self, actor: Actor, run: RunRow) -> bool:
        """The run's initiator, or a CoffeeBuddy admin of its channel."""
        if actor.user_id == run.initiator_slack_id:
            return True
        return self.people.is_admin(actor.user_id, run.channel_admin_ids)

    def _lock_open(self, conn: Conn, ia: Interaction, *, share: bool = False) -> RunRow | None:
        """Lock the run if it is still open; otherwise tell the actor why not. Order writes
        `share` the lock: they may go side by side, never beside a close or cancel."""
        run = runs.share(conn, ia.run) if share else runs.lock(conn, ia.run)
        if run is not None and (refusal := _misplaced(ia.actor, run)):
            self._tell(conn, ia, refusal, run_id=None)
            return None
        if run is None or run.status != RunStatus.OPEN:
            self._tell(conn, ia, not_open_text(run), run_id=ia.run)
            return None
        return run

    def _upsert_user(self, conn: Conn, actor: Actor) -> Person:
        return people.upsert(conn, actor.user_id, actor.user_name[:200])

    def _upsert_orderer(self, conn: Conn, actor: Actor) -> Person:
        """`_upsert_user` for someone placing an order."""
        person = self._upsert_user(conn, actor)
        self._warm_profile(conn, actor, person)
        return person

    def _warm_profile(self, conn: Conn, actor: Actor, user: Person) -> None:
        """Someone ordering who is new (or not seen for a day) has their profile fetched
        by the worker, so that their own `/coffee 10:30` later needn't wait for users.info."""
        if self.people.cached_time_zone(user) is None:
            warm_profile(conn, actor.user_id, None)

    def _refresh(
        self, conn: Conn, run_id: uuid.UUID, correlation_id: str, delay: float | None = None
    ) -> None:
        """Ask for one chat.update of the run message; clicks within the window coalesce."""
        coalesce = self.config.refresh_coalesce_ms / 1000
        refresh_run_message(
            conn, run_id, correlation_id, delay_seconds=coalesce if delay is None else delay
        )

    def _tell(
        self,
        conn: Conn,
        ia: Interaction,
        text: str,
        *,
        run_id: uuid.UUID | None,
        correlation_id: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """An ephemeral answer to the person who clicked, sent by the worker; tagged with
        the run's correlation id when given, else the interaction's."""
        queue_ephemeral(
            conn,
            run_id,
            channel=ia.actor.channel_id,
            user=ia.actor.user_id,
            text=text,
            response_url=ia.response_url,
            correlation_id=ia.correlation_id if correlation_id is None else correlation_id,
            blocks=blocks,
        )

    def _order_changed(self, conn: Conn, run: RunRow, actor: Actor, change: OrderChange) -> None:
        """The run message and the event stream learn about an order change."""
        self._refresh(conn, run.id, run.correlation_id)
        outbox.record_run(
            conn,
            "order_updated",
            run,
            change=change,
            user=actor.user_id,
            participants=orders.count_active(conn, run.id),
        )

    def _open_view(self, ia: Interaction, view: dict[str, Any]) -> None:
        try:
            self.slack.open_view(ia.trigger_id, view)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            code = failure.code
            log.warning("views_open_failed", extra={"slack_error": code})
            text = (
                "That took a moment too long for Slack — please click again."
                if code in ("expired_trigger_id", "exchanged_trigger_id", "network")
                or failure.kind == "transient"
                else failure.hint or f"Slack couldn't open the order form ({code})."
            )
            with self.db.transaction() as conn:
                self._tell(conn, ia, text, run_id=None)

    def notify(
        self, ia: Interaction, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        with self.db.transaction() as conn:
            self._tell(conn, ia, text, run_id=None, blocks=blocks)


def _misplaced(actor: Actor, run: RunRow) -> str | None:
    return misplaced(actor, team_id=run.slack_team_id, channel_id=run.slack_channel_id)


def not_open_text(run: RunRow | RunRecord | None) -> str:
    """Why a run can't take this action."""
    if run is None:
        return "That coffee run doesn't exist any more."
    status = run.view.status if isinstance(run, RunRecord) else run.status
    if status == RunStatus.CLOSED:
        summary = (
            run.view.summary_permalink if isinstance(run, RunRecord) else run.summary_permalink
        )
        return "This coffee run is already closed." + (
            f" {run_blocks.link(summary, 'See the orders')}." if summary else ""
        )
    if status == RunStatus.CANCELED:
        return "This coffee run was canceled."
    if status == RunStatus.FAILED:
        return "This coffee run couldn't complete."
    return "This coffee run isn't open."
