"""People in a Slack workspace, played against a running CoffeeBuddy over HTTP.

``Simulator`` is Slack's side of the conversation: it signs and sends slash commands, finds
buttons in the messages the bot posted (held by ``FakeSlack``, which serves the Web API the
bot calls) and clicks them with the payload Slack would send, and fills in and submits the
modals the bot opened. Every call is safe from many threads at once and costs one HTTP
request (no sleeps), so a load test can fire hundreds of clicks in a second.

``Person`` strings those calls into what one user does (order, use my usual, edit, cancel,
close) and waits for what that user would see next, so a scripted run reads like a story
and fails with a reason a person would understand.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import http.client
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from coffeebuddy.slack import run_blocks
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import (
    SIGNING_SECRET,
    block_action_payload,
    command_body,
    sign,
    view_submission_payload,
)

type JsonDict = dict[str, Any]
# A form answer: text for a text input; for checkboxes True (all), False/None (none), or
# the option value(s) to tick; for a users select the user ids.
type FieldAnswer = str | bool | Sequence[str] | None
# Sends a signed request (url, body, headers, timeout) and answers as the service did.
type Transport = Callable[[str, bytes, Mapping[str, str], float], HttpAnswer]

# Keys FakeSlack adds to the messages it lists (for tests) or keeps back from interaction
# payloads (metadata comes only from the history methods): never part of a click.
_NOT_IN_CLICKS = ("channel", "updates", "history", "metadata")


class SimulationError(Exception):
    """Something a person would notice went wrong: the service refused a request, a form
    did not open, or what they waited for never showed up. The message says which."""


@dataclass(frozen=True)
class HttpAnswer:
    """The service's answer to one request Slack sent it."""

    status: int  # 0: no HTTP answer at all (connection refused, timed out); see `error`
    body: str
    elapsed: float  # seconds from sending to the complete answer
    error: str | None = None
    sent_at: float | None = None  # time.monotonic() when sent, if another process sent it

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None

    def describe(self) -> str:
        if self.status == 0:
            return f"no answer ({self.error})"
        return f"HTTP {self.status}: {self.body[:300]}"


@dataclass(frozen=True)
class Button:
    """A button as a person sees it in a message the bot posted."""

    channel: str
    message: JsonDict  # the message as Slack sends it back in the click payload
    block_id: str
    element: JsonDict

    @property
    def action_id(self) -> str:
        return str(self.element.get("action_id", ""))

    @property
    def value(self) -> str | None:
        value = self.element.get("value")
        return None if value is None else str(value)

    @property
    def label(self) -> str:
        return str((self.element.get("text") or {}).get("text", ""))

    @property
    def message_ts(self) -> str:
        return str(self.message["ts"])


@dataclass(frozen=True)
class CommandResult:
    user: str
    channel: str
    text: str
    trigger_id: str
    response_url: str
    response_name: str  # FakeSlack's name for the response_url: `Simulator.answers` reads it
    answer: HttpAnswer


@dataclass(frozen=True)
class Click:
    user: str
    button: Button
    trigger_id: str
    response_url: str
    response_name: str
    answer: HttpAnswer
    at: float  # time.time() when it was sent


@dataclass(frozen=True)
class Submission:
    user: str
    view: JsonDict  # the view as submitted, `state.values` included
    answer: HttpAnswer

    @property
    def errors(self) -> dict[str, str] | None:
        """The field errors the modal shows (it stays open), keyed by block id."""
        body = self.answer.json() if self.answer.ok else None
        if isinstance(body, dict) and body.get("response_action") == "errors":
            return {str(k): str(v) for k, v in (body.get("errors") or {}).items()}
        return None


@dataclass(frozen=True)
class Event:
    """Something a person did, for the transcript."""

    at: float  # time.time()
    user: str
    text: str


@dataclass(frozen=True)
class Told:
    """Something only one person saw: the reply to their command, an answer through a
    response_url or chat.postEphemeral, an error shown in a form or by Slack itself."""

    at: float
    user: str
    text: str
    via: str  # "reply", "response_url", "ephemeral", "form", "slack"


