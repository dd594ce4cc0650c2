"""Orders in an open run: the order form, "Use my usual", "I'll go" and canceling one's
order. Each change is one transaction under the run's share lock, with its refresh, event
and confirmation written as jobs in it."""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, replace

from coffeebuddy.db import Conn
from coffeebuddy.domain.models import MAX_ORDER_CHARS, RunStatus
from coffeebuddy.domain.text import clean_user_text
from coffeebuddy.service.common import Actor, Interaction, OrderForm
from coffeebuddy.service.run_access import _misplaced, not_open_text
from coffeebuddy.service.run_inbox import RunInbox
from coffeebuddy.slack import blockkit, modal_blocks
from coffeebuddy.store import orders, people, runs
from coffeebuddy.store.people import Person
from coffeebuddy.store.runs import RunRow

log = logging.getLogger(__name__)


def normalize_order_text(text: str | None) -> str:
    # Cleaned like a run note: no zero-width or bidi controls, single spaces.
    return clean_user_text(text)


def order_text_error(text: str) -> str | None:
    if not text:
        return "Tell us what you'd like, e.g. “oat flat white”."
    if len(text) > MAX_ORDER_CHARS:
        return f"Keep it under {MAX_ORDER_CHARS} characters ({len(text)} now)."
    return None


class OrderActions(RunInbox):
    def open_order_modal(self, ia: Interaction) -> None:
        """Place order / Edit my order: a modal, pre-filled with the current order."""
        record = self._load_open(ia)
        if record is None:
            return
        mine = next((o for o in record.view.orders if o.slack_user_id == ia.actor.user_id), None)
        view = modal_blocks.order_modal(
            str(ia.run),
            current_text=mine.text if mine else None,
            volunteer=mine.volunteer if mine else False,
            pickup=record.view.pickup_time,
            note=record.view.note,
            response_url=ia.response_url,
        )
        self._open_view(ia, view)

    def use_usual(self, ia: Interaction) -> None:
        """ "Use my usual": queued in the inbox when it can simply be applied, else now."""
        if self.config.inbox and self._to_inbox(
            "inbox_usual",
            ia.actor,
            ia.run,
            ia.correlation_id,
            {"action": "use_usual", "trigger_id": ia.trigger_id, "response_url": ia.response_url},
        ):
            return
        self.apply_usual(ia)

    def apply_usual(self, ia: Interaction) -> None:
        actor, run_id = ia.actor, ia.run
        with self.db.transaction() as conn:
            run = self._lock_open(conn, ia, share=True)
            if run is None:
                return
            user = self._upsert_user(conn, actor)
            text = orders.usual(conn, user.id, run.channel_id)
            if text is not None:
                self._warm_profile(conn, actor, user)
                current = orders.current(conn, run_id, user.id)
                volunteer = bool(current and current.volunteer)
                if orders.upsert(conn, run_id, user.id, text, volunteer=volunteer) is None:
                    # Their usual is already their order: a repeated click changes nothing,
                    # so it writes nothing (no refresh, event or confirmation job).
                    log.info("order_unchanged", extra={"action": "use_usual"})
                    return
                orders.touch_usual(conn, user.id, run.channel_id)
                self._order_changed(conn, run, actor, "changed" if current else "placed")
                self._tell(
                    conn,
                    ia,
                    f"☕ Ordered your usual: *{blockkit.escape(text)}*. "
                    "Edit or cancel it until the run closes.",
                    run_id=run_id,
                    correlation_id=run.correlation_id,
                )
                return
        # No usual yet: the one click opens the order form instead.
        self.open_order_modal(ia)

    def cancel_order(self, ia: Interaction) -> None:
        # What the inbox holds (an order of theirs, too) is applied first, then canceled.
        self.drain_inbox(ia.run)
        with self.db.transaction() as conn:
            run = self._lock_open(conn, ia, share=True)
            if run is None:
                return
            user = self._user(conn, ia.actor)
            if user is None or not orders.cancel(conn, ia.run, user.id):
                self._tell(
                    conn,
                    ia,
                    "You have no order in this run.",
                    run_id=ia.run,
                    correlation_id=run.correlation_id,
                )
                return
            self._order_changed(conn, run, ia.actor, "canceled")
            self._tell(
                conn,
                ia,
                "Your order is canceled. Changed your mind? Order again "
                "any time before the run closes.",
                run_id=ia.run,
                correlation_id=run.correlation_id,
            )

    def ill_go(self, ia: Interaction) -> None:
        """One tap on *I'll go*: the same rule as the order form's tick (a volunteer is
        someone with an order). With an order it is marked; without one, the usual is
        ordered; with neither, the order form opens with the tick set."""
        # What the inbox holds (an order of theirs, too) is applied first.
        self.drain_inbox(ia.run)
        with self.db.transaction() as conn:
            run = self._lock_open(conn, ia)
            if run is None:
                return
            if self._volunteer(conn, ia, run):
                return
        # Nothing to order yet: the form, with "I'll go" ticked.
        record = self._load_open(ia)
        if record is None:
            return
        view = modal_blocks.order_modal(
            str(ia.run),
            current_text=None,
            volunteer=True,
            pickup=record.view.pickup_time,
            note=record.view.note,
            response_url=ia.response_url,
        )
        self._open_view(ia, view)

    def _volunteer(self, conn: Conn, ia: Interaction, run: RunRow) -> bool:
        """Mark the actor's order (or their usual, ordered now) as a volunteer's; False
        when they have neither and the order form must ask."""
        actor, run_id = ia.actor, ia.run
        user = self._upsert_user(conn, actor)
        current = orders.current(conn, run_id, user.id)
        usual = orders.usual(conn, user.id, run.channel_id)
        if current is not None and current.volunteer:
            self._tell(
                conn,
                ia,
                "You've already said you'll go — thank you! The runner is picked at close.",
                run_id=run_id,
                correlation_id=run.correlation_id,
            )
            return True
        text = current.text if current is not None else usual
        if text is None:
            return False
        orders.upsert(conn, run_id, user.id, text, volunteer=True)
        if current is None:
            orders.touch_usual(conn, user.id, run.channel_id)
        self._order_changed(conn, run, actor, "changed" if current else "placed")
        ordered = "" if current else f" I ordered your usual: *{blockkit.escape(text)}*."
        self._tell(
            conn,
            ia,
            f"🙌 You volunteered to go — thank you!{ordered} A volunteer is picked "
            "first when the run closes.",
            run_id=run_id,
            correlation_id=run.correlation_id,
        )
        log.info("order_placed", extra={"action": "ill_go", "user_id": actor.user_id})
        return True

    # ---- the order modal ---------------------------------------------------------------

    def submit_order(
        self, actor: Actor, run_id: uuid.UUID, form: OrderForm
    ) -> dict[str, str] | None:
        """Save the modal's order; field errors (keyed by block id) keep the modal open.
        The text is checked here; an order for an open run then goes to the inbox."""
        form = replace(form, text=normalize_order_text(form.text))
        problem = order_text_error(form.text)
        if problem:
            return {"order": problem}
        if self.config.inbox and self._to_inbox(
            "inbox_order",
            actor,
            run_id,
            None,
            {"action": "submit_order", **asdict(form)},
        ):
            return None
        return self.apply_order(actor, run_id, form)

    def apply_inboxed_order(self, actor: Actor, run_id: uuid.UUID, form: OrderForm) -> None:
        """The worker's half of an inboxed order form: the modal has closed, so a refusal
        (the run closed meanwhile) reaches the person as an ephemeral message instead."""
        errors = self.apply_order(actor, run_id, form)
        if not errors:
            return
        with self.db.transaction() as conn:
            run = runs.view(conn, run_id)
            if run is not None:
                self._tell(
                    conn,
                    _in_channel(actor, run, form.response_url),
                    next(iter(errors.values())),
                    run_id=run_id,
                )

    def apply_order(
        self, actor: Actor, run_id: uuid.UUID, form: OrderForm
    ) -> dict[str, str] | None:
        """Save an order form's checked text now."""
        text, volunteer = form.text, form.volunteer
        with self.db.transaction() as conn:
            run = runs.share(conn, run_id)
            if run is not None and (refusal := _misplaced(actor, run)):
                return {"order": refusal}
            if run is None or run.status != RunStatus.OPEN:
                return {"order": not_open_text(run) + " Your order wasn't saved."}
            user = self._upsert_orderer(conn, actor)
            saved = orders.upsert(conn, run_id, user.id, text, volunteer=volunteer)
            if saved is None:
                # The same order resubmitted: nothing changed, nothing to write or say.
                log.info("order_unchanged", extra={"action": "modal"})
                return None
            orders.save_usual(conn, user.id, run.channel_id, text)
            self._order_changed(conn, run, actor, "placed" if saved.inserted else "changed")
            verb = "Got your order" if saved.inserted else "Updated your order"
            extra = " You volunteered to go — thank you!" if volunteer else ""
            self._tell(
                conn,
                _in_channel(actor, run, form.response_url),
                f"☕ {verb}: *{blockkit.escape(text)}*. It's also your usual in this channel "
                f"now.{extra}",
                run_id=run_id,
            )
        return None

    def _user(self, conn: Conn, actor: Actor) -> Person | None:
        return people.find(conn, actor.user_id)


def _in_channel(actor: Actor, run: RunRow, response_url: str | None) -> Interaction:
    """A form's answer: forms carry no channel, so it goes to the run's channel as an
    ephemeral message, tagged with the run's correlation id: through the response_url of
    the click that opened the form when it has one (the worker falls back to
    chat.postEphemeral when that URL is refused, spent or expired)."""
    return Interaction(
        Actor(user_id=actor.user_id, channel_id=run.slack_channel_id),
        run.correlation_id,
        run_id=run.id,
        response_url=response_url,
    )
