"""Block Kit for channel administration: the settings modal, the reset prompt and the
audit list. Pure functions of data; the field ids are the contract with the web layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ConfirmObject,
    DividerBlock,
    InputBlock,
    NumberInputElement,
    Option,
    PlainTextObject,
    SectionBlock,
    UserMultiSelectElement,
)
from slack_sdk.models.views import View

from coffeebuddy.slack.blockkit import mrkdwn

CALLBACK_ADMIN_MODAL: Final = "admin_modal"
ACTION_ADMIN_RESET: Final = "admin_reset"
ON: Final = "on"
MAX_CHANNEL_ADMINS: Final = 50


@dataclass(frozen=True)
class Field:
    """One setting in the modal: its block/action id, label, range and hint."""

    key: str
    label: str
    lo: int
    hi: int
    hint: str


SWITCHES: Final = {
    "enabled": "CoffeeBuddy is on in this channel",
    "reminders_enabled": "Remind the runner before pickup",
    "last_call_enabled": "Post a last call to the channel before the run closes",
}
# Each checkbox's input label: what it switches, so a screen reader (and a skim) can tell
# the three apart.
SWITCH_LABELS: Final = {
    "enabled": "CoffeeBuddy",
    "reminders_enabled": "Runner reminder",
    "last_call_enabled": "Last call",
}


def number_fields(retention_bounds: tuple[int, int]) -> tuple[Field, ...]:
    lo, hi = retention_bounds
    return (
        Field(
            "reminder_offset_minutes",
            "Reminder, minutes before pickup",
            0,
            120,
            "The runner's reminder; a run still open then closes.",
        ),
        Field(
            "last_call_minutes",
            "Last call, minutes before the reminder",
            1,
            60,
            "Only used when the last call is on.",
        ),
        Field(
            "fairness_window_runs",
            "Fairness window (recent runs)",
            1,
            100,
            "Runs served are counted over this many recent runs.",
        ),
        Field(
            "data_retention_days",
            "Keep data for (days)",
            lo,
            hi,
            f"Runs, orders and usuals older than this are deleted ({lo}–{hi}).",
        ),
    )


def settings_modal(
    channel_id: str, settings: Mapping[str, Any], retention_bounds: tuple[int, int]
) -> dict[str, Any]:
    """The `/coffee admin` modal; `settings` is the channel row. The channel id travels in
    private_metadata, so the submission and the reset button know where they belong."""
    blocks: list[Block] = [
        SectionBlock(text=mrkdwn(f"Settings for <#{channel_id}>")),
    ]
    for key, label in SWITCHES.items():
        option = Option(value=ON, text=PlainTextObject(text=label))
        blocks.append(
            InputBlock(
                block_id=key,
                label=SWITCH_LABELS[key],
                optional=True,
                element=CheckboxesElement(
                    action_id=key,
                    options=[option],
                    initial_options=[option] if settings[key] else None,
                ),
            )
        )
    for field in number_fields(retention_bounds):
        blocks.append(
            InputBlock(
                block_id=field.key,
                label=field.label,
                hint=field.hint,
                element=NumberInputElement(
                    action_id=field.key,
                    is_decimal_allowed=False,
                    initial_value=str(settings[field.key]),
                    min_value=str(field.lo),
                    max_value=str(field.hi),
                ),
            )
        )
    blocks.append(
        InputBlock(
            block_id="admin_user_ids",
            label="Channel admins",
            hint="Besides workspace admins and CoffeeBuddy's operators.",
            optional=True,
            element=UserMultiSelectElement(
                action_id="admin_user_ids",
                initial_users=list(settings["admin_user_ids"]) or None,
                max_selected_items=MAX_CHANNEL_ADMINS,
            ),
        )
    )
    blocks += [DividerBlock(), *reset_blocks(channel_id)]
    return View(
        type="modal",
        callback_id=CALLBACK_ADMIN_MODAL,
        title="CoffeeBuddy admin",
        submit="Save",
        close="Close",
        private_metadata=channel_id,
        blocks=blocks,
    ).to_dict()


def reset_blocks(channel_id: str) -> list[Block]:
    confirm = ConfirmObject(
        title="Delete this channel's data?",
        text=mrkdwn(
            "All coffee runs, orders, usual orders and runner history of this channel are "
            "deleted, and fairness starts from zero. The admin audit trail is kept."
        ),
        confirm="Delete it all",
        deny="Keep it",
        style="danger",
    )
    return [
        SectionBlock(
            text=mrkdwn("*Reset:* delete every run, order, usual and runner count of this channel.")
        ),
        ActionsBlock(
            block_id="admin_reset",
            elements=[
                ButtonElement(
                    text="Reset channel data",
                    action_id=ACTION_ADMIN_RESET,
                    value=channel_id,
                    style="danger",
                    confirm=confirm,
                )
            ],
        ),
    ]


def reset_prompt(channel_id: str) -> tuple[str, list[dict[str, Any]]]:
    """`/coffee admin reset`: the button (with Slack's confirm dialog) that really resets."""
    return "Reset this channel's CoffeeBuddy data?", [b.to_dict() for b in reset_blocks(channel_id)]


def audit_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The last admin actions, newest first, for `/coffee admin audit`."""
    if not rows:
        return "No admin actions recorded for this channel yet."
    lines = ["*Recent admin actions in this channel* (newest first):"]
    for row in rows:
        lines.append(
            f"• {_when(row['created_at'])} — <@{row['admin_slack_user_id']}> "
            f"{_describe(row['action_type'], row['action_details'])}"
        )
    return "\n".join(lines)


def _when(at: datetime) -> str:
    unix = int(at.timestamp())
    return f"<!date^{unix}^{{date_short}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"


def _describe(action: str, details: Mapping[str, Any]) -> str:
    if action == "enable":
        return "turned CoffeeBuddy on"
    if action == "disable":
        canceled = " and canceled the open run" if details.get("canceled_run") else ""
        return f"turned CoffeeBuddy off{canceled}"
    if action == "data_reset":
        return (
            f"reset the channel's data ({details.get('runs', 0)} runs, "
            f"{details.get('preferences', 0)} usuals)"
        )
    changes = details.get("changes") or {}
    parts = [_change_words(key, c["before"], c["after"]) for key, c in sorted(changes.items())]
    return ", ".join(parts) if parts else "changed nothing"


# How the audit says each setting changed, in words ("turned the last call on").
_SWITCH_WORDS: Final = {
    "enabled": "CoffeeBuddy",
    "reminders_enabled": "the runner reminder",
    "last_call_enabled": "the last call",
}
_NUMBER_WORDS: Final = {
    "reminder_offset_minutes": ("the reminder", "minutes before pickup"),
    "last_call_minutes": ("the last call", "minutes before the reminder"),
    "fairness_window_runs": ("the fairness window", "runs"),
    "data_retention_days": ("data retention", "days"),
}


def _change_words(key: str, before: Any, after: Any) -> str:
    """One setting's change as a sentence fragment; an unknown key keeps the old form."""
    if key in _SWITCH_WORDS:
        return f"turned {_SWITCH_WORDS[key]} {'on' if after else 'off'}"
    if key in _NUMBER_WORDS:
        what, unit = _NUMBER_WORDS[key]
        return f"changed {what} from {before} to {after} {unit}"
    if key == "admin_user_ids":
        names = ", ".join(f"<@{u}>" for u in after or []) or "nobody"
        return f"set the channel admins to {names}"
    return f"changed {key} from {before} to {after}"
