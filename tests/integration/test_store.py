"""The store layer on real Postgres: each module's typed rows come back from its queries
with the values written (a column renamed or dropped in a query fails here first)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from coffeebuddy.db import Conn
from coffeebuddy.slack.gateway import Profile
from coffeebuddy.store import channels, people, ratings, runners, stats
from coffeebuddy.store.channels import SETTINGS, Channel, ResetCounts


@pytest.fixture
def conn(database_url: str) -> Iterator[Conn]:
    with psycopg.connect(database_url, row_factory=dict_row) as connection:
        yield connection


def test_a_channel_round_trip(conn: Conn) -> None:
    assert channels.find(conn, "C0STORE01") is None
    added = channels.upsert(conn, "C0STORE01", team_id="T0ONE", name="coffee")
    assert isinstance(added, Channel) and added.slack_team_id == "T0ONE"
    assert channels.find(conn, "C0STORE01") == added
    assert set(added.settings()) == set(SETTINGS)
    assert added.admin_user_ids == () and added.enabled

    wanted = {**added.settings(), "enabled": False, "last_call_minutes": 7}
    wanted["admin_user_ids"] = ["U0ANA", "U0BEN"]
    channels.update_settings(conn, added.id, wanted)
    locked = channels.lock(conn, "C0STORE01")
    assert locked is not None
    assert (locked.enabled, locked.last_call_minutes) == (False, 7)
    assert locked.admin_user_ids == ("U0ANA", "U0BEN")
    # A later request from another workspace keeps the first one.
    again = channels.upsert(conn, "C0STORE01", team_id="T0TWO", name="")
    assert (again.slack_team_id, again.name) == ("T0ONE", "coffee")


def test_reset_and_audit(conn: Conn) -> None:
    channel = channels.upsert(conn, "C0STORE02", team_id="T0ONE", name="")
    assert channels.open_run(conn, channel.id) is None
    counts = channels.reset(conn, channel.id)
    assert counts == ResetCounts(runs=0, orders=0, preferences=0, runner_stats=0, jobs=0, events=0)
    channels.audit(conn, channel, admin="U0ANA", action_type="data_reset", details=counts.details())
    (entry,) = channels.recent_audit(conn, "C0STORE02", limit=5)
    assert entry["admin_slack_user_id"] == "U0ANA"
    assert entry["action_details"] == counts.details()


def test_a_person_round_trip(conn: Conn) -> None:
    assert people.find(conn, "U0STORE") is None
    profile = Profile("U0STORE", "Store Person", "Europe/Paris", True)
    saved = people.save_profile(conn, profile)
    assert saved.profile() == profile and saved.profile_fetched_at is not None
    assert people.find(conn, "U0STORE") == saved
    assert people.names(conn, ["U0STORE", "U0NOBODY"]) == {"U0STORE": "Store Person"}
    assert people.slack_id(conn, saved.id) == "U0STORE"
    assert people.slack_id(conn, uuid.uuid4()) is None
    assert people.home_channels(conn, "U0STORE", limit=5) == []


def test_reads_of_what_is_not_there(conn: Conn) -> None:
    channel = channels.upsert(conn, "C0STORE03", team_id="T0ONE", name="")
    assert ratings.run_for(conn, uuid.uuid4(), "U0ANA") is None
    assert runners.previous(conn, channel_id=channel.id, run_id=uuid.uuid4()) is None
    person = people.save_profile(conn, Profile("U0STORE2", "", None, False))
    served = runners.history(
        conn, channel_id=channel.id, run_id=uuid.uuid4(), window=10, user_ids=[person.id]
    )
    assert served == {"U0STORE2": runners.Served(runs_in_window=0, last_run_at=None)}
    listed = stats.channel(conn, "C0STORE03")
    assert listed is not None and listed.id == channel.id and listed.fairness_window_runs == 10
    assert stats.history(conn, channel.id) == stats.History(closed_runs=0, previous_runner=None)
    assert stats.window(conn, channel.id, 10) == []
