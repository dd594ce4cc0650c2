"""Apply the ordered SQL migrations in `sql/migrations/`.

Safe when several replicas start at once: a transaction-scoped advisory lock serialises
them, and each file is applied in its own transaction together with its version row, so a
migration is either fully applied and recorded or not at all. Running it again when the
schema is current changes nothing.

The package knows the schema it was written for (`SCHEMA_VERSION`), so an install whose
migration files are missing or stale fails loudly instead of reporting "schema current".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from coffeebuddy.db import MIGRATIONS_DIR
from coffeebuddy.errors import CoffeeBuddyError

log = logging.getLogger(__name__)

# The newest migration this code needs: bump it with every new file in sql/migrations
# (tests/unit/test_migrate_version.py checks they agree). An image built without its
# migration files would otherwise find nothing to apply and call the schema current.
SCHEMA_VERSION = "0009"

# An arbitrary, fixed key: every CoffeeBuddy process contends for the same lock.
_LOCK_KEY = 0x0C0FFEE


class MigrationError(CoffeeBuddyError):
    """The migration files do not match what this code or the database expects."""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        version = path.stem.split("_", 1)[0]
        if not version.isdigit():
            raise ValueError(f"migration file {path.name} must start with a number")
        found.append(Migration(version=version, path=path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a version number")
    return found


def _ensure_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def applied_versions(conn: psycopg.Connection[Any]) -> set[str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
    return {str(r[0]) for r in rows}


def pending(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        done = applied_versions(conn)
    return [m for m in available(directory) if m.version not in done]


def schema_version(conninfo: str) -> str | None:
    """The newest migration the database has applied (None: no migrations table)."""
    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        done = applied_versions(conn)
    return max(done, key=int) if done else None


def schema_is_current(version: str | None, expected: str = SCHEMA_VERSION) -> bool:
    """True when the database is at or past the schema this code needs. Past is fine: during
    a rolling deploy the new release's migrations run while old pods still serve."""
    return version is not None and int(version) >= int(expected)


def _check_files(found: list[Migration], done: set[str], directory: Path, expected: str) -> None:
    if not found:
        raise MigrationError(f"no migration files in {directory}: the install is incomplete")
    known = {m.version for m in found}
    unknown = sorted(done - known, key=int)
    if unknown:
        raise MigrationError(
            f"the database has applied migrations {', '.join(unknown)} that {directory} "
            f"does not hold: files are missing, or this code is older than the database"
        )
    newest = max(known, key=int)
    if int(newest) < int(expected):
        raise MigrationError(
            f"the newest migration in {directory} is {newest}, this code needs {expected}: "
            "files are missing"
        )


def migrate(
    conninfo: str, directory: Path = MIGRATIONS_DIR, expected: str = SCHEMA_VERSION
) -> list[str]:
    """Apply what is pending; return the names applied (empty when current).

    Raises MigrationError, before changing anything, when `directory` holds no migrations,
    fewer than the database has applied, or none reaching `expected`."""
    found = available(directory)
    applied: list[str] = []
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        _check_files(found, applied_versions(conn), directory, expected)
        conn.commit()
        for migration in found:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                _ensure_table(conn)
                row = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
                ).fetchone()
                if row:
                    continue
                conn.execute(migration.path.read_text(encoding="utf-8").encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.path.name),
                )
                applied.append(migration.path.name)
                log.info("migration_applied", extra={"migration": migration.path.name})
    return applied
