"""The run actions' inbox: "Use my usual" and checked order forms acknowledged with one
insert (sql/queries/inbox.sql) and applied later by the worker, or by a close first."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from psycopg.types.json import Jsonb

from coffeebuddy import db
from coffeebuddy.service import inbox
from coffeebuddy.service.common import Actor, Interaction, OrderForm
from coffeebuddy.service.run_access import RunAccess


class OrderApplier(Protocol):
    """The order actions the inbox applies: `OrderActions` (service/orders.py), the
    subclass of `RunInbox` that `RunService` is made of, defines them."""

    def apply_usual(self, ia: Interaction) -> None: ...

    def apply_inboxed_order(self, actor: Actor, run_id: uuid.UUID, form: OrderForm) -> None: ...


class RunInbox(RunAccess):
    def apply_inboxed(
        self: OrderApplier, action: Mapping[str, Any], correlation_id: str | None
    ) -> None:
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
                Interaction(
                    actor,
                    correlation_id or "",
                    run_id=run_id,
                    trigger_id=action.get("trigger_id") or "",
                    response_url=action.get("response_url"),
                )
            )
        elif action["action"] == "submit_order":
            self.apply_inboxed_order(
                actor,
                run_id,
                OrderForm(
                    action["text"],
                    volunteer=bool(action.get("volunteer")),
                    response_url=action.get("response_url"),
                ),
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
            "quiet_seconds": self.config.burst_quiet_ms / 1000,
        }
        with self.db.statement() as conn:
            if query == "inbox_usual":
                row = db.one(conn, "inbox_usual", params)
            else:
                row = db.one(conn, "inbox_order", params)
        return row is not None
