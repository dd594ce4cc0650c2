"""The web's pool checks a connection on checkout without a round trip, yet never hands
out one the server has closed."""

from __future__ import annotations

import psycopg

from coffeebuddy.db import Database


def _backend_pids(database_url: str, app: str) -> list[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchall()
    return [r[0] for r in rows]


def test_a_connection_the_server_closed_is_replaced_on_checkout(database_url: str) -> None:
    database = Database(database_url, min_size=1, max_size=1, name="test-pool-check")
    database.open(wait=True)
    try:
        with database.transaction() as conn:
            row = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
        assert row is not None
        first = row["pid"]
        with psycopg.connect(database_url, autocommit=True) as admin:
            # pg_terminate_backend only signals the backend: wait until it has exited (and so
            # closed its socket), or a busy machine hands out the connection before it dies.
            admin.execute("SELECT pg_terminate_backend(%s, 10000)", (first,))
        # The pool's one idle connection is dead now; the next transaction still works.
        with database.transaction() as conn:
            row = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
        assert row is not None and row["pid"] != first
    finally:
        database.close()


def test_a_live_connection_is_reused_as_is(database_url: str) -> None:
    database = Database(database_url, min_size=1, max_size=1, name="test-pool-live")
    database.open(wait=True)
    try:
        pids = set()
        for _ in range(5):
            with database.transaction() as conn:
                row = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
                assert row is not None
                pids.add(row["pid"])
        assert len(pids) == 1
        assert _backend_pids(database_url, "test-pool-live") == list(pids)
    finally:
        database.close()