def _ts_key(ts: str) -> tuple[int, int]:
    # Slack timestamps carry 16 significant digits, one more than a float holds exactly.
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def _buttons(block: JsonDict) -> list[JsonDict]:
    if block.get("type") == "actions":
        return [e for e in block.get("elements") or [] if e.get("type") == "button"]
    accessory = block.get("accessory")
    if block.get("type") == "section" and isinstance(accessory, dict):
        return [accessory] if accessory.get("type") == "button" else []
    return []


def _menu_choices(block: JsonDict, action_id: str) -> list[JsonDict]:
    """The options of an actions block's overflow menus whose value names `action_id`
    ("<action>:<run id>"), each as a pseudo-button a person can pick: it keeps the menu's
    own action_id (what Slack sends) and carries the option as `selected_option`."""
    if block.get("type") != "actions":
        return []
    return [
        {
            "type": "overflow",
            "action_id": menu.get("action_id"),
            "text": option.get("text"),
            "selected_option": option,
            "value": str(option.get("value", "")).partition(":")[2],
        }
        for menu in block.get("elements") or []
        if menu.get("type") == "overflow"
        for option in menu.get("options") or []
        if str(option.get("value", "")).partition(":")[0] == action_id
    ]


def _slack_block_id(message_ts: str, index: int) -> str:
    # Slack gives every block without an id one of its own and echoes it in clicks; a
    # stable stand-in keeps repeated clicks on one message consistent, as Slack's are.
    digest = hashlib.sha256(f"{message_ts}/{index}".encode()).digest()
    return base64.b32encode(digest)[:5].decode()


def _as_slack_sends(message: JsonDict) -> JsonDict:
    sent = {k: copy.deepcopy(v) for k, v in message.items() if k not in _NOT_IN_CLICKS}
    for index, block in enumerate(sent.get("blocks") or []):
        block.setdefault("block_id", _slack_block_id(str(sent["ts"]), index))
    return sent


def _payload_body(payload: JsonDict) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def _plain(text_object: object) -> str:
    return str(text_object.get("text", "")) if isinstance(text_object, dict) else ""


def fill_view_state(view: JsonDict, answers: Mapping[str, FieldAnswer]) -> JsonDict:
    """`view.state.values` as Slack submits this view after a person filled it in.

    `answers` is keyed by an input block's block_id (or its element's action_id). A field
    left out keeps what the form showed: its initial value or initial options, as in
    Slack. Raises KeyError for an answer to a field the view doesn't have, so a typo in a
    script fails loudly instead of submitting an empty form."""
    values: JsonDict = {}
    used: set[str] = set()
    for block in view.get("blocks") or []:
        if block.get("type") != "input" or not isinstance(block.get("element"), dict):
            continue
        element = block["element"]
        block_id, action_id = str(block.get("block_id", "")), str(element.get("action_id", ""))
        key = block_id if block_id in answers else action_id if action_id in answers else None
        if key is not None:
            used.add(key)
        given = answers[key] if key is not None else None
        kind = element.get("type")
        state: JsonDict
        if kind in ("plain_text_input", "number_input", "email_text_input", "url_text_input"):
            value = given if key is not None else element.get("initial_value")
            # Slack sends null for an empty field, and number inputs as strings.
            state = {"type": kind, "value": None if value in (None, "") else str(value)}
        elif kind in ("checkboxes", "radio_buttons"):
            options = list(element.get("options") or [])
            if key is None:
                chosen = list(element.get("initial_options") or [])
            elif given is True:
                chosen = options
            elif given is None or given is False:
                chosen = []
            else:
                wanted = {given} if isinstance(given, str) else set(given)
                chosen = [o for o in options if o.get("value") in wanted]
                if len(chosen) != len(wanted):
                    raise KeyError(f"{block_id}: no option(s) {sorted(wanted)} in the form")
            if kind == "checkboxes":
                state = {"type": kind, "selected_options": chosen}
            else:
                state = {"type": kind, "selected_option": chosen[0] if chosen else None}
        elif kind == "multi_users_select":
            users = (element.get("initial_users") or []) if key is None else (given or [])
            state = {"type": kind, "selected_users": [users] if isinstance(users, str) else users}
        else:
            raise NotImplementedError(f"the simulator can't fill a {kind!r} input yet")
        values[block_id] = {action_id: state}
    unknown = set(answers) - used
    if unknown:
        raise KeyError(f"the form {view.get('callback_id')!r} has no field(s) {sorted(unknown)}")
    return values


