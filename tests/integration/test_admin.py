"""`/coffee admin` through the HTTP endpoints as Slack calls them, against a real Postgres
and the fake Slack API: who may administer a channel (checked when the modal opens and
again when it is submitted or its reset button pressed), the settings modal and its field
errors, disabling and re-enabling, the data reset, and the audit trail."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from coffeebuddy.config import Config
from coffeebuddy.db import Database
from coffeebuddy.domain.fairness import RULE_SUMMARY, choose_runner
from coffeebuddy.domain.models import Candidate
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.service.admin import REFUSAL
from coffeebuddy.service.common import DISABLED_TEXT
from coffeebuddy.slack import admin_blocks, run_blocks, stats_blocks
from coffeebuddy.web.app import create_app
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import (
    ADMIN_MODAL_DEFAULTS,
    ADMIN_RANGE_ERRORS,
    ADMIN_SETTINGS,
    SIGNING_SECRET,
    admin_modal_submission_body,
    command_body,
    view_block_action_body,
)
from tests.blocks import text_of
from tests.conftest import BOT_TOKEN, CHANNEL, SignedClient
from tests.driver import Channel, SqlFn, runner_of

OTHER = "C0OTHER002"
ADMIN = "U0ADMIN"  # in COFFEEBUDDY_ADMIN_USER_IDS (tests' config), not a Slack admin
BOSS = "U0BOSS"  # Slack workspace admin
OWNER = "U0OWNER"  # Slack workspace owner
CHAN_ADMIN = "U0CHADM"  # one of the channel's own admins, once configured
ADMIN_LOGGER = "coffeebuddy.service.admin"
SETTING_COLUMNS = (
    "enabled",
    "reminders_enabled",
    "last_call_enabled",
    "reminder_offset_minutes",
    "last_call_minutes",
    "fairness_window_runs",
    "data_retention_days",
    "admin_user_ids",
)
# A channel's settings before anyone changed them, as read back from the database.
DEFAULTS: dict[str, Any] = {**ADMIN_MODAL_DEFAULTS, "admin_user_ids": []}


@pytest.fixture(autouse=True)
def _admins(slack: FakeSlack) -> None:
    for user in (ADMIN, CHAN_ADMIN):
        slack.add_user(user)
    slack.add_user(BOSS, is_admin=True)
    slack.add_user(OWNER, is_owner=True)
    slack.add_channel(OTHER, name="tea")


@pytest.fixture
def other(web: SignedClient, worker: Worker, sql: SqlFn, slack: FakeSlack) -> Channel:
    return Channel(web, worker, sql, OTHER, slack)


# ---- helpers ------------------------------------------------------------------------------


def _submit(
    web: SignedClient, user: str, *, channel: str = CHANNEL, **settings: Any
) -> dict[str, Any] | None:
    """Submit the settings modal; unnamed settings are the channel defaults."""
    result = web.post(
        "/slack/interactions",
        admin_modal_submission_body(user_id=user, channel_id=channel, **settings),
    )
    assert result.status_code == 200, result.text
    return json.loads(result.text) if result.text else None


def _press_reset_in_modal(
    web: SignedClient, user: str, channel: str = CHANNEL, value: str | None = None
) -> None:
    result = web.post(
        "/slack/interactions",
        view_block_action_body(
            user_id=user,
            channel_id=channel,
            action_id=admin_blocks.ACTION_ADMIN_RESET,
            value=value or channel,
        ),
    )
    assert result.status_code == 200, result.text


def _settings(sql: SqlFn, channel: str = CHANNEL) -> dict[str, Any]:
    row = sql(
        f"SELECT {', '.join(SETTING_COLUMNS)} FROM channels WHERE slack_channel_id = %s",
        channel,
    )
    assert len(row) == 1, f"no channel row for {channel}"
    return dict(zip(SETTING_COLUMNS, row[0], strict=True))


def _audit(sql: SqlFn, channel: str = CHANNEL) -> list[tuple[str, str, dict[str, Any]]]:
    """(admin, action, details) oldest first."""
    return [
        (str(r[0]), str(r[1]), r[2])
        for r in sql(
            "SELECT admin_slack_user_id, action_type, action_details"
            " FROM channel_admin_actions WHERE slack_channel_id = %s ORDER BY created_at, id",
            channel,
        )
    ]


def _count(sql: SqlFn, query: str, *params: Any) -> int:
    return int(sql(query, *params)[0][0])


def _refusals(caplog: pytest.LogCaptureFixture, user: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == ADMIN_LOGGER
        and r.getMessage() == "admin_refused"
        and getattr(r, "user_id", None) == user
    ]


def _initial_values(view: dict[str, Any]) -> dict[str, Any]:
    """What the modal shows before anyone touches it, keyed by block id."""
    shown: dict[str, Any] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        assert block["block_id"] == element["action_id"]
        if element["type"] == "checkboxes":
            initial = element.get("initial_options") or []
            shown[block["block_id"]] = [o["value"] for o in initial] == [admin_blocks.ON]
        elif element["type"] == "number_input":
            shown[block["block_id"]] = int(element["initial_value"])
        elif element["type"] == "multi_users_select":
            shown[block["block_id"]] = list(element.get("initial_users") or [])
        else:
            raise AssertionError(f"unexpected element {element['type']}")
    return shown


def _reset_button(body: list[dict[str, Any]]) -> dict[str, Any]:
    buttons = [
        e
        for b in body
        if b["type"] == "actions"
        for e in b["elements"]
        if e.get("action_id") == admin_blocks.ACTION_ADMIN_RESET
    ]
    assert len(buttons) == 1, body
    button: dict[str, Any] = buttons[0]
    return button


def _run_with_orders(chan: Channel, orders: dict[str, str], starter: str = "U0ANA") -> str:
    chan.command(starter)
    run_id = chan.run_id()
    assert chan.status(run_id) == "open"
    chan.work()
    for user, text in orders.items():
        assert chan.submit(user, text, run_id=run_id) is None
    chan.work()
    return run_id


def _close(chan: Channel, run_id: str, by: str = "U0ANA") -> str:
    chan.click_and_work(by, run_blocks.ACTION_CLOSE_RUN, run_id)
    assert chan.status(run_id) == "closed"
    return runner_of(chan.sql, run_id)


def _message(slack: FakeSlack, channel: str, ts: str) -> dict[str, Any]:
    found = [m for m in slack.messages(channel) if m["ts"] == ts]
    assert len(found) == 1, f"no message {ts} in {channel}"
    return found[0]


def _make_channel_exist(chan: Channel) -> None:
    """A run started and canceled: the channel row exists, nothing is open."""
    run_id = _run_with_orders(chan, {"U0BEN": "tea"})
    chan.click_and_work("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)
    assert chan.status(run_id) == "canceled"


# ---- who may open the settings ------------------------------------------------------------


@pytest.mark.parametrize(
    "who", [ADMIN, BOSS, OWNER, CHAN_ADMIN], ids=["operator", "ws_admin", "owner", "channel"]
)
def test_each_kind_of_admin_opens_the_modal_with_current_values(
    web: SignedClient, slack: FakeSlack, sql: SqlFn, who: str
) -> None:
    current = {**ADMIN_SETTINGS, "admin_user_ids": [CHAN_ADMIN, "U0BEN"]}
    sql(
        "INSERT INTO channels (slack_channel_id, name, enabled, reminders_enabled,"
        " last_call_enabled, reminder_offset_minutes, last_call_minutes, fairness_window_runs,"
        " data_retention_days, admin_user_ids) VALUES (%s, 'coffee', %s, %s, %s, %s, %s, %s,"
        " %s, %s)",
        CHANNEL,
        *current.values(),
    )
    trigger = slack.trigger_id()
    result = web.post(
        "/slack/commands",
        command_body(user_id=who, channel_id=CHANNEL, text="admin", trigger_id=trigger),
    )
    assert result.status_code == 200
    assert result.json["response_type"] == "ephemeral"
    assert result.json["text"] != REFUSAL

    opens = slack.calls("views.open")
    assert [c.ok for c in opens] == [True]
    assert opens[0].args["trigger_id"] == trigger
    views = slack.opened_views()
    assert len(views) == 1
    view = views[0]
    assert view["callback_id"] == admin_blocks.CALLBACK_ADMIN_MODAL
    assert view["private_metadata"] == CHANNEL
    assert _initial_values(view) == current
    button = _reset_button(view["blocks"])
    assert button["value"] == CHANNEL
    # Opening the settings changes nothing.
    assert _settings(sql) == current
    assert _audit(sql) == []


def test_a_new_channel_shows_the_defaults(chan: Channel, slack: FakeSlack) -> None:
    chan.command(ADMIN, "admin")
    views = slack.opened_views()
    assert len(views) == 1
    assert _initial_values(views[0]) == DEFAULTS


def test_the_modal_offers_retention_within_the_global_bounds(
    config: Config, app_database: Database, slack: FakeSlack, sql: SqlFn
) -> None:
    bounded = replace(config, retention_min_days=30, retention_max_days=180)
    web = SignedClient(create_app(bounded, database=app_database))
    web.post(
        "/slack/commands",
        command_body(
            user_id=ADMIN, channel_id=CHANNEL, text="admin", trigger_id=slack.trigger_id()
        ),
    )
    (view,) = slack.opened_views()
    (retention,) = [b for b in view["blocks"] if b.get("block_id") == "data_retention_days"]
    assert (retention["element"]["min_value"], retention["element"]["max_value"]) == ("30", "180")
    assert retention["element"]["initial_value"] == "90"

    for days in (29, 181):
        answer = _submit(web, ADMIN, data_retention_days=days)
        assert answer is not None and answer["response_action"] == "errors"
        assert answer["errors"] == {"data_retention_days": "Must be between 30 and 180."}
    assert _submit(web, ADMIN, data_retention_days=180) is None
    assert _settings(sql)["data_retention_days"] == 180


@pytest.mark.parametrize("text", ["admin", "admin audit", "admin reset"])
def test_a_non_admin_is_refused_and_nothing_changes(
    chan: Channel, slack: FakeSlack, sql: SqlFn, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    _make_channel_exist(chan)
    _submit(chan.web, ADMIN, fairness_window_runs=6)  # something for the audit to show
    chan.work()
    channels_before = sql("SELECT * FROM channels ORDER BY id")
    audit_before = _audit(sql)
    jobs_before = _count(sql, "SELECT count(*) FROM jobs")

    answer = chan.command("U0BEN", text)

    assert answer == {"response_type": "ephemeral", "text": REFUSAL}
    assert slack.calls("views.open") == []
    assert sql("SELECT * FROM channels ORDER BY id") == channels_before
    assert _audit(sql) == audit_before
    assert _count(sql, "SELECT count(*) FROM jobs") == jobs_before
    assert len(_refusals(caplog, "U0BEN")) == 1


def test_when_slack_cant_confirm_a_workspace_admin_they_are_refused(
    chan: Channel, slack: FakeSlack
) -> None:
    slack.fail_next("users.info", error="internal_error")
    assert chan.command(BOSS, "admin")["text"] == REFUSAL
    assert slack.opened_views() == []
    # Once Slack answers, the same person is recognised.
    assert chan.command(BOSS, "admin")["text"] != REFUSAL
    assert len(slack.opened_views()) == 1


# ---- submitting the settings --------------------------------------------------------------


def test_a_valid_submission_updates_the_channel_and_audits_the_diff(
    chan: Channel, sql: SqlFn
) -> None:
    chan.command(ADMIN, "admin")
    wanted: dict[str, Any] = {
        "enabled": True,
        "reminders_enabled": False,
        "last_call_enabled": True,
        "reminder_offset_minutes": 10,
        "last_call_minutes": 3,
        "fairness_window_runs": 4,
        "data_retention_days": 30,
        "admin_user_ids": ["U0CAT", CHAN_ADMIN, "U0CAT"],
    }
    assert _submit(chan.web, ADMIN, **wanted) is None  # the modal closes
    chan.work()

    assert _settings(sql) == {**wanted, "admin_user_ids": ["U0CAT", CHAN_ADMIN]}
    assert _audit(sql) == [
        (
            ADMIN,
            "update_config",
            {
                "changes": {
                    "reminders_enabled": {"before": True, "after": False},
                    "last_call_enabled": {"before": False, "after": True},
                    "reminder_offset_minutes": {"before": 5, "after": 10},
                    "last_call_minutes": {"before": 5, "after": 3},
                    "fairness_window_runs": {"before": 10, "after": 4},
                    "data_retention_days": {"before": 90, "after": 30},
                    "admin_user_ids": {"before": [], "after": ["U0CAT", CHAN_ADMIN]},
                }
            },
        )
    ]
    row = sql(
        "SELECT a.created_at IS NOT NULL, a.channel_id = c.id FROM channel_admin_actions a"
        " JOIN channels c ON c.slack_channel_id = a.slack_channel_id"
    )
    assert row == [(True, True)]
    assert any("settings for this channel are saved" in t for t in chan.told(ADMIN))

    # Saving again without a change writes no audit row; one change writes only that one.
    assert _submit(chan.web, ADMIN, **wanted) is None
    assert len(_audit(sql)) == 1
    assert _submit(chan.web, ADMIN, **{**wanted, "fairness_window_runs": 5}) is None
    assert _audit(sql)[-1] == (
        ADMIN,
        "update_config",
        {"changes": {"fairness_window_runs": {"before": 4, "after": 5}}},
    )


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        *ADMIN_RANGE_ERRORS,
        ("data_retention_days", "99999999999999999999", "Must be between 1 and 365."),
        ("fairness_window_runs", "ten", "Enter a whole number."),
        ("reminder_offset_minutes", "5.5", "Enter a whole number."),
        ("last_call_minutes", "1e1", "Enter a whole number."),
        ("data_retention_days", "", "Enter a whole number."),
        ("fairness_window_runs", None, "Enter a whole number."),
    ],
)
def test_bad_values_are_field_errors_and_change_nothing(
    chan: Channel, sql: SqlFn, field: str, value: Any, error: str
) -> None:
    _make_channel_exist(chan)
    jobs_before = _count(sql, "SELECT count(*) FROM jobs")

    # Other fields changed too: none of them may be saved while one is wrong.
    answer = _submit(chan.web, ADMIN, enabled=False, reminders_enabled=False, **{field: value})

    assert answer == {"response_action": "errors", "errors": {field: error}}
    assert _settings(sql) == DEFAULTS
    assert _audit(sql) == []
    assert _count(sql, "SELECT count(*) FROM jobs") == jobs_before


def test_every_bad_field_is_reported_at_once(chan: Channel, sql: SqlFn) -> None:
    chan.command(ADMIN, "admin")
    answer = _submit(
        chan.web,
        ADMIN,
        reminder_offset_minutes=500,
        last_call_minutes="x",
        fairness_window_runs=0,
        data_retention_days=-5,
        admin_user_ids=["not a user"],
    )
    assert answer is not None and answer["response_action"] == "errors"
    assert set(answer["errors"]) == {
        "reminder_offset_minutes",
        "last_call_minutes",
        "fairness_window_runs",
        "data_retention_days",
        "admin_user_ids",
    }
    assert _settings(sql) == DEFAULTS
    assert _audit(sql) == []


def test_the_extremes_of_each_range_are_accepted(chan: Channel, sql: SqlFn) -> None:
    chan.command(ADMIN, "admin")
    low: dict[str, Any] = {
        "reminder_offset_minutes": 0,
        "last_call_minutes": 1,
        "fairness_window_runs": 1,
        "data_retention_days": 1,
    }
    high: dict[str, Any] = {
        "reminder_offset_minutes": 120,
        "last_call_minutes": 60,
        "fairness_window_runs": 100,
        "data_retention_days": 365,
    }
    for values in (low, high):
        assert _submit(chan.web, ADMIN, **values) is None
        assert _settings(sql) == {**DEFAULTS, **values}


@pytest.mark.parametrize(
    "forger", ["U0BEN", "channel_admin_elsewhere"], ids=["member", "other_channel_admin"]
)
def test_a_forged_submission_from_a_non_admin_changes_nothing(
    chan: Channel,
    other: Channel,
    sql: SqlFn,
    caplog: pytest.LogCaptureFixture,
    forger: str,
) -> None:
    _make_channel_exist(chan)
    user = "U0BEN"
    if forger == "channel_admin_elsewhere":
        # An admin of another channel has no say here.
        other.command(ADMIN, "admin")
        assert _submit(other.web, ADMIN, channel=OTHER, admin_user_ids=[CHAN_ADMIN]) is None
        user = CHAN_ADMIN
    chan.work()
    channels_before = sql("SELECT * FROM channels ORDER BY id")
    audit_before = sql("SELECT * FROM channel_admin_actions ORDER BY id")
    jobs_before = _count(sql, "SELECT count(*) FROM jobs")

    # Never shown the modal, they post what it would submit: off, and themselves as admin.
    answer = _submit(chan.web, user, enabled=False, fairness_window_runs=1, admin_user_ids=[user])

    assert answer is not None and answer["response_action"] == "errors"
    assert answer["errors"] == {"enabled": REFUSAL}
    assert sql("SELECT * FROM channels ORDER BY id") == channels_before
    assert sql("SELECT * FROM channel_admin_actions ORDER BY id") == audit_before
    assert _count(sql, "SELECT count(*) FROM jobs") == jobs_before
    assert len(_refusals(caplog, user)) == 1
    # Still not an admin here.
    assert chan.command(user, "admin")["text"] == REFUSAL


def test_a_forged_submission_with_bad_values_is_refused_not_validated(
    chan: Channel, sql: SqlFn, caplog: pytest.LogCaptureFixture
) -> None:
    _make_channel_exist(chan)
    answer = _submit(chan.web, "U0BEN", fairness_window_runs=0, data_retention_days="x")
    # A non-admin learns nothing about the fields: the answer is the refusal, and it is logged.
    assert answer == {"response_action": "errors", "errors": {"enabled": REFUSAL}}
    assert _settings(sql) == DEFAULTS
    assert _audit(sql) == []
    assert len(_refusals(caplog, "U0BEN")) == 1


def test_a_submission_for_an_unknown_channel_is_refused(
    web: SignedClient, sql: SqlFn, caplog: pytest.LogCaptureFixture
) -> None:
    answer = _submit(web, ADMIN, channel="C0NEVERSEEN")
    assert answer == {"response_action": "errors", "errors": {"enabled": REFUSAL}}
    assert sql("SELECT count(*) FROM channels") == [(0,)]
    assert sql("SELECT count(*) FROM channel_admin_actions") == [(0,)]
    assert len(_refusals(caplog, ADMIN)) == 1


def test_channel_admins_set_in_the_modal_gain_and_lose_admin_rights(
    chan: Channel, slack: FakeSlack, sql: SqlFn, caplog: pytest.LogCaptureFixture
) -> None:
    _make_channel_exist(chan)
    assert chan.command(CHAN_ADMIN, "admin")["text"] == REFUSAL

    assert _submit(chan.web, ADMIN, admin_user_ids=[CHAN_ADMIN]) is None
    assert _settings(sql)["admin_user_ids"] == [CHAN_ADMIN]

    # Now they open the modal, save settings (audited under their name) and may cancel
    # someone else's run, like any admin.
    assert chan.command(CHAN_ADMIN, "admin")["text"] != REFUSAL
    assert len(slack.opened_views()) == 1
    assert _initial_values(slack.opened_views()[0])["admin_user_ids"] == [CHAN_ADMIN]
    assert (
        _submit(chan.web, CHAN_ADMIN, fairness_window_runs=3, admin_user_ids=[CHAN_ADMIN]) is None
    )
    assert _audit(sql)[-1] == (
        CHAN_ADMIN,
        "update_config",
        {"changes": {"fairness_window_runs": {"before": 10, "after": 3}}},
    )
    run_id = _run_with_orders(chan, {"U0BEN": "tea"})
    chan.click_and_work(CHAN_ADMIN, run_blocks.ACTION_CANCEL_RUN, run_id)
    assert chan.status(run_id) == "canceled"

    # Removed again, they are refused at open and at submit.
    assert _submit(chan.web, ADMIN, fairness_window_runs=3) is None
    assert _settings(sql)["admin_user_ids"] == []
    assert chan.command(CHAN_ADMIN, "admin")["text"] == REFUSAL
    before = _settings(sql)
    answer = _submit(chan.web, CHAN_ADMIN, fairness_window_runs=9, admin_user_ids=[CHAN_ADMIN])
    assert answer == {"response_action": "errors", "errors": {"enabled": REFUSAL}}
    assert _settings(sql) == before
    assert len(_refusals(caplog, CHAN_ADMIN)) == 3  # twice at open, once at submit


# ---- disable and enable --------------------------------------------------------------------


def test_disabling_cancels_the_open_run_and_coffee_then_records_nothing(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = _run_with_orders(chan, {"U0BEN": "tea", "U0CAT": "latte"})
    ts = str(sql("SELECT message_ts FROM runs WHERE id = %s", run_id)[0][0])

    assert _submit(chan.web, BOSS, enabled=False) is None
    chan.work()

    assert chan.status(run_id) == "canceled"
    reason = f"CoffeeBuddy was turned off in this channel by <@{BOSS}>."
    assert sql("SELECT cancel_reason FROM runs WHERE id = %s", run_id) == [(reason,)]
    message = _message(slack, CHANNEL, ts)
    assert "This run was canceled." in text_of(message)
    assert reason in text_of(message)
    assert not any(b.get("block_id") == run_blocks.RUN_ACTIONS_BLOCK_ID for b in message["blocks"])
    assert _settings(sql) == {**DEFAULTS, "enabled": False}
    assert _audit(sql) == [(BOSS, "disable", {"canceled_run": run_id})]

    def snapshot() -> list[Any]:
        return [
            sql("SELECT * FROM users ORDER BY id"),
            sql("SELECT * FROM runs ORDER BY id"),
            sql("SELECT * FROM orders ORDER BY id"),
            sql("SELECT * FROM user_preferences ORDER BY id"),
            sql("SELECT * FROM channels ORDER BY id"),
            sql("SELECT count(*) FROM jobs"),
            sql("SELECT count(*) FROM events"),
        ]

    before = snapshot()
    counts = [len(part) for part in before[:5]]
    assert counts[0] >= 3 and counts[1] == 1 and counts[3] == 2  # there was something to add to
    typed = [
        ("U0BEN", ""),
        ("U0DAN", ""),
        ("U0EVE", "in 20m Lobby"),
        ("U0CAT", "10:30"),
        ("U0FAY", "stats"),
    ]
    lookups = len(slack.calls("users.info"))
    for user, text in typed:
        assert chan.command(user, text)["text"] == DISABLED_TEXT
    chan.work()
    assert snapshot() == before
    assert len(slack.calls("users.info")) == lookups  # not even a profile lookup
    assert sql("SELECT count(*) FROM users WHERE slack_user_id IN ('U0DAN', 'U0EVE')") == [(0,)]

    # Admins can still get in, and turn it back on.
    assert chan.command(BOSS, "admin")["text"] != REFUSAL
    assert _initial_values(slack.opened_views()[-1])["enabled"] is False
    assert _submit(chan.web, ADMIN, enabled=True) is None
    assert _audit(sql) == [
        (BOSS, "disable", {"canceled_run": run_id}),
        (ADMIN, "enable", {"canceled_run": None}),
    ]
    answer = chan.command("U0DAN")
    assert "Starting your coffee run" in answer["text"]
    second = chan.run_id()
    assert second != run_id and chan.status(second) == "open"


def test_disabling_with_no_open_run_and_a_config_change_writes_both(
    chan: Channel, sql: SqlFn
) -> None:
    _make_channel_exist(chan)
    assert _submit(chan.web, ADMIN, enabled=False, fairness_window_runs=7) is None
    assert sorted(_audit(sql), key=lambda row: row[1]) == [
        (ADMIN, "disable", {"canceled_run": None}),
        (ADMIN, "update_config", {"changes": {"fairness_window_runs": {"before": 10, "after": 7}}}),
    ]
    assert chan.command("U0ANA")["text"] == DISABLED_TEXT


# ---- data reset ----------------------------------------------------------------------------


def _seed_reset_scenario(
    chan: Channel, other: Channel, slack: FakeSlack, sql: SqlFn
) -> dict[str, Any]:
    """History in two channels, with an open run (and its queued reminder) in each."""
    first = _run_with_orders(chan, {"U0BEN": "tea"})
    assert _close(chan, first) == "U0BEN"  # the only participant
    second = _run_with_orders(chan, {"U0BEN": "tea", "U0CAT": "latte", "U0DAN": "mocha"})
    _close(chan, second)
    chan.command("U0ANA", "in 30m Lobby")
    open_run = chan.run_id()
    chan.work()
    for user, text in {"U0BEN": "flat white", "U0CAT": "chai"}.items():
        assert chan.submit(user, text, run_id=open_run) is None
    chan.work()

    elsewhere = _run_with_orders(other, {"U0EVE": "espresso", "U0FAY": "tea"}, starter="U0GUS")
    _close(other, elsewhere, by="U0GUS")
    other.command("U0GUS", "in 40m")
    other_open = other.run_id()
    other.work()
    assert other.submit("U0EVE", "cortado", run_id=other_open) is None
    other.work()

    ts = sql("SELECT message_ts FROM runs WHERE id = %s", open_run)[0][0]
    assert ts is not None
    queued = _count(
        sql,
        "SELECT count(*) FROM jobs j JOIN runs r ON r.id = j.run_id JOIN channels c"
        " ON c.id = r.channel_id WHERE c.slack_channel_id = %s AND j.status = 'queued'",
        CHANNEL,
    )
    assert queued >= 1, "the open run's reminder should be queued"
    return {"open_run": open_run, "ts": str(ts), "queued": queued}


def _channel_data(sql: SqlFn, channel: str) -> dict[str, list[tuple[Any, ...]]]:
    where = "(SELECT id FROM channels WHERE slack_channel_id = %s)"
    runs = f"(SELECT id FROM runs WHERE channel_id = {where})"
    return {
        "runs": sql(f"SELECT * FROM runs WHERE channel_id = {where} ORDER BY id", channel),
        "orders": sql(f"SELECT * FROM orders WHERE run_id IN {runs} ORDER BY id", channel),
        "preferences": sql(
            f"SELECT * FROM user_preferences WHERE channel_id = {where} ORDER BY id", channel
        ),
        "runner_stats": sql(
            f"SELECT * FROM runner_stats WHERE channel_id = {where} ORDER BY id", channel
        ),
        "queued_jobs": sql(
            f"SELECT * FROM jobs WHERE run_id IN {runs} AND status = 'queued' ORDER BY id",
            channel,
        ),
        # The event outbox carries the channel's and its people's ids too.
        "events": sql(
            "SELECT id FROM events WHERE envelope->>'channel_id' = %s ORDER BY id", channel
        ),
    }


def _check_reset(
    chan: Channel,
    slack: FakeSlack,
    sql: SqlFn,
    seeded: dict[str, Any],
    before: dict[str, list[tuple[Any, ...]]],
    other_before: dict[str, list[tuple[Any, ...]]],
    admin: str,
) -> None:
    after = _channel_data(sql, CHANNEL)
    assert {k: len(v) for k, v in after.items()} == dict.fromkeys(after, 0)
    assert _channel_data(sql, OTHER) == other_before
    assert _audit(sql) == [
        (
            admin,
            "data_reset",
            {
                "runs": 3,
                "orders": len(before["orders"]),
                "preferences": 3,
                "runner_stats": len(before["runner_stats"]),
                "jobs": seeded["queued"],
                "events": len(before["events"]),
            },
        )
    ]
    assert len(before["orders"]) == 6 and len(before["runner_stats"]) == 2
    assert before["events"], "the seeded runs wrote events"
    # The settings and the people stay; only the channel's history went.
    assert _settings(sql) == DEFAULTS
    assert sql("SELECT count(*) FROM users WHERE slack_user_id = 'U0BEN'") == [(1,)]
    # The open run's message no longer offers buttons for a run that is gone.
    message = _message(slack, CHANNEL, seeded["ts"])
    assert "removed when an admin reset" in message["text"]
    assert not message.get("blocks")
    assert any("deleted 3 runs, 6 orders and 3 usual orders" in t for t in chan.told(admin))


def _fairness_starts_from_zero(chan: Channel, sql: SqlFn) -> None:
    """The next close picks exactly whom an untouched channel would have picked."""
    run_id = _run_with_orders(chan, {"U0BEN": "tea", "U0CAT": "latte"})
    runner = _close(chan, run_id)
    expected = choose_runner(
        [Candidate(u, 0, None, False, name=u.lower()) for u in ("U0BEN", "U0CAT")],
        previous_runner=None,
        window=DEFAULTS["fairness_window_runs"],
        seed=run_id,
    )
    got = sql("SELECT runner_rule, runner_reason FROM runs WHERE id = %s", run_id)
    assert (runner, *got[0]) == (expected.runner_slack_id, expected.rule, expected.reason)
    assert sql(
        "SELECT u.slack_user_id, s.runs_served_count FROM runner_stats s"
        " JOIN users u ON u.id = s.user_id JOIN channels c ON c.id = s.channel_id"
        " WHERE c.slack_channel_id = %s",
        CHANNEL,
    ) == [(runner, 1)]


def test_reset_by_command_asks_for_confirmation_then_deletes_the_channels_data(
    chan: Channel, other: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    seeded = _seed_reset_scenario(chan, other, slack, sql)
    before = _channel_data(sql, CHANNEL)
    other_before = _channel_data(sql, OTHER)

    answer = chan.command(OWNER, "admin reset")

    # Only a question so far: a danger button behind Slack's confirm dialog.
    assert answer["response_type"] == "ephemeral"
    button = _reset_button(answer["blocks"])
    assert button["value"] == CHANNEL
    assert button["style"] == "danger"
    confirm = button["confirm"]
    assert confirm["style"] == "danger"
    assert confirm["title"]["text"] and confirm["text"]["text"]
    assert confirm["confirm"]["text"] and confirm["deny"]["text"]
    assert _channel_data(sql, CHANNEL) == before
    assert _audit(sql) == []

    chan.click_and_work(OWNER, admin_blocks.ACTION_ADMIN_RESET, CHANNEL, block_id="admin_reset")

    _check_reset(chan, slack, sql, seeded, before, other_before, OWNER)
    assert chan.command("U0BEN", "stats")["text"] == stats_blocks.no_history_text(
        RULE_SUMMARY, known_channel=True
    )
    _fairness_starts_from_zero(chan, sql)


def test_reset_from_the_modal_button(
    chan: Channel, other: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    seeded = _seed_reset_scenario(chan, other, slack, sql)
    before = _channel_data(sql, CHANNEL)
    other_before = _channel_data(sql, OTHER)

    chan.command(ADMIN, "admin")
    (view,) = slack.opened_views()
    button = _reset_button(view["blocks"])
    assert button["style"] == "danger" and button["confirm"]["style"] == "danger"
    # Slack posts the press with the view (its private_metadata), no channel, no response_url.
    _press_reset_in_modal(chan.web, ADMIN, channel=view["private_metadata"], value=button["value"])
    chan.work()

    _check_reset(chan, slack, sql, seeded, before, other_before, ADMIN)
    _fairness_starts_from_zero(chan, sql)


@pytest.mark.parametrize("where", ["message", "modal"])
@pytest.mark.parametrize("who", ["U0BEN", "other_channel_admin"])
def test_a_forged_reset_is_refused(
    chan: Channel,
    other: Channel,
    slack: FakeSlack,
    sql: SqlFn,
    caplog: pytest.LogCaptureFixture,
    where: str,
    who: str,
) -> None:
    seeded = _seed_reset_scenario(chan, other, slack, sql)
    user = "U0BEN"
    if who == "other_channel_admin":
        assert _submit(other.web, ADMIN, channel=OTHER, admin_user_ids=[CHAN_ADMIN]) is None
        user = CHAN_ADMIN
    chan.work()
    before = _channel_data(sql, CHANNEL)
    audit_before = sql("SELECT * FROM channel_admin_actions ORDER BY id")

    if where == "message":
        chan.click(user, admin_blocks.ACTION_ADMIN_RESET, CHANNEL, block_id="admin_reset")
    else:
        _press_reset_in_modal(chan.web, user)
    chan.work()

    assert _channel_data(sql, CHANNEL) == before
    assert sql("SELECT * FROM channel_admin_actions ORDER BY id") == audit_before
    assert chan.status(seeded["open_run"]) == "open"
    assert REFUSAL in chan.told(user)
    assert len(_refusals(caplog, user)) == 1


def test_a_reset_button_naming_another_channel_does_nothing(
    chan: Channel, other: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    _seed_reset_scenario(chan, other, slack, sql)
    before = (_channel_data(sql, CHANNEL), _channel_data(sql, OTHER))

    # The button's value must be the channel it is pressed in.
    chan.click(ADMIN, admin_blocks.ACTION_ADMIN_RESET, OTHER, block_id="admin_reset")
    _press_reset_in_modal(chan.web, ADMIN, channel=CHANNEL, value=OTHER)
    chan.work()

    assert (_channel_data(sql, CHANNEL), _channel_data(sql, OTHER)) == before
    assert sql("SELECT count(*) FROM channel_admin_actions") == [(0,)]


# ---- the audit trail -----------------------------------------------------------------------


def test_admin_audit_lists_recent_actions_newest_first(chan: Channel, sql: SqlFn) -> None:
    assert chan.command(ADMIN, "admin audit")["text"] == (
        "No admin actions recorded for this channel yet."
    )
    _make_channel_exist(chan)
    assert _submit(chan.web, ADMIN, fairness_window_runs=5) is None
    assert _submit(chan.web, BOSS, fairness_window_runs=5, enabled=False) is None
    assert _submit(chan.web, OWNER, fairness_window_runs=5) is None
    chan.command(ADMIN, "admin reset")
    chan.click_and_work(ADMIN, admin_blocks.ACTION_ADMIN_RESET, CHANNEL, block_id="admin_reset")

    text = chan.command(BOSS, "admin audit")["text"]
    lines = text.splitlines()
    assert lines[0].startswith("*Recent admin actions")
    entries = lines[1:]
    assert len(entries) == 4, text
    assert f"<@{ADMIN}> reset the channel's data (1 runs, 1 usuals)" in entries[0]
    assert f"<@{OWNER}> turned CoffeeBuddy on" in entries[1]
    assert f"<@{BOSS}> turned CoffeeBuddy off" in entries[2]
    assert f"<@{ADMIN}> changed the fairness window from 10 to 5 runs" in entries[3]
    assert all("<!date^" in e for e in entries)

    assert chan.command("U0BEN", "admin audit")["text"] == REFUSAL


def test_the_audit_is_written_in_the_same_transaction_as_the_change(
    chan: Channel, other: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    seeded = _seed_reset_scenario(chan, other, slack, sql)
    sql(
        "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'audit table unavailable'; END $$"
    )
    sql(
        "CREATE TRIGGER audit_down BEFORE INSERT ON channel_admin_actions"
        " FOR EACH ROW EXECUTE FUNCTION audit_down()"
    )
    before = _channel_data(sql, CHANNEL)

    answer = _submit(chan.web, ADMIN, enabled=False, fairness_window_runs=3)
    assert answer is not None and answer["response_action"] == "errors"
    assert "Something went wrong" in answer["errors"]["enabled"]
    chan.click_and_work(ADMIN, admin_blocks.ACTION_ADMIN_RESET, CHANNEL, block_id="admin_reset")

    # Without its audit row, no change happened at all.
    assert _settings(sql) == DEFAULTS
    assert chan.status(seeded["open_run"]) == "open"
    assert _channel_data(sql, CHANNEL) == before
    assert any("Something went wrong" in t for t in chan.told(ADMIN))
    assert sql("SELECT count(*) FROM channel_admin_actions") == [(0,)]


def _all_rows_as_text(database_url: str) -> dict[str, list[str]]:
    """Every row of every table in the public schema, as Postgres prints it (all columns,
    jsonb and arrays included)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        return {
            t: [str(r[0]) for r in conn.execute(f'SELECT t::text FROM "{t}" t').fetchall()]
            for t in tables
        }


