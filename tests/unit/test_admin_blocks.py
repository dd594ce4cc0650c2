"""The admin Block Kit (settings modal, reset prompt, audit list) and the parser that reads
the modal back: their field ids are the contract between the two."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from coffeebuddy.service.admin import parse_settings
from coffeebuddy.slack import admin_blocks as ab
from testkit.slack_payloads import ADMIN_RANGE_ERRORS, ADMIN_SETTINGS, admin_modal_state
from tests.blocks import walk

BOUNDS = (1, 365)
NUMBERS = (
    "reminder_offset_minutes",
    "last_call_minutes",
    "fairness_window_runs",
    "data_retention_days",
)


def _inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def _as_submitted(view: dict[str, Any]) -> dict[str, Any]:
    """The state Slack would submit if nobody touched the modal."""
    values: dict[str, Any] = {}
    for block_id, block in _inputs(view).items():
        element = block["element"]
        state: dict[str, Any] = {"type": element["type"]}
        if element["type"] == "checkboxes":
            state["selected_options"] = element.get("initial_options", [])
        elif element["type"] == "number_input":
            state["value"] = element.get("initial_value")
        elif element["type"] == "multi_users_select":
            state["selected_users"] = element.get("initial_users", [])
        values[block_id] = {element["action_id"]: state}
    return values


def _reset_button(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    buttons = [n for n in walk(blocks) if n.get("action_id") == ab.ACTION_ADMIN_RESET]
    assert len(buttons) == 1
    return buttons[0]


# ---- the settings modal --------------------------------------------------------------------


def test_the_modal_is_addressed_to_its_channel() -> None:
    view = ab.settings_modal("C0COFFEE01", ADMIN_SETTINGS, BOUNDS)
    assert view["type"] == "modal"
    assert view["callback_id"] == ab.CALLBACK_ADMIN_MODAL == "admin_modal"
    assert view["private_metadata"] == "C0COFFEE01"
    assert view["submit"]["text"] and view["close"]["text"]
    for key in ("title", "submit", "close"):
        assert 0 < len(view[key]["text"]) <= 24  # Slack's limit
    assert len(view["blocks"]) <= 100
    block_ids = [b["block_id"] for b in view["blocks"] if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))


def test_every_setting_has_a_field_whose_ids_are_the_column_name() -> None:
    fields = _inputs(ab.settings_modal("C1", ADMIN_SETTINGS, BOUNDS))
    assert set(fields) == set(ADMIN_SETTINGS)
    for block_id, block in fields.items():
        assert block["element"]["action_id"] == block_id


def test_the_fields_show_the_current_values() -> None:
    fields = _inputs(ab.settings_modal("C1", ADMIN_SETTINGS, BOUNDS))
    for key in ab.SWITCHES:
        element = fields[key]["element"]
        assert element["type"] == "checkboxes"
        assert [o["value"] for o in element["options"]] == [ab.ON]
        shown = [o["value"] for o in element.get("initial_options", [])]
        assert shown == ([ab.ON] if ADMIN_SETTINGS[key] else []), key
        assert fields[key]["optional"] is True  # unticking must be possible
    for key in NUMBERS:
        element = fields[key]["element"]
        assert element["type"] == "number_input"
        assert element["is_decimal_allowed"] is False
        assert element["initial_value"] == str(ADMIN_SETTINGS[key])
    users = fields["admin_user_ids"]["element"]
    assert users["type"] == "multi_users_select"
    assert users["initial_users"] == ADMIN_SETTINGS["admin_user_ids"]
    assert users["max_selected_items"] == ab.MAX_CHANNEL_ADMINS
    assert fields["admin_user_ids"]["optional"] is True


def test_no_channel_admins_means_no_initial_users() -> None:
    fields = _inputs(ab.settings_modal("C1", {**ADMIN_SETTINGS, "admin_user_ids": []}, BOUNDS))
    assert "initial_users" not in fields["admin_user_ids"]["element"]


def test_switches_off_have_no_initial_options() -> None:
    off = dict.fromkeys(ab.SWITCHES, False)
    fields = _inputs(ab.settings_modal("C1", {**ADMIN_SETTINGS, **off}, BOUNDS))
    for key in ab.SWITCHES:
        assert "initial_options" not in fields[key]["element"]


@pytest.mark.parametrize("bounds", [(1, 365), (30, 180), (90, 90)])
def test_number_limits_match_the_parser_and_the_global_retention_bounds(
    bounds: tuple[int, int],
) -> None:
    fields = _inputs(ab.settings_modal("C1", {**ADMIN_SETTINGS, "data_retention_days": 90}, bounds))
    limits = {
        k: (int(fields[k]["element"]["min_value"]), int(fields[k]["element"]["max_value"]))
        for k in NUMBERS
    }
    assert limits == {f.key: (f.lo, f.hi) for f in ab.number_fields(bounds)}
    assert limits["data_retention_days"] == bounds
    assert limits["reminder_offset_minutes"] == (0, 120)
    assert limits["last_call_minutes"] == (1, 60)
    assert limits["fairness_window_runs"] == (1, 100)


def test_the_untouched_modal_submits_the_current_settings() -> None:
    view = ab.settings_modal("C1", ADMIN_SETTINGS, BOUNDS)
    wanted, errors = parse_settings(_as_submitted(view), BOUNDS)
    assert errors == {}
    assert wanted == ADMIN_SETTINGS


def test_the_modal_carries_the_reset_button() -> None:
    view = ab.settings_modal("C0COFFEE01", ADMIN_SETTINGS, BOUNDS)
    button = _reset_button(view["blocks"])
    assert button["value"] == "C0COFFEE01"
    assert button["style"] == "danger"
    assert button["confirm"]["style"] == "danger"


# ---- the reset prompt ----------------------------------------------------------------------


def test_the_reset_prompt_is_a_danger_button_behind_a_confirm_dialog() -> None:
    text, blocks = ab.reset_prompt("C0COFFEE01")
    assert text
    button = _reset_button(blocks)
    assert button["type"] == "button"
    assert button["value"] == "C0COFFEE01"
    assert button["style"] == "danger"
    confirm = button["confirm"]
    assert confirm["style"] == "danger"
    for key in ("title", "text", "confirm", "deny"):
        assert confirm[key]["text"], key
    assert confirm["confirm"]["text"] != confirm["deny"]["text"]
    assert "audit" in confirm["text"]["text"]  # says what is kept


# ---- parsing the submission ----------------------------------------------------------------


def test_parse_reads_the_slack_state() -> None:
    state = admin_modal_state(**ADMIN_SETTINGS)
    assert parse_settings(state, BOUNDS) == (ADMIN_SETTINGS, {})


def test_parse_sorts_and_dedupes_admins_and_strips_numbers() -> None:
    state = admin_modal_state(
        admin_user_ids=["U0CAT", "U0BEN", "U0CAT"], fairness_window_runs=" 12 "
    )
    wanted, errors = parse_settings(state, BOUNDS)
    assert errors == {}
    assert wanted["admin_user_ids"] == ["U0BEN", "U0CAT"]
    assert wanted["fairness_window_runs"] == 12


def test_a_switch_is_on_only_with_the_on_option() -> None:
    state = admin_modal_state(enabled=True)
    state["enabled"]["enabled"]["selected_options"] = [{"value": "yes"}, "on", None]
    state["reminders_enabled"] = {}  # missing block: off
    wanted, errors = parse_settings(state, BOUNDS)
    assert errors == {}
    assert wanted["enabled"] is False
    assert wanted["reminders_enabled"] is False


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        *ADMIN_RANGE_ERRORS,
        ("data_retention_days", "abc", "Enter a whole number."),
        ("fairness_window_runs", "2.5", "Enter a whole number."),
        ("last_call_minutes", "", "Enter a whole number."),
        ("reminder_offset_minutes", None, "Enter a whole number."),
    ],
)
def test_bad_numbers_are_errors_on_their_own_block(key: str, value: Any, error: str) -> None:
    wanted, errors = parse_settings(admin_modal_state(**{key: value}), BOUNDS)
    assert errors == {key: error}
    assert key not in wanted


@pytest.mark.parametrize("key", NUMBERS)
def test_the_ends_of_each_range_are_accepted(key: str) -> None:
    (field,) = [f for f in ab.number_fields(BOUNDS) if f.key == key]
    for value in (field.lo, field.hi):
        wanted, errors = parse_settings(admin_modal_state(**{key: value}), BOUNDS)
        assert errors == {}
        assert wanted[key] == value


def test_retention_uses_the_global_bounds() -> None:
    assert parse_settings(admin_modal_state(data_retention_days=20), (30, 180))[1] == {
        "data_retention_days": "Must be between 30 and 180."
    }
    assert parse_settings(admin_modal_state(data_retention_days=200), (30, 180))[1] == {
        "data_retention_days": "Must be between 30 and 180."
    }
    wanted, errors = parse_settings(admin_modal_state(data_retention_days=180), (30, 180))
    assert errors == {} and wanted["data_retention_days"] == 180


@pytest.mark.parametrize(
    "admins",
    [["not a user"], ["C0CHANNEL"], ["u0lower"], [42], "U0BEN"],
)
def test_admins_must_be_user_ids(admins: Any) -> None:
    state = admin_modal_state()
    state["admin_user_ids"]["admin_user_ids"]["selected_users"] = admins
    wanted, errors = parse_settings(state, BOUNDS)
    assert set(errors) == {"admin_user_ids"}
    assert "admin_user_ids" not in wanted


def test_at_most_fifty_channel_admins() -> None:
    fifty = [f"U0{i:04d}" for i in range(ab.MAX_CHANNEL_ADMINS)]
    assert parse_settings(admin_modal_state(admin_user_ids=fifty), BOUNDS)[1] == {}
    errors = parse_settings(admin_modal_state(admin_user_ids=[*fifty, "U0EXTRA"]), BOUNDS)[1]
    assert errors == {"admin_user_ids": "At most 50 channel admins."}


def test_all_errors_are_reported_together() -> None:
    state = admin_modal_state(
        reminder_offset_minutes=999,
        last_call_minutes="x",
        fairness_window_runs=0,
        data_retention_days=-1,
        admin_user_ids=["nope"],
    )
    assert set(parse_settings(state, BOUNDS)[1]) == {*NUMBERS, "admin_user_ids"}


def test_garbage_state_is_errors_not_a_crash() -> None:
    wanted, errors = parse_settings({"enabled": "x", "fairness_window_runs": []}, BOUNDS)
    assert set(errors) == set(NUMBERS)
    assert wanted["enabled"] is False
    assert wanted["admin_user_ids"] == []


# ---- the audit list ------------------------------------------------------------------------

AT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def _row(action: str, details: dict[str, Any], user: str = "U0ADMIN") -> dict[str, Any]:
    return {
        "admin_slack_user_id": user,
        "action_type": action,
        "action_details": details,
        "created_at": AT,
    }


def test_an_empty_audit_says_so() -> None:
    assert ab.audit_text([]) == "No admin actions recorded for this channel yet."


def test_the_audit_lists_each_action_in_the_given_order() -> None:
    rows = [
        _row("data_reset", {"runs": 12, "orders": 40, "preferences": 5}, user="U0OWNER"),
        _row("enable", {"canceled_run": None}),
        _row("disable", {"canceled_run": "2b0c…"}, user="U0BOSS"),
        _row("disable", {"canceled_run": None}),
        _row(
            "update_config",
            {
                "changes": {
                    "reminder_offset_minutes": {"before": 5, "after": 10},
                    "fairness_window_runs": {"before": 10, "after": 4},
                }
            },
        ),
    ]
    lines = ab.audit_text(rows).splitlines()
    assert "newest first" in lines[0]
    assert len(lines) == 1 + len(rows)
    unix = int(AT.timestamp())
    for line in lines[1:]:
        assert line.startswith(f"• <!date^{unix}^")
        assert "|2024-05-01 09:30 UTC>" in line
    assert lines[1].endswith("<@U0OWNER> reset the channel's data (12 runs, 5 usuals)")
    assert lines[2].endswith("<@U0ADMIN> turned CoffeeBuddy on")
    assert lines[3].endswith("<@U0BOSS> turned CoffeeBuddy off and canceled the open run")
    assert lines[4].endswith("<@U0ADMIN> turned CoffeeBuddy off")
    assert lines[5].endswith(
        "<@U0ADMIN> changed the fairness window from 10 to 4 runs, changed the reminder "
        "from 5 to 10 minutes before pickup"
    )


def test_every_input_is_labelled_by_what_it_sets() -> None:
    """Issue 13, item 17: two checkboxes were labelled "Option"."""
    modal = ab.settings_modal("C0TEST", ADMIN_SETTINGS, BOUNDS)
    inputs = [b for b in modal["blocks"] if b["type"] == "input"]
    labels = [b["label"]["text"] for b in inputs]
    assert len(set(labels)) == len(labels), labels
    assert not {"Option", "Options", ""} & set(labels)
    switches = {b["block_id"]: b["label"]["text"] for b in inputs if b["block_id"] in ab.SWITCHES}
    assert switches == {
        "enabled": "CoffeeBuddy",
        "reminders_enabled": "Runner reminder",
        "last_call_enabled": "Last call",
    }


def test_the_audit_says_changes_in_words() -> None:
    """Issue 14 item 10: "turned the last call on", not `last_call_enabled False → True`."""
    changes = {
        "last_call_enabled": {"before": False, "after": True},
        "reminders_enabled": {"before": True, "after": False},
        "data_retention_days": {"before": 90, "after": 30},
        "last_call_minutes": {"before": 5, "after": 10},
        "admin_user_ids": {"before": [], "after": ["U0ANA", "U0BO"]},
    }
    (_, line) = ab.audit_text([_row("update_config", {"changes": changes})]).splitlines()
    assert line.endswith(
        "<@U0ADMIN> set the channel admins to <@U0ANA>, <@U0BO>, changed data retention from "
        "90 to 30 days, turned the last call on, changed the last call from 5 to 10 minutes "
        "before the reminder, turned the runner reminder off"
    )
    assert "→" not in line
    assert "_enabled" not in line
