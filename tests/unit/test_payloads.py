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


def _submission(metadata: object) -> dict[str, object]:
    return {
        "type": "view_submission",
        "team": {"id": "T0TEAM"},
        "user": {"id": "U0BEN", "username": "ben"},
        "view": {
            "callback_id": "order_modal",
            "private_metadata": metadata,
            "state": {"values": {}},
        },
    }


RUN = "6f1f0c44-25a1-4c1a-9b0e-2f3b0f7b9c11"


def test_an_order_forms_submission_carries_the_opening_clicks_response_url() -> None:
    metadata = json.dumps({"run": RUN, "response_url": "https://hooks.slack.com/actions/x"})
    sub = payloads.view_submission(_submission(metadata))
    assert str(sub.run_id) == RUN
    assert sub.response_url == "https://hooks.slack.com/actions/x"


@pytest.mark.parametrize(
    "metadata",
    [
        RUN,
        json.dumps({"run": RUN}),
        json.dumps({"run": RUN, "response_url": "https://h/" + "a" * 1000}),
    ],
)
def test_a_submission_without_a_usable_url_has_none(metadata: str) -> None:
    sub = payloads.view_submission(_submission(metadata))
    assert str(sub.run_id) == RUN
    assert sub.response_url is None


@pytest.mark.parametrize(
    "metadata",
    ["{broken", json.dumps({"run": "not-a-uuid", "response_url": "https://x"}), "[]"],
)
def test_metadata_without_a_run_id_names_no_run(metadata: str) -> None:
    assert payloads.view_submission(_submission(metadata)).run_id is None
