"""The JSON Schemas of the events (events/schemas/): one per event type the code knows,
well-formed draft 2020-12, strict where the shape is fixed, and able to say no."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from coffeebuddy.store import outbox
from tests import contract

TYPES = sorted(outbox.EVENT_TYPES)
NO_TEXT = "no order text or message body"


def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((contract.SCHEMA_DIR / name).read_text())
    return loaded


def _data_schema(event_type: str) -> dict[str, Any]:
    data: dict[str, Any] = _schema(f"{event_type}.schema.json")["properties"]["data"]
    return data


def test_every_event_type_has_a_schema_and_every_schema_an_event_type() -> None:
    files = {p.name for p in contract.SCHEMA_DIR.glob("*.schema.json")}
    expected = {f"{t}.schema.json" for t in outbox.EVENT_TYPES} | {contract.ENVELOPE}
    assert files == expected
    # order_updated is the spec's event for order changes, on the run topic.
    assert outbox.topic_for("order_updated") == outbox.RUN_TOPIC


@pytest.mark.parametrize("name", [contract.ENVELOPE, *(f"{t}.schema.json" for t in TYPES)])
def test_schema_is_draft_2020_12_with_an_id_named_after_its_file(name: str) -> None:
    schema = _schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith("/events/schemas/" + name)
    assert schema["title"] and schema["description"]


def test_the_envelope_is_closed_and_requires_every_field() -> None:
    schema = _schema(contract.ENVELOPE)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"]) == contract.ENVELOPE_KEYS
    assert NO_TEXT in schema["description"]


@pytest.mark.parametrize("event_type", TYPES)
def test_each_payload_is_closed_states_it_carries_no_text_and_pins_its_type(
    event_type: str,
) -> None:
    schema = _schema(f"{event_type}.schema.json")
    assert schema["$ref"] == contract.ENVELOPE
    assert schema["properties"]["type"] == {"const": event_type}
    assert schema["properties"]["schema_version"] == {"const": 1}
    data = _data_schema(event_type)
    assert data["additionalProperties"] is False
    assert data["required"] and set(data["required"]) <= set(data["properties"])
    assert NO_TEXT in data["description"]
    assert outbox.topic_for(event_type) in schema["description"]


@pytest.mark.parametrize("event_type", TYPES)
def test_the_example_of_each_schema_keeps_the_contract(event_type: str) -> None:
    example = contract.example(event_type)
    assert example["type"] == event_type
    assert contract.problems(example) == []


@pytest.mark.parametrize("event_type", TYPES)
def test_an_event_missing_a_required_field_is_rejected(event_type: str) -> None:
    example = contract.example(event_type)
    for field in _schema(contract.ENVELOPE)["required"]:
        broken = copy.deepcopy(example)
        del broken[field]
        assert contract.problems(broken), f"{event_type} without {field}"
    for field in _data_schema(event_type)["required"]:
        broken = copy.deepcopy(example)
        del broken["data"][field]
        found = contract.problems(broken)
        assert any(f"'{field}' is a required property" in p for p in found), found


@pytest.mark.parametrize("event_type", TYPES)
def test_an_unknown_field_or_a_wrong_type_is_rejected(event_type: str) -> None:
    extra = contract.example(event_type)
    extra["data"]["order_text"] = "oat flat white"
    assert any("order_text" in p for p in contract.problems(extra))
    outer = contract.example(event_type)
    outer["note"] = "Lobby cafe"
    assert contract.problems(outer)
    # Another type's payload under this type's name.
    other = next(t for t in TYPES if set(_data_schema(t)["required"]) - set(extra["data"]))
    swapped = contract.example(event_type)
    swapped["data"] = contract.example(other)["data"]
    assert contract.problems(swapped), (event_type, other)


def test_formats_are_checked_not_just_types() -> None:
    """uuid and date-time are asserted (date-time needs rfc3339-validator installed)."""
    for field, value in [
        ("event_id", "not-a-uuid"),
        ("run_id", "12345"),
        ("occurred_at", "2026-13-45T99:00:00+00:00"),
        ("occurred_at", "yesterday"),
        ("channel_id", "coffee"),
        ("correlation_id", "has spaces in it"),
    ]:
        broken = contract.example("run_created")
        broken[field] = value
        assert contract.problems(broken), (field, value)
    late = contract.example("reminder_scheduled")
    late["data"]["due_at"] = "10:30"
    assert contract.problems(late)


def test_a_type_or_version_without_a_schema_is_named() -> None:
    unknown = contract.example("run_created") | {"type": "run_teleported"}
    assert contract.problems(unknown) == [
        "run_teleported v1: no schema events/schemas/run_teleported.schema.json"
    ]
    later = contract.example("run_created") | {"schema_version": 2}
    assert contract.problems(later) == [
        "run_created v2: no schema events/schemas/run_created.v2.schema.json"
    ]


def test_reminder_sent_is_either_timed_or_after_a_swap() -> None:
    timed = contract.example("reminder_sent")
    assert contract.problems(timed) == []
    swapped = contract.example("reminder_sent")
    swapped["data"] = {"kind": "runner_reminder", "runner": "U0DAN", "after_swap": True}
    assert contract.problems(swapped) == []
    neither = contract.example("reminder_sent")
    del neither["data"]["lateness_seconds"]
    assert contract.problems(neither)


def test_the_envelope_the_code_builds_keeps_the_contract() -> None:
    for event_type in TYPES:
        built = outbox.envelope(
            event_type,
            run_id=uuid.uuid4(),
            channel_id="C0COFFEE01",
            correlation_id=uuid.uuid4().hex[:16],
            data=contract.example(event_type)["data"],
            occurred_at=datetime(2026, 12, 3, 10, 5, tzinfo=UTC),
        )
        assert contract.problems(json.loads(json.dumps(built))) == [], event_type
