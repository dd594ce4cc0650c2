"""The package knows the schema it needs (migrate.SCHEMA_VERSION) without its SQL files."""

from __future__ import annotations

from coffeebuddy.db import MIGRATIONS_DIR, migrate


def test_schema_version_is_the_newest_migration_file() -> None:
    # Fails when a migration is added without bumping SCHEMA_VERSION (or the other way).
    newest = max((m.version for m in migrate.available(MIGRATIONS_DIR)), key=int)
    assert newest == migrate.SCHEMA_VERSION


def test_schema_is_current_at_or_past_the_expected_version() -> None:
    assert migrate.schema_is_current("0004", expected="0004")
    # A newer database is fine: a rolling deploy migrates before the old pods are gone.
    assert migrate.schema_is_current("0010", expected="0004")
    assert not migrate.schema_is_current("0003", expected="0004")
    assert not migrate.schema_is_current(None, expected="0001")
