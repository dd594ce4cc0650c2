"""The coffee run as the web layer sees it: one method per thing a person can do.

Each method does its reads and writes in one transaction and writes, in that same
transaction, the jobs for every Slack side effect. The only Slack calls made here are the
ones Slack's deadlines force into the request: `views.open` and (cached) `users.info`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb

import coffeebuddy.domain.command as cmdparse
from coffeebuddy import db
from coffeebuddy.config import Config
from coffeebuddy.db import Conn, Database
from coffeebuddy.domain.models import MAX_ORDER_CHARS, RunStatus
from coffeebuddy.domain.text import clean_user_text
from coffeebuddy.metrics import RUNS
from coffeebuddy.service import inbox, reminders
from coffeebuddy.service.closing import cancel_locked_run, close_locked_run
from coffeebuddy.service.common import DISABLED_TEXT, OTHER_WORKSPACE_TEXT, Actor, Reply, misplaced
from coffeebuddy.service.effects import queue_ephemeral, refresh_run_message, warm_profile
from coffeebuddy.service.people import People
from coffeebuddy.slack import blockkit, modal_blocks, run_blocks
from coffeebuddy.slack.api import classify
from coffeebuddy.slack.gateway import SlackGateway
from coffeebuddy.store import outbox, queue
from coffeebuddy.store.runs import RunRecord, load_run

log = logging.getLogger(__name__)
# `order_updated`'s kinds of change (events/schemas/order_updated.schema.json).
OrderChange = Literal["placed", "changed", "canceled"]


def normalize_order_text(text: str | None) -> str:
    # Cleaned like a run note: no zero-width or bidi controls, single spaces.
    return clean_user_text(text)


def order_text_error(text: str) -> str | None:
    if not text:
        return "Tell us what you'd like, e.g. “oat flat white”."
    if len(text) > MAX_ORDER_CHARS:
        return f"Keep it under {MAX_ORDER_CHARS} characters ({len(text)} now)."
    return None


class RunService:
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
            channel = db.one(
                conn, "get_channel_by_slack_id", {"slack_channel_id": actor.channel_id}
            )
        team = channel["slack_team_id"] if channel is not None else ""
        if team and actor.team_id and actor.team_id != team:
            log.warning("other_workspace", extra={"team_id": actor.team_id})
            return OTHER_WORKSPACE_TEXT
        return None

    def start(
        self,
        actor: Actor,
        command: cmdparse.StartRun,
        *,
        response_url: str,
        correlation_id: str,
    ) -> Reply:
        """`/coffee [time] [note]`: a new run in the channel, in one transaction (the
        workspace and channel checks included). Only a time from someone whose profile
        is not cached yet costs a users.info call first, and a second transaction."""
        # The start of the bot's start step (the pilot's outcome time), before any lookup.
        received_at = self.clock()
        reply = self._start_run(actor, command, response_url, correlation_id, received_at, tz=None)
        if reply is not None:
            return reply
        # Profile unknown (the worker warms it when it first sees someone): ask Slack now,
        # outside any transaction, then try again with the answer.
        tz = self.people.time_zone(actor.user_id)
        reply = self._start_run(actor, command, response_url, correlation_id, received_at, tz=tz)
        assert reply is not None
        return reply

    def _start_run(
        self,
        actor: Actor,
        command: cmdparse.StartRun,
        response_url: str,
        correlation_id: str,
        received_at: datetime,
        *,
        tz: ZoneInfo | None,
    ) -> Reply | None:
        """None when the command has a time and the person's time zone is not known yet
        (`tz` None and no fresh profile cached): nothing is recorded then."""
        note = command.note
        with self.db.transaction() as conn:
            channel = db.one(
                conn,
                "upsert_channel",
                {
                    "slack_channel_id": actor.channel_id,
                    "team_id": actor.team_id,
                    "name": actor.channel_name[:200],
                },
            )
            assert channel is not None
            team = channel["slack_team_id"]
            if team and actor.team_id and actor.team_id != team:
                # Another workspace's channel (the upsert keeps the first team): refuse,
                # and record nothing.
                conn.rollback()
                log.warning("other_workspace", extra={"team_id": actor.team_id})
                return Reply(OTHER_WORKSPACE_TEXT)
            if not channel["enabled"]:
                # Disabled means nothing is recorded: undo the channel upsert too.
                conn.rollback()
                return Reply(DISABLED_TEXT)
            # An open run already here shows as a conflict of insert_run below (rare: no
            # read for it on the way).
            user = self._upsert_user(conn, actor)
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
            first = channel["onboarded_at"] is None
            run = db.one(
                conn,
                "insert_run",
                {
                    "channel_id": channel["id"],
                    "initiator_user_id": user["id"],
                    "pickup_time": pickup,
                    "pickup_note": note,
                    "correlation_id": correlation_id,
                    "first_in_channel": first,
                    "command_at": received_at,
                },
            )
            if run is None:
                # The channel's one open run exists already (or another /coffee just won
                # the race for it): nothing of this command is kept.
                conn.rollback()
                with self.db.transaction() as conn2:
                    existing = db.one(
                        conn2, "get_open_run_for_channel", {"channel_id": channel["id"]}
                    )
                return Reply(_already_open(existing) if existing else "Please try again.")
            if first:
                db.run(conn, "mark_channel_onboarded", {"channel_id": channel["id"]})
            outbox.record(
                conn,
                "run_created",
                run_id=run["id"],
                channel_id=actor.channel_id,
                correlation_id=correlation_id,
                initiator=actor.user_id,
                pickup_time=pickup.isoformat() if pickup else None,
                has_note=bool(note),
                first_in_channel=first,
            )
            if pickup is not None:  # a new run has no reminders to clear
                reminders.schedule(
                    conn,
                    run["id"],
                    pickup=pickup,
                    settings=channel,
                    channel_id=actor.channel_id,
                    correlation_id=correlation_id,
                    now=self.clock(),
                )
            queue.enqueue(
                conn,
                queue.POST_RUN_MESSAGE,
                {"run_id": str(run["id"]), "response_url": response_url, "actor": actor.user_id},
                run_id=run["id"],
                correlation_id=correlation_id,
            )
        RUNS.labels("started").inc()
        # Not "you started": the post may still fail (say the bot isn't in the channel),
        # and the worker then tells the starter why.
        return Reply("☕ Starting your coffee run…")

    # ---- buttons ---------------------------------------------------------------------

    def open_order_modal(
        self,
        actor: Actor,
        run_id: uuid.UUID,
        *,
        trigger_id: str,
        response_url: str | None,
        correlation_id: str,
    ) -> None:
        """Place order / Edit my order: a modal, pre-filled with the current order."""
        record = self._load_open(actor, run_id, response_url, correlation_id)
        if record is None:
            return
        mine = next((o for o in record.view.orders if o.slack_user_id == actor.user_id), None)
        view = modal_blocks.order_modal(
            str(run_id),
            current_text=mine.text if mine else None,
            volunteer=mine.volunteer if mine else False,
            pickup=record.view.pickup_time,
            note=record.view.note,
        )
        self._open_view(actor, trigger_id, view, response_url, correlation_id)

    def use_usual(
        self,
        actor: Actor,
        run_id: uuid.UUID,
        *,
        trigger_id: str,
        response_url: str | None,
        correlation_id: str,
    ) -> None:
        """ "Use my usual": queued in the inbox when it can simply be applied, else now."""
        if self.config.inbox and self._to_inbox(
            "inbox_usual",
            actor,
            run_id,
            correlation_id,
            {"action": "use_usual", "trigger_id": trigger_id, "response_url": response_url},
        ):
            return
        self.apply_usual(
            actor,
            run_id,
            trigger_id=trigger_id,
            response_url=response_url,
            correlation_id=correlation_id,
        )

    def apply_usual(
        self,
        actor: Actor,
        run_id: uuid.UUID,
        *,
        trigger_id: str,
        response_url: str | None,
        correlation_id: str,
    ) -> None:
        with self.db.transaction() as conn:
            run = self._lock_open(conn, actor, run_id, response_url, correlation_id, share=True)
            if run is None:
                return
            user = self._upsert_user(conn, actor)
            pref = db.one(
                conn, "get_preference", {"user_id": user["id"], "channel_id": run["channel_id"]}
            )
            if pref is not None:
                self._warm_profile(conn, actor, user)
                text = pref["last_order_text"]
                current = db.one(
                    conn, "get_active_order", {"run_id": run_id, "user_id": user["id"]}
                )
                changed = db.one(
                    conn,
                    "upsert_order",
                    {
                        "run_id": run_id,
                        "user_id": user["id"],
                        "order_text": text,
                        "volunteer": bool(current and current["volunteer"]),
                    },
                )
                if changed is None:
                    # Their usual is already their order: a repeated click changes nothing,
                    # so it writes nothing (no refresh, event or confirmation job).
                    log.info("order_unchanged", extra={"action": "use_usual"})
                    return
                db.run(
                    conn,
                    "touch_preference",
                    {"user_id": user["id"], "channel_id": run["channel_id"]},
                )
                self._order_changed(conn, run, actor, "changed" if current else "placed")
                self._tell(
                    conn,
                    run_id,
                    actor,
                    f"☕ Ordered your usual: *{blockkit.escape(text)}*. "
                    "Edit or cancel it until the run closes.",
                    response_url,
                    run["correlation_id"],
                )
                return
        # No usual yet: the one click opens the order form instead.
        self.open_order_modal(
            actor,
            run_id,
            trigger_id=trigger_id,
            response_url=response_url,
            correlation_id=correlation_id,
        )

    def cancel_order(
        self, actor: Actor, run_id: uuid.UUID, *, response_url: str | None, correlation_id: str
    ) -> None:
        # What the inbox holds (an order of theirs, too) is applied first, then canceled.
        self.drain_inbox(run_id)
        with self.db.transaction() as conn:
            run = self._lock_open(conn, actor, run_id, response_url, correlation_id, share=True)
            if run is None:
                return
            user = db.one(conn, "get_user_by_slack_id", {"slack_user_id": actor.user_id})
            canceled = user is not None and db.one(
                conn, "cancel_order", {"run_id": run_id, "user_id": user["id"]}
            )
            if not canceled:
                self._tell(
                    conn,
                    run_id,
                    actor,
                    "You have no order in this run.",
                    response_url,
                    run["correlation_id"],
                )
                return
            self._order_changed(conn, run, actor, "canceled")
            self._tell(
                conn,
                run_id,
                actor,
                "Your order is canceled. Changed your mind? Order again "
                "any time before the run closes.",
                response_url,
                run["correlation_id"],
            )

    def ill_go(
        self,
        actor: Actor,
        run_id: uuid.UUID,
        *,
        trigger_id: str,
        response_url: str | None,
        correlation_id: str,
    ) -> None:
        """One tap on *I'll go*: the same rule as the order form's tick (a volunteer is
        someone with an order). With an order it is marked; without one, the usual is
        ordered; with neither, the order form opens with the tick set."""
        # What the inbox holds (an order of theirs, too) is applied first.
        self.drain_inbox(run_id)
        with self.db.transaction() as conn:
            run = self._lock_open(conn, actor, run_id, response_url, correlation_id)
            if run is None:
                return
            user = self._upsert_user(conn, actor)
            current = db.one(conn, "get_active_order", {"run_id": run_id, "user_id": user["id"]})
            pref = db.one(
                conn, "get_preference", {"user_id": user["id"], "channel_id": run["channel_id"]}
            )
            if current is not None and current["volunteer"]:
                self._tell(
                    conn,
                    run_id,
                    actor,
                    "You've already said you'll go — thank you! The runner is picked at close.",
                    response_url,
                    run["correlation_id"],
                )
                return
            source = current if current is not None else pref
            if source is not None:
                text = source["order_text"] if current is not None else source["last_order_text"]
                db.one(
                    conn,
                    "upsert_order",
                    {
                        "run_id": run_id,
                        "user_id": user["id"],
                        "order_text": text,
                        "volunteer": True,
                    },
                )
                if current is None:
                    db.run(
                        conn,
                        "touch_preference",
                        {"user_id": user["id"], "channel_id": run["channel_id"]},
                    )
                self._order_changed(conn, run, actor, "changed" if current else "placed")
                ordered = "" if current else f" I ordered your usual: *{blockkit.escape(text)}*."
                self._tell(
                    conn,
                    run_id,
                    actor,
                    f"🙌 You volunteered to go — thank you!{ordered} A volunteer is picked "
                    "first when the run closes.",
                    response_url,
                    run["correlation_id"],
                )
                log.info("order_placed", extra={"action": "ill_go", "user_id": actor.user_id})
                return
        # Nothing to order yet: the form, with "I'll go" ticked.
        record = self._load_open(actor, run_id, response_url, correlation_id)
        if record is None:
            return
        view = modal_blocks.order_modal(
            str(run_id),
            current_text=None,
            volunteer=True,
            pickup=record.view.pickup_time,
            note=record.view.note,
        )
        self._open_view(actor, trigger_id, view, response_url, correlation_id)

    def cancel_run_prompt(
        self, actor: Actor, run_id: uuid.UUID, *, response_url: str | None, correlation_id: str
    ) -> None:
        """The menu's "Cancel run…": the starter (or an admin) gets the real button, with
        its confirm dialog; nothing changes yet."""
        if not self._may_manage(actor, run_id, response_url, correlation_id):
            return
        with self.db.transaction() as conn:
            run = self._lock_open(conn, actor, run_id, response_url, correlation_id)
            if run is None:
                return
            queue_ephemeral(
                conn,
                run_id,
                channel=actor.channel_id,
                user=actor.user_id,
                text="Cancel the coffee run?",
                response_url=response_url,
                correlation_id=run["correlation_id"],
                blocks=run_blocks.cancel_run_prompt(str(run_id)),
            )

    def close_run(
        self, actor: Actor, run_id: uuid.UUID, *, response_url: str | None, correlation_id: str
    ) -> None:
        if not self._may_manage(actor, run_id, response_url, correlation_id):
            return
        self.drain_inbox(run_id)
        with self.db.transaction() as conn:
            run = self._lock_open(conn, actor, run_id, response_url, correlation_id)
            if run is None:
                return
            outcome = close_locked_run(conn, run, closed_by=actor.user_id)
            if outcome.status is RunStatus.CANCELED:
                self._tell(
                    conn,
                    run_id,
                    actor,
                    "Nobody ordered, so I canceled the run.",
                    response_url,
                    run["correlation_id"],
                )
        outcome.count()

    def cancel_run(
        self, actor: Actor, run_id: uuid.UUID, *, response_url: str | None, correlation_id: str
    ) -> None:
        if not self._may_manage(actor, run_id, response_url, correlation_id):
            return
        with self.db.transaction() as conn:
            run = self._lock_open(conn, actor, run_id, response_url, correlation_id)
            if run is None:
                return
            cancel_locked_run(
                conn,
                run,
                reason="canceled",
                by=actor.user_id,
                text=f"<@{actor.user_id}> canceled it.",
            )
            self._tell(
                conn,
                run_id,
                actor,
                "You canceled the coffee run.",
                response_url,
                run["correlation_id"],
            )
        RUNS.labels("canceled").inc()
        log.info("run_canceled", extra={"user_id": actor.user_id})

    # ---- changing the pickup time or note --------------------------------------------

    def open_run_modal(
        self,
        actor: Actor,
        run_id: uuid.UUID,
        *,
        trigger_id: str,
        response_url: str | None,
        correlation_id: str,
    ) -> None:
        """Edit time/note: the initiator's (or an admin's) form, filled with what is set."""
        if not self._may_manage(actor, run_id, response_url, correlation_id):
            return
        record = self._load_open(actor, run_id, response_url, correlation_id)
        if record is None:
            return
        pickup_local = None
        if record.view.pickup_time is not None:
            tz = self.people.time_zone(actor.user_id)
            pickup_local = record.view.pickup_time.astimezone(tz).strftime("%H:%M")
        view = modal_blocks.run_modal(str(run_id), pickup_local=pickup_local, note=record.view.note)
        self._open_view(actor, trigger_id, view, response_url, correlation_id)

    def submit_run_edit(
        self, actor: Actor, run_id: uuid.UUID, time_text: str, note_text: str
    ) -> dict[str, str] | None:
        """Save a new pickup time and note; the reminders move with the pickup time.
        Field errors (keyed by block id) keep the form open."""
        try:
            spec = cmdparse.parse_pickup(time_text)
        except cmdparse.CommandError as exc:
            return {run_blocks.PICKUP_BLOCK_ID: exc.problem}
        try:
            note = cmdparse.clean_note(note_text)
        except cmdparse.CommandError as exc:
            return {run_blocks.NOTE_BLOCK_ID: exc.problem}
        pickup = None
        if spec is not None:
            try:
                pickup = cmdparse.resolve_pickup(
                    spec, self.clock(), self.people.time_zone(actor.user_id)
                )
            except cmdparse.CommandError as exc:
                return {run_blocks.PICKUP_BLOCK_ID: exc.problem}
        # Checked again on submit: a forged submission from someone else changes nothing.
        with self.db.transaction() as conn:
            row = db.one(conn, "get_run_view", {"run_id": run_id})
        if row is None:
            return {run_blocks.PICKUP_BLOCK_ID: _not_open_text(None)}
        if refusal := _misplaced(actor, row):
            return {run_blocks.PICKUP_BLOCK_ID: refusal}
        if not self._is_manager(actor, row):
            log.warning("not_allowed", extra={"action": "edit_run", "user_id": actor.user_id})
            refusal = "Only whoever started this run, or an admin, can change it."
            return {run_blocks.PICKUP_BLOCK_ID: refusal}
        with self.db.transaction() as conn:
            run = db.one(conn, "lock_run", {"run_id": run_id})
            if run is None or run["status"] != RunStatus.OPEN:
                return {run_blocks.PICKUP_BLOCK_ID: _not_open_text(run)}
            db.run(
                conn,
                "update_run_details",
                {"run_id": run_id, "pickup_time": pickup, "pickup_note": note},
            )
            reminders.schedule(
                conn,
                run_id,
                pickup=pickup,
                settings=run,
                channel_id=run["slack_channel_id"],
                correlation_id=run["correlation_id"],
                now=self.clock(),
            )
            self._refresh(conn, run_id, run["correlation_id"], delay=0)
            outbox.record(
                conn,
                "run_updated",
                run_id=run_id,
                channel_id=run["slack_channel_id"],
                correlation_id=run["correlation_id"],
                change="details_changed",
                user=actor.user_id,
                pickup_time=pickup.isoformat() if pickup else None,
                has_note=bool(note),
            )
        log.info("run_details_changed", extra={"user_id": actor.user_id})
        return None

    # ---- the order modal ---------------------------------------------------------------

    def submit_order(
        self, actor: Actor, run_id: uuid.UUID, text: str, *, volunteer: bool
    ) -> dict[str, str] | None:
        """Save the modal's order; field errors (keyed by block id) keep the modal open.
        The text is checked here; an order for an open run then goes to the inbox."""
        text = normalize_order_text(text)
        problem = order_text_error(text)
        if problem:
            return {"order": problem}
        if self.config.inbox and self._to_inbox(
            "inbox_order",
            actor,
            run_id,
            None,
            {"action": "submit_order", "text": text, "volunteer": volunteer},
        ):
            return None
        return self.apply_order(actor, run_id, text, volunteer=volunteer)

    def apply_inboxed_order(
        self, actor: Actor, run_id: uuid.UUID, text: str, *, volunteer: bool
    ) -> None:
        """The worker's half of an inboxed order form: the modal has closed, so a refusal
        (the run closed meanwhile) reaches the person as an ephemeral message instead."""
        errors = self.apply_order(actor, run_id, text, volunteer=volunteer)
        if not errors:
            return
        with self.db.transaction() as conn:
            row = db.one(conn, "get_run_view", {"run_id": run_id})
            if row is not None:
                self._tell(
                    conn,
                    run_id,
                    Actor(user_id=actor.user_id, channel_id=row["slack_channel_id"]),
                    next(iter(errors.values())),
                    None,
                    row["correlation_id"],
                )

    def apply_order(
        self, actor: Actor, run_id: uuid.UUID, text: str, *, volunteer: bool
    ) -> dict[str, str] | None:
        """Save an order form's checked text now."""
        with self.db.transaction() as conn:
            run = db.one(conn, "share_run", {"run_id": run_id})
            if run is not None and (refusal := _misplaced(actor, run)):
                return {"order": refusal}
            if run is None or run["status"] != RunStatus.OPEN:
                return {"order": _not_open_text(run) + " Your order wasn't saved."}
            user = self._upsert_orderer(conn, actor)
            saved = db.one(
                conn,
                "upsert_order",
                {
                    "run_id": run_id,
                    "user_id": user["id"],
                    "order_text": text,
                    "volunteer": volunteer,
                },
            )
            if saved is None:
                # The same order resubmitted: nothing changed, nothing to write or say.
                log.info("order_unchanged", extra={"action": "modal"})
                return None
            db.run(
                conn,
                "save_preference",
                {"user_id": user["id"], "channel_id": run["channel_id"], "order_text": text},
            )
            self._order_changed(conn, run, actor, "placed" if saved["inserted"] else "changed")
            verb = "Got your order" if saved["inserted"] else "Updated your order"
            extra = " You volunteered to go — thank you!" if volunteer else ""
            self._tell(
                conn,
                run_id,
                Actor(user_id=actor.user_id, channel_id=run["slack_channel_id"]),
                f"☕ {verb}: *{blockkit.escape(text)}*. It's also your usual in this channel "
                f"now.{extra}",
                None,
                run["correlation_id"],
            )
        return None

    # ---- the inbox ---------------------------------------------------------------------------

    def apply_inboxed(self, action: Mapping[str, Any], correlation_id: str | None) -> None:
        """Apply one action the web acknowledged through the inbox, as the web would have."""
        actor = Actor(
            user_id=action["user_id"],
            channel_id=action.get("channel_id") or "",
            team_id=action.get("team_id") or "",
            user_name=action.get("user_name") or "",
        )
        run_id = uuid.UUID(action["run_id"])
        if action["action"] == "use_usual":
            self.apply_usual(
                actor,
                run_id,
                trigger_id=action.get("trigger_id") or "",
                response_url=action.get("response_url"),
                correlation_id=correlation_id or "",
            )
        elif action["action"] == "submit_order":
            self.apply_inboxed_order(
                actor, run_id, action["text"], volunteer=bool(action.get("volunteer"))
            )
        else:
            raise ValueError(f"unknown inboxed action {action['action']!r}")

    def drain_inbox(self, run_id: uuid.UUID | str) -> None:
        """Before a close, a cancel of one's order or "I'll go": apply the run's actions
        still in the inbox, in arrival order and after any batch a worker is applying (see
        `coffeebuddy.service.inbox`), so that the run sees every action in the order it
        came. Nothing to do (not even a query) with the inbox off."""
        if self.config.inbox:
            inbox.drain(self, run_id)

    # ---- helpers ---------------------------------------------------------------------------

    def _to_inbox(
        self,
        query: str,
        actor: Actor,
        run_id: uuid.UUID,
        correlation_id: str | None,
        action: dict[str, Any],
    ) -> bool:
        """Queue `action` for the worker with one statement (see sql/queries/inbox.sql);
        False when the query's conditions don't hold and the caller must act now."""
        payload = {
            **action,
            "run_id": str(run_id),
            "user_id": actor.user_id,
            "user_name": actor.user_name[:200],
            "team_id": actor.team_id,
            "channel_id": actor.channel_id,
        }
        params = {
            "payload": Jsonb(payload),
            "max_attempts": 4,
            "run_id": run_id,
            "correlation_id": correlation_id,
            "slack_user_id": actor.user_id,
            "slack_channel_id": actor.channel_id,
            "team_id": actor.team_id,
            # An order form that changes nothing is not queued (see inbox_order).
            "order_text": action.get("text"),
            "volunteer": bool(action.get("volunteer")),
        }
        with self.db.statement() as conn:
            if query == "inbox_usual":
                row = db.one(conn, "inbox_usual", params)
            else:
                row = db.one(conn, "inbox_order", params)
        return row is not None

    def _may_manage(
        self, actor: Actor, run_id: uuid.UUID, response_url: str | None, correlation_id: str
    ) -> bool:
        """May `actor` close or cancel this run? Tells them why not. Checked before the run
        row is locked, because it may have to ask Slack whether they are a workspace admin."""
        with self.db.transaction() as conn:
            row = db.one(conn, "get_run_view", {"run_id": run_id})
            if row is None:
                self._tell(conn, run_id, actor, _not_open_text(None), response_url, correlation_id)
                return False
            if refusal := _misplaced(actor, row):
                self._tell(conn, None, actor, refusal, response_url, correlation_id)
                return False
            initiator = row["initiator_slack_id"]
        allowed = self._is_manager(actor, row)
        if not allowed:
            with self.db.transaction() as conn:
                self._tell(
                    conn,
                    run_id,
                    actor,
                    f"Only <@{initiator}>, who started this run, or a CoffeeBuddy admin can "
                    "change, close or cancel it.",
                    response_url,
                    row["correlation_id"],
                )
                log.info("not_allowed", extra={"action": "manage_run", "user_id": actor.user_id})
        return allowed

    def _load_open(
        self, actor: Actor, run_id: uuid.UUID, response_url: str | None, correlation_id: str
    ) -> RunRecord | None:
        """The run, if it is still open; otherwise tell `actor` why not."""
        with self.db.transaction() as conn:
            record = load_run(conn, run_id)
            refusal = record and misplaced(
                actor, team_id=record.slack_team_id, channel_id=record.view.slack_channel_id
            )
            if refusal:
                self._tell(conn, None, actor, refusal, response_url, correlation_id)
                return None
            if record is None or record.view.status is not RunStatus.OPEN:
                self._tell(
                    conn, run_id, actor, _not_open_text(record), response_url, correlation_id
                )
                return None
        return record

    def _is_manager(self, actor: Actor, run: Mapping[str, Any]) -> bool:
        """The run's initiator, or a CoffeeBuddy admin of its channel."""
        if actor.user_id == run["initiator_slack_id"]:
            return True
        return self.people.is_admin(actor.user_id, run["channel_admin_ids"])

    def _lock_open(
        self,
        conn: Conn,
        actor: Actor,
        run_id: uuid.UUID,
        response_url: str | None,
        correlation_id: str,
        *,
        share: bool = False,
    ) -> dict[str, Any] | None:
        """Lock the run if it is still open; otherwise tell `actor` why not. Order writes
        `share` the lock: they may go side by side, never beside a close or cancel."""
        if share:
            run = db.one(conn, "share_run", {"run_id": run_id})
        else:
            run = db.one(conn, "lock_run", {"run_id": run_id})
        if run is not None and (refusal := _misplaced(actor, run)):
            self._tell(conn, None, actor, refusal, response_url, correlation_id)
            return None
        if run is None or run["status"] != RunStatus.OPEN:
            self._tell(conn, run_id, actor, _not_open_text(run), response_url, correlation_id)
            return None
        return dict(run)

    def _upsert_user(self, conn: Conn, actor: Actor) -> dict[str, Any]:
        row = db.one(
            conn,
            "upsert_user",
            {"slack_user_id": actor.user_id, "display_name": actor.user_name[:200]},
        )
        assert row is not None
        return dict(row)

    def _upsert_orderer(self, conn: Conn, actor: Actor) -> dict[str, Any]:
        """`_upsert_user` for someone placing an order."""
        row = self._upsert_user(conn, actor)
        self._warm_profile(conn, actor, row)
        return row

    def _warm_profile(self, conn: Conn, actor: Actor, user: Mapping[str, Any]) -> None:
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
        run_id: uuid.UUID | str | None,
        actor: Actor,
        text: str,
        response_url: str | None,
        correlation_id: str,
    ) -> None:
        """An ephemeral answer to the person who clicked, sent by the worker."""
        queue_ephemeral(
            conn,
            run_id,
            channel=actor.channel_id,
            user=actor.user_id,
            text=text,
            response_url=response_url,
            correlation_id=correlation_id,
        )

    def _order_changed(
        self, conn: Conn, run: Mapping[str, Any], actor: Actor, change: OrderChange
    ) -> None:
        """The run message and the event stream learn about an order change."""
        self._refresh(conn, run["id"], run["correlation_id"])
        count = db.one(conn, "count_active_orders", {"run_id": run["id"]})
        outbox.record(
            conn,
            "order_updated",
            run_id=run["id"],
            channel_id=run["slack_channel_id"],
            correlation_id=run["correlation_id"],
            change=change,
            user=actor.user_id,
            participants=int(count["n"]) if count else 0,
        )

    def _open_view(
        self,
        actor: Actor,
        trigger_id: str,
        view: dict[str, Any],
        response_url: str | None,
        correlation_id: str,
    ) -> None:
        try:
            self.slack.open_view(trigger_id, view)
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
                self._tell(conn, None, actor, text, response_url, correlation_id)

    def notify(
        self,
        actor: Actor,
        text: str,
        *,
        response_url: str | None,
        correlation_id: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        with self.db.transaction() as conn:
            queue_ephemeral(
                conn,
                None,
                channel=actor.channel_id,
                user=actor.user_id,
                text=text,
                response_url=response_url,
                correlation_id=correlation_id,
                blocks=blocks,
            )


def _misplaced(actor: Actor, run: Mapping[str, Any]) -> str | None:
    return misplaced(actor, team_id=run["slack_team_id"], channel_id=run["slack_channel_id"])


def _already_open(existing: Any) -> str:
    message = run_blocks.link(existing["message_permalink"], "its message")
    return (
        f"There's already an open coffee run here, started by <@{existing['initiator_slack_id']}>"
        f" — order with the buttons on {message}. A new run can start once it's closed."
    )


def _not_open_text(run: Any) -> str:
    """Why a run can't take this action; `run` is a row, a RunRecord or None."""
    if run is None:
        return "That coffee run doesn't exist any more."
    status = run.view.status if hasattr(run, "view") else run["status"]
    if status == RunStatus.CLOSED:
        summary = run.view.summary_permalink if hasattr(run, "view") else run["summary_permalink"]
        return "This coffee run is already closed." + (
            f" {run_blocks.link(summary, 'See the orders')}." if summary else ""
        )
    if status == RunStatus.CANCELED:
        return "This coffee run was canceled."
    if status == RunStatus.FAILED:
        return "This coffee run couldn't complete."
    return "This coffee run isn't open."
