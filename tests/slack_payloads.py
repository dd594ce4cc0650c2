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
            "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**10}.{uuid.uuid4().hex[:12]}",
        }
    ).encode()


def _payload_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


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
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "example"},
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": TEAM_ID,
        },
        "api_app_id": "A0COFFEE",
        "token": "legacy-verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**10}.{uuid.uuid4().hex[:12]}",
        "channel": {"id": channel_id, "name": "coffee"},
        "message": {"type": "message", "ts": message_ts, "bot_id": "B0COFFEE"},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "text": {"type": "plain_text", "text": action_id},
                "action_ts": f"{time.time():.6f}",
            }
        ],
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
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "example"},
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": TEAM_ID,
        },
        "api_app_id": "A0COFFEE",
        "token": "legacy-verification-token-unused",
        "trigger_id": f"{uuid.uuid4().int % 10**10}.{uuid.uuid4().hex[:12]}",
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