def describe_submission(view: JsonDict, values: JsonDict) -> str:
    """`fills “Coffee order”: Your order = “flat white”; Runner = – → [Save order]`."""
    parts = []
    for block in view.get("blocks") or []:
        if block.get("type") != "input":
            continue
        state: JsonDict = next(iter(values.get(str(block.get("block_id")), {}).values()), {})
        if "selected_options" in state:
            shown = ", ".join(_plain(o.get("text")) for o in state["selected_options"]) or "–"
        elif "selected_users" in state:
            shown = ", ".join(f"<@{u}>" for u in state["selected_users"]) or "–"
        else:
            shown = f"“{state['value']}”" if state.get("value") else "–"
        parts.append(f"{_plain(block.get('label'))} = {shown}")
    submit = _plain(view.get("submit")) or "Submit"
    return f"fills “{_plain(view.get('title'))}”: {'; '.join(parts)} → [{submit}]"


class Simulator:
    """Slack for one workspace, facing one CoffeeBuddy at `service_url`.

    `fake` is the Web API the service calls (its SLACK_API_BASE_URL); `signing_secret` is
    the service's SLACK_SIGNING_SECRET. `timeout` bounds every wait for something to show
    up. With `record=False` nothing is kept for the transcript (long soak runs).
    `observer(path, body, answer)` is called after every request sent to the service: to
    see the raw payloads (tests) or collect latencies (benchmarks). `transport(url, body,
    headers, timeout)` sends a signed request instead of urllib in this process (the
    benchmarks send from a process of their own, `bench.sender`).

    Thread-safe: `command`, `click`, `submit` and the look-ups may run from many threads.
    """

    def __init__(
        self,
        fake: FakeSlack,
        service_url: str,
        *,
        signing_secret: str = SIGNING_SECRET,
        timeout: float = 15.0,
        http_timeout: float = 10.0,
        record: bool = True,
        observer: Callable[[str, bytes, HttpAnswer], None] | None = None,
        transport: Transport | None = None,
    ) -> None:
        if not service_url.startswith(("http://", "https://")):
            raise ValueError(f"service_url must be http(s)://, not {service_url!r}")
        self.fake = fake
        self.service_url = service_url.rstrip("/")
        self.signing_secret = signing_secret
        self.timeout = timeout
        self.http_timeout = http_timeout
        self.record = record
        self.observer = observer
        self.transport = transport
        self.started = time.time()
        # response_url names must not collide with another simulator on the same fake.
        self._prefix = secrets.token_hex(3)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._owners: dict[str, str] = {}  # response_url name -> the user it was issued to
        self._events: list[Event] = []
        self._told: list[Told] = []  # what the simulator itself saw answered (not the fake)

    def person(self, user_id: str, channel: str) -> Person:
        return Person(self, user_id, channel)

    def user_name(self, user_id: str) -> str:
        user = self.fake.users.get(user_id)
        return str(user["name"]) if user else user_id.lower()

    def channel_name(self, channel_id: str) -> str:
        if channel_id.startswith("D"):
            return "directmessage"  # what Slack sends for a click in a DM
        channel = self.fake.channels.get(channel_id)
        return channel.name if channel else channel_id.lower()

    # -- what people do -------------------------------------------------------------------

    def command(self, user: str, channel: str, text: str = "") -> CommandResult:
        """`user` types `/coffee text` in `channel`. Slack shows them the HTTP answer."""
        name, url = self._new_response_url(user)
        trigger = self.fake.trigger_id()
        body = command_body(
            user_id=user,
            channel_id=channel,
            text=text,
            response_url=url,
            user_name=self.user_name(user),
            channel_name=self.channel_name(channel),
            trigger_id=trigger,
        )
        self._event(user, f"types `/coffee{' ' + text if text else ''}`")
        answer = self._post("/slack/commands", body)
        if answer.ok:
            reply = answer.json()
            if isinstance(reply, dict) and reply.get("text"):
                self._tell(user, str(reply["text"]), "reply")
        else:
            # Slack's own words when an app answers a command badly or too late.
            self._tell(user, "/coffee failed with the error “dispatch_failed”", "slack")
        return CommandResult(user, channel, text, trigger, url, name, answer)

    def click(self, user: str, button: Button) -> Click:
        """`user` clicks `button`; a button with a confirm dialog is confirmed."""
        name, url = self._new_response_url(user)
        trigger = self.fake.trigger_id()
        payload = block_action_payload(
            user_id=user,
            channel_id=button.channel,
            action_id=button.action_id,
            value=button.value or "",
            message_ts=button.message_ts,
            block_id=button.block_id,
            response_url=url,
            trigger_id=trigger,
        )
        user_name = self.user_name(user)
        payload["user"].update(username=user_name, name=user_name)
        payload["channel"] = {"id": button.channel, "name": self.channel_name(button.channel)}
        payload["message"] = button.message
        payload["state"] = {"values": {}}
        action: JsonDict = {
            "type": button.element.get("type", "button"),
            "action_id": button.action_id,
            "block_id": button.block_id,
            "text": copy.deepcopy(button.element.get("text")),
            "action_ts": f"{time.time():.6f}",
        }
        if "selected_option" in button.element:  # a choice in an overflow menu
            action["selected_option"] = copy.deepcopy(button.element["selected_option"])
        elif button.value is not None:  # Slack leaves out what the button doesn't have
            action["value"] = button.value
        if "style" in button.element:
            action["style"] = button.element["style"]
        payload["actions"] = [action]
        where = " in their DM" if button.channel.startswith("D") else ""
        picks = "picks ⋯ " if "selected_option" in button.element else "clicks "
        self._event(user, f"{picks}[{button.label}]{where}")
        at = time.time()
        answer = self._post("/slack/interactions", _payload_body(payload))
        if not answer.ok:
            self._tell(user, "Slack: this app responded with an error", "slack")
        return Click(user, button, trigger, url, name, answer, at)

    def opened_view(self, click: Click | CommandResult) -> JsonDict | None:
        """The modal this click (or command) opened. CoffeeBuddy opens it before answering
        the request, so once `click` returned it is there or it never will be."""
        return self.fake.view_opened_with(click.trigger_id)

    def submit(
        self, user: str, view: JsonDict, answers: Mapping[str, FieldAnswer] | None = None
    ) -> Submission:
        """`user` fills in `view` (see `fill_view_state`) and presses its submit button."""
        values = fill_view_state(view, answers or {})
        payload = view_submission_payload(
            user_id=user,
            run_id=str(view.get("private_metadata") or ""),
            order_text="",
            callback_id=str(view.get("callback_id") or ""),
        )
        user_name = self.user_name(user)
        payload["user"].update(username=user_name, name=user_name)
        submitted = {**copy.deepcopy(view), "state": {"values": values}}
        payload["view"] = submitted
        self._event(user, describe_submission(view, values))
        answer = self._post("/slack/interactions", _payload_body(payload))
        submission = Submission(user, submitted, answer)
        if not answer.ok:
            self._tell(user, "Slack: we had some trouble connecting. Try again?", "slack")
        elif submission.errors:
            labels = {
                str(b.get("block_id")): _plain(b.get("label")) for b in view.get("blocks") or []
            }
            shown = "; ".join(f"{labels.get(k, k)}: {v}" for k, v in submission.errors.items())
            self._tell(user, f"the form stays open and says: {shown}", "form")
        return submission

    # -- what people see ------------------------------------------------------------------

    def find_button(
        self,
        channel: str,
        action_id: str,
        *,
        value: str | None = None,
        newer_than: str | None = None,
        limit: int = 50,
    ) -> Button | None:
        """The button with `action_id` (and `value`) on the newest of the last `limit`
        messages in `channel` that has one, only counting messages posted after the ts
        `newer_than`. None when there is none."""
        messages = self.fake.recent_messages(channel, limit)
        return self._newest_button(messages, action_id, value, newer_than)

    def find_dm_button(
        self, user: str, action_id: str, *, value: str | None = None, limit: int = 50
    ) -> Button | None:
        """The same in the bot's DM with `user`."""
        return self._newest_button(self.fake.recent_dms(user, limit), action_id, value)

    def wait_for_button(
        self,
        channel: str,
        action_id: str,
        *,
        value: str | None = None,
        newer_than: str | None = None,
        timeout: float | None = None,
    ) -> Button:
        """`find_button`, waiting until the bot posted (or updated) a message with it."""
        found = self.wait_for(
            lambda: self.find_button(channel, action_id, value=value, newer_than=newer_than),
            f"a {action_id!r} button in {channel}",
            timeout=timeout,
        )
        assert found is not None  # wait_for returns only a truthy value
        return found

    def newest_ts(self, channel: str) -> str | None:
        newest = self.fake.recent_messages(channel, 1)
        return str(newest[0]["ts"]) if newest else None

    def answers(self, sent: Click | CommandResult) -> list[str]:
        """What the service posted to this click's (or command's) response_url so far."""
        return [str(r.get("text", "")) for r in self.fake.responses(sent.response_name)]

    def replies(self, click: Click) -> list[str]:
        """What the person who clicked was told since: answers to the click's response_url,
        then chat.postEphemeral messages to them (the worker falls back to those, and some
        jobs, like the runner's DM, have no response_url to answer through)."""
        ephemerals = [
            str(e["text"]) for e in self.fake.ephemerals(click.user) if float(e["ts"]) >= click.at
        ]
        return self.answers(click) + ephemerals

    def wait_for[T](
        self,
        predicate: Callable[[], T],
        what: str,
        *,
        timeout: float | None = None,
        explain: Callable[[], str] | None = None,
    ) -> T:
        """Wait until `predicate()` is truthy and return it; it runs under FakeSlack's lock,
        so it may only look at the fake (no HTTP, no database). FakeSlack wakes the wait on
        every call it answers, so this returns moments after the bot did its part."""
        limit = self.timeout if timeout is None else timeout
        try:
            return self.fake.wait_for(predicate, timeout=limit)
        except AssertionError:
            detail = f" {explain()}" if explain is not None else ""
            raise SimulationError(f"waited {limit:g}s for {what}, it never came.{detail}") from None

    def wait_for_answer(self, sent: Click | CommandResult, *, timeout: float | None = None) -> str:
        """The first answer to this click's response_url (the person's ephemeral reply)."""
        answers = self.wait_for(
            lambda: self.answers(sent),
            f"an answer to @{self.user_name(sent.user)}",
            timeout=timeout,
        )
        return answers[0]

    def told(self, user: str) -> list[str]:
        """Everything only `user` saw, oldest first (see `private_messages`)."""
        return [t.text for t in self.private_messages() if t.user == user]

    def private_messages(self) -> list[Told]:
        """What each simulated person saw that nobody else did, oldest first: replies to
        their commands, answers via the response_urls issued to them, chat.postEphemeral
        messages, form errors and Slack's own error notices."""
        with self._lock:
            owners = dict(self._owners)
            told = list(self._told)
        for call in self.fake.calls("response_url"):
            owner = owners.get(str(call.args.get("name")))
            payload = call.args.get("payload")
            if call.ok and owner is not None and isinstance(payload, dict):
                told.append(Told(call.at, owner, str(payload.get("text", "")), "response_url"))
        for ephemeral in self.fake.ephemerals():
            at = float(ephemeral["ts"])
            told.append(Told(at, str(ephemeral["user"]), str(ephemeral["text"]), "ephemeral"))
        return sorted(told, key=lambda t: t.at)

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    # -- plumbing -------------------------------------------------------------------------

    def _newest_button(
        self,
        messages: list[JsonDict],
        action_id: str,
        value: str | None,
        newer_than: str | None = None,
    ) -> Button | None:
        """The button on the newest of `messages` (oldest first) that has one, only
        counting messages posted after the ts `newer_than`."""
        for message in reversed(messages):
            if newer_than is not None and _ts_key(message["ts"]) <= _ts_key(newer_than):
                break
            button = self._button_in(message, action_id, value)
            if button is not None:
                return button
        return None

    def _button_in(self, message: JsonDict, action_id: str, value: str | None) -> Button | None:
        for index, block in enumerate(message.get("blocks") or []):
            for element in [*_buttons(block), *_menu_choices(block, action_id)]:
                if element.get("action_id") != action_id and element.get("type") != "overflow":
                    continue
                if value is not None and element.get("value") != value:
                    continue
                ts = str(message["ts"])
                block_id = str(block.get("block_id") or _slack_block_id(ts, index))
                return Button(str(message["channel"]), _as_slack_sends(message), block_id, element)
        return None

    def _new_response_url(self, user: str) -> tuple[str, str]:
        name = f"{self._prefix}-{next(self._seq)}-{user}"
        with self._lock:
            self._owners[name] = user
        return name, self.fake.response_url(name)

    def _event(self, user: str, text: str) -> None:
        if self.record:
            with self._lock:
                self._events.append(Event(time.time(), user, text))

    def _tell(self, user: str, text: str, via: str) -> None:
        if self.record:
            with self._lock:
                self._told.append(Told(time.time(), user, text, via))

    def _post(self, path: str, body: bytes) -> HttpAnswer:
        answer = self._send(path, body)
        if self.observer is not None:
            self.observer(path, body, answer)
        return answer

    def _send(self, path: str, body: bytes) -> HttpAnswer:
        headers = sign(body, secret=self.signing_secret)
        if self.transport is not None:
            return self.transport(self.service_url + path, body, headers, self.http_timeout)
        # The scheme was checked in __init__: only http(s) to the service under test.
        request = urllib.request.Request(  # noqa: S310
            self.service_url + path, data=body, headers=headers, method="POST"
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.http_timeout) as answer:  # noqa: S310
                text = answer.read().decode()
                return HttpAnswer(answer.status, text, time.monotonic() - started)
        except urllib.error.HTTPError as exc:
            return HttpAnswer(exc.code, exc.read().decode(), time.monotonic() - started)
        except (OSError, http.client.HTTPException) as exc:
            # Refused, reset, timed out or garbled: Slack got no usable answer at all.
            return HttpAnswer(0, "", time.monotonic() - started, f"{type(exc).__name__}: {exc}")


