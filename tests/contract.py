"""The event contract as the tests use it: the JSON Schemas in `events/schemas/` loaded
into one registry, and checks of events (and of a test database's whole outbox) against
them. Used by every database test at teardown (tests/conftest.py), so an event written
anywhere without a schema, or with a payload its schema does not allow, fails the suite."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from coffeebuddy.store import outbox

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "events" / "schemas"
ENVELOPE = "envelope.schema.json"
# What every event carries, and nothing else: the envelope's fields.
ENVELOPE_KEYS = {
    "event_id",
    "type",
    "schema_version",
    "occurred_at",
    "run_id",
    "channel_id",
    "correlation_id",
    "data",
}


def schema_file(event_type: str, version: int) -> Path:
    # Version 1 has the plain name; a later version sits beside it (README, Versioning).
    suffix = "" if version == 1 else f".v{version}"
    return SCHEMA_DIR / f"{event_type}{suffix}.schema.json"


@cache
def _registry() -> Registry[Any]:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of one schema file, with formats (uuid, date-time) checked too."""
    schema = json.loads((SCHEMA_DIR / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(
        schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def problems(envelope: Any) -> list[str]:
    """Why `envelope` breaks the contract (empty when it keeps it)."""
    found = [_say(e) for e in validator(ENVELOPE).iter_errors(envelope)]
    if found:
        return found
    event_type, version = envelope["type"], envelope["schema_version"]
    path = schema_file(event_type, version)
    if not path.is_file():
        return [f"{event_type} v{version}: no schema {path.relative_to(ROOT)}"]
    return [f"{event_type}: {_say(e)}" for e in validator(path.name).iter_errors(envelope)]


def check_outbox(database_url: str) -> list[str]:
    """Every event in a database's outbox against its schema, and each row's columns
    (what the relay sends as key, topic and headers) against its envelope."""
    found: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('events') IS NOT NULL").fetchone()
        if not (exists and exists[0]):
            return found
        rows = conn.execute(
            "SELECT id, event_id::text, topic, event_type, run_id::text, envelope"
            " FROM events ORDER BY id"
        ).fetchall()
    for row_id, event_id, topic, event_type, run_id, envelope in rows:
        bad = problems(envelope)
        if not bad:
            expected = (
                envelope["event_id"],
                outbox.topic_for(envelope["type"]),
                envelope["type"],
                envelope["run_id"],
            )
            if (event_id, topic, event_type, run_id) != expected:
                bad = [f"columns {(event_id, topic, event_type, run_id)} != envelope {expected}"]
        found.extend(f"events row {row_id}: {p}" for p in bad)
    return found


def _say(error: Any) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    return f"{where}: {error.message}"


def example(event_type: str) -> dict[str, Any]:
    """The example event in `event_type`'s schema (a fresh copy): tests that need an event
    of some type, not a particular one, write this one's payload."""
    schema = json.loads(schema_file(event_type, 1).read_text())
    return dict(schema["examples"][0])
