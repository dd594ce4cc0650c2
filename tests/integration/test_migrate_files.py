"""Migration files missing from an install fail loudly: `migrate` refuses, readiness says
no. An image built without `COPY sql/` once migrated "nothing (schema current)" and was
reported ready; only the worker crashed later."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from coffeebuddy.__main__ import main
from coffeebuddy.config import Config
from coffeebuddy.db import MIGRATIONS_DIR, migrate
from coffeebuddy.web.app import create_app
from testkit.databases import scratch_database
from tests.conftest import SignedClient
from tests.driver import SqlFn

ALL = migrate.available()


@pytest.fixture
def empty_db() -> Iterator[str]:
    with scratch_database("cb_mf") as url:
        yield url


def _copy(migrations: list[migrate.Migration], directory: Path) -> Path:
    directory.mkdir()
    for m in migrations:
        shutil.copy(m.path, directory / m.path.name)
    return directory


def _has_migrations_table(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def test_no_migration_files_fails(empty_db: str, tmp_path: Path) -> None:
    with pytest.raises(migrate.MigrationError, match="no migration files"):
        migrate.migrate(empty_db, directory=tmp_path)
    assert not _has_migrations_table(empty_db)


def test_files_short_of_the_expected_version_fail_before_applying(
    empty_db: str, tmp_path: Path
) -> None:
    partial = _copy(ALL[:-1], tmp_path / "partial")
    with pytest.raises(migrate.MigrationError, match=f"this code needs {migrate.SCHEMA_VERSION}"):
        migrate.migrate(empty_db, directory=partial)
    assert not _has_migrations_table(empty_db)


def test_fewer_files_than_the_database_has_applied_fails(
    database_url: str, sql: SqlFn, tmp_path: Path
) -> None:
    before = sql("SELECT version FROM schema_migrations ORDER BY version")
    older = _copy(ALL[:2], tmp_path / "older")
    with pytest.raises(migrate.MigrationError, match=ALL[-1].version):
        migrate.migrate(database_url, directory=older, expected=ALL[1].version)
    assert sql("SELECT version FROM schema_migrations ORDER BY version") == before


def test_cli_migrate_exits_non_zero_without_files(
    empty_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What the image without `COPY sql/` looked like to the migrate job.
    monkeypatch.setattr(migrate, "available", lambda directory=MIGRATIONS_DIR: [])
    monkeypatch.setenv("DATABASE_URL", empty_db)
    monkeypatch.setenv("COFFEEBUDDY_SECRETS_SOURCE", "env")
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert "migration error: no migration files" in err


def _ready(config: Config) -> tuple[int, dict[str, bool]]:
    answer = SignedClient(create_app(config)).get("/health/ready")
    return answer.status_code, answer.json["checks"]


def test_ready_when_the_database_is_at_the_expected_version(config: Config) -> None:
    assert _ready(config) == (200, {"secrets": True, "database": True, "migrations": True})


def test_not_ready_when_the_database_is_behind(
    config: Config, sql: SqlFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql("DELETE FROM schema_migrations WHERE version = %s", migrate.SCHEMA_VERSION)
    # Readiness must not trust the files: with none installed nothing looks pending.
    monkeypatch.setattr(migrate, "available", lambda directory=MIGRATIONS_DIR: [])
    status, checks = _ready(config)
    assert status == 503
    assert checks["migrations"] is False


def test_still_ready_when_the_database_is_ahead(config: Config, sql: SqlFn) -> None:
    # Rolling deploy: the next release migrated while this one still serves.
    newer = f"{int(migrate.SCHEMA_VERSION) + 1:04d}"
    sql("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", newer, f"{newer}_x.sql")
    assert _ready(config) == (200, {"secrets": True, "database": True, "migrations": True})
