"""Write sql/schema.sql: today's schema, as the migrations in sql/migrations/ build it.

    .venv/bin/python scripts/dump_schema.py [ADMIN_URL]

Run it after adding a migration (and commit the result with the migration):
tests/integration/test_schema.py fails until schema.sql matches what the migrations build.
It migrates a scratch database on the server at ADMIN_URL (default: $TEST_DATABASE_URL,
else the local server), dumps its schema with `pg_dump --schema-only` (pg_dump must be on
PATH and match the server's major version), drops the dump's session settings and noise,
and writes the result under the header below.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coffeebuddy.db.migrate import SCHEMA_VERSION, migrate  # noqa: E402

SCHEMA_FILE = ROOT / "sql" / "schema.sql"
LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"

HEADER = """\
-- CoffeeBuddy's database schema as of migration {version}: every table, column, default,
-- constraint and index, in one file for a DBA to read. The tables:
--   channels               a Slack channel using CoffeeBuddy, with its settings and admins
--   users                  a Slack person, with their cached profile (name, tz, admin flag)
--   user_preferences       a person's usual order in a channel
--   runs                   a coffee run: its pickup, status, runner and Slack message ids
--   orders                 a person's order in a run (one active order per person and run)
--   runner_stats           who served how often in a channel (mirrors the run history)
--   run_ratings            the one-tap CSAT of a closed run (one per person and run)
--   jobs                   the job queue the worker claims from (Slack calls, reminders)
--   events                 the outbox of domain events the relay publishes to Kafka
--   channel_admin_actions  the admins' audit trail (never purged)
--   ops_actions            every change made through the operations API, with its caller
-- Migrations also keep `schema_migrations` (which files were applied), left out here.
--
-- GENERATED: do not edit by hand. The migrations in sql/migrations/ are the source of
-- truth; after adding one, regenerate this file and commit it with the migration:
--     .venv/bin/python scripts/dump_schema.py
-- tests/integration/test_schema.py compares the catalogs of a database built from this
-- file and one built by the migrations, and fails when they differ.

"""


def _dump(url: str) -> str:
    out = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges",
         "--exclude-table=public.schema_migrations", url],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout


def tidy(dump: str) -> str:
    """pg_dump's text without what only a restore needs: session SETs, the search path
    reset, psql's \\restrict guard, the `-- Name: …; Type: …` banners and the dump's
    version lines."""
    kept = []
    for line in dump.splitlines():
        if re.match(r"^(SET |SELECT pg_catalog\.set_config|\\(un)?restrict )", line):
            continue
        if re.match(r"^-- (Dumped |PostgreSQL database dump)", line):
            continue
        if re.match(r"^-- (Name|TOC entry|Data for Name): ", line) or line == "--":
            continue
        kept.append(line)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return text + "\n"


def main(admin_url: str) -> None:
    name = f"cb_schema_{uuid.uuid4().hex[:12]}"
    base = admin_url.rpartition("/")[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(f"{base}/{name}")
        body = tidy(_dump(f"{base}/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    SCHEMA_FILE.write_text(HEADER.format(version=SCHEMA_VERSION) + body, encoding="utf-8")
    print(f"wrote {SCHEMA_FILE.relative_to(ROOT)} (schema {SCHEMA_VERSION})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TEST_DATABASE_URL", LOCAL))
