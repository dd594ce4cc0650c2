"""store.runs and store.orders: the typed rows the services read, from a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from coffeebuddy import db
from coffeebuddy.db import Conn, Database
from coffeebuddy.domain.models import RunStatus
from coffeebuddy.store import orders, runs


def _channel_and_user(conn: Conn) -> tuple[uuid.UUID, uuid.UUID]:
    channel = db.one(
        conn,
        "upsert_channel",
        {"slack_channel_id": "C0STORE01", "team_id": "T0TEAM", "name": "coffee"},
    )
    user = db.one(conn, "upsert_user", {"slack_user_id": "U0ANA", "display_name": "ana"})
    assert channel is not None and user is not None
    return channel["id"], user["id"]


def _insert(conn: Conn, channel_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID | None:
    return runs.insert(
        conn,
        channel_id=channel_id,
        initiator_user_id=user_id,
        pickup_time=None,
        pickup_note="at the corner",
        correlation_id="corr-1",
        first_in_channel=True,
        command_at=datetime.now(UTC),
    )


def test_a_run_reads_back_typed_under_each_lock(app_database: Database) -> None:
    with app_database.transaction() as conn:
        channel_id, user_id = _channel_and_user(conn)
        run_id = _insert(conn, channel_id, user_id)
        assert run_id is not None
        # The channel's one open run: a second insert gets nothing back.
        assert _insert(conn, channel_id, user_id) is None
        for read in (runs.lock, runs.share, runs.view):
            run = read(conn, run_id)
            assert run is not None
            assert (run.id, run.status, run.channel_id) == (run_id, RunStatus.OPEN, channel_id)
            assert (run.slack_channel_id, run.slack_team_id) == ("C0STORE01", "T0TEAM")
            assert (run.correlation_id, run.initiator_slack_id) == ("corr-1", "U0ANA")
            assert run.summary_permalink is None
        open_run = runs.open_in_channel(conn, channel_id)
        assert open_run is not None and open_run.id == run_id
        assert open_run.initiator_slack_id == "U0ANA"
        assert runs.lock(conn, uuid.uuid4()) is None


def test_an_order_is_placed_changed_and_canceled(app_database: Database) -> None:
    with app_database.transaction() as conn:
        channel_id, user_id = _channel_and_user(conn)
        run_id = _insert(conn, channel_id, user_id)
        assert run_id is not None
        assert orders.current(conn, run_id, user_id) is None
        placed = orders.upsert(conn, run_id, user_id, "flat white", volunteer=False)
        assert placed is not None and placed.inserted
        # The same order again writes nothing.
        assert orders.upsert(conn, run_id, user_id, "flat white", volunteer=False) is None
        changed = orders.upsert(conn, run_id, user_id, "flat white", volunteer=True)
        assert changed is not None and not changed.inserted and changed.id == placed.id
        assert orders.current(conn, run_id, user_id) == orders.Order("flat white", True)
        assert orders.count_active(conn, run_id) == 1
        assert orders.cancel(conn, run_id, user_id)
        assert not orders.cancel(conn, run_id, user_id)
        assert orders.count_active(conn, run_id) == 0


def test_a_usual_is_saved_and_read(app_database: Database) -> None:
    with app_database.transaction() as conn:
        channel_id, user_id = _channel_and_user(conn)
        assert orders.usual(conn, user_id, channel_id) is None
        orders.save_usual(conn, user_id, channel_id, "oat latte")
        orders.touch_usual(conn, user_id, channel_id)
        assert orders.usual(conn, user_id, channel_id) == "oat latte"
