"""Apply the ordered SQL migrations in `sql/migrations/`.

Safe when several replicas start at once: a transaction-scoped advisory lock serialises
them, and each file is applied in its own transaction together with its version row, so a
migration is either fully applied and recorded or not at all. Running it again when the
schema is current changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from coffeebuddy.db import MIGRATIONS_DIR

log = logging.getLogger(__name__)

# An arbitrary, fixed key: every CoffeeBuddy process contends for the same lock.
_LOCK_KEY = 0x0C0FFEE


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


def pending(conninfo: str) -> list[Migration]:
    with psycopg.connect(conninfo, connect_timeout=3) as conn:
        done = applied_versions(conn)
    return [m for m in available() if m.version not in done]


def migrate(conninfo: str) -> list[str]:
    """Apply what is pending; return the names applied (empty when current)."""
    applied: list[str] = []
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        for migration in available():
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
