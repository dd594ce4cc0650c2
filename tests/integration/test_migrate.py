"""Migrations on real Postgres, and the rules the schema holds by itself."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from coffeebuddy.db import migrate
from testkit.databases import scratch_database
from tests.driver import SqlFn

ALL_MIGRATIONS = [m.path.name for m in migrate.available()]


@pytest.fixture
def empty_db() -> Iterator[str]:
    """A database with nothing in it (not cloned from the migrated template)."""
    with scratch_database("cb_m") as url:
        yield url


def _recorded(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        return [(str(v), str(n)) for v, n in rows.fetchall()]


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {str(r[0]) for r in rows}


def test_there_is_a_first_migration() -> None:
    assert ALL_MIGRATIONS[0] == "0001_schema.sql"


def test_fresh_database(empty_db: str) -> None:
    assert [m.path.name for m in migrate.pending(empty_db)] == ALL_MIGRATIONS
    assert migrate.migrate(empty_db) == ALL_MIGRATIONS
    assert ("0001", "0001_schema.sql") in _recorded(empty_db)
    assert len(_recorded(empty_db)) == len(ALL_MIGRATIONS)
    assert {"users", "channels", "runs", "orders", "jobs"} <= _tables(empty_db)
    assert migrate.pending(empty_db) == []


def test_second_run_applies_nothing(empty_db: str) -> None:
    migrate.migrate(empty_db)
    recorded = _recorded(empty_db)
    assert migrate.migrate(empty_db) == []
    assert _recorded(empty_db) == recorded


def test_concurrent_migrations_apply_once(empty_db: str) -> None:
    start = threading.Barrier(2)
    applied: list[list[str]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            start.wait(timeout=10)
            applied.append(migrate.migrate(empty_db))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    assert failures == []
    assert len(applied) == 2
    # Between them the two applied each migration exactly once.
    assert sorted(applied[0] + applied[1]) == sorted(ALL_MIGRATIONS)
    assert [name for _, name in _recorded(empty_db)] == ALL_MIGRATIONS
    assert migrate.pending(empty_db) == []


# ---- constraints -----------------------------------------------------------------------


@pytest.fixture
def ids(sql: SqlFn) -> dict[str, str]:
    """A channel and two users to hang runs and orders on."""
    channel = sql("INSERT INTO channels (slack_channel_id) VALUES ('C0MIGRATE') RETURNING id")
    ana = sql("INSERT INTO users (slack_user_id) VALUES ('U0ANA') RETURNING id")
    ben = sql("INSERT INTO users (slack_user_id) VALUES ('U0BEN') RETURNING id")
    return {"channel": channel[0][0], "ana": ana[0][0], "ben": ben[0][0]}


def _insert_run(sql: SqlFn, ids: dict[str, str], status: str = "open", **extra: object) -> str:
    columns = ["channel_id", "initiator_user_id", "status", "correlation_id", *extra]
    values = [ids["channel"], ids["ana"], status, "test-corr", *extra.values()]
    placeholders = ", ".join(["%s"] * len(values))
    row = sql(
        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id", *values
    )
    return str(row[0][0])


def _insert_order(sql: SqlFn, run_id: str, user_id: str, text: str = "tea") -> str:
    row = sql(
        "INSERT INTO orders (run_id, user_id, order_text) VALUES (%s, %s, %s) RETURNING id",
        run_id,
        user_id,
        text,
    )
    return str(row[0][0])


def test_unknown_run_status_fails(sql: SqlFn, ids: dict[str, str]) -> None:
    with pytest.raises(errors.CheckViolation):
        _insert_run(sql, ids, status="done")
    assert sql("SELECT count(*) FROM runs") == [(0,)]


def test_one_open_run_per_channel(sql: SqlFn, ids: dict[str, str]) -> None:
    _insert_run(sql, ids)
    with pytest.raises(errors.UniqueViolation) as info:
        _insert_run(sql, ids)
    assert info.value.diag.constraint_name == "runs_one_open_per_channel"
    # An ended run does not count.
    _insert_run(sql, ids, status="canceled", closed_at="2024-01-01T10:00:00Z")
    assert sql("SELECT count(*) FROM runs") == [(2,)]


def test_one_active_order_per_user_and_run(sql: SqlFn, ids: dict[str, str]) -> None:
    run_id = _insert_run(sql, ids)
    _insert_order(sql, run_id, ids["ana"])
    _insert_order(sql, run_id, ids["ben"])
    with pytest.raises(errors.UniqueViolation) as info:
        _insert_order(sql, run_id, ids["ana"], "coffee")
    assert info.value.diag.constraint_name == "orders_one_active"


def test_canceled_order_makes_room_for_a_new_one(sql: SqlFn, ids: dict[str, str]) -> None:
    run_id = _insert_run(sql, ids)
    first = _insert_order(sql, run_id, ids["ana"])
    sql("UPDATE orders SET canceled_at = now() WHERE id = %s", first)
    second = _insert_order(sql, run_id, ids["ana"], "coffee")
    rows = sql("SELECT id::text, canceled_at IS NULL FROM orders")
    assert sorted(rows) == sorted([(first, False), (second, True)])


def test_closed_run_needs_a_runner(sql: SqlFn, ids: dict[str, str]) -> None:
    with pytest.raises(errors.CheckViolation) as info:
        _insert_run(sql, ids, status="closed", closed_at="2024-01-01T10:00:00Z")
    assert info.value.diag.constraint_name == "closed_has_runner"
    # With its runner it is fine.
    _insert_run(
        sql, ids, status="closed", closed_at="2024-01-01T10:00:00Z", runner_user_id=ids["ben"]
    )
    assert sql("SELECT status FROM runs") == [("closed",)]


def test_migrate_needs_only_the_database_url_file(tmp_path: Path, database_url: str) -> None:
    # The migration Job's pod is given only /vault/secrets/database_url (least privilege).
    secrets_dir = tmp_path / "vault-secrets"
    secrets_dir.mkdir()
    (secrets_dir / "database_url").write_text(database_url + "\n")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"}
    }
    env.update(COFFEEBUDDY_SECRETS_SOURCE="files", COFFEEBUDDY_SECRETS_DIR=str(secrets_dir))
    done = subprocess.run(
        [sys.executable, "-m", "coffeebuddy", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "none (schema current)" in done.stdout