def _text_columns(database_url: str) -> Iterator[tuple[str, str, str]]:
    """(table, column, value) for every text-like column value, jsonb included."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cols = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND (data_type IN ('text', 'character varying',"
            " 'character', 'json', 'jsonb') OR udt_name IN ('_text', '_varchar'))"
        ).fetchall()
        for table, column in cols:
            for (value,) in conn.execute(
                f'SELECT "{column}"::text FROM "{table}" WHERE "{column}" IS NOT NULL'
            ).fetchall():
                yield str(table), str(column), str(value)


def test_audit_sample_over_many_runs_with_admin_actions(
    chan: Channel,
    slack: FakeSlack,
    sql: SqlFn,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    people = ["U0BEN", "U0CAT", "U0DAN", "U0EVE"]
    expected: list[tuple[str, str]] = []
    runs_done = 0
    runs_since_reset = 0
    reset_at_runs = -1

    def run(i: int) -> None:
        nonlocal runs_done, runs_since_reset
        orders = {p: f"drink {i} for {p[2:].lower()}" for p in people[: 2 + i % 3]}
        run_id = _run_with_orders(chan, orders)
        _close(chan, run_id)
        runs_done += 1
        runs_since_reset += 1

    def admin(user: str, action: str, **settings: Any) -> None:
        assert _submit(chan.web, user, **settings) is None
        expected.append((user, action))

    current: dict[str, Any] = {}
    for i in range(14):
        run(i)
        if i == 1:
            current = {"fairness_window_runs": 5}
            admin(ADMIN, "update_config", **current)
        elif i == 3:
            admin(BOSS, "disable", **current, enabled=False)
            assert chan.command("U0BEN")["text"] == DISABLED_TEXT
            admin(BOSS, "enable", **current, enabled=True)
        elif i == 5:
            current = {**current, "admin_user_ids": [CHAN_ADMIN]}
            admin(ADMIN, "update_config", **current)
        elif i == 7:
            current = {**current, "reminders_enabled": False, "reminder_offset_minutes": 9}
            admin(CHAN_ADMIN, "update_config", **current)
        elif i == 8:
            chan.command(CHAN_ADMIN, "admin reset")
            chan.click_and_work(
                CHAN_ADMIN, admin_blocks.ACTION_ADMIN_RESET, CHANNEL, block_id="admin_reset"
            )
            expected.append((CHAN_ADMIN, "data_reset"))
            reset_at_runs = runs_since_reset
            runs_since_reset = 0
        elif i == 10:
            current = {**current, "fairness_window_runs": 6}
            admin(CHAN_ADMIN, "update_config", **current)
        elif i == 11:
            current = {**current, "data_retention_days": 60, "last_call_enabled": True}
            admin(OWNER, "update_config", **current)
        elif i == 12:
            admin(OWNER, "disable", **current, enabled=False)
            admin(ADMIN, "enable", **current, enabled=True)
        elif i == 13:
            current = {**current, "data_retention_days": 45}
            admin(ADMIN, "update_config", **current)
    chan.work()
    assert runs_done == 14

    rows = sql(
        "SELECT admin_slack_user_id, action_type, action_details, created_at, channel_id,"
        " slack_channel_id FROM channel_admin_actions ORDER BY created_at, id"
    )
    assert [(r[0], r[1]) for r in rows] == expected
    assert len(rows) >= 10
    channel_uuid = sql("SELECT id FROM channels WHERE slack_channel_id = %s", CHANNEL)[0][0]
    for admin_id, action, details, created_at, channel_id, slack_channel_id in rows:
        assert created_at is not None and created_at.tzinfo is not None
        assert admin_id in (ADMIN, BOSS, OWNER, CHAN_ADMIN)
        assert (channel_id, slack_channel_id) == (channel_uuid, CHANNEL)
        assert isinstance(details, dict) and details, (action, details)
        if action == "update_config":
            assert details["changes"]
            for change in details["changes"].values():
                assert set(change) == {"before", "after"}
                assert change["before"] != change["after"]
        elif action in ("enable", "disable"):
            assert set(details) == {"canceled_run"}
    # Separate actions are separate transactions: their times never go backwards.
    times = [r[3] for r in rows]
    assert times == sorted(times) and len(set(times)) == len(times)
    reset = next(r[2] for r in rows if r[1] == "data_reset")
    assert reset["runs"] == reset_at_runs == 9
    assert reset["runner_stats"] >= 1 and reset["preferences"] == len(people)
    configs = [r[2]["changes"] for r in rows if r[1] == "update_config"]
    assert configs[0] == {"fairness_window_runs": {"before": 10, "after": 5}}
    assert configs[1] == {"admin_user_ids": {"before": [], "after": [CHAN_ADMIN]}}
    assert configs[2] == {
        "reminders_enabled": {"before": True, "after": False},
        "reminder_offset_minutes": {"before": 5, "after": 9},
    }
    # The runs after the reset are all there; the ones before it are gone.
    assert _count(sql, "SELECT count(*) FROM runs WHERE status = 'closed'") == 14 - 9

    # `/coffee admin audit` shows them newest first, at most the configured number.
    text = chan.command(OWNER, "admin audit")["text"]
    entries = text.splitlines()[1:]
    assert len(entries) == len(expected)
    assert f"<@{ADMIN}> changed data retention from 60 to 45 days" in entries[0]
    assert f"<@{ADMIN}> turned CoffeeBuddy on" in entries[1]
    assert f"<@{OWNER}> turned CoffeeBuddy off" in entries[2]
    assert f"<@{ADMIN}> changed the fairness window from 10 to 5 runs" in entries[-1]

    # Neither the bot token nor the signing secret is stored anywhere.
    secrets = (BOT_TOKEN, SIGNING_SECRET, BOT_TOKEN.removeprefix("xoxb-"))
    rows_text = _all_rows_as_text(database_url)
    assert any("drink 13 for" in r for r in rows_text["orders"]), "the scan sees the data"
    assert any("fairness_window_runs" in r for r in rows_text["channel_admin_actions"])
    for table, table_rows in rows_text.items():
        for row in table_rows:
            for secret in secrets:
                assert secret not in row, f"secret in {table}"
    scanned = 0
    for table, column, value in _text_columns(database_url):
        scanned += 1
        for secret in secrets:
            assert secret not in value, f"secret in {table}.{column}"
    assert scanned > 50
    # …nor logged.
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert "admin_settings_saved" in logged
    for secret in secrets:
        assert secret not in logged


def test_the_audit_command_shows_at_most_the_last_actions(chan: Channel) -> None:
    _make_channel_exist(chan)
    for n in range(1, 18):
        assert _submit(chan.web, ADMIN, fairness_window_runs=n + 1) is None
    entries = chan.command(ADMIN, "admin audit")["text"].splitlines()[1:]
    assert len(entries) == 15  # AUDIT_LIMIT
    assert "the fairness window from 17 to 18 runs" in entries[0]
    assert "the fairness window from 3 to 4 runs" in entries[-1]


# ---- the workspace check and a demoted admin ------------------------------------------------


def test_settings_and_reset_from_another_workspace_are_refused(
    chan: Channel, sql: SqlFn, caplog: pytest.LogCaptureFixture
) -> None:
    _make_channel_exist(chan)
    run_id = chan.open_run("U0ANA")
    # The channel was first used from another workspace (a second install of the app).
    sql("UPDATE channels SET slack_team_id = 'T0ELSEWHERE' WHERE slack_channel_id = %s", CHANNEL)
    before = _settings(sql)

    answer = _submit(chan.web, ADMIN, fairness_window_runs=6)
    assert answer is not None and answer["response_action"] == "errors"
    _press_reset_in_modal(chan.web, ADMIN)
    chan.work()

    assert _settings(sql) == before
    assert _audit(sql) == []
    assert chan.status(run_id) == "open"
    assert len(_refusals(caplog, ADMIN)) == 2


def test_a_demoted_workspace_admin_loses_admin_rights_within_the_ttl(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    assert chan.command(BOSS, "admin")["text"] != REFUSAL  # cached as a workspace admin
    slack.add_user(BOSS)  # demoted in Slack
    # Still inside the short TTL: the cached flag holds (no users.info per click).
    calls = len(slack.calls("users.info"))
    assert chan.command(BOSS, "admin")["text"] != REFUSAL
    assert len(slack.calls("users.info")) == calls
    # Past it (the default 5 minutes; the 24 h profile TTL is not what counts): asked again.
    sql(
        "UPDATE users SET profile_fetched_at = now() - interval '6 minutes'"
        " WHERE slack_user_id = %s",
        BOSS,
    )
    assert chan.command(BOSS, "admin")["text"] == REFUSAL


def test_a_stale_admin_flag_is_not_trusted_when_slack_is_down(
    chan: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    assert chan.command(BOSS, "admin")["text"] != REFUSAL
    sql(
        "UPDATE users SET profile_fetched_at = now() - interval '6 minutes'"
        " WHERE slack_user_id = %s",
        BOSS,
    )
    slack.fail_next("users.info", error="internal_error")
    assert chan.command(BOSS, "admin")["text"] == REFUSAL
