"""Requests as Slack sends them: signed form posts for slash commands and interactions.

The shapes follow Slack's documented payloads (slash command form fields; block_actions
and view_submission JSON in a `payload` form field), trimmed to what Slack always sends.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

TEAM_ID = "T0COFFEE1"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"


def sign(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def command_body(
    *,
    user_id: str,
    channel_id: str,
    text: str = "",
    response_url: str = "https://hooks.slack.com/commands/T0COFFEE1/1/abc",
    user_name: str | None = None,
    channel_name: str = "coffee",
    trigger_id: str | None = None,
) -> bytes:
    return urlencode(
        {
            "token": "legacy-verification-token-unused",
            "team_id": TEAM_ID,
            "team_domain": "example",
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name or user_id.lower(),
            "command": "/coffee",
            "text": text,
            "api_app_id": "A0COFFEE",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or _trigger_id(),
        }
    ).encode()


def _payload_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def _trigger_id() -> str:
    return f"{uuid.uuid4().int % 10**10}.{uuid.uuid4().hex[:12]}"


def _interaction(kind: str, user_id: str, trigger_id: str | None = None) -> dict[str, Any]:
    """What every interaction payload starts with: who, in which workspace, and a trigger."""
    return {
        "type": kind,
        "team": {"id": TEAM_ID, "domain": "example"},
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": TEAM_ID,
        },
        "api_app_id": "A0COFFEE",
        "token": "legacy-verification-token-unused",
        "trigger_id": trigger_id or _trigger_id(),
    }


def _button(action_id: str, block_id: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "text": {"type": "plain_text", "text": action_id},
        "action_ts": f"{time.time():.6f}",
    }


def block_action_payload(
    *,
    user_id: str,
    channel_id: str,
    action_id: str,
    value: str,
    message_ts: str = "1700000000.000100",
    block_id: str = "run_actions",
    response_url: str = "https://hooks.slack.com/actions/T0COFFEE1/1/xyz",
    trigger_id: str | None = None,
) -> dict[str, Any]:
    return {
        **_interaction("block_actions", user_id, trigger_id),
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "channel": {"id": channel_id, "name": "coffee"},
        "message": {"type": "message", "ts": message_ts, "bot_id": "B0COFFEE"},
        "response_url": response_url,
        "actions": [_button(action_id, block_id, value)],
    }


def block_action_body(**kwargs: Any) -> bytes:
    return _payload_body(block_action_payload(**kwargs))


def view_submission_payload(
    *,
    user_id: str,
    run_id: str,
    order_text: str,
    volunteer: bool = False,
    callback_id: str = "order_modal",
) -> dict[str, Any]:
    selected = (
        [{"text": {"type": "plain_text", "text": "I'll go"}, "value": "volunteer"}]
        if volunteer
        else []
    )
    return {
        **_interaction("view_submission", user_id),
        "view": {
            "id": "V" + uuid.uuid4().hex[:10].upper(),
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": run_id,
            "state": {
                "values": {
                    "order": {"order_text": {"type": "plain_text_input", "value": order_text}},
                    "volunteer": {
                        "volunteer_choice": {"type": "checkboxes", "selected_options": selected}
                    },
                }
            },
        },
        "response_urls": [],
    }


def view_submission_body(**kwargs: Any) -> bytes:
    return _payload_body(view_submission_payload(**kwargs))


def run_modal_submission_payload(
    *, user_id: str, run_id: str, pickup: str | None, note: str | None
) -> dict[str, Any]:
    """The "Edit time/note" form as Slack submits it: an empty field's value is null."""
    payload = view_submission_payload(
        user_id=user_id, run_id=run_id, order_text="", callback_id="run_modal"
    )
    payload["view"]["state"]["values"] = {
        "pickup": {"pickup_time": {"type": "plain_text_input", "value": pickup}},
        "note": {"pickup_note": {"type": "plain_text_input", "value": note}},
    }
    return payload


def run_modal_submission_body(**kwargs: Any) -> bytes:
    return _payload_body(run_modal_submission_payload(**kwargs))


# ---- channel administration ---------------------------------------------------------------

