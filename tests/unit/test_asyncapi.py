"""events/asyncapi.yaml: a valid AsyncAPI 3.0.0 document (checked against the official JSON
Schema, vendored in tests/fixtures/asyncapi/ from the AsyncAPI Initiative's spec-json-schemas,
Apache-2.0, so no network is needed) that names both topics and points every message at
the schema of its event type."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema_specifications import REGISTRY as META_SCHEMAS
from referencing import Resource
from referencing.jsonschema import DRAFT7

from coffeebuddy.store import outbox
from tests import contract

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "events" / "asyncapi.yaml"
OFFICIAL = ROOT / "tests" / "fixtures" / "asyncapi" / "3.0.0.json"


@cache
def _official() -> Draft7Validator:
    schema = json.loads(OFFICIAL.read_text())
    assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    # Every definition the schema refers to is bundled in it (and the draft-07 meta-schema
    # comes with jsonschema): a reference that needed the network would raise, not pass.
    registry = (Resource.from_contents(schema, default_specification=DRAFT7) @ META_SCHEMAS).crawl()
    return Draft7Validator(schema, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)


def _doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def _errors(doc: dict[str, Any]) -> list[str]:
    return [f"{e.json_path}: {e.message[:200]}" for e in _official().iter_errors(doc)]


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    """A local reference, followed through any references it leads to."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return _resolve(doc, node["$ref"])
    return node


def test_the_document_is_valid_asyncapi_3() -> None:
    doc = _doc()
    assert doc["asyncapi"] == "3.0.0"
    assert _errors(doc) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["operations"]["publishRunEvents"].update(action="publish"),  # 2.x word
        lambda d: d["channels"]["runEvents"]["bindings"]["kafka"].update(partitionz=3),
        lambda d: d.update(asyncapi="2.6.0"),
        lambda d: d["info"].pop("title"),
    ],
)
def test_the_official_schema_rejects_a_broken_document(breakage: Any) -> None:
    doc = copy.deepcopy(_doc())
    breakage(doc)
    assert _errors(doc)


def test_both_topics_carry_exactly_their_event_types() -> None:
    doc = _doc()
    by_address = {c["address"]: c for c in doc["channels"].values()}
    assert set(by_address) == {outbox.RUN_TOPIC, outbox.REMINDER_TOPIC}
    for topic, channel in by_address.items():
        names = {_resolve(doc, m["$ref"])["name"] for m in channel["messages"].values()}
        assert names == {t for t in outbox.EVENT_TYPES if outbox.topic_for(t) == topic}
        assert set(channel["messages"]) == names
    sent = {
        _resolve(doc, op["channel"]["$ref"])["address"]: {
            _resolve(doc, m["$ref"])["name"] for m in op["messages"]
        }
        for op in doc["operations"].values()
        if op["action"] == "send"
    }
    assert sent == {
        topic: {_resolve(doc, m["$ref"])["name"] for m in channel["messages"].values()}
        for topic, channel in by_address.items()
    }


@pytest.mark.parametrize("event_type", sorted(outbox.EVENT_TYPES))
def test_each_message_points_at_its_schema_key_header_and_correlation_id(
    event_type: str,
) -> None:
    doc = _doc()
    message = doc["components"]["messages"][event_type]
    payload = message["payload"]
    assert payload["schemaFormat"] == "application/schema+json;version=draft-2020-12"
    target = (DOCUMENT.parent / payload["schema"]["$ref"]).resolve()
    assert target == contract.schema_file(event_type, 1).resolve()
    assert json.loads(target.read_text())["properties"]["type"] == {"const": event_type}
    assert message["contentType"] == "application/json"

    headers = _resolve(doc, message["headers"]["$ref"])
    assert set(headers["required"]) == {"event_id", "event_type", "schema_version"}
    assert headers["properties"]["event_id"]["format"] == "uuid"
    bindings = _resolve(doc, message["bindings"]["$ref"])
    assert bindings["kafka"]["key"]["format"] == "uuid"
    assert "run id" in bindings["kafka"]["key"]["description"]
    correlation = _resolve(doc, message["correlationId"]["$ref"])
    assert correlation["location"] == "$message.payload#/correlation_id"


def test_the_ordering_and_delivery_guarantees_are_stated() -> None:
    text = _doc()["info"]["description"].lower()
    for promise in ("key", "per run", "at least once", "event_id", "drop ids you have seen"):
        assert promise in text, promise
