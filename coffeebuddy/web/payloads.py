"""Parse and validate what Slack posts to us. Anything malformed raises `BadRequest`."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

from coffeebuddy.errors import BadRequest
from coffeebuddy.slack.modal_blocks import MAX_REPLY_URL_CHARS, read_form_metadata
from coffeebuddy.slack.run_blocks import ACTION_RUN_MENU as MENU_ACTION_ID
from coffeebuddy.slack.run_blocks import RUN_MENU_ACTIONS as MENU_ACTIONS
from coffeebuddy.store.runs import parse_uuid

# \Z, not $: "$" also matches before a trailing newline, which the database's CHECK
# constraints (and Slack) don't accept.
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}\Z")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,30}\Z")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,30}\Z")
# A response_url is stored in a job and posted to later: one token, no spaces or controls.
_URL = re.compile(r"^https?://[!-~]+\Z")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_TEXT = 4000
# parse_qs passes a "%" without two hex digits through as text; Slack always escapes "%".
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BAD_ESCAPE_BYTES = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def clean(text: str) -> str:
    """Text as we can store and echo it: a NUL (no Postgres text holds one) becomes a
    space, as other control characters do in `/coffee`, and a lone surrogate (not UTF-8,
    but JSON can carry one as an escape) becomes U+FFFD."""
    return _UNSTORABLE.sub(lambda m: " " if m[0] == "\x00" else "\ufffd", text)


def parse_form(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body; a repeated field is malformed."""
    try:
        text = body.decode("utf-8")
        if _BAD_ESCAPE.search(text):
            raise ValueError("bad percent escape")
        # errors="strict": an escape that decodes to invalid UTF-8 is malformed, not U+FFFD.
        fields = parse_qs(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            max_num_fields=64,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("malformed form body") from None
    out: dict[str, str] = {}
    for key, values in fields.items():
        if len(values) != 1:
            raise BadRequest(f"field {key!r} repeated")
        out[key] = clean(values[0])
    return out


def _field(form: dict[str, str], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = form.get(name)
    if value is None or (pattern is not None and not pattern.match(value)):
        raise BadRequest(f"missing or invalid field {name!r}")
    return value


@dataclass(frozen=True)
class SlashCommand:
    team_id: str
    channel_id: str
    channel_name: str
    user_id: str
    user_name: str
    command: str
    text: str
    trigger_id: str
    response_url: str


def slash_command(body: bytes) -> SlashCommand:
    form = parse_form(body)
    text = form.get("text", "")
    if len(text) > MAX_TEXT:
        raise BadRequest("text too long")
    response_url = _field(form, "response_url", _URL)
    return SlashCommand(
        team_id=_field(form, "team_id", _SLACK_ID),
        channel_id=_field(form, "channel_id", _CHANNEL_ID),
        channel_name=form.get("channel_name", "")[:200],
        user_id=_field(form, "user_id", _USER_ID),
        user_name=form.get("user_name", "")[:200],
        command=_field(form, "command"),
        text=text,
        trigger_id=form.get("trigger_id", ""),
        response_url=response_url,
    )


_PAYLOAD_FIELD = b"payload="


def payload_field(body: bytes) -> str | None:
    """The `payload` field of an interaction post, decoding nothing else. Slack sends that
    one field alone, so this is one unquote of it; any other body takes `parse_form`,
    whose checks (repeated or malformed fields) still apply."""
    if not body.startswith(_PAYLOAD_FIELD) or b"&" in body:
        return parse_form(body).get("payload")
    raw = body[len(_PAYLOAD_FIELD) :]
    if _BAD_ESCAPE_BYTES.search(raw):
        raise BadRequest("malformed form body")
    try:
        return clean(unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("malformed form body") from None


def interaction(body: bytes) -> dict[str, Any]:
    """The JSON in the `payload` field of an interaction post."""
    raw = payload_field(body)
    if raw is None:
        raise BadRequest("missing payload")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the decoder's stack ("[[[[…").
        raise BadRequest("payload is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise BadRequest("payload has no type")
    return payload


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _str(obj: Any, *path: str, pattern: re.Pattern[str] | None = None) -> str:
    value = _get(obj, *path)
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        raise BadRequest(f"missing or invalid {'.'.join(path)}")
    return value


@dataclass(frozen=True)
class BlockAction:
    team_id: str
    user_id: str
    user_name: str
    channel_id: str
    action_id: str
    # The button's value as sent, and the run id it carries (None when it isn't one).
    value: str
    run_id: uuid.UUID | None
    trigger_id: str
    response_url: str | None


def block_action(payload: dict[str, Any]) -> BlockAction:
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise BadRequest("block_actions without actions")
    action = actions[0]
    channel = _get(payload, "channel", "id") or _get(payload, "container", "channel_id")
    if channel is None and _get(payload, "container", "type") == "view":
        # A button inside a modal: the modal carries its channel in private_metadata.
        channel = _get(payload, "view", "private_metadata")
    if not isinstance(channel, str) or not _CHANNEL_ID.match(channel):
        raise BadRequest("block action without a channel")
    response_url = payload.get("response_url")
    action_id = clean(_str(action, "action_id")[:255])
    value = action.get("value")
    if action_id == MENU_ACTION_ID:
        # An overflow menu sends the chosen option, "<action>:<run id>": it is handled as
        # that action on that run; anything else there is an unknown action.
        chosen = _get(action, "selected_option", "value")
        sub, _, value = chosen.partition(":") if isinstance(chosen, str) else ("", "", None)
        action_id = clean(sub[:64]) if sub in MENU_ACTIONS else MENU_ACTION_ID
    return BlockAction(
        team_id=_str(payload, "team", "id", pattern=_SLACK_ID),
        user_id=_str(payload, "user", "id", pattern=_USER_ID),
        user_name=_name(payload),
        channel_id=channel,
        action_id=action_id,
        value=clean(str(value or "")[:100]),
        run_id=parse_uuid(value),
        trigger_id=clean(str(payload.get("trigger_id") or "")),
        response_url=(
            response_url if isinstance(response_url, str) and _URL.match(response_url) else None
        ),
    )


def _name(payload: dict[str, Any]) -> str:
    name = _get(payload, "user", "username") or _get(payload, "user", "name") or ""
    return clean(str(name)[:200])


@dataclass(frozen=True)
class ViewSubmission:
    team_id: str
    user_id: str
    user_name: str
    callback_id: str
    private_metadata: str
    run_id: uuid.UUID | None
    values: dict[str, Any]
    # The response_url of the click that opened an order form (see modal_blocks).
    response_url: str | None = None


def view_submission(payload: dict[str, Any]) -> ViewSubmission:
    values = _get(payload, "view", "state", "values")
    if not isinstance(values, dict):
        raise BadRequest("view_submission without state values")
    run_id, response_url = read_form_metadata(_get(payload, "view", "private_metadata"))
    return ViewSubmission(
        team_id=_str(payload, "team", "id", pattern=_SLACK_ID),
        user_id=_str(payload, "user", "id", pattern=_USER_ID),
        user_name=_name(payload),
        callback_id=clean(_str(payload, "view", "callback_id")[:255]),
        private_metadata=clean(str(_get(payload, "view", "private_metadata") or "")[:3000]),
        run_id=parse_uuid(run_id),
        values=values,
        # Cut short, a URL would point elsewhere: an over-long one is no URL at all.
        response_url=(
            clean(response_url)
            if response_url and len(response_url) <= MAX_REPLY_URL_CHARS
            else None
        ),
    )


def is_channel_id(value: str) -> bool:
    return bool(_CHANNEL_ID.match(value))


def is_user_id(value: str) -> bool:
    return bool(_USER_ID.match(value))


def input_text(values: dict[str, Any], block_id: str, action_id: str) -> str:
    value = _get(values, block_id, action_id, "value")
    return clean(value) if isinstance(value, str) else ""


def checked(values: dict[str, Any], block_id: str, action_id: str, option: str) -> bool:
    selected = _get(values, block_id, action_id, "selected_options")
    if not isinstance(selected, list):
        return False
    return any(isinstance(o, dict) and o.get("value") == option for o in selected)
