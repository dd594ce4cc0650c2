"""'I can't go' in the runner's DM (FR4, FR5), through the HTTP endpoints as Slack calls
them, real Postgres and the worker's handlers: the next person by the fairness rule takes
over, the summary changes in place, the DMs follow, and the history stays fair."""

from __future__ import annotations

from typing import Any

import pytest

from coffeebuddy.jobs.worker import Worker
from coffeebuddy.slack import run_blocks
from coffeebuddy.store import queue
from coffeebuddy.store.queue import RUNNER_REMINDER
from testkit.fakes.slack_api import FakeSlack
from tests.blocks import text_of
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel, SqlFn, bring_reminder_forward

ANA, BEN, CAT, DAN, EVE = "U0ANA", "U0BEN", "U0CAT", "U0DAN", "U0EVE"


@pytest.fixture
def dm(web: SignedClient, worker: Worker, sql: SqlFn, slack: FakeSlack) -> Any:
    """The DM channel between the bot and `user`, as Slack reports it on a button click."""
    made: dict[str, Channel] = {}

    def get(user: str) -> Channel:
        return made.setdefault(user, Channel(web, worker, sql, f"D{user}", slack))

    return get


# ---- helpers ----------------------------------------------------------------------------


def _order_list(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        b
        for b in message.get("blocks", [])
        if str(b.get("block_id", "")).startswith(run_blocks.ORDER_LIST_BLOCK_ID)
    ]


def _summaries(slack: FakeSlack) -> list[dict[str, Any]]:
    return [m for m in slack.messages(CHANNEL) if _order_list(m)]


def _buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        e["action_id"]: e
        for b in message.get("blocks", [])
        if b.get("type") == "actions"
        for e in b["elements"]
    }


def _run(sql: SqlFn, run_id: str) -> dict[str, Any]:
    keys = ("runner", "rule", "reason", "declined", "summary_ts", "message_ts", "closed_at")
    rows = sql(
        "SELECT u.slack_user_id, r.runner_rule, r.runner_reason, r.declined_user_ids,"
        " r.summary_ts, r.message_ts, r.closed_at"
        " FROM runs r LEFT JOIN users u ON u.id = r.runner_user_id WHERE r.id = %s",
        run_id,
    )
    return dict(zip(keys, rows[0], strict=True))


