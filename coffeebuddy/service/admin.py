"""`/coffee admin`: a channel's settings, its data reset and its audit trail.

Every change is made and audited in one transaction, and authorization is checked again
when a modal is submitted or a button pressed: whatever arrives, a non-admin changes
nothing (and is logged).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from coffeebuddy.config import Config
from coffeebuddy.db import Conn, Database
from coffeebuddy.domain.models import RunStatus
from coffeebuddy.service import reminders
from coffeebuddy.service.closing import cancel_locked_run
from coffeebuddy.service.common import Actor, Interaction, Reply, misplaced
from coffeebuddy.service.effects import queue_ephemeral
from coffeebuddy.service.people import People
from coffeebuddy.slack import admin_blocks
from coffeebuddy.slack.api import classify
from coffeebuddy.slack.gateway import SlackGateway
from coffeebuddy.store import channels, queue, runs
from coffeebuddy.store.channels import Channel

log = logging.getLogger(__name__)

REFUSAL = (
    "Only a CoffeeBuddy admin can do that: the channel's admins, Slack workspace admins "
    "and owners, and the operators' list."
)
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}\Z")
AUDIT_LIMIT = 15


class AdminService:
    def __init__(
        self,
        database: Database,
        slack: SlackGateway,
        config: Config,
        people: People,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = database
        self.slack = slack
        self.config = config
        self.people = people
        self.clock = clock

    # ---- /coffee admin [audit|reset] ----------------------------------------------------

    def command(self, ia: Interaction, action: str) -> Reply:
        actor, trigger_id = ia.actor, ia.trigger_id
        with self.db.transaction() as conn:
            known = channels.find(conn, actor.channel_id)
        if not self.people.is_admin(actor.user_id, known.admin_user_ids if known else ()):
            log.warning("admin_refused", extra={"action": action, "user_id": actor.user_id})
            return Reply(REFUSAL)
        with self.db.transaction() as conn:
            # An admin may configure a channel before its first run.
            channel = channels.upsert(
                conn, actor.channel_id, team_id=actor.team_id, name=actor.channel_name[:200]
            )
        if action == "audit":
            with self.db.transaction() as conn:
                rows = channels.recent_audit(conn, actor.channel_id, limit=AUDIT_LIMIT)
            return Reply(admin_blocks.audit_text(rows))
        if action == "reset":
            text, body = admin_blocks.reset_prompt(actor.channel_id)
            return Reply(text, blocks=body)
        view = admin_blocks.settings_modal(
            actor.channel_id, channel.settings(), self.config.retention_bounds
        )
        try:
            self.slack.open_view(trigger_id, view)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            log.warning("views_open_failed", extra={"slack_error": failure.code})
            return Reply(
                failure.hint
                if failure.kind == "permanent" and failure.hint
                else "Slack couldn't open the settings just now — please try again."
            )
        return Reply("Opening CoffeeBuddy's settings for this channel…")

    # ---- the settings modal ---------------------------------------------------------------

    def submit_settings(
        self, actor: Actor, channel_id: str, values: Mapping[str, Any]
    ) -> dict[str, str] | None:
        """Apply the modal; field errors (keyed by block id) keep it open."""
        with self.db.transaction() as conn:
            current = channels.find(conn, channel_id)
        if current is not None and (wrong := _elsewhere(actor, current, channel_id)):
            log.warning("admin_refused", extra={"action": "settings", "user_id": actor.user_id})
            return {"enabled": wrong}
        if current is None or not self.people.is_admin(actor.user_id, current.admin_user_ids):
            # A forged or stale submission, whatever it holds: refused, logged, nothing written.
            log.warning("admin_refused", extra={"action": "settings", "user_id": actor.user_id})
            return {"enabled": REFUSAL}
        wanted, errors = parse_settings(values, self.config.retention_bounds)
        if errors:
            return errors
        with self.db.transaction() as conn:
            channel = channels.lock(conn, channel_id)
            assert channel is not None
            before = channel.settings()
            changes = {
                key: {"before": _plain(before[key]), "after": _plain(value)}
                for key, value in wanted.items()
                if _plain(before[key]) != _plain(value)
            }
            if not changes:
                return None
            channels.update_settings(conn, channel.id, wanted)
            toggled = changes.pop("enabled", None)
            if toggled is not None:
                canceled = None
                if not wanted["enabled"]:
                    canceled = self._cancel_open_run(conn, channel, actor)
                self._audit(
                    conn,
                    channel,
                    actor,
                    "enable" if wanted["enabled"] else "disable",
                    {"canceled_run": canceled},
                )
            if changes:
                self._audit(conn, channel, actor, "update_config", {"changes": changes})
                self._reschedule_open_run(conn, channel)
            queue_ephemeral(
                conn,
                None,
                channel=channel_id,
                user=actor.user_id,
                text="✅ CoffeeBuddy's settings for this channel are saved.",
                response_url=None,
                correlation_id=None,
            )
        log.info("admin_settings_saved", extra={"user_id": actor.user_id})
        return None

    def _cancel_open_run(self, conn: Conn, channel: Channel, actor: Actor) -> str | None:
        open_run = channels.open_run(conn, channel.id)
        if open_run is None:
            return None
        run = runs.lock(conn, open_run.id)
        if run is None or run.status != RunStatus.OPEN:
            return None
        cancel_locked_run(
            conn,
            run,
            reason="channel_disabled",
            by=actor.user_id,
            text=f"CoffeeBuddy was turned off in this channel by <@{actor.user_id}>.",
        )
        return str(run.id)

    def _reschedule_open_run(self, conn: Conn, channel: Channel) -> None:
        """A new reminder offset or last-call setting applies to the open run too."""
        open_run = channels.open_run(conn, channel.id)
        if open_run is None:
            return
        run = runs.lock(conn, open_run.id)
        if run is None or run.status != RunStatus.OPEN or run.pickup_time is None:
            return
        reminders.schedule(
            conn,
            run.id,
            pickup=run.pickup_time,
            settings=run,
            channel_id=run.slack_channel_id,
            correlation_id=run.correlation_id,
            now=self.clock(),
        )

    # ---- data reset ---------------------------------------------------------------------

    def reset(self, ia: Interaction, channel_id: str) -> None:
        """Delete the channel's runs, orders, usuals, runner stats and pending jobs."""
        actor, response_url, correlation_id = ia.actor, ia.response_url, ia.correlation_id
        with self.db.transaction() as conn:
            current = channels.find(conn, channel_id)
        wrong = _elsewhere(actor, current, channel_id) if current is not None else None
        allowed = (
            current is not None
            and wrong is None
            and self.people.is_admin(actor.user_id, current.admin_user_ids)
        )
        with self.db.transaction() as conn:
            if not allowed:
                log.warning("admin_refused", extra={"action": "reset", "user_id": actor.user_id})
                text = wrong or REFUSAL
                self._tell(conn, actor, channel_id, text, response_url, correlation_id)
                return
            channel = channels.lock(conn, channel_id)
            assert channel is not None
            open_run = channels.open_run(conn, channel.id)
            if open_run is not None and open_run.message_ts:
                # The run's message would keep its buttons; say in it that the run is gone.
                queue.enqueue(
                    conn,
                    queue.REPLACE_MESSAGE,
                    {
                        "channel": channel_id,
                        "ts": open_run.message_ts,
                        "text": "☕ This coffee run was removed when an admin reset the channel's "
                        "CoffeeBuddy data.",
                    },
                    correlation_id=correlation_id,
                )
            counts = channels.reset(conn, channel.id)
            self._audit(conn, channel, actor, "data_reset", counts.details())
            self._tell(
                conn,
                actor,
                channel_id,
                f"🧹 Done: deleted {counts.runs} runs, {counts.orders} orders and "
                f"{counts.preferences} usual orders. Fairness starts from zero.",
                response_url,
                correlation_id,
            )
        log.info("admin_data_reset", extra={"user_id": actor.user_id, "count": counts.runs})

    # ---- helpers --------------------------------------------------------------------------

    def _audit(
        self,
        conn: Conn,
        channel: Channel,
        actor: Actor,
        action_type: str,
        details: Mapping[str, Any],
    ) -> None:
        channels.audit(conn, channel, admin=actor.user_id, action_type=action_type, details=details)

    def _tell(
        self,
        conn: Conn,
        actor: Actor,
        channel_id: str,
        text: str,
        response_url: str | None,
        correlation_id: str,
    ) -> None:
        queue_ephemeral(
            conn,
            None,
            channel=channel_id,
            user=actor.user_id,
            text=text,
            response_url=response_url,
            correlation_id=correlation_id,
        )


