"""The coffee run as the web layer sees it: one method per thing a person can do.

Each method does its reads and writes in one transaction and writes, in that same
transaction, the jobs for every Slack side effect. The only Slack calls made here are the
ones Slack's deadlines force into the request: `views.open` and (cached) `users.info`.

This module starts, edits, closes and cancels runs; the orders in a run are
`service/orders.py`, the inbox `service/run_inbox.py` and the checks every action shares
`service/run_access.py`, all parts of the one `RunService`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import coffeebuddy.domain.command as cmdparse
from coffeebuddy.config import Config
from coffeebuddy.db import Conn, Database
from coffeebuddy.domain.models import RunStatus
from coffeebuddy.metrics import RUNS
from coffeebuddy.service import reminders
from coffeebuddy.service.closing import cancel_locked_run, close_locked_run
from coffeebuddy.service.common import (
    DISABLED_TEXT,
    OTHER_WORKSPACE_TEXT,
    Actor,
    Interaction,
    Reply,
)
from coffeebuddy.service.orders import OrderActions
from coffeebuddy.service.people import People
from coffeebuddy.service.run_access import _misplaced, not_open_text
from coffeebuddy.service.run_inbox import OrderApplier
from coffeebuddy.slack import modal_blocks, run_blocks
from coffeebuddy.slack.gateway import SlackGateway
from coffeebuddy.store import channels, outbox, queue, runs
from coffeebuddy.store.channels import Channel

log = logging.getLogger(__name__)


class RunService(OrderActions):
    def __init__(
        self,
        database: Database,
        slack: SlackGateway,
        config: Config,
        *,
        people: People,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = database
        self.slack = slack
        self.config = config
        self.clock = clock
        self.people = people

    # ---- /coffee -------------------------------------------------------------------

    def workspace_refusal(self, actor: Actor) -> str | None:
        """Refuse a command in a channel that another workspace's requests set up."""
        with self.db.transaction() as conn:
            channel = channels.find(conn, actor.channel_id)
        team = channel.slack_team_id if channel is not None else ""
        if team and actor.team_id and actor.team_id != team:
            log.warning("other_workspace", extra={"team_id": actor.team_id})
            return OTHER_WORKSPACE_TEXT
        return None

    def start(self, ia: Interaction, command: cmdparse.StartRun) -> Reply:
        """`/coffee [time] [note]`: a new run in the channel, in one transaction (the
        workspace and channel checks included). Only a time from someone whose profile
        is not cached yet costs a users.info call first, and a second transaction."""
        # The start of the bot's start step (the pilot's outcome time), before any lookup.
        received_at = self.clock()
        reply = self._start_run(ia, command, received_at, tz=None)
        if reply is not None:
            return reply
        # Profile unknown (the worker warms it when it first sees someone): ask Slack now,
        # outside any transaction, then try again with the answer.
        tz = self.people.time_zone(ia.actor.user_id)
        reply = self._start_run(ia, command, received_at, tz=tz)
        assert reply is not None
        return reply

    def _start_run(
        self,
        ia: Interaction,
        command: cmdparse.StartRun,
        received_at: datetime,
        *,
        tz: ZoneInfo | None,
    ) -> Reply | None:
        """None when the command has a time and the person's time zone is not known yet
        (`tz` None and no fresh profile cached): nothing is recorded then."""
        with self.db.transaction() as conn:
            channel, refusal = self._channel_for_run(conn, ia.actor)
            if refusal is not None:
                # Nothing is recorded: the channel upsert is undone too.
                conn.rollback()
                return Reply(refusal)
            # An open run already here shows as a conflict of runs.insert below (rare: no
            # read for it on the way).
            user = self._upsert_user(conn, ia.actor)
            pickup = None
            if command.time is not None:
                zone = tz or self.people.cached_time_zone(user)
                if zone is None:
                    conn.rollback()
                    return None
                try:
                    pickup = cmdparse.resolve_pickup(command.time, self.clock(), zone)
                except cmdparse.CommandError as exc:
                    conn.rollback()
                    return Reply(exc.hint)
            first = channel.onboarded_at is None
            run_id = runs.insert(
                conn,
                channel_id=channel.id,
                initiator_user_id=user.id,
                pickup_time=pickup,
                pickup_note=command.note,
                correlation_id=ia.correlation_id,
                first_in_channel=first,
                command_at=received_at,
            )
            if run_id is None:
                # The channel's one open run exists already (or another /coffee just won
                # the race for it): nothing of this command is kept.
                conn.rollback()
                return Reply(self._already_open_text(channel.id))
            if first:
                channels.mark_onboarded(conn, channel.id)
            self._record_start(conn, ia, run_id, channel, pickup, command.note, first=first)
        RUNS.labels("started").inc()
        # Not "you started": the post may still fail (say the bot isn't in the channel),
        # and the worker then tells the starter why.
        return Reply("☕ Starting your coffee run…")

    def _channel_for_run(self, conn: Conn, actor: Actor) -> tuple[Channel, str | None]:
        """The channel's row (recorded now if new), and why no run may start in it."""
        channel = channels.upsert(
            conn, actor.channel_id, team_id=actor.team_id, name=actor.channel_name[:200]
        )
        team = channel.slack_team_id
        if team and actor.team_id and actor.team_id != team:
            # Another workspace's channel (the upsert keeps the first team).
            log.warning("other_workspace", extra={"team_id": actor.team_id})
            return channel, OTHER_WORKSPACE_TEXT
        if not channel.enabled:
            return channel, DISABLED_TEXT
        return channel, None

    def _already_open_text(self, channel_id: uuid.UUID) -> str:
        with self.db.transaction() as conn:
            existing = runs.open_in_channel(conn, channel_id)
        if existing is None:
            return "Please try again."
        message = run_blocks.link(existing.message_permalink, "its message")
        return (
            f"There's already an open coffee run here, started by "
            f"<@{existing.initiator_slack_id}> — order with the buttons on {message}. "
            "A new run can start once it's closed."
        )

    def _record_start(
        self,
        conn: Conn,
        ia: Interaction,
        run_id: uuid.UUID,
        channel: Channel,
        pickup: datetime | None,
        note: str | None,
        *,
        first: bool,
    ) -> None:
        """The new run's event, reminders and message post, in its transaction."""
        outbox.record(
            conn,
            "run_created",
            run_id=run_id,
            channel_id=ia.actor.channel_id,
            correlation_id=ia.correlation_id,
            initiator=ia.actor.user_id,
            pickup_time=pickup.isoformat() if pickup else None,
            has_note=bool(note),
            first_in_channel=first,
        )
        if pickup is not None:  # a new run has no reminders to clear
            reminders.schedule(
                conn,
                run_id,
                pickup=pickup,
                settings=channel,
                channel_id=ia.actor.channel_id,
                correlation_id=ia.correlation_id,
                now=self.clock(),
            )
        queue.enqueue(
            conn,
            queue.POST_RUN_MESSAGE,
            {"run_id": str(run_id), "response_url": ia.response_url, "actor": ia.actor.user_id},
            run_id=run_id,
            correlation_id=ia.correlation_id,
            # A paced kind (coffeebuddy/jobs/kinds.py): posted once /coffee commands pause.
            delay_seconds=self.config.burst_quiet_ms / 1000,
        )

    # ---- closing and canceling -------------------------------------------------------

    def cancel_run_prompt(self, ia: Interaction) -> None:
        """The menu's "Cancel run…": the starter (or an admin) gets the real button, with
        its confirm dialog; nothing changes yet."""
        if not self._may_manage(ia):
            return
        with self.db.transaction() as conn:
            run = self._lock_open(conn, ia)
            if run is None:
                return
            self._tell(
                conn,
                ia,
                "Cancel the coffee run?",
                run_id=ia.run,
                correlation_id=run.correlation_id,
                blocks=run_blocks.cancel_run_prompt(str(ia.run)),
            )

    def close_run(self, ia: Interaction) -> None:
        if not self._may_manage(ia):
            return
        self.drain_inbox(ia.run)
        with self.db.transaction() as conn:
            run = self._lock_open(conn, ia)
            if run is None:
                return
            outcome = close_locked_run(conn, run, closed_by=ia.actor.user_id)
            if outcome.status is RunStatus.CANCELED:
                self._tell(
                    conn,
                    ia,
                    "Nobody ordered, so I canceled the run.",
                    run_id=ia.run,
                    correlation_id=run.correlation_id,
                )
        outcome.count()

    def cancel_run(self, ia: Interaction) -> None:
        if not self._may_manage(ia):
            return
        user_id = ia.actor.user_id
        with self.db.transaction() as conn:
            run = self._lock_open(conn, ia)
            if run is None:
                return
            cancel_locked_run(
                conn, run, reason="canceled", by=user_id, text=f"<@{user_id}> canceled it."
            )
            self._tell(
                conn,
                ia,
                "You canceled the coffee run.",
                run_id=ia.run,
                correlation_id=run.correlation_id,
            )
        RUNS.labels("canceled").inc()
        log.info("run_canceled", extra={"user_id": user_id})

    # ---- changing the pickup time or note --------------------------------------------

    def open_run_modal(self, ia: Interaction) -> None:
        """Edit time/note: the initiator's (or an admin's) form, filled with what is set."""
        if not self._may_manage(ia):
            return
        record = self._load_open(ia)
        if record is None:
            return
        pickup_local = None
        if record.view.pickup_time is not None:
            tz = self.people.time_zone(ia.actor.user_id)
            pickup_local = record.view.pickup_time.astimezone(tz).strftime("%H:%M")
        view = modal_blocks.run_modal(str(ia.run), pickup_local=pickup_local, note=record.view.note)
        self._open_view(ia, view)

    def submit_run_edit(
        self, actor: Actor, run_id: uuid.UUID, time_text: str, note_text: str
    ) -> dict[str, str] | None:
        """Save a new pickup time and note; the reminders move with the pickup time.
        Field errors (keyed by block id) keep the form open."""
        parsed = self._parse_run_edit(actor, time_text, note_text)
        if isinstance(parsed, dict):
            return parsed
        pickup, note = parsed
        # Checked again on submit: a forged submission from someone else changes nothing.
        if refusal := self._edit_refusal(actor, run_id):
            return {run_blocks.PICKUP_BLOCK_ID: refusal}
        with self.db.transaction() as conn:
            run = runs.lock(conn, run_id)
            if run is None or run.status != RunStatus.OPEN:
                return {run_blocks.PICKUP_BLOCK_ID: not_open_text(run)}
            runs.update_details(conn, run_id, pickup_time=pickup, pickup_note=note)
            reminders.schedule(
                conn,
                run_id,
                pickup=pickup,
                settings=run,
                channel_id=run.slack_channel_id,
                correlation_id=run.correlation_id,
                now=self.clock(),
            )
            self._refresh(conn, run_id, run.correlation_id, delay=0)
            outbox.record_run(
                conn,
                "run_updated",
                run,
                change="details_changed",
                user=actor.user_id,
                pickup_time=pickup.isoformat() if pickup else None,
                has_note=bool(note),
            )
        log.info("run_details_changed", extra={"user_id": actor.user_id})
        return None

    def _parse_run_edit(
        self, actor: Actor, time_text: str, note_text: str
    ) -> tuple[datetime | None, str | None] | dict[str, str]:
        """The form's pickup time (resolved in the editor's time zone) and note, or its
        field errors."""
        try:
            spec = cmdparse.parse_pickup(time_text)
        except cmdparse.CommandError as exc:
            return {run_blocks.PICKUP_BLOCK_ID: exc.problem}
        try:
            note = cmdparse.clean_note(note_text)
        except cmdparse.CommandError as exc:
            return {run_blocks.NOTE_BLOCK_ID: exc.problem}
        if spec is None:
            return None, note
        try:
            now = self.clock()
            return cmdparse.resolve_pickup(spec, now, self.people.time_zone(actor.user_id)), note
        except cmdparse.CommandError as exc:
            return {run_blocks.PICKUP_BLOCK_ID: exc.problem}

    def _edit_refusal(self, actor: Actor, run_id: uuid.UUID) -> str | None:
        """Why `actor` may not edit this run (it is gone, elsewhere, or not theirs)."""
        with self.db.transaction() as conn:
            run = runs.view(conn, run_id)
        if run is None:
            return not_open_text(None)
        if refusal := _misplaced(actor, run):
            return refusal
        if not self._is_manager(actor, run):
            log.warning("not_allowed", extra={"action": "edit_run", "user_id": actor.user_id})
            return "Only whoever started this run, or an admin, can change it."
        return None


# `RunInbox.apply_inboxed` calls order actions that `OrderActions` defines: checked here,
# where the whole service is put together.
_applies_orders: type[OrderApplier] = RunService
