"""The Slack fake, driven through the real slack_sdk WebClient as the app will drive it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from testkit.fakes import slack_api
from testkit.fakes.slack_api import FakeSlack, RateLimits

MODAL = {
    "type": "modal",
    "callback_id": "order",
    "title": {"type": "plain_text", "text": "Coffee run"},
    "submit": {"type": "plain_text", "text": "Order"},
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "What would you like?"}}],
}
HOME = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}]}


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.add_user("U1", "ada")
        fake.add_user("U2", "bob", tz="America/New_York", is_admin=True)
        fake.add_channel("C1", "coffee")
        fake.add_channel("C2", "random", bot_member=False)
        fake.add_channel("C3", "baristas", members=["U1"])
        yield fake


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=fake.token, base_url=fake.base_url, retry_handlers=[])


def error_of(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value


def http(url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def test_auth_test_and_bad_tokens(fake: FakeSlack, client: WebClient) -> None:
    me = client.auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == ("U0BOT", "B0BOT", "T0FAKE")
    assert me.headers["Content-Type"] == "application/json; charset=utf-8"
    bad = WebClient(token="xoxb-wrong", base_url=fake.base_url)
    assert error_of(bad.auth_test).response["error"] == "invalid_auth"
    anonymous = WebClient(base_url=fake.base_url)
    assert error_of(anonymous.auth_test).response["error"] == "not_authed"
    assert [c.ok for c in fake.calls("auth.test")] == [True, False, False]


def test_unknown_method(client: WebClient) -> None:
    assert error_of(lambda: client.api_call("chat.teleport")).response["error"] == "unknown_method"


def test_post_message_stores_blocks_from_json_and_form(fake: FakeSlack, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Coffee?*"}}]
    sent = client.chat_postMessage(channel="C1", text="Coffee?", blocks=blocks)
    assert sent["channel"] == "C1"
    assert sent["message"]["blocks"] == blocks
    assert sent["message"]["bot_id"] == "B0BOT"
    form = {"channel": "#coffee", "text": "again", "blocks": json.dumps(blocks)}
    client.api_call("chat.postMessage", params=form)  # form-encoded, blocks as a JSON string
    stored = fake.messages("C1")
    assert [m["text"] for m in stored] == ["Coffee?", "again"]
    assert stored[1]["blocks"] == blocks
    assert stored[0]["ts"] == sent["ts"]
    assert fake.calls("chat.postMessage")[1].args["blocks"] == blocks


def test_ts_values_are_unique_and_increasing(client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="C1", text=str(i))["ts"] for i in range(20)]
    assert stamps == sorted(stamps, key=float)
    assert len(set(stamps)) == 20
    assert all(len(ts.split(".")[1]) == 6 for ts in stamps)


def test_concurrent_posts_get_distinct_ts(fake: FakeSlack, client: WebClient) -> None:
    def post(i: int) -> str:
        return str(client.chat_postMessage(channel="C1", text=str(i))["ts"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        stamps = list(pool.map(post, range(40)))
    assert len(set(stamps)) == 40
    assert len(fake.messages("C1")) == 40


def test_form_encoded_view(fake: FakeSlack, client: WebClient) -> None:
    form = {"trigger_id": "1.2.abc", "view": json.dumps(MODAL)}
    assert client.api_call("views.open", params=form)["view"]["callback_id"] == "order"
    assert fake.calls("views.open")[0].args["view"] == MODAL


def test_post_message_errors(fake: FakeSlack, client: WebClient) -> None:
    def error(**args: Any) -> str:
        err = error_of(lambda: client.api_call("chat.postMessage", json=args))
        return str(err.response["error"])

    assert error(channel="C2", text="hi") == "not_in_channel"
    assert error(channel="C404", text="hi") == "channel_not_found"
    assert error(text="hi") == "channel_not_found"
    assert error(channel="C1") == "no_text"
    assert error(channel="C1", blocks=[{"type": "divider"}] * 51) == "invalid_blocks"
    assert error(channel="C1", blocks="[not json") == "invalid_blocks_format"
    long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    assert error(channel="C1", blocks=long) == "invalid_blocks"
    assert fake.messages("C1") == []
    assert all(c.failed for c in fake.calls())


def test_json_body_needs_the_header_token(fake: FakeSlack) -> None:
    body = json.dumps({"token": fake.token, "channel": "C1", "text": "hi"}).encode()
    status, _, text = http(
        fake.base_url + "chat.postMessage", body, {"Content-Type": "application/json"}
    )
    assert (status, json.loads(text)["error"]) == (200, "not_authed")


def test_update_keeps_history_and_delete_removes(fake: FakeSlack, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C1", text="v1")["ts"]
    updated = client.chat_update(channel="C1", ts=ts, text="v2")
    assert updated["message"]["text"] == "v2"
    client.chat_update(channel="C1", ts=ts, text="v3", blocks=[{"type": "divider"}])
    [message] = fake.messages("C1")
    assert (message["text"], message["updates"]) == ("v3", 2)
    assert [h["text"] for h in message["history"]] == ["v1", "v2"]
    err = error_of(lambda: client.chat_update(channel="C1", ts="1.000001", text="x"))
    assert err.response["error"] == "message_not_found"
    client.chat_delete(channel="C1", ts=ts)
    assert fake.messages("C1") == []
    assert error_of(lambda: client.chat_delete(channel="C1", ts=ts)).response["error"] == (
        "message_not_found"
    )


def test_ephemeral_needs_a_member(fake: FakeSlack, client: WebClient) -> None:
    sent = client.chat_postEphemeral(channel="C3", user="U1", text="only you")
    assert fake.ephemerals("U1")[0]["ts"] == sent["message_ts"]
    assert fake.ephemerals("U2") == []
    err = error_of(lambda: client.chat_postEphemeral(channel="C3", user="U2", text="hi"))
    assert err.response["error"] == "user_not_in_channel"
    client.chat_postEphemeral(channel="C1", user="U2", text="everyone is in C1")
    assert len(fake.ephemerals()) == 2


def test_users_info(fake: FakeSlack, client: WebClient) -> None:
    bob = client.users_info(user="U2")["user"]
    offset = datetime.now(ZoneInfo("America/New_York")).utcoffset()
    assert offset is not None
    assert (bob["name"], bob["tz"], bob["is_admin"]) == ("bob", "America/New_York", True)
    assert bob["tz_offset"] == offset.total_seconds()
    assert bob["profile"]["display_name"] == "bob"
    assert error_of(lambda: client.users_info(user="U404")).response["error"] == "user_not_found"


def test_users_info_over_get_and_json_is_ignored(fake: FakeSlack) -> None:
    auth = {"Authorization": f"Bearer {fake.token}"}
    status, _, text = http(fake.base_url + "users.info?user=U1", None, auth)
    assert (status, json.loads(text)["user"]["id"]) == (200, "U1")
    json_body = json.dumps({"user": "U1"}).encode()
    _, _, text = http(
        fake.base_url + "users.info", json_body, {**auth, "Content-Type": "application/json"}
    )
    assert json.loads(text)["error"] == "user_not_found"  # Slack ignores JSON for this method


def test_dms(fake: FakeSlack, client: WebClient) -> None:
    opened = client.conversations_open(users="U1")
    dm = opened["channel"]["id"]
    assert dm == "DU1"
    assert client.conversations_open(users=["U1"])["already_open"] is True
    client.chat_postMessage(channel=dm, text="your coffee is ready")
    client.chat_postMessage(channel="U1", text="straight to the DM")
    assert [m["text"] for m in fake.dms("U1")] == ["your coffee is ready", "straight to the DM"]
    info = client.conversations_info(channel=dm)["channel"]
    assert (info["is_im"], info["user"]) == (True, "U1")
    assert client.conversations_info(channel="C1")["channel"]["name"] == "coffee"
    err = error_of(lambda: client.conversations_open(users="U404"))
    assert err.response["error"] == "user_not_found"


def test_views_open_and_update(fake: FakeSlack, client: WebClient) -> None:
    view = client.views_open(trigger_id="1.2.abc", view=MODAL)["view"]
    assert view["id"].startswith("V")
    assert (view["type"], view["callback_id"]) == ("modal", "order")
    changed = {**MODAL, "title": {"type": "plain_text", "text": "Ordered"}}
    updated = client.views_update(view_id=view["id"], view=changed, hash=view["hash"])["view"]
    assert updated["id"] == view["id"]
    assert fake.opened_views()[0]["title"]["text"] == "Ordered"
    err = error_of(lambda: client.views_update(view_id=view["id"], view=MODAL, hash=view["hash"]))
    assert err.response["error"] == "hash_conflict"
    err = error_of(lambda: client.views_update(view_id="V404", view=MODAL))
    assert err.response["error"] == "not_found"


def test_views_open_errors(
    fake: FakeSlack, client: WebClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_string = {"trigger_id": "1.2.abc", "view": json.dumps(MODAL)}  # a JSON string works too
    client.api_call("views.open", json=as_string)
    reused = error_of(lambda: client.views_open(trigger_id="1.2.abc", view=MODAL))
    assert reused.response["error"] == "expired_trigger_id"
    untitled = {k: v for k, v in MODAL.items() if k != "title"}
    err = error_of(lambda: client.views_open(trigger_id="3.4.def", view=untitled))
    assert err.response["error"] == "invalid_arguments"
    assert "title" in err.response["response_metadata"]["messages"][0]
    wordy = {**MODAL, "title": {"type": "plain_text", "text": "A title far too long for Slack"}}
    err = error_of(lambda: client.views_open(trigger_id="3.4.def", view=wordy))
    assert err.response["error"] == "invalid_arguments"
    monkeypatch.setattr(slack_api, "TRIGGER_TTL", 0.0)
    stale = fake.trigger_id()
    err = error_of(lambda: client.views_open(trigger_id=stale, view=MODAL))
    assert err.response["error"] == "expired_trigger_id"
    assert len(fake.opened_views()) == 1


def test_views_publish(fake: FakeSlack, client: WebClient) -> None:
    first = client.views_publish(user_id="U1", view=HOME)["view"]
    second = client.views_publish(user_id="U1", view=HOME)["view"]
    assert first["id"] == second["id"]
    assert fake.home_view("U1") == second
    err = error_of(lambda: client.views_publish(user_id="U1", view=MODAL))
    assert err.response["error"] == "invalid_arguments"
    err = error_of(lambda: client.views_publish(user_id="U1", view=HOME, hash=first["hash"]))
    assert err.response["error"] == "hash_conflict"


def test_rate_limit_and_server_error(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=7)
    fake.fail_next("chat.postMessage", status=500)
    err = error_of(lambda: client.chat_postMessage(channel="C1", text="hi"))
    assert err.response.status_code == 429
    assert err.response.headers["Retry-After"] == "7"
    assert err.response["error"] == "ratelimited"
    err = error_of(lambda: client.chat_postMessage(channel="C1", text="hi"))
    assert err.response.status_code == 500
    client.chat_postMessage(channel="C1", text="hi")
    calls = fake.calls("chat.postMessage")
    assert [(c.status, c.injected, c.failed) for c in calls] == [
        (429, True, True), (500, True, True), (200, False, False)
    ]  # fmt: skip
    assert len(fake.messages("C1")) == 1


def test_injected_slack_error_repeats(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("views.open", error="internal_error", times=2)
    for _ in range(2):
        err = error_of(lambda: client.views_open(trigger_id="1.2.abc", view=MODAL))
        assert (err.response.status_code, err.response["error"]) == (200, "internal_error")
    client.views_open(trigger_id="1.2.abc", view=MODAL)  # an injected failure burns no trigger
    with pytest.raises(ValueError, match="does not implement"):
        fake.fail_next("chat.teleport", error="nope")


def test_delay_times_out_the_client_but_the_call_lands(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", delay=1.5)
    impatient = WebClient(token=fake.token, base_url=fake.base_url, timeout=1, retry_handlers=[])
    with pytest.raises(TimeoutError):
        impatient.chat_postMessage(channel="C1", text="late")
    fake.wait_for(lambda: fake.messages("C1"), timeout=5)
    assert fake.calls("chat.postMessage")[0].injected


def test_response_url(fake: FakeSlack) -> None:
    url = fake.response_url("order-1")
    assert fake.response_url("order-1") == url
    payload = {"text": "Order placed", "replace_original": True}
    ctype = {"Content-Type": "application/json"}
    assert http(url, json.dumps(payload).encode(), ctype)[::2] == (200, "ok")
    assert fake.responses("order-1") == [payload]
    assert http(url, b"not json", ctype)[0] == 400
    assert http(fake.root_url + "/response/nope", b"{}", ctype)[0] == 404
    for _ in range(4):
        http(url, b"{}", ctype)
    assert http(url, b"{}", ctype)[::2] == (404, "used_url")  # Slack allows five uses


def test_wait_for_and_reset(fake: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel="C1", text="hello")
    assert fake.wait_for(lambda: fake.messages("C1"))[0]["text"] == "hello"
    with pytest.raises(AssertionError, match=r"chat\.postMessage -> ok"):
        fake.wait_for(lambda: fake.messages("C3"), timeout=0.1)
    fake.reset()
    assert fake.calls() == []
    assert fake.messages("C1") == []
    assert client.users_info(user="U1")["ok"]  # users and channels survive a reset


# ---- message metadata, conversations.history, answers held back after the effect ----------

META = {"event_type": "coffeebuddy_message", "event_payload": {"run_id": "r-1", "part": "summary"}}


def test_post_message_stores_metadata_from_json_and_form(
    fake: FakeSlack, client: WebClient
) -> None:
    sent = client.chat_postMessage(channel="C1", text="json", metadata=META)
    assert "metadata" not in sent["message"]  # only the history methods show it, on request
    form = {"channel": "C1", "text": "form", "metadata": json.dumps(META)}
    client.api_call("chat.postMessage", params=form)  # form-encoded: a JSON string
    client.chat_postMessage(channel="C1", text="none")
    assert [m.get("metadata") for m in fake.messages("C1")] == [META, META, None]
    assert fake.calls("chat.postMessage")[1].args["metadata"] == META


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ("{not json", "invalid_metadata_format"),
        (json.dumps(["a list"]), "invalid_metadata_format"),
        (json.dumps({"event_payload": {}}), "invalid_metadata_schema"),
        (json.dumps({"event_type": 7, "event_payload": {}}), "invalid_metadata_schema"),
        (json.dumps({"event_type": "x", "event_payload": "run"}), "invalid_metadata_schema"),
        (json.dumps({"event_type": "x"}), "invalid_metadata_schema"),
    ],
)
def test_post_message_rejects_bad_metadata(
    fake: FakeSlack, client: WebClient, metadata: str, error: str
) -> None:
    form = {"channel": "C1", "text": "hi", "metadata": metadata}
    err = error_of(lambda: client.api_call("chat.postMessage", params=form))
    assert err.response["error"] == error
    assert fake.messages("C1") == []


def test_update_keeps_replaces_or_removes_metadata(fake: FakeSlack, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="C1", text="v1", metadata=META)["ts"]
    client.chat_update(channel="C1", ts=ts, text="v2")
    assert fake.messages("C1")[0]["metadata"] == META  # absent: retained, as Slack documents
    other = {"event_type": "coffeebuddy_message", "event_payload": {"part": "run_message"}}
    client.chat_update(channel="C1", ts=ts, text="v3", metadata=other)
    assert fake.messages("C1")[0]["metadata"] == other
    bad = {"event_type": "", "event_payload": {}}
    err = error_of(lambda: client.chat_update(channel="C1", ts=ts, text="v4", metadata=bad))
    assert err.response["error"] == "invalid_metadata_schema"
    assert fake.messages("C1")[0]["text"] == "v3"  # a rejected update changes nothing
    client.api_call("chat.update", json={"channel": "C1", "ts": ts, "text": "v5", "metadata": {}})
    [message] = fake.messages("C1")
    assert "metadata" not in message  # an empty object removes it
    assert message["text"] == "v5"


def test_history_is_newest_first_and_shows_metadata_only_when_asked(
    fake: FakeSlack, client: WebClient
) -> None:
    first = client.chat_postMessage(channel="C1", text="one", metadata=META)["ts"]
    second = client.chat_postMessage(channel="C1", text="two", blocks=[{"type": "divider"}])["ts"]
    client.chat_postMessage(channel="C1", text="in a thread", thread_ts=first)
    plain = client.conversations_history(channel="C1")
    assert plain["has_more"] is False
    assert plain["pin_count"] == 0
    assert plain["response_metadata"] == {"next_cursor": ""}
    assert [m["ts"] for m in plain["messages"]] == [second, first]  # no thread replies
    newest = plain["messages"][0]
    assert (newest["type"], newest["text"], newest["bot_id"], newest["app_id"]) == (
        "message", "two", "B0BOT", "A0BOT"
    )  # fmt: skip
    assert newest["blocks"] == [{"type": "divider"}]
    assert all("metadata" not in m for m in plain["messages"])
    full = client.conversations_history(channel="C1", include_all_metadata=True)
    assert [m.get("metadata") for m in full["messages"]] == [None, META]
    assert fake.calls("conversations.history")[-1].args["include_all_metadata"] in ("1", "true")


def test_history_time_window_and_inclusive(fake: FakeSlack, client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="C1", text=str(i))["ts"] for i in range(5)]

    def texts(**args: Any) -> list[str]:
        return [m["text"] for m in client.conversations_history(channel="C1", **args)["messages"]]

    assert texts(oldest=stamps[1]) == ["4", "3", "2"]
    assert texts(oldest=stamps[1], inclusive=True) == ["4", "3", "2", "1"]
    assert texts(latest=stamps[3]) == ["2", "1", "0"]
    assert texts(oldest=stamps[1], latest=stamps[3], inclusive=True) == ["3", "2", "1"]
    assert texts(oldest=str(int(float(stamps[0])) - 1)) == ["4", "3", "2", "1", "0"]
    assert texts(oldest="9999999999.000000") == []
    err = error_of(lambda: client.conversations_history(channel="C1", oldest="yesterday"))
    assert err.response["error"] == "invalid_ts_oldest"
    err = error_of(lambda: client.conversations_history(channel="C1", latest="soon"))
    assert err.response["error"] == "invalid_ts_latest"


def test_history_pages_with_cursor_and_limit(fake: FakeSlack, client: WebClient) -> None:
    for i in range(7):
        client.chat_postMessage(channel="C1", text=str(i))
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = client.conversations_history(channel="C1", limit=3, cursor=cursor or None)
        seen += [m["text"] for m in page["messages"]]
        pages += 1
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] is bool(cursor)
        if not cursor:
            break
    assert (seen, pages) == (["6", "5", "4", "3", "2", "1", "0"], 3)
    # The window still applies on later pages.
    oldest = fake.messages("C1")[2]["ts"]
    page = client.conversations_history(channel="C1", limit=2, oldest=oldest)
    rest = client.conversations_history(
        channel="C1", limit=2, oldest=oldest, cursor=page["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in page["messages"] + rest["messages"]] == ["6", "5", "4", "3"]
    assert rest["has_more"] is False
    err = error_of(lambda: client.conversations_history(channel="C1", cursor="bm90IGEgY3Vyc29y"))
    assert err.response["error"] == "invalid_cursor"
    err = error_of(lambda: client.conversations_history(channel="C1", cursor="%%%"))
    assert err.response["error"] == "invalid_cursor"


def test_history_limit_defaults_to_100_and_stops_at_999(fake: FakeSlack, client: WebClient) -> None:
    for i in range(101):
        client.chat_postMessage(channel="C1", text=str(i))
    default = client.conversations_history(channel="C1")
    assert (len(default["messages"]), default["has_more"]) == (100, True)
    everything = client.conversations_history(channel="C1", limit=5000)
    assert (len(everything["messages"]), everything["has_more"]) == (101, False)
    err = error_of(
        lambda: client.api_call("conversations.history", params={"channel": "C1", "limit": "x"})
    )
    assert err.response["error"] == "invalid_arguments"


def test_history_only_where_the_bot_can_read(fake: FakeSlack, client: WebClient) -> None:
    fake.add_channel("G1", "secret", bot_member=False)

    def error(channel: str) -> str:
        err = error_of(lambda: client.conversations_history(channel=channel))
        return str(err.response["error"])

    assert error("C2") == "not_in_channel"  # public, the bot is not a member
    assert error("G1") == "channel_not_found"  # private, the bot is not a member
    assert error("C404") == "channel_not_found"
    assert error("#coffee") == "channel_not_found"  # an ID, not a name
    assert error("DU1") == "channel_not_found"  # no DM opened yet
    dm = client.conversations_open(users="U1")["channel"]["id"]
    assert client.conversations_history(channel=dm)["messages"] == []
    client.chat_postMessage(channel=dm, text="your run", metadata=META)
    [message] = client.conversations_history(channel=dm, include_all_metadata=True)["messages"]
    assert (message["text"], message["metadata"]) == ("your run", META)
    missing = error_of(lambda: client.api_call("conversations.history", params={}))
    assert missing.response["error"] == "channel_not_found"


def test_history_over_get_and_post(fake: FakeSlack) -> None:
    auth = {"Authorization": f"Bearer {fake.token}"}
    status, _, text = http(fake.base_url + "conversations.history?channel=C1", None, auth)
    assert (status, json.loads(text)["ok"]) == (200, True)
    body = json.dumps({"channel": "C1", "limit": 1}).encode()
    _, _, text = http(
        fake.base_url + "conversations.history", body, {**auth, "Content-Type": "application/json"}
    )
    assert json.loads(text)["ok"] is True


def test_effect_first_stores_at_once_and_answers_late(fake: FakeSlack) -> None:
    fake.fail_next("chat.postMessage", delay=1.5, effect_first=True)
    impatient = WebClient(token=fake.token, base_url=fake.base_url, timeout=1, retry_handlers=[])
    with pytest.raises(TimeoutError):
        impatient.chat_postMessage(channel="C1", text="accepted", metadata=META)
    # Stored before the caller gave up, not after the delay.
    [message] = fake.messages("C1")
    assert (message["text"], message["metadata"]) == ("accepted", META)
    [call] = fake.calls("chat.postMessage")
    assert (call.ok, call.injected) == (True, True)
    assert fake.pending_faults("chat.postMessage") == 0


def test_effect_first_with_an_error_answer(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.postMessage", status=500, effect_first=True)
    err = error_of(lambda: client.chat_postMessage(channel="C1", text="sent anyway"))
    assert err.response.status_code == 500
    assert [m["text"] for m in fake.messages("C1")] == ["sent anyway"]
    assert len(fake.calls("chat.postMessage")) == 1  # one call, recorded as handled
    fake.fail_next("chat.postMessage", status=429, retry_after=4, effect_first=True)
    err = error_of(lambda: client.chat_postMessage(channel="C1", text="twice"))
    assert (err.response.status_code, err.response.headers["Retry-After"]) == (429, "4")
    assert len(fake.messages("C1")) == 2


def test_fault_with_when_waits_for_a_matching_call(fake: FakeSlack, client: WebClient) -> None:
    client.conversations_open(users="U1")
    fake.fail_next("chat.postMessage", status=503, when=lambda a: a.get("channel") == "DU1")
    client.chat_postMessage(channel="C1", text="not this one")  # goes through untouched
    assert fake.pending_faults("chat.postMessage") == 1
    err = error_of(lambda: client.chat_postMessage(channel="DU1", text="this one"))
    assert err.response.status_code == 503
    assert fake.pending_faults("chat.postMessage") == 0
    client.chat_postMessage(channel="DU1", text="then fine")
    assert [m["text"] for m in fake.dms("U1")] == ["then fine"]
    assert [(c.args["channel"], c.status) for c in fake.calls("chat.postMessage")] == [
        ("C1", 200), ("DU1", 503), ("DU1", 200)
    ]  # fmt: skip


def test_replies_give_the_thread_parent_first_with_metadata_only_when_asked(
    fake: FakeSlack, client: WebClient
) -> None:
    parent = client.chat_postMessage(channel="C1", text="summary")["ts"]
    client.chat_postMessage(channel="C1", text="other")
    meta = {"event_type": "coffeebuddy_message", "event_payload": {"part": "x"}}
    first = client.chat_postMessage(channel="C1", text="r1", thread_ts=parent, metadata=meta)
    client.chat_postMessage(channel="C1", text="r2", thread_ts=parent)
    page = client.conversations_replies(channel="C1", ts=parent)
    assert [m["text"] for m in page["messages"]] == ["summary", "r1", "r2"]
    assert page["messages"][0]["reply_count"] == 2
    assert page["messages"][0]["thread_ts"] == parent
    assert "metadata" not in page["messages"][1]
    page = client.conversations_replies(channel="C1", ts=first["ts"], include_all_metadata=True)
    assert page["messages"][1]["metadata"] == meta  # a reply's ts gives its whole thread
    # Pages of `limit`, the parent only on the first.
    one = client.conversations_replies(channel="C1", ts=parent, limit=2)
    assert [m["text"] for m in one["messages"]] == ["summary", "r1"]
    assert one["has_more"] is True
    rest = client.conversations_replies(
        channel="C1", ts=parent, cursor=one["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["r2"]
    # History keeps replies in their thread.
    history = client.conversations_history(channel="C1")
    assert [m["text"] for m in history["messages"]] == ["other", "summary"]


def test_replies_errors(fake: FakeSlack, client: WebClient) -> None:
    assert (
        error_of(lambda: client.conversations_replies(channel="C1", ts="1.000001")).response[
            "error"
        ]
        == "thread_not_found"
    )
    assert (
        error_of(lambda: client.conversations_replies(channel="C9", ts="1.1")).response["error"]
        == "channel_not_found"
    )
    assert (
        error_of(lambda: client.conversations_replies(channel="C2", ts="1.1")).response["error"]
        == "not_in_channel"
    )


def test_permalink_to_a_message_and_to_a_reply(fake: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="hi")["ts"]
    reply = client.chat_postMessage(channel="C1", text="re", thread_ts=parent)["ts"]
    link = client.chat_getPermalink(channel="C1", message_ts=parent)
    assert link["channel"] == "C1"
    assert link["permalink"] == (f"{fake.permalink_base}/archives/C1/p{parent.replace('.', '')}")
    threaded = client.chat_getPermalink(channel="C1", message_ts=reply)["permalink"]
    assert threaded.endswith(f"p{reply.replace('.', '')}?thread_ts={parent}&cid=C1")
    for channel, ts, error in (
        ("C1", "1.000001", "message_not_found"),
        ("C9", parent, "channel_not_found"),
        ("C1", "", "invalid_arguments"),
    ):
        found = error_of(lambda c=channel, t=ts: client.chat_getPermalink(channel=c, message_ts=t))
        assert found.response["error"] == error


def test_rate_limits_by_tier_are_enforced_only_when_switched_on(
    fake: FakeSlack, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel="C1", text="hi")
    for _ in range(5):  # off by default: nothing is limited
        client.chat_update(channel="C1", ts=posted["ts"], text="again")
    fake.enforce_rate_limits(RateLimits(tier3_per_minute=3, tier4_per_minute=100))
    for _ in range(3):
        client.chat_update(channel="C1", ts=posted["ts"], text="again")
    err = error_of(lambda: client.chat_update(channel="C1", ts=posted["ts"], text="again"))
    assert err.response.status_code == 429
    assert err.response["error"] == "ratelimited"
    assert 1 <= int(err.response.headers["Retry-After"]) <= 60
    # Per method: another Tier 3 method has its own window.
    client.conversations_open(users="U1")
    # chat.postMessage: one a second per channel, in bursts of 3; each channel on its own.
    for text in ("one", "two", "three"):
        client.chat_postMessage(channel="C1", text=text)
    err = error_of(lambda: client.chat_postMessage(channel="C1", text="four"))
    assert err.response.status_code == 429
    assert 1 <= int(err.response.headers["Retry-After"]) <= 3
    client.chat_postMessage(channel="C3", text="elsewhere")
    refused = [c for c in fake.calls() if c.status == 429]
    assert [c.method for c in refused] == ["chat.update", "chat.postMessage"]
    assert not any(c.injected for c in refused)
    # A refused call does not count, nor is it done.
    assert [m["text"] for m in fake.messages("C1")] == ["again", "one", "two", "three"]
    fake.enforce_rate_limits(None)
    client.chat_update(channel="C1", ts=posted["ts"], text="free again")