ADMIN_MODAL_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "reminders_enabled": True,
    "last_call_enabled": False,
    "reminder_offset_minutes": 5,
    "last_call_minutes": 5,
    "fairness_window_runs": 10,
    "data_retention_days": 90,
    "admin_user_ids": (),
}
# Each number setting just outside its bounds, with the error the modal shows under it.
# A channel's settings, none of them the defaults, in the channels table's column order
# (tests insert them with `*ADMIN_SETTINGS.values()`).
ADMIN_SETTINGS: dict[str, Any] = {
    "enabled": True,
    "reminders_enabled": False,
    "last_call_enabled": True,
    "reminder_offset_minutes": 7,
    "last_call_minutes": 3,
    "fairness_window_runs": 4,
    "data_retention_days": 30,
    "admin_user_ids": ["U0BEN", "U0CAT"],
}
ADMIN_RANGE_ERRORS: list[tuple[str, Any, str]] = [
    ("reminder_offset_minutes", -1, "Must be between 0 and 120."),
    ("reminder_offset_minutes", 121, "Must be between 0 and 120."),
    ("last_call_minutes", 0, "Must be between 1 and 60."),
    ("last_call_minutes", 61, "Must be between 1 and 60."),
    ("fairness_window_runs", 0, "Must be between 1 and 100."),
    ("fairness_window_runs", 101, "Must be between 1 and 100."),
    ("data_retention_days", 0, "Must be between 1 and 365."),
    ("data_retention_days", 366, "Must be between 1 and 365."),
]
_ADMIN_SWITCHES = ("enabled", "reminders_enabled", "last_call_enabled")
_ADMIN_NUMBERS = (
    "reminder_offset_minutes",
    "last_call_minutes",
    "fairness_window_runs",
    "data_retention_days",
)


def admin_modal_state(**settings: Any) -> dict[str, Any]:
    """The settings modal's `view.state.values` as Slack submits them: block id == action
    id == column name; a ticked checkbox carries the option value "on", an unticked one
    an empty list; a number input's value is a string (null when the field is empty); the
    users select gives `selected_users`. Unnamed settings take the channel defaults."""
    unknown = set(settings) - set(ADMIN_MODAL_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown admin settings: {sorted(unknown)}")
    wanted = {**ADMIN_MODAL_DEFAULTS, **settings}
    values: dict[str, Any] = {}
    for key in _ADMIN_SWITCHES:
        selected = (
            [{"text": {"type": "plain_text", "text": key, "emoji": True}, "value": "on"}]
            if wanted[key]
            else []
        )
        values[key] = {key: {"type": "checkboxes", "selected_options": selected}}
    for key in _ADMIN_NUMBERS:
        raw = wanted[key]
        values[key] = {key: {"type": "number_input", "value": None if raw is None else str(raw)}}
    values["admin_user_ids"] = {
        "admin_user_ids": {
            "type": "multi_users_select",
            "selected_users": list(wanted["admin_user_ids"]),
        }
    }
    return values


def admin_modal_submission_payload(
    *, user_id: str, channel_id: str, callback_id: str = "admin_modal", **settings: Any
) -> dict[str, Any]:
    """A view_submission of the `/coffee admin` modal; the channel id travels in
    private_metadata, as the app put it there."""
    payload = view_submission_payload(
        user_id=user_id, run_id=channel_id, order_text="", callback_id=callback_id
    )
    payload["view"]["state"]["values"] = admin_modal_state(**settings)
    return payload


def admin_modal_submission_body(**kwargs: Any) -> bytes:
    return _payload_body(admin_modal_submission_payload(**kwargs))


def view_block_action_payload(
    *,
    user_id: str,
    channel_id: str,
    action_id: str,
    value: str,
    block_id: str = "admin_reset",
    callback_id: str = "admin_modal",
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A button pressed inside a modal: the container is the view, there is no channel
    and no response_url, and the view's private_metadata is the channel id."""
    view_id = "V" + uuid.uuid4().hex[:10].upper()
    return {
        **_interaction("block_actions", user_id, trigger_id),
        "container": {"type": "view", "view_id": view_id},
        "view": {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": channel_id,
            "state": {"values": admin_modal_state()},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": "A0COFFEE",
            "bot_id": "B0COFFEE",
        },
        "actions": [{**_button(action_id, block_id, value), "style": "danger"}],
    }


def view_block_action_body(**kwargs: Any) -> bytes:
    return _payload_body(view_block_action_payload(**kwargs))