class Person:
    """One user in one channel, doing what people do with CoffeeBuddy, one step at a time.

    Each step waits for what the person would see next (the run message, the form, their
    confirmation) and raises `SimulationError` saying what went wrong when it doesn't come.
    """

    def __init__(self, sim: Simulator, user_id: str, channel: str) -> None:
        self.sim = sim
        self.user_id = user_id
        self.channel = channel

    @property
    def name(self) -> str:
        return self.sim.user_name(self.user_id)

    def __repr__(self) -> str:
        return f"Person(@{self.name})"

    def command(self, text: str = "") -> CommandResult:
        result = self.sim.command(self.user_id, self.channel, text)
        if not result.answer.ok:
            raise SimulationError(
                f"@{self.name}'s `/coffee {text}` failed: {result.answer.describe()}"
            )
        return result

    def start_run(self, text: str = "") -> Button:
        """`/coffee text`, then wait for the new run message; returns its [Place order]."""
        before = self.sim.newest_ts(self.channel)
        result = self.command(text)

        def posted() -> Button | None:
            return self.sim.find_button(
                self.channel, run_blocks.ACTION_PLACE_ORDER, newer_than=before
            )

        self.sim.wait_for(
            lambda: posted() is not None or bool(self.sim.answers(result)),
            f"the run message after @{self.name}'s /coffee",
            explain=lambda: self._was_told(),
        )
        button = posted()
        if button is None:
            raise SimulationError(f"the run message never appeared. {self._was_told()}")
        return button

    def click(self, action_id: str, *, value: str | None = None) -> Click:
        """Click the newest button with `action_id` in the channel."""
        button = self.sim.find_button(self.channel, action_id, value=value)
        if button is None:
            raise SimulationError(f"@{self.name} sees no {action_id!r} button in the channel")
        return self._checked(self.sim.click(self.user_id, button))

    def click_in_dm(self, action_id: str) -> Click:
        button = self.sim.find_dm_button(self.user_id, action_id)
        if button is None:
            raise SimulationError(f"@{self.name} sees no {action_id!r} button in their DM")
        return self._checked(self.sim.click(self.user_id, button))

    def open_form(self, action_id: str) -> tuple[Click, JsonDict]:
        click = self.click(action_id)
        view = self.sim.opened_view(click)
        if view is None:
            raise SimulationError(
                f"@{self.name} clicked [{click.button.label}] but no form opened. "
                + self._was_told()
            )
        return click, view

    def submit(
        self,
        view: JsonDict,
        answers: Mapping[str, FieldAnswer],
        *,
        opened_by: Click | None = None,
    ) -> str:
        """Fill in and submit `view`; wait for the confirmation and return it. It comes
        through the response_url of the click that opened the form (`opened_by`) or as a
        chat.postEphemeral: the service uses whichever works."""
        before = len(self.sim.fake.ephemerals(self.user_id))
        submission = self.sim.submit(self.user_id, view, answers)
        if not submission.answer.ok:
            raise SimulationError(
                f"@{self.name}'s form was refused: {submission.answer.describe()}"
            )
        if submission.errors:
            raise SimulationError(f"@{self.name}'s form shows errors: {submission.errors}")
        return self._wait_told(opened_by, before, "their confirmation")

    def order(self, text: str, *, volunteer: bool = False) -> str:
        """[Place order], type `text` (tick "I'll go" with `volunteer`), [Save order]."""
        click, view = self.open_form(run_blocks.ACTION_PLACE_ORDER)
        return self.submit(
            view,
            {run_blocks.ORDER_BLOCK_ID: text, run_blocks.VOLUNTEER_BLOCK_ID: volunteer},
            opened_by=click,
        )

    def edit_order(self, text: str, *, volunteer: bool | None = None) -> str:
        """[Order / change] again: the form opens with the current order; change it, save."""
        click, view = self.open_form(run_blocks.ACTION_PLACE_ORDER)
        answers: dict[str, FieldAnswer] = {run_blocks.ORDER_BLOCK_ID: text}
        if volunteer is not None:
            answers[run_blocks.VOLUNTEER_BLOCK_ID] = volunteer
        return self.submit(view, answers, opened_by=click)

    def use_usual(self) -> str:
        """[Use my usual]; returns the confirmation. Raises when the form opened instead
        (this person has no usual in this channel yet)."""
        before = len(self.sim.fake.ephemerals(self.user_id))
        click = self.click(run_blocks.ACTION_USE_USUAL)
        if self.sim.opened_view(click) is not None:
            raise SimulationError(f"@{self.name} has no usual yet: the order form opened")
        return self._wait_told(click, before, "the usual-order confirmation")

    def ill_go(self) -> str:
        """[I'll go]: one tap to volunteer; returns the confirmation."""
        before = len(self.sim.fake.ephemerals(self.user_id))
        click = self.click(run_blocks.ACTION_ILL_GO)
        return self._wait_told(click, before, "the volunteer confirmation")

    def cancel_order(self) -> str:
        """⋯ [Cancel my order] on the run message."""
        before = len(self.sim.fake.ephemerals(self.user_id))
        click = self.click(run_blocks.ACTION_CANCEL_ORDER)
        return self._wait_told(click, before, "the cancel confirmation")

    def close_run(self) -> Click:
        """[Close run]. The summary and the runner's DM follow from the worker."""
        return self.click(run_blocks.ACTION_CLOSE_RUN)

    def told(self) -> list[str]:
        return self.sim.told(self.user_id)

    def _checked(self, click: Click) -> Click:
        if not click.answer.ok:
            raise SimulationError(
                f"@{self.name}'s click on [{click.button.label}] failed: {click.answer.describe()}"
            )
        return click

    def _wait_told(self, click: Click | None, ephemerals_before: int, what: str) -> str:
        """The answer to `click` (via its response_url) or, when it has none, the next
        chat.postEphemeral to this person: the worker uses whichever works."""

        def heard() -> str | None:
            if click is not None and (answers := self.sim.answers(click)):
                return answers[0]
            ephemerals = self.sim.fake.ephemerals(self.user_id)
            return str(ephemerals[-1]["text"]) if len(ephemerals) > ephemerals_before else None

        text = self.sim.wait_for(heard, f"{what} for @{self.name}", explain=self._was_told)
        assert text is not None  # wait_for returns only a truthy value
        return text

    def _was_told(self) -> str:
        told = self.told()
        if not told:
            return f"@{self.name} was told nothing."
        return f"@{self.name} was told: " + " | ".join(told[-3:])