def _elsewhere(actor: Actor, channel: Channel, channel_id: str) -> str | None:
    """Why a settings submit or reset from another workspace (or channel) is refused."""
    return misplaced(actor, team_id=channel.slack_team_id, channel_id=channel_id)


def parse_settings(
    values: Mapping[str, Any], retention_bounds: tuple[int, int]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The modal's state as channel columns, and field errors keyed by block id."""
    wanted: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key in admin_blocks.SWITCHES:
        selected = _state(values, key).get("selected_options") or []
        wanted[key] = any(
            isinstance(o, dict) and o.get("value") == admin_blocks.ON for o in selected
        )
    for field in admin_blocks.number_fields(retention_bounds):
        raw = _state(values, field.key).get("value")
        try:
            number = int(str(raw).strip())
        except ValueError:
            errors[field.key] = "Enter a whole number."
            continue
        if not field.lo <= number <= field.hi:
            errors[field.key] = f"Must be between {field.lo} and {field.hi}."
            continue
        wanted[field.key] = number
    admins = _state(values, "admin_user_ids").get("selected_users") or []
    if not isinstance(admins, list) or not all(
        isinstance(a, str) and _USER_ID.match(a) for a in admins
    ):
        errors["admin_user_ids"] = "Pick people from the list."
    elif len(admins) > admin_blocks.MAX_CHANNEL_ADMINS:
        errors["admin_user_ids"] = f"At most {admin_blocks.MAX_CHANNEL_ADMINS} channel admins."
    else:
        wanted["admin_user_ids"] = sorted(set(admins))
    return wanted, errors


def _state(values: Mapping[str, Any], key: str) -> dict[str, Any]:
    block = values.get(key)
    element = block.get(key) if isinstance(block, dict) else None
    return element if isinstance(element, dict) else {}


def _plain(value: Any) -> Any:
    """Settings as JSON-friendly values, so before/after compare and store cleanly."""
    return sorted(value) if isinstance(value, list | tuple) else value