def _stats(sql: SqlFn) -> dict[str, tuple[int, Any]]:
    rows = sql(
        "SELECT u.slack_user_id, s.runs_served_count, s.last_run_at"
        " FROM runner_stats s JOIN users u ON u.id = s.user_id"
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def _events(sql: SqlFn, run_id: str, kind: str) -> list[dict[str, Any]]:
    rows = sql(
        "SELECT envelope FROM events WHERE run_id = %s AND event_type = %s ORDER BY id",
        run_id,
        kind,
    )
    return [r[0]["data"] for r in rows]


def _closed_run(
    chan: Channel, orders: dict[str, str], *, volunteer: str | None = None, text: str = ""
) -> str:
    run_id = chan.open_run(ANA, text)
    for user, order in orders.items():
        assert chan.submit(user, order, volunteer=user == volunteer, run_id=run_id) is None
    chan.click_and_work(ANA, run_blocks.ACTION_CLOSE_RUN, run_id)
    assert chan.status(run_id) == "closed"
    return run_id


def _press(dm: Any, user: str, run_id: str) -> None:
    """`user` presses "I can't go" on the latest message in their DM with the bot."""
    channel = dm(user)
    chan_dms = channel.slack.dms(user)
    message_ts = chan_dms[-1]["ts"] if chan_dms else "1700000000.000100"
    channel.click(
        user,
        run_blocks.ACTION_CANT_GO,
        run_id,
        message_ts=message_ts,
        block_id=run_blocks.RUNNER_ACTIONS_BLOCK_ID,
    )
    channel.work()


def _answers(dm: Any, user: str) -> list[str]:
    """What `user` was told in answer to presses in their DM (not in the channel)."""
    channel: Channel = dm(user)
    told = channel.told(user)
    for e in channel.slack.ephemerals(user):
        if e["channel"] != channel.channel_id:
            told.remove(str(e.get("text", "")))
    return told


def _refused_press(dm: Any, sql: SqlFn, user: str, run_id: str) -> list[str]:
    """`user` presses and is refused: nothing changes (see _snapshot); what they were told."""
    before = _snapshot(sql)
    _press(dm, user, run_id)
    assert _snapshot(sql) == before
    return _answers(dm, user)


def _snapshot(sql: SqlFn) -> list[Any]:
    """Everything a refused press must leave alone (answers to the presser aside)."""
    return [
        sql("SELECT * FROM runs ORDER BY id"),
        sql("SELECT * FROM runner_stats ORDER BY id"),
        sql("SELECT count(*) FROM events"),
        sql("SELECT count(*) FROM jobs WHERE kind <> %s", queue.NOTIFY_USER),
    ]


# ---- the swap ---------------------------------------------------------------------------


def test_the_runner_hands_the_run_to_the_next_by_the_rule(
    chan: Channel, dm: Any, slack: FakeSlack, sql: SqlFn
) -> None:
    # History: Dan ran once, then Eve (so Eve ran last time).
    assert _run(sql, _closed_run(chan, {DAN: "tea"}))["runner"] == DAN
    assert _run(sql, _closed_run(chan, {EVE: "tea"}))["runner"] == EVE

    orders = {BEN: "flat white", DAN: "oat latte", EVE: "Flat White"}
    run_id = _closed_run(chan, orders, text="in 20m Lobby cafe")
    before = _run(sql, run_id)
    # Eve sits out (ran last time); Ben has fewer runs than Dan.
    assert (before["runner"], before["rule"]) == (BEN, "fewest_runs")
    summary = _summaries(slack)[-1]
    assert summary["ts"] == before["summary_ts"]
    ben_dm = slack.dms(BEN)[-1]
    button = _buttons(ben_dm)[run_blocks.ACTION_CANT_GO]
    assert button["value"] == run_id
    assert "confirm" in button  # one click can't hand the run on by accident

    _press(dm, BEN, run_id)

    after = _run(sql, run_id)
    # Ben is out; of Dan and Eve, Eve ran last time and sits out again.
    assert after["runner"] == DAN
    assert after["rule"] == "fewest_runs"
    assert after["declined"] == [BEN]
    # In plain words, naming people without mentioning them (the summary is a post).
    assert after["reason"].startswith(f"{DAN.lower()} is going instead: {BEN.lower()} can't go; ")
    assert f"{EVE.lower()}, who went last time" in after["reason"]
    assert "<@" not in after["reason"]

    # The summary is updated in place: same message, new runner, the swap explained,
    # the same order list.
    summaries = _summaries(slack)
    assert len(summaries) == 3  # one per run: none was added
    updated = summaries[-1]
    assert updated["ts"] == before["summary_ts"]
    assert updated["updates"] == 1
    assert f"— <@{DAN}> is going" in updated["text"]
    assert f"<@{BEN}>" not in text_of(updated)
    assert after["reason"] in text_of(updated)
    assert _order_list(updated) == _order_list(summary)

    # Dan's DM: the same order list as the channel, and his own "I can't go".
    dan_dms = slack.dms(DAN)
    assert len(dan_dms) == 2  # his solo run's, and this run's
    assert "You're the runner" in dan_dms[-1]["text"]
    assert _order_list(dan_dms[-1]) == _order_list(updated)
    assert _buttons(dan_dms[-1])[run_blocks.ACTION_CANT_GO]["value"] == run_id
    assert sql("SELECT runner_dm_channel FROM runs WHERE id = %s", run_id) == [(f"D{DAN}",)]

    # Ben's DM is replaced (in place, without its button).
    ben_dms = slack.dms(BEN)
    assert len(ben_dms) == 1
    assert ben_dms[0]["ts"] == ben_dm["ts"]
    assert "You're off the hook" in ben_dms[0]["text"]
    assert f"<@{DAN}> is going instead" in ben_dms[0]["text"]
    assert not ben_dms[0].get("blocks")
    assert _answers(dm, BEN) == []

    # The run message names the new runner.
    run_message = next(m for m in slack.messages(CHANNEL) if m["ts"] == after["message_ts"])
    assert f"<@{DAN}> is going" in text_of(run_message)
    assert f"<@{BEN}> is going" not in text_of(run_message)

    assigned = _events(sql, run_id, "runner_assigned")
    assert len(assigned) == 2
    assert assigned[-1]["runner"] == DAN
    assert assigned[-1]["rule"] == "fewest_runs"
    assert assigned[-1]["replaced"] == BEN

    # The credit moved: Ben never served (no stats row), Dan served twice.
    stats = _stats(sql)
    assert BEN not in stats
    assert stats[DAN] == (2, after["closed_at"])

    # Then Dan can't go either: Eve is the only one left, although she ran last time.
    _press(dm, DAN, run_id)
    last = _run(sql, run_id)
    assert last["runner"] == EVE
    assert last["declined"] == [BEN, DAN]
    assert last["reason"] == (
        f"{EVE.lower()} is going instead: {BEN.lower()} and {DAN.lower()} can't go; "
        "the only one left."
    )
    assert len(_summaries(slack)) == 3
    assert f"— <@{EVE}> is going" in _summaries(slack)[-1]["text"]
    assert _summaries(slack)[-1]["updates"] == 2
    assert "You're off the hook" in slack.dms(DAN)[-1]["text"]
    assert "You're off the hook" not in slack.dms(DAN)[0]["text"]
    assert len(slack.dms(EVE)) == 2  # her own solo run's DM, and this one
    assert _order_list(slack.dms(EVE)[-1]) == _order_list(summary)
    stats = _stats(sql)
    assert stats[DAN][0] == 1 and stats[DAN][1] < last["closed_at"]
    assert stats[EVE] == (2, last["closed_at"])


def test_fairness_afterwards_counts_the_replacement_not_the_decliner(
    chan: Channel, dm: Any, slack: FakeSlack, sql: SqlFn
) -> None:
    first = _closed_run(chan, {BEN: "tea", CAT: "latte"}, volunteer=BEN)
    assert _run(sql, first)["runner"] == BEN
    _press(dm, BEN, first)
    assert _run(sql, first)["runner"] == CAT

    history = dict(
        (r[0], (r[1], r[2] is not None))
        for r in sql(
            "SELECT u.slack_user_id,"
            " (SELECT count(*) FROM runs r WHERE r.status = 'closed'"
            "   AND r.runner_user_id = u.id)::int,"
            " (SELECT max(r.closed_at) FROM runs r WHERE r.status = 'closed'"
            "   AND r.runner_user_id = u.id)"
            " FROM users u WHERE u.slack_user_id IN (%s, %s)",
            BEN,
            CAT,
        )
    )
    assert history == {BEN: (0, False), CAT: (1, True)}

    # Next run, nobody volunteers: Cat served the last run, so she sits out and Ben goes.
    # Had the decline not moved the credit, Ben would be the previous runner instead.
    second = _closed_run(chan, {BEN: "tea", CAT: "latte"})
    after = _run(sql, second)
    assert after["runner"] == BEN
    assert after["reason"] == (
        f"{BEN.lower()} is going: the only one besides {CAT.lower()}, who went last time."
    )
    stats = _stats(sql)
    assert stats[BEN] == (1, after["closed_at"])
    assert stats[CAT][0] == 1


# ---- refusals ----------------------------------------------------------------------------


def test_only_the_runner_may_press_and_only_once(
    chan: Channel, dm: Any, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = _closed_run(chan, {BEN: "tea", CAT: "latte", DAN: "mocha"}, volunteer=BEN)
    assert _run(sql, run_id)["runner"] == BEN

    # A participant who isn't the runner, and someone not in the run at all.
    before = _snapshot(sql)
    _press(dm, CAT, run_id)
    _press(dm, ANA, run_id)
    assert _snapshot(sql) == before
    for user in (CAT, ANA):
        told = _answers(dm, user)
        assert len(told) == 1
        assert f"Only <@{BEN}>, the runner of this coffee run, can hand it on." in told[0]

    _press(dm, BEN, run_id)
    new_runner = _run(sql, run_id)["runner"]
    assert new_runner in (CAT, DAN)

    # Ben presses again (an old client, a replayed click): once per run.
    told = _refused_press(dm, sql, BEN, run_id)
    assert len(told) == 1
    assert "already said you can't go" in told[0]
    assert f"<@{new_runner}> is going instead" in told[0]
    assert len(_summaries(slack)) == 1
    assert _summaries(slack)[0]["updates"] == 1


def test_nobody_left_changes_nothing(chan: Channel, dm: Any, slack: FakeSlack, sql: SqlFn) -> None:
    run_id = _closed_run(chan, {BEN: "tea", CAT: "latte"}, volunteer=BEN)
    _press(dm, BEN, run_id)
    assert _run(sql, run_id)["runner"] == CAT
    summary = _summaries(slack)[0]
    cat_dms = slack.dms(CAT)
    assert len(cat_dms) == 1

    # Ben already declined, so there is nobody else for Cat to hand it to.
    told = _refused_press(dm, sql, CAT, run_id)
    assert len(told) == 1
    assert "nobody else" in told[0]
    assert "still the runner" in told[0]
    assert _summaries(slack)[0] == summary
    assert slack.dms(CAT) == cat_dms


def test_a_run_that_is_open_or_canceled_cant_be_handed_on(
    chan: Channel, dm: Any, sql: SqlFn
) -> None:
    run_id = chan.open_run(ANA)
    assert chan.submit(BEN, "tea", run_id=run_id) is None
    chan.work()
    assert "still open" in _refused_press(dm, sql, BEN, run_id)[-1]

    chan.click_and_work(ANA, run_blocks.ACTION_CANCEL_RUN, run_id)
    _press(dm, BEN, run_id)
    assert "was canceled" in _answers(dm, BEN)[-1]
    assert _run(sql, run_id)["declined"] == []


def test_after_a_newer_run_closed_the_older_one_stays_as_it_was(
    chan: Channel, dm: Any, sql: SqlFn
) -> None:
    older = _closed_run(chan, {BEN: "tea", CAT: "latte"}, volunteer=BEN)
    _closed_run(chan, {DAN: "mocha"})
    assert "newer coffee run has closed" in _refused_press(dm, sql, BEN, older)[-1]


# ---- reminders and retries -------------------------------------------------------------


def test_the_new_runner_is_reminded_when_the_old_one_already_was(
    chan: Channel, dm: Any, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = _closed_run(chan, {BEN: "tea", CAT: "latte"}, volunteer=BEN, text="in 20m")
    moved = bring_reminder_forward(sql, run_id)
    assert moved
    chan.work()
    ben_dms = slack.dms(BEN)
    assert [m["text"].startswith("⏰") for m in ben_dms] == [False, True]

    last_job = sql("SELECT max(id) FROM jobs")[0][0]
    _press(dm, BEN, run_id)

    cat_dms = slack.dms(CAT)
    assert [m["text"].startswith("⏰") for m in cat_dms] == [False, True]
    assert "You're the runner" in cat_dms[0]["text"]
    assert _order_list(cat_dms[1]) == _order_list(cat_dms[0])
    reminder_ts = sql("SELECT reminder_ts FROM runs WHERE id = %s", run_id)[0][0]
    assert reminder_ts == cat_dms[1]["ts"]
    # Both of Ben's messages about the run now say he's off the hook.
    assert [m["ts"] for m in slack.dms(BEN)] == [m["ts"] for m in ben_dms]
    assert all("You're off the hook" in m["text"] for m in slack.dms(BEN))
    sent = _events(sql, run_id, "reminder_sent")
    assert [e["runner"] for e in sent] == [BEN, CAT]

    # At-least-once delivery: every job of the swap runs again, nothing is sent twice.
    again = sql(
        "UPDATE jobs SET status = 'queued', run_at = now(), locked_until = NULL,"
        " finished_at = NULL WHERE run_id = %s AND id > %s AND kind = ANY(%s) RETURNING kind",
        run_id,
        last_job,
        [
            queue.UPDATE_SUMMARY,
            queue.DM_RUNNER,
            queue.REMIND_NEW_RUNNER,
            queue.REPLACE_MESSAGE,
            queue.REFRESH_RUN_MESSAGE,
        ],
    )
    assert sorted(k for (k,) in again) == sorted(
        [
            queue.DM_RUNNER,
            queue.REFRESH_RUN_MESSAGE,
            queue.REMIND_NEW_RUNNER,
            queue.REPLACE_MESSAGE,
            queue.REPLACE_MESSAGE,
            queue.UPDATE_SUMMARY,
        ]
    )
    chan.work()
    assert len(slack.dms(CAT)) == 2
    assert all("You're off the hook" in m["text"] for m in slack.dms(BEN))
    assert len(_summaries(slack)) == 1
    assert f"— <@{CAT}> is going" in _summaries(slack)[0]["text"]
    assert len(_events(sql, run_id, "reminder_sent")) == 2


def test_without_a_reminder_sent_the_new_runner_gets_none_early(
    chan: Channel, dm: Any, slack: FakeSlack, sql: SqlFn
) -> None:
    run_id = _closed_run(chan, {BEN: "tea", CAT: "latte"}, volunteer=BEN, text="in 20m")
    _press(dm, BEN, run_id)
    assert [m["text"].startswith("⏰") for m in slack.dms(CAT)] == [False]
    assert sql("SELECT count(*) FROM jobs WHERE kind = %s", queue.REMIND_NEW_RUNNER) == [(0,)]
    # The reminder still due goes to whoever runs when it fires.
    sql(
        "WITH j AS (UPDATE jobs SET run_at = now() WHERE kind = %s AND run_id = %s"
        " AND status = 'queued' RETURNING id)"
        " UPDATE runs SET reminder_at = now() WHERE id = %s AND EXISTS (SELECT 1 FROM j)",
        RUNNER_REMINDER,
        run_id,
        run_id,
    )
    chan.work()
    assert [m["text"].startswith("⏰") for m in slack.dms(CAT)] == [False, True]
    assert [m["text"].startswith("⏰") for m in slack.dms(BEN)] == [False]
