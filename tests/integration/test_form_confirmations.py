"""An order form's confirmation goes through the response_url of the click that opened the
form (kept in the form's private_metadata), like a click's own answer: not through
chat.postEphemeral, which Slack allows 100 times a minute. Where that URL can't be used
(refused origin, spent, none) the confirmation still arrives, by chat.postEphemeral."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from coffeebuddy.slack import run_blocks
from coffeebuddy.slack.modal_blocks import read_form_metadata
from testkit.fakes.slack_api import RESPONSE_URL_MAX_USES, FakeSlack
from testkit.slack_payloads import view_submission_body
from tests.driver import Channel, SqlFn

from .test_response_url import Canary


@pytest.fixture(params=["inbox", "direct"])
def either(request: pytest.FixtureRequest) -> Channel:
    """The form applied by the worker from the inbox, and applied in the request."""
    name = "inbox_chan" if request.param == "inbox" else "chan"
    channel: Channel = request.getfixturevalue(name)
    return channel


def _open_form(chan: Channel, user: str, run_id: str, action: str) -> tuple[str, str]:
    """`user` clicks `action` on the run message; the form it opened (its metadata) and
    the name of the click's response_url."""
    before = len(chan.slack.opened_views())
    chan.click(user, action, run_id)
    views = chan.slack.opened_views()
    assert len(views) == before + 1, "the click opened no form"
    return str(views[-1]["private_metadata"]), chan._urls[user][-1]


def _save(chan: Channel, user: str, metadata: str, text: str) -> None:
    body = view_submission_body(user_id=user, run_id=metadata, order_text=text)
    result = chan.web.post("/slack/interactions", body)
    assert result.status_code == 200 and not result.text  # the form closes
    chan.work()


def _ephemerals(slack: FakeSlack) -> list[dict[str, Any]]:
    return [c.args for c in slack.calls("chat.postEphemeral")]


@pytest.mark.parametrize(
    "action", [run_blocks.ACTION_PLACE_ORDER, run_blocks.ACTION_USE_USUAL, run_blocks.ACTION_ILL_GO]
)
def test_the_saved_orders_confirmation_answers_the_click_that_opened_the_form(
    either: Channel, slack: FakeSlack, sql: SqlFn, action: str
) -> None:
    run_id = either.open_run("U0ANA")
    metadata, url_name = _open_form(either, "U0BEN", run_id, action)
    assert read_form_metadata(metadata)[0] == run_id
    _save(either, "U0BEN", metadata, "oat latte")
    answers = [str(r.get("text", "")) for r in slack.responses(url_name)]
    assert len(answers) == 1 and "Got your order: *oat latte*" in answers[0]
    assert _ephemerals(slack) == []
    assert sql("SELECT order_text FROM orders WHERE run_id = %s", run_id) == [("oat latte",)]


def test_a_form_from_before_the_url_was_kept_is_confirmed_by_post_ephemeral(
    either: Channel, slack: FakeSlack
) -> None:
    run_id = either.open_run("U0ANA")
    _save(either, "U0BEN", run_id, "tea")  # private_metadata: the bare run id
    [sent] = _ephemerals(slack)
    assert sent["user"] == "U0BEN" and "Got your order: *tea*" in sent["text"]


def test_a_spent_response_url_falls_back_to_post_ephemeral(
    either: Channel, slack: FakeSlack
) -> None:
    run_id = either.open_run("U0ANA")
    metadata, _ = _open_form(either, "U0BEN", run_id, run_blocks.ACTION_PLACE_ORDER)
    url = json.loads(metadata)["response_url"]
    for _ in range(RESPONSE_URL_MAX_USES):  # Slack takes five posts to one URL
        request = urllib.request.Request(url, data=b'{"text": "earlier"}', method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
    _save(either, "U0BEN", metadata, "tea")
    assert slack.calls("response_url")[-1].error == "used_url"
    [sent] = _ephemerals(slack)
    assert sent["user"] == "U0BEN" and "Got your order: *tea*" in sent["text"]


def test_a_forged_url_in_the_forms_metadata_is_never_posted_to(
    either: Channel, slack: FakeSlack, sql: SqlFn
) -> None:
    """private_metadata comes back inside a signed payload, but it is still input: the URL
    in it goes through the same allow-list as a click's."""
    canary = Canary()
    try:
        run_id = either.open_run("U0ANA")
        forged = json.dumps({"run": run_id, "response_url": canary.origin + "/internal-admin"})
        _save(either, "U0BEN", forged, "tea")
    finally:
        canary.stop()
    assert canary.seen == []
    [sent] = _ephemerals(slack)
    assert "Got your order: *tea*" in sent["text"]
    assert sql("SELECT order_text FROM orders WHERE run_id = %s", run_id) == [("tea",)]


def test_a_refusal_after_the_form_closed_answers_the_opening_click(
    inbox_chan: Channel, slack: FakeSlack
) -> None:
    """An inboxed form whose run was canceled before the worker applied it: the refusal
    reaches the person through the same URL."""
    run_id = inbox_chan.open_run("U0ANA")
    inbox_chan.submit_and_work("U0ANA", "flat white")
    metadata, url_name = _open_form(inbox_chan, "U0BEN", run_id, run_blocks.ACTION_PLACE_ORDER)
    body = view_submission_body(user_id="U0BEN", run_id=metadata, order_text="tea")
    assert not inbox_chan.web.post("/slack/interactions", body).text  # queued
    # The run is canceled before the worker gets to the order.
    inbox_chan.click("U0ANA", run_blocks.ACTION_CANCEL_RUN, run_id)
    assert inbox_chan.status(run_id) == "canceled"
    inbox_chan.work()
    answers = [str(r.get("text", "")) for r in slack.responses(url_name)]
    assert len(answers) == 1 and "wasn't saved" in answers[0]
