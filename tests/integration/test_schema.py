"""sql/schema.sql is today's schema: a database built from it and one built by the
migrations have the same catalog (tables, columns, constraints, indexes, sequences).
When a migration is added, regenerate the file: `.venv/bin/python scripts/dump_schema.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest

from coffeebuddy.db import SQL_DIR
from coffeebuddy.db.migrate import SCHEMA_VERSION, migrate
from testkit.databases import scratch_database

SCHEMA_FILE = SQL_DIR / "schema.sql"

# Each query gives sorted rows describing one kind of object in the public schema; the
# migration tool's own `schema_migrations` is not part of the schema file.
CATALOG: dict[str, str] = {
    "tables": """
        SELECT c.relname, c.relkind, c.relpersistence FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
           AND c.relname NOT LIKE 'schema_migrations%%'
         ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               -- The column's place, not its attnum: a dropped column leaves a gap there.
               row_number() OVER (PARTITION BY c.relname ORDER BY a.attnum)
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
           AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'schema_migrations'
         ORDER BY 1, 2""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid, true)
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relname <> 'schema_migrations'
         ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
         WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
         ORDER BY 1, 2""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, cycle
          FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1""",
    "functions_and_triggers": """
        SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
        UNION ALL
        SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND NOT t.tgisinternal
         ORDER BY 1, 2""",
    "comments": """
        SELECT c.relname, d.objsubid, d.description FROM pg_description d
          JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' ORDER BY 1, 2""",
    "types_and_extensions": """
        SELECT t.typname, t.typtype::text FROM pg_type t
          JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c')
           AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
        UNION ALL
        SELECT extname, 'extension' FROM pg_extension WHERE extname <> 'plpgsql'
         ORDER BY 1""",
}


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {kind: conn.execute(query).fetchall() for kind, query in CATALOG.items()}


def differences(
    want: dict[str, list[tuple[Any, ...]]], got: dict[str, list[tuple[Any, ...]]]
) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Per kind of object, the rows only schema.sql has and the rows only the migrations have."""
    out = {}
    for kind in CATALOG:
        only_file = [r for r in want[kind] if r not in got[kind]]
        only_migrations = [r for r in got[kind] if r not in want[kind]]
        if only_file or only_migrations:
            out[kind] = {"only in schema.sql": only_file, "only from migrations": only_migrations}
    return out


@pytest.fixture
def fresh_db() -> Iterator[Callable[[], str]]:
    """Makes empty databases, all dropped after the test."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(scratch_database("cb_s"))


def _load_schema_file(url: str, path: Path = SCHEMA_FILE) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        # No parameters: the whole file goes as one simple-protocol query.
        conn.execute(path.read_text(encoding="utf-8"))  # type: ignore[arg-type]


def test_schema_file_is_what_the_migrations_build(fresh_db: Callable[[], str]) -> None:
    from_file, migrated = fresh_db(), fresh_db()
    _load_schema_file(from_file)
    migrate(migrated)
    diff = differences(catalog(from_file), catalog(migrated))
    assert diff == {}, (
        "sql/schema.sql differs from the migrations; regenerate it with "
        "`.venv/bin/python scripts/dump_schema.py` and commit it"
    )


def test_the_comparison_sees_a_change_a_migration_could_make(fresh_db: Callable[[], str]) -> None:
    # The check above can fail: a column, a default or an index the file lacks shows up.
    from_file, migrated = fresh_db(), fresh_db()
    _load_schema_file(from_file)
    migrate(migrated)
    with psycopg.connect(migrated, autocommit=True) as conn:
        conn.execute("ALTER TABLE runs ADD COLUMN budget int NOT NULL DEFAULT 3")
        conn.execute("ALTER TABLE channels ALTER COLUMN name SET DEFAULT 'x'")
        conn.execute("CREATE INDEX runs_budget ON runs (budget)")
    diff = differences(catalog(from_file), catalog(migrated))
    assert set(diff) == {"columns", "indexes"}
    added = diff["columns"]["only from migrations"]
    assert any(r[:5] == ("runs", "budget", "integer", True, "3") for r in added)
    assert any(r[:2] == ("channels", "name") for r in added)
    assert [r[1] for r in diff["indexes"]["only from migrations"]] == ["runs_budget"]


def test_schema_file_names_its_migration() -> None:
    # The header says which migration it is current with, so a stale file is easy to spot.
    head = SCHEMA_FILE.read_text(encoding="utf-8").splitlines()[0]
    assert f"as of migration {SCHEMA_VERSION}" in head
