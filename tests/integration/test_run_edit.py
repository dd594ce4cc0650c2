"""Changing an open run's pickup time or note ("Edit time/note" on the run message): who
may, what the form shows, what is checked, and that the reminders move with the pickup."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from coffeebuddy.slack import run_blocks
from coffeebuddy.store.queue import RUNNER_REMINDER
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import run_modal_submission_body
from tests.blocks import text_of
from tests.conftest import CHANNEL
from tests.driver import Channel, SqlFn

BERLIN = ZoneInfo("Europe/Berlin")  # every test user's tz (tests/conftest.py)


def _edit(
    chan: Channel, user: str, run_id: str, pickup: str | None, note: str | None
) -> dict[str, Any] | None:
    """Submit the run modal as Slack would; the JSON answer, or None (the form closes)."""
    body = run_modal_submission_body(user_id=user, run_id=run_id, pickup=pickup, note=note)
    result = chan.web.post("/slack/interactions", body)
    assert result.status_code == 200, result.text
    return json.loads(result.text) if result.text else None


def _run(sql: SqlFn, run_id: str) -> dict[str, Any]:
    rows = sql(
        "SELECT status, pickup_time, pickup_note, reminder_at FROM runs WHERE id = %s", run_id
    )
    return dict(zip(("status", "pickup_time", "note", "reminder_at"), rows[0], strict=True))


def _queued_reminders(sql: SqlFn, run_id: str) -> list[Any]:
    return sql(
        "SELECT run_at FROM jobs WHERE kind = %s AND run_id = %s AND status = 'queued'",
        RUNNER_REMINDER,
        run_id,
    )


def _events(sql: SqlFn, run_id: str, event_type: str) -> list[dict[str, Any]]:
    rows = sql(
        "SELECT envelope FROM events WHERE run_id = %s AND event_type = %s ORDER BY id",
        run_id,
        event_type,
    )
    return [r[0] for r in rows]


def _now(sql: SqlFn) -> Any:
    return sql("SELECT now()")[0][0]


def _views_open(slack: FakeSlack) -> list[dict[str, Any]]:
    return [c.args["view"] for c in slack.calls("views.open") if c.ok]


# ---- the button and the form ----------------------------------------------------------------


def test_edit_button_opens_the_form_filled_with_the_current_details(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.open_run("U0ANA", "in 20m Lobby cafe")
    # "Edit time/note" is in the run message's ⋯ menu.
    choices = [
        o["value"]
        for b in slack.messages(CHANNEL)[0]["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "overflow"
        for o in e["options"]
    ]
    assert f"{run_blocks.ACTION_EDIT_RUN}:{run_id}" in choices

    chan.click("U0ANA", run_blocks.ACTION_EDIT_RUN, run_id)

    views = _views_open(slack)
    assert len(views) == 1
    view = views[0]
    assert view["callback_id"] == run_blocks.CALLBACK_RUN_MODAL
    assert view["private_metadata"] == run_id
    by_block = {b["block_id"]: b for b in view["blocks"]}
    pickup = _run(sql, run_id)["pickup_time"]
    local = pickup.astimezone(BERLIN).strftime("%H:%M")
    assert (
        by_block[run_blocks.PICKUP_BLOCK_ID]["element"]["action_id"] == run_blocks.PICKUP_ACTION_ID
    )
    assert by_block[run_blocks.PICKUP_BLOCK_ID]["element"]["initial_value"] == local
    assert by_block[run_blocks.NOTE_BLOCK_ID]["element"]["action_id"] == run_blocks.NOTE_ACTION_ID
    assert by_block[run_blocks.NOTE_BLOCK_ID]["element"]["initial_value"] == "Lobby cafe"


def test_edit_form_for_a_run_without_details_is_empty(chan: Channel, slack: FakeSlack) -> None:
    run_id = chan.start("U0ANA")
    chan.click("U0ANA", run_blocks.ACTION_EDIT_RUN, run_id)
    view = _views_open(slack)[0]
    assert view["callback_id"] == run_blocks.CALLBACK_RUN_MODAL
    assert all("initial_value" not in b["element"] for b in view["blocks"])


def test_new_time_and_note_move_the_reminder_and_refresh_the_message(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.open_run("U0ANA", "in 20m Lobby cafe")
    chan.submit_and_work("U0BEN", "tea")
    [(first_due,)] = _queued_reminders(sql, run_id)

    assert _edit(chan, "U0ANA", run_id, "in 45m", "Kitchen, 2nd floor") is None
    chan.work()

    run = _run(sql, run_id)
    assert run["status"] == "open"
    assert run["note"] == "Kitchen, 2nd floor"
    assert abs((run["pickup_time"] - (_now(sql) + timedelta(minutes=45))).total_seconds()) <= 3
    reminders = _queued_reminders(sql, run_id)
    assert len(reminders) == 1, "the reminder moved; no second one was added"
    expected = run["pickup_time"] - timedelta(minutes=5)
    assert abs((reminders[0][0] - expected).total_seconds()) <= 2
    assert (reminders[0][0] - first_due).total_seconds() > 20 * 60
    assert abs((run["reminder_at"] - expected).total_seconds()) <= 2

    message = text_of(slack.messages(CHANNEL)[0])
    assert "Kitchen, 2nd floor" in message and "Lobby cafe" not in message
    assert f"<!date^{int(run['pickup_time'].timestamp())}^" in message

    updated = _events(sql, run_id, "run_updated")
    details = [e for e in updated if e["data"].get("change") == "details_changed"]
    assert len(details) == 1
    assert details[0]["data"]["user"] == "U0ANA"
    assert details[0]["channel_id"] == CHANNEL
    assert "Kitchen" not in json.dumps(details[0])
    # The reminder's new time is announced too.
    assert len(_events(sql, run_id, "reminder_scheduled")) == 2


def test_a_clock_time_is_read_in_the_users_time_zone(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA", "in 20m")
    target = (_now(sql) + timedelta(hours=2)).astimezone(BERLIN)
    if target.date() != _now(sql).astimezone(BERLIN).date():
        target = _now(sql).astimezone(BERLIN) + timedelta(minutes=30)
        if target.date() != _now(sql).astimezone(BERLIN).date():
            pytest.fail("too close to midnight in Berlin for a clock-time edit; rerun")
    typed = target.strftime("%H:%M")
    assert _edit(chan, "U0ANA", run_id, typed, None) is None
    pickup = _run(sql, run_id)["pickup_time"].astimezone(BERLIN)
    assert pickup.strftime("%H:%M") == typed and pickup.date() == target.date()


def test_a_pickup_moved_close_reminds_halfway(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA", "in 30m")
    assert _edit(chan, "U0ANA", run_id, "in 4m", None) is None
    run = _run(sql, run_id)
    [(due,)] = _queued_reminders(sql, run_id)
    assert abs((due - (run["pickup_time"] - timedelta(minutes=2))).total_seconds()) <= 2


def test_empty_time_removes_the_reminder(chan: Channel, sql: SqlFn, slack: FakeSlack) -> None:
    run_id = chan.open_run("U0ANA", "in 20m Lobby cafe")
    assert len(_queued_reminders(sql, run_id)) == 1

    assert _edit(chan, "U0ANA", run_id, None, "Lobby cafe") is None
    chan.work()

    run = _run(sql, run_id)
    assert run["pickup_time"] is None and run["reminder_at"] is None
    assert run["note"] == "Lobby cafe"
    assert _queued_reminders(sql, run_id) == []
    assert "<!date^" not in text_of(slack.messages(CHANNEL)[0])

    # An empty string (not only a missing value) also means "no time".
    assert _edit(chan, "U0ANA", run_id, "in 20m", "") is None
    assert len(_queued_reminders(sql, run_id)) == 1
    assert _edit(chan, "U0ANA", run_id, "  ", "") is None
    assert _queued_reminders(sql, run_id) == []
    assert _run(sql, run_id)["note"] is None


# ---- what is refused ----------------------------------------------------------------------------


def _unchanged(sql: SqlFn, run_id: str, before: dict[str, Any], due: list[Any]) -> None:
    assert _run(sql, run_id) == before
    assert _queued_reminders(sql, run_id) == due
    assert _events(sql, run_id, "run_updated") == []


def test_an_invalid_time_is_an_error_on_the_pickup_field(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA", "in 20m Lobby cafe")
    before, due = _run(sql, run_id), _queued_reminders(sql, run_id)
    for typed in ("tomorrow-ish", "25:00", "in 900h"):
        answer = _edit(chan, "U0ANA", run_id, typed, "Lobby cafe")
        assert answer is not None and answer["response_action"] == "errors", typed
        assert list(answer["errors"]) == [run_blocks.PICKUP_BLOCK_ID], typed
        assert answer["errors"][run_blocks.PICKUP_BLOCK_ID]
    _unchanged(sql, run_id, before, due)


def test_a_mention_in_the_note_is_an_error_on_the_note_field(chan: Channel, sql: SqlFn) -> None:
    run_id = chan.start("U0ANA", "in 20m Lobby cafe")
    before, due = _run(sql, run_id), _queued_reminders(sql, run_id)
    for note in ("@here coffee!", "ping <!channel>"):
        answer = _edit(chan, "U0ANA", run_id, "in 45m", note)
        assert answer is not None and answer["response_action"] == "errors", note
        assert list(answer["errors"]) == [run_blocks.NOTE_BLOCK_ID], note
    _unchanged(sql, run_id, before, due)


def test_someone_else_clicking_edit_is_told_who_may(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.open_run("U0ANA", "in 20m")
    chan.click_and_work("U0BEN", run_blocks.ACTION_EDIT_RUN, run_id)
    assert _views_open(slack) == []
    told = chan.told("U0BEN")
    assert any("Only <@U0ANA>" in t and "admin" in t for t in told), told


def test_a_forged_submission_from_someone_else_changes_nothing(
    chan: Channel, sql: SqlFn, slack: FakeSlack
) -> None:
    run_id = chan.open_run("U0ANA", "in 20m Lobby cafe")
    before, due = _run(sql, run_id), _queued_reminders(sql, run_id)
    updates_before = len(slack.calls("chat.update"))

    answer = _edit(chan, "U0BEN", run_id, "in 90m", "Somewhere else")
    chan.work()

    assert answer is not None and answer["response_action"] == "errors"
    assert run_blocks.PICKUP_BLOCK_ID in answer["errors"]
    _unchanged(sql, run_id, before, due)
    assert len(slack.calls("chat.update")) == updates_before


def test_a_workspace_admin_may_edit(chan: Channel, sql: SqlFn, slack: FakeSlack) -> None:
    slack.add_user("U0BOSS", is_admin=True, tz="Europe/Berlin")
    run_id = chan.start("U0ANA", "in 20m")
    chan.click("U0BOSS", run_blocks.ACTION_EDIT_RUN, run_id)
    assert len(_views_open(slack)) == 1
    assert _edit(chan, "U0BOSS", run_id, "in 40m", "Admin moved it") is None
    assert _run(sql, run_id)["note"] == "Admin moved it"


def test_a_closed_run_cannot_be_edited(chan: Channel, sql: SqlFn, slack: FakeSlack) -> None:
    run_id = chan.open_run("U0ANA", "in 20m Lobby cafe")
    chan.submit("U0BEN", "tea")
    chan.click_and_work("U0ANA", run_blocks.ACTION_CLOSE_RUN, run_id)
    before, due = _run(sql, run_id), _queued_reminders(sql, run_id)
    assert before["status"] == "closed"

    answer = _edit(chan, "U0ANA", run_id, "in 45m", "Kitchen")
    assert answer is not None and answer["response_action"] == "errors"
    assert "closed" in answer["errors"][run_blocks.PICKUP_BLOCK_ID]
    assert _run(sql, run_id) == before
    assert _queued_reminders(sql, run_id) == due
    assert [
        e for e in _events(sql, run_id, "run_updated") if e["data"]["change"] == "details_changed"
    ] == []

    # Clicking the (stale) button on a closed run opens no form either.
    chan.click_and_work("U0ANA", run_blocks.ACTION_EDIT_RUN, run_id)
    assert _views_open(slack) == []
    assert any("already closed" in t for t in chan.told("U0ANA"))
