"""The interaction body parser decodes only the `payload` field, yet accepts and refuses
exactly what the whole-form parser does."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pytest

from coffeebuddy.errors import BadRequest
from coffeebuddy.web import payloads

PAYLOAD = {
    "type": "block_actions",
    "user": {"id": "U0ANN", "name": "ann + co & 100% ☕"},
    "actions": [{"action_id": "use_usual", "value": "a=b&c=d"}],
}


def _body(payload: object = PAYLOAD) -> bytes:
    return urlencode({"payload": json.dumps(payload, ensure_ascii=False)}).encode()


def test_payload_field_matches_the_whole_form_parser() -> None:
    body = _body()
    assert payloads.payload_field(body) == payloads.parse_form(body)["payload"]
    assert payloads.interaction(body) == PAYLOAD


def test_spaces_escaped_as_plus_or_percent_decode_alike() -> None:
    text = json.dumps({"type": "x", "t": "a b"})
    assert payloads.payload_field(b"payload=" + quote(text).encode()) == text
    assert payloads.payload_field(b"payload=" + quote(text).replace("%20", "+").encode()) == text


@pytest.mark.parametrize(
    "body",
    [
        b"payload=%7B%22type%22%3A%22x%22%7D%",  # a "%" without two hex digits
        b"payload=%7B%22type%22%3A%22x%zz%7D",
        b"payload=%ff%fe",  # an escape that is not UTF-8
        b"payload=%7B%7D&payload=%7B%7D",  # a repeated field goes the long way, and fails
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(BadRequest):
        payloads.interaction(body)


def test_other_fields_take_the_whole_form_parser() -> None:
    body = b"token=x&" + _body()
    assert payloads.interaction(body) == PAYLOAD


def test_a_nul_is_cleaned_as_the_form_parser_does() -> None:
    body = b"payload=" + quote('{"type": "x", "t": "a\x00b"}').encode()
    assert payloads.interaction(body)["t"] == "a b"


def test_missing_payload() -> None:
    with pytest.raises(BadRequest):
        payloads.interaction(b"payloadx=1")
