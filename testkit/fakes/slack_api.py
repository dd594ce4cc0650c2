"""A local fake of the Slack Web API, for tests and the demo simulator.

It is a real HTTP server on 127.0.0.1, so the production code talks to it through the real
``slack_sdk.WebClient(token=fake.token, base_url=fake.base_url)``. Required arguments, JSON
support and error codes come from Slack's method schemas in ``slack_methods/`` (copied from
slack-ruby/slack-api-ref, MIT, see ``slack_methods/LICENSE.md``), so a call that real Slack
rejects is rejected here too, the same way: HTTP 200 with ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import itertools
import json
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from email.message import Message
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from testkit.fakes.loopback import LoopbackFake, LoopbackHandler, LoopbackServer

type JsonDict = dict[str, Any]
type _Reply = tuple[int, dict[str, str], bytes]

SCHEMA_DIR = Path(__file__).with_name("slack_methods")
SCHEMAS: dict[str, JsonDict] = {
    p.name.removesuffix(".json"): json.loads(p.read_text()) for p in SCHEMA_DIR.glob("*.json")
}
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
TRIGGER_TTL = 3.0  # seconds Slack gives an app to exchange a trigger_id
RESPONSE_URL_MAX_USES = 5
HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT = 100, 999  # conversations.history `limit`
_JSON_ARGS = ("blocks", "attachments", "view", "metadata")
# Slack's rate-limit tiers of the methods the fake serves (from Slack's method reference;
# chat.getPermalink's limits are "special" and unstated: Tier 3 is the stricter guess).
# chat.postMessage is limited per channel instead; auth.test is not limited here.
TIER_3_METHODS = frozenset({
    "chat.update", "chat.delete", "chat.getPermalink", "conversations.open",
    "conversations.history", "conversations.replies", "conversations.info",
})  # fmt: skip
TIER_4_METHODS = frozenset(
    {"chat.postEphemeral", "views.open", "views.update", "views.publish", "users.info"}
)
_JSON_CT = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Call:
    """One request the fake answered; failed ones (ok=False) are recorded too."""

    method: str
    args: JsonDict
    at: float
    ok: bool = True
    error: str | None = None
    status: int = 200
    injected: bool = False  # the answer came from fail_next()

    @property
    def failed(self) -> bool:
        return not self.ok


@dataclass
class Channel:
    id: str
    name: str
    bot_member: bool = True
    members: set[str] | None = None  # None: every known user is a member
    dm_user: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass(frozen=True)
class RateLimits:
    """Slack's limits as the fake enforces them (``FakeSlack.enforce_rate_limits``): at
    most this many calls of a method in any 60 s (per workspace), and chat.postMessage at
    about ``channel_posts_per_second`` per channel, with bursts of 3 (3 in any 3 s, as
    Slack grants short bursts). A call over a limit is
    answered 429 with Retry-After (whole seconds until the window lets one through) and
    does not count. ``window_seconds`` shrinks the minute for tests that can't wait one
    (the tiers' counts then apply to that window)."""

    tier3_per_minute: int = 50
    tier4_per_minute: int = 100
    channel_posts_per_second: int = 1
    window_seconds: float = 60.0

    def window(self, method: str, args: JsonDict) -> tuple[str, float, int] | None:
        """(key, window seconds, calls allowed in it) for a limited call."""
        if method == "chat.postMessage":
            burst = 3
            return f"{method}:{args.get('channel')}", burst, burst * self.channel_posts_per_second
        if method in TIER_3_METHODS:
            return method, self.window_seconds, self.tier3_per_minute
        if method in TIER_4_METHODS:
            return method, self.window_seconds, self.tier4_per_minute
        return None


@dataclass(frozen=True)
class _Fault:
    error: str | None
    status: int
    retry_after: int | None
    delay: float
    effect_first: bool = False  # the call takes effect on arrival; only the answer is late
    when: Callable[[JsonDict], bool] | None = None  # only calls with matching arguments


@dataclass
class _Stored:
    channel: str
    message: JsonDict
    history: list[JsonDict] = field(default_factory=list)


@dataclass
class _View:
    view: JsonDict
    source: str  # "open" or "publish"
    user: str | None


class SlackError(Exception):
    """Raised by a method handler to answer ``{"ok": false, "error": error}``."""

    def __init__(self, error: str, *messages: str) -> None:
        super().__init__(error)
        self.error = error
        self.messages = [f"[ERROR] {m}" for m in messages]


def _reply(status: int, payload: JsonDict, headers: dict[str, str] | None = None) -> _Reply:
    return status, {"Content-Type": _JSON_CT, **(headers or {})}, json.dumps(payload).encode()


def _text(status: int, body: str) -> _Reply:
    return status, {"Content-Type": "text/plain; charset=utf-8"}, body.encode()


def _block_problems(blocks: object, limit: int, pointer: str) -> list[str]:
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{pointer}]"]
    problems = []
    if len(blocks) > limit:
        problems.append(f"must be less than {limit + 1} items [json-pointer:{pointer}]")
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{pointer}/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            problems.append(f"missing required field: type [json-pointer:{where}]")
            continue
        if (block_id := block.get("block_id")) is not None:
            if block_id in seen:
                problems.append(f"duplicate block_id [json-pointer:{where}/block_id]")
            seen.add(block_id)
        max_len = {"section": 3000, "header": 150}.get(block["type"])
        text = block.get("text")
        if max_len and isinstance(text, dict) and len(str(text.get("text", ""))) > max_len:
            problems.append(
                f"must be less than {max_len + 1} characters [json-pointer:{where}/text]"
            )
    return problems


def _tz_offset(tz: str) -> int:
    offset = datetime.now(ZoneInfo(tz)).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def _truthy(value: object) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _ts_micros(value: object, error: str, default: int | None) -> int | None:
    """A Slack timestamp ("1700000000.000100", or a plain number) in microseconds."""
    if value is None or value == "":
        return default
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise SlackError(error) from None
    if not number.is_finite() or number < 0:
        raise SlackError(error)
    return _micros(number)


@dataclass(frozen=True)
class _Window:
    """The paging arguments conversations.history and .replies share, read (and refused)
    the same way: the oldest/latest bounds, `inclusive`, the page size and the cursor."""

    oldest: int
    latest: int | None
    inclusive: bool
    oldest_given: bool
    limit: int
    cursor: int | None  # the ts a follow-on page starts at, None on the first page

    @classmethod
    def read(cls, args: JsonDict) -> _Window:
        oldest = _ts_micros(args.get("oldest"), "invalid_ts_oldest", default=0) or 0
        latest = _ts_micros(args.get("latest"), "invalid_ts_latest", default=None)
        inclusive = _truthy(args.get("inclusive"))
        try:
            limit = int(args.get("limit") or HISTORY_DEFAULT_LIMIT)
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments", "invalid `limit`") from None
        limit = min(limit, HISTORY_MAX_LIMIT) if limit > 0 else HISTORY_DEFAULT_LIMIT
        cursor = None
        if args.get("cursor"):
            try:
                decoded = base64.b64decode(str(args["cursor"]), validate=True).decode()
                cursor = _ts_micros(decoded.removeprefix("next_ts:"), "invalid_cursor", None)
            except (ValueError, UnicodeDecodeError):
                raise SlackError("invalid_cursor") from None
            if not decoded.startswith("next_ts:") or cursor is None:
                raise SlackError("invalid_cursor")
        return cls(oldest, latest, inclusive, "oldest" in args, limit, cursor)

    def within_bounds(self, ts: int) -> bool:
        # `inclusive` only matters for a bound that was given.
        low_ok = ts > self.oldest or (ts == self.oldest and self.inclusive and self.oldest_given)
        high_ok = self.latest is None or ts < self.latest or (ts == self.latest and self.inclusive)
        return low_ok and high_ok


def _next_cursor(rest: list[JsonDict]) -> str:
    return base64.b64encode(f"next_ts:{rest[0]['ts']}".encode()).decode() if rest else ""


def _micros(ts: str | Decimal) -> int:
    return int(Decimal(ts) * 1_000_000)


class _Server(LoopbackServer):
    fake: FakeSlack


class _Handler(LoopbackHandler):
    server: _Server

    def _dispatch(self, verb: str) -> None:
        try:
            status, headers, body = self.server.fake._handle_http(
                verb, self.path, self.headers, self._body()
            )
        except Exception:  # a bug in the fake: show it in the failing test, not on stderr
            status, headers, body = _text(500, traceback.format_exc())
        self._answer(status, headers, body)


class FakeSlack(LoopbackFake):
    """The Slack Web API for one workspace and one bot, on a local port. Thread-safe."""

    def __init__(self, token: str = "xoxb-fake", *, team_id: str = "T0FAKE") -> None:  # noqa: S107
        self.token = token
        self.team_id = team_id
        self.team_name = "CoffeeBuddy Test"
        self.bot_user_id, self.bot_id, self.app_id = "U0BOT", "B0BOT", "A0BOT"
        self.permalink_base = "https://coffeebuddy-test.slack.com"
        self.users: dict[str, JsonDict] = {}
        self.channels: dict[str, Channel] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._last_ts_us = 0
        self._response_ids: dict[str, str] = {}  # name -> id
        # Slack's rate limits, when enforced: calls in the current window per limit key.
        self.rate_limits: RateLimits | None = None
        self._recent: dict[str, deque[float]] = {}
        # chat.postMessage is served by self._chat_postMessage, and so on for every schema
        self._handlers: dict[str, Callable[[JsonDict], JsonDict]] = {
            method: getattr(self, "_" + method.replace(".", "_")) for method in SCHEMAS
        }
        self.reset()
        self.add_user(self.bot_user_id, name="coffeebuddy", is_bot=True)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        return self._serve(server, "fake-slack")

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in an injected delay
        super().stop()

    @property
    def root_url(self) -> str:
        return self._root_url()

    @property
    def base_url(self) -> str:
        """For ``WebClient(base_url=...)``; slack_sdk appends the method name."""
        return f"{self.root_url}/api/"

    # -- setup ----------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str | None = None,
        *,
        real_name: str | None = None,
        tz: str = "Europe/Berlin",
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
    ) -> JsonDict:
        name = name or user_id.lower()
        real_name = real_name or name.replace(".", " ").title()
        user = {
            "id": user_id, "team_id": self.team_id, "name": name, "deleted": False,
            "real_name": real_name, "tz": tz, "tz_offset": _tz_offset(tz),
            "is_admin": is_admin, "is_owner": is_owner, "is_primary_owner": False,
            "is_restricted": False, "is_ultra_restricted": False, "is_bot": is_bot,
            "is_app_user": False, "updated": int(time.time()),
            "profile": {
                "display_name": name, "display_name_normalized": name,
                "real_name": real_name, "real_name_normalized": real_name, "team": self.team_id,
            },
        }  # fmt: skip
        with self._lock:
            self.users[user_id] = user
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        bot_member: bool = True,
        members: list[str] | None = None,
    ) -> Channel:
        channel = Channel(channel_id, name, bot_member, None if members is None else set(members))
        with self._lock:
            self.channels[channel_id] = channel
        return channel

    def trigger_id(self) -> str:
        """A fresh trigger_id, as an interaction payload carries; it expires like Slack's."""
        trigger = f"{next(self._ids)}.{int(time.time())}.{secrets.token_hex(16)}"
        with self._lock:
            self._triggers_issued[trigger] = time.monotonic()
        return trigger

    def response_url(self, name: str) -> str:
        """A response_url on this server; what is POSTed to it lands in ``responses(name)``."""
        with self._lock:
            rid = self._response_ids.setdefault(name, secrets.token_urlsafe(12))
            self._responses.setdefault(name, [])
        return f"{self.root_url}/response/{rid}"

    def fail_next(
        self,
        method: str,
        *,
        error: str | None = None,
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
        delay: float = 0,
        effect_first: bool = False,
        when: Callable[[JsonDict], bool] | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (or answer late, with ``delay``).

        ``error`` gives Slack's usual HTTP 200 ``{"ok": false, "error": error}``; ``status``
        gives a bare HTTP error (429 comes with ``Retry-After``, default 1 s, and Slack's
        ``ratelimited`` body). With only ``delay`` the call then succeeds normally, late.

        With ``effect_first`` the call takes effect the moment it arrives (a message is
        stored, as Slack stores it) and only the answer is held back ``delay`` seconds, then
        sent: the real answer, or the ``error``/``status`` given. That is Slack accepting a
        message whose answer the caller never sees (it timed out or died waiting). The
        recorded call is the real one (``ok`` as handled), marked ``injected``.

        With ``when`` the fault waits for the first call whose (parsed) arguments satisfy
        it, e.g. ``when=lambda args: args["channel"].startswith("D")`` for DMs only; calls
        it does not match go through untouched.
        """
        if method not in self._handlers:
            raise ValueError(f"FakeSlack does not implement {method!r}")
        if retry_after is not None and status == 200:
            status = 429
        if status == 429 and retry_after is None:
            retry_after = 1
        if error is None and status == 200 and delay <= 0:
            raise ValueError("fail_next needs an error, a status or a delay")
        with self._lock:
            self._faults.setdefault(method, deque()).extend(
                [_Fault(error, status, retry_after, delay, effect_first, when)] * times
            )

    def pending_faults(self, method: str) -> int:
        """How many faults set with ``fail_next`` are still waiting for a call. A call takes
        its fault when it arrives, before any ``delay``: 0 means the call is here."""
        with self._lock:
            return len(self._faults.get(method, ()))

    def reset(self) -> None:
        """Forget traffic and per-test state; users, channels and response URLs stay."""
        with self._lock:
            self._calls: list[Call] = []
            self._messages: dict[str, list[_Stored]] = {}
            self._ephemerals: list[JsonDict] = []
            self._views: dict[str, _View] = {}
            self._triggers_issued: dict[str, float] = {}
            self._triggers_used: set[str] = set()
            self._faults: dict[str, deque[_Fault]] = {}
            # Rate limits are per test: switched on with enforce_rate_limits().
            self.rate_limits = None
            self._recent = {}
            self._responses: dict[str, list[JsonDict]] = {n: [] for n in self._response_ids}

    # -- inspection -----------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def messages(self, channel: str) -> list[JsonDict]:
        """Current messages in a channel (oldest first), each with its ``updates`` count
        and the earlier versions in ``history``."""
        with self._lock:
            return [
                {**copy.deepcopy(s.message), "channel": s.channel, "updates": len(s.history),
                 "history": copy.deepcopy(s.history)}
                for s in self._messages.get(channel, [])
            ]  # fmt: skip

    def dms(self, user: str) -> list[JsonDict]:
        return self.messages(self._dm_id(user))

    def ephemerals(self, user: str | None = None) -> list[JsonDict]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._ephemerals if user in (None, e["user"])]

    def opened_views(self) -> list[JsonDict]:
        """Views opened with views.open, oldest first, as currently shown (after updates)."""
        with self._lock:
            return [copy.deepcopy(v.view) for v in self._views.values() if v.source == "open"]

    def home_view(self, user: str) -> JsonDict | None:
        with self._lock:
            views = [v.view for v in self._views.values() if v.user == user]
            return copy.deepcopy(views[0]) if views else None

    def responses(self, name: str) -> list[JsonDict]:
        with self._lock:
            return copy.deepcopy(self._responses.get(name, []))

    def wait_for[T](self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate()`` is truthy (it runs under the lock) and return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting\n{self.dump()}")
                self._changed.wait(min(remaining, 0.05))
            return result

    def dump(self, last: int = 30) -> str:
        with self._lock:
            lines = [f"FakeSlack: {len(self._calls)} calls, last {last}:"]
            for c in self._calls[-last:]:
                outcome = "ok" if c.ok else f"{c.error} (HTTP {c.status})"
                lines.append(f"  {c.method} -> {outcome} {json.dumps(c.args, default=str)[:300]}")
            for channel, stored in self._messages.items():
                lines.append(f"  {channel}: {[s.message.get('text', '') for s in stored]}")
            return "\n".join(lines)

    # -- HTTP -----------------------------------------------------------------------------

    def _handle_http(self, verb: str, path: str, headers: Message, raw: bytes) -> _Reply:
        url = urlsplit(path)
        if url.path.startswith("/response/") and verb == "POST":
            return self._post_response_url(url.path.removeprefix("/response/"), raw)
        if not url.path.startswith("/api/"):
            return _text(404, "not found")
        method = url.path.removeprefix("/api/")
        schema = SCHEMAS.get(method)
        if schema is None:
            return self._answer(method, {}, {"ok": False, "error": "unknown_method"})
        if verb == "GET" and schema["http_method"] != "GET":
            return _text(405, f"{method} wants POST")
        args: JsonDict = dict(parse_qsl(url.query))
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        notes: list[str] = []
        if raw and ctype == "application/x-www-form-urlencoded":
            args.update(parse_qsl(raw.decode()))
        elif raw and ctype == "application/json" and schema.get("json_input_supported"):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return self._answer(method, args, {"ok": False, "error": "invalid_json"})
            body.pop("token", None)  # Slack only takes the token from the header with JSON
            args.update(body)
        elif raw and ctype == "application/json":
            notes.append(f"[WARN] {method} ignores JSON bodies; send it form-encoded")
        elif raw:
            return self._answer(method, args, {"ok": False, "error": "invalid_form_data"})
        token: str | None = args.pop("token", None)
        if (auth := headers.get("Authorization") or "").startswith("Bearer "):
            token = auth.removeprefix("Bearer ").strip()
        for key in _JSON_ARGS:
            if isinstance(args.get(key), str):
                with contextlib.suppress(ValueError):  # a string left is rejected later
                    args[key] = json.loads(args[key])
        with self._lock:
            fault = self._take_fault(method, args)
            limited = None if fault is not None else self._over_limit(method, args)
        if limited is not None:
            return self._rate_limited(method, args, limited)
        if fault is not None and fault.effect_first:
            reply = self._perform(method, schema, args, token, notes, late=True)
            self._stopping.wait(fault.delay)
            failing = fault.error is not None or fault.status != 200
            return self._fault_reply(fault) if failing else reply
        if fault is not None and fault.delay > 0:
            self._stopping.wait(fault.delay)
        if fault is not None and (fault.error is not None or fault.status != 200):
            return self._inject(method, args, fault)
        # A late call still happens, as with Slack after a timeout.
        return self._perform(method, schema, args, token, notes, late=fault is not None)

    def _perform(
        self,
        method: str,
        schema: JsonDict,
        args: JsonDict,
        token: str | None,
        notes: list[str],
        *,
        late: bool,
    ) -> _Reply:
        """Check the token and the required arguments, run the method, record the call."""
        if not token or token != self.token:
            error = "invalid_auth" if token else "not_authed"
            return self._answer(method, args, {"ok": False, "error": error}, injected=late)
        missing = [
            a for a in schema["args"].get("required", []) if a != "token" and not args.get(a)
        ]
        if missing:
            specific = {"channel": "channel_not_found", "user": "user_not_found"}.get(missing[0])
            code = specific if specific and specific in schema["errors"] else "invalid_arguments"
            messages = [*notes, *(f"[ERROR] missing required field: {a}" for a in missing)]
            payload = {"ok": False, "error": code, "response_metadata": {"messages": messages}}
            return self._answer(method, args, payload, injected=late)
        with self._lock:
            try:
                payload = {"ok": True, **self._handlers[method](args)}
            except SlackError as e:
                payload = {"ok": False, "error": e.error}
                if e.messages:
                    payload["response_metadata"] = {"messages": e.messages}
            return self._answer(method, args, payload, injected=late)

    def _take_fault(self, method: str, args: JsonDict) -> _Fault | None:
        faults = self._faults.get(method) or deque()
        for i, fault in enumerate(faults):
            if fault.when is None or fault.when(args):
                del faults[i]
                return fault
        return None

    def _over_limit(self, method: str, args: JsonDict) -> int | None:
        """With rate limits enforced: None when the call may go (it is counted), else the
        Retry-After in whole seconds. Called under the lock."""
        if self.rate_limits is None:
            return None
        window = self.rate_limits.window(method, args)
        if window is None:
            return None
        key, seconds, allowed = window
        now = time.monotonic()
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - seconds:
            recent.popleft()
        if len(recent) < allowed:
            recent.append(now)
            return None
        # Until the oldest call in the window leaves it, rounded up as Slack does.
        return max(1, int(-(-(recent[0] + seconds - now) // 1)))

    def _rate_limited(self, method: str, args: JsonDict, retry_after: int) -> _Reply:
        self._record(Call(method, copy.deepcopy(args), time.time(), False, "ratelimited", 429))
        headers = {"Retry-After": str(retry_after)}
        return _reply(429, {"ok": False, "error": "ratelimited"}, headers)

    def enforce_rate_limits(self, limits: RateLimits | None = None) -> None:
        """Answer 429 with Retry-After by Slack's tiers (``RateLimits()``), or, given None,
        stop enforcing them (the default: most tests are about something else)."""
        with self._lock:
            self.rate_limits = limits
            self._recent = {}

    def _inject(self, method: str, args: JsonDict, fault: _Fault) -> _Reply:
        error = {200: fault.error, 429: "ratelimited"}.get(fault.status, f"http_{fault.status}")
        self._record(Call(method, copy.deepcopy(args), time.time(), False, error, fault.status,
                          injected=True))  # fmt: skip
        return self._fault_reply(fault)

    def _fault_reply(self, fault: _Fault) -> _Reply:
        if fault.status == 429:
            headers = {"Retry-After": str(fault.retry_after)}
            return _reply(429, {"ok": False, "error": "ratelimited"}, headers)
        if fault.status != 200:
            return _text(fault.status, f"fake slack: injected HTTP {fault.status}")
        return _reply(200, {"ok": False, "error": fault.error})

    def _answer(
        self,
        method: str,
        args: JsonDict,
        payload: JsonDict,
        status: int = 200,
        headers: dict[str, str] | None = None,
        *,
        injected: bool = False,
    ) -> _Reply:
        ok = bool(payload.get("ok")) and status == 200
        args = copy.deepcopy(args)  # the recorded call must not change with the fake's state
        self._record(Call(method, args, time.time(), ok, payload.get("error"), status, injected))
        return _reply(status, payload, headers)

    def _record(self, call: Call) -> None:
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    def _post_response_url(self, rid: str, raw: bytes) -> _Reply:
        with self._lock:
            names = [n for n, i in self._response_ids.items() if i == rid]
        if not names:
            return _text(404, "no_such_url")
        name = names[0]
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        with self._changed:
            error: str | None = None
            if not isinstance(payload, dict):
                status, error = 400, "invalid_payload"
            elif len(self._responses[name]) >= RESPONSE_URL_MAX_USES:
                status, error = 404, "used_url"
            else:
                status = 200
                self._responses[name].append(payload)
            args = {"name": name, "payload": payload}
            self._record(Call("response_url", args, time.time(), error is None, error, status))
        return _text(status, error or "ok")

    # -- state helpers (callers hold the lock) --------------------------------------------

    def _next_ts(self) -> str:
        self._last_ts_us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _dm_id(self, user: str) -> str:
        return "D" + user

    def _open_dm(self, user: str) -> Channel:
        if user not in self.users:
            raise SlackError("user_not_found")
        dm_id = self._dm_id(user)
        if dm_id not in self.channels:
            self.channels[dm_id] = Channel(dm_id, dm_id, dm_user=user)
        return self.channels[dm_id]

    def _channel(self, ref: str, *, bot_posts: bool = False) -> Channel:
        name = ref.removeprefix("#")
        if ref in self.channels:
            channel = self.channels[ref]
        elif found := [c for c in self.channels.values() if c.name == name and not c.dm_user]:
            channel = found[0]
        elif bot_posts and ref in self.users:
            channel = self._open_dm(ref)  # posting to a user ID lands in the bot's DM with them
        else:
            raise SlackError("channel_not_found")
        if bot_posts and not channel.bot_member:
            raise SlackError("not_in_channel")
        return channel

    def _is_member(self, channel: Channel, user: str) -> bool:
        if channel.dm_user is not None:
            return user == channel.dm_user
        return user in (self.users if channel.members is None else channel.members)

    def _content(self, args: JsonDict, *, required: bool = True) -> JsonDict:
        content: JsonDict = {}
        if args.get("text"):
            content["text"] = str(args["text"])
        if "blocks" in args:
            if isinstance(args["blocks"], str):
                raise SlackError("invalid_blocks_format")
            if problems := _block_problems(args["blocks"], MAX_MESSAGE_BLOCKS, "/blocks"):
                raise SlackError("invalid_blocks", *problems)
            content["blocks"] = args["blocks"]
        if "attachments" in args:
            if not isinstance(args["attachments"], list):
                raise SlackError("invalid_attachments")
            content["attachments"] = args["attachments"]
        if required and not any(content.values()):
            raise SlackError("no_text")
        return copy.deepcopy(content)

    def _metadata(self, args: JsonDict) -> JsonDict | None:
        """Message metadata as Slack takes it: a JSON object (a string in a form post) with
        a string ``event_type`` and an object ``event_payload``. None when absent; ``{}``
        for an empty object (chat.update: remove the metadata)."""
        metadata = args.get("metadata")
        if metadata is None or metadata == "":
            return None
        if not isinstance(metadata, dict):
            raise SlackError("invalid_metadata_format", "metadata must be a JSON object")
        if not metadata:
            return {}
        event_type, payload = metadata.get("event_type"), metadata.get("event_payload")
        if not isinstance(event_type, str) or not event_type:
            raise SlackError(
                "invalid_metadata_schema", "missing required field: event_type "
                "[json-pointer:/metadata/event_type]",
            )  # fmt: skip
        if not isinstance(payload, dict):
            raise SlackError(
                "invalid_metadata_schema", "event_payload must be an object "
                "[json-pointer:/metadata/event_payload]",
            )  # fmt: skip
        return copy.deepcopy({"event_type": event_type, "event_payload": payload})

    @staticmethod
    def _without_metadata(message: JsonDict) -> JsonDict:
        """A message as an answer shows it: metadata only comes back from the history
        methods when asked for (``include_all_metadata``)."""
        return {k: copy.deepcopy(v) for k, v in message.items() if k != "metadata"}

    def _find(self, channel: Channel, ts: object) -> _Stored:
        for stored in self._messages.get(channel.id, []):
            if stored.message["ts"] == ts:
                return stored
        raise SlackError("message_not_found")

    def _parse_view(self, args: JsonDict, types: tuple[str, ...]) -> JsonDict:
        view = args.get("view")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments", "invalid `view`")
        if view.get("type") not in types:
            raise SlackError("invalid_arguments", f"invalid `view.type`, wants one of {types}")
        problems = _block_problems(view.get("blocks"), MAX_VIEW_BLOCKS, "/view/blocks")
        for key in ("title", "submit", "close"):
            text = view.get(key)
            if key == "title" and view["type"] == "modal" and not isinstance(text, dict):
                problems.append("missing required field: title [json-pointer:/view/title]")
            elif isinstance(text, dict) and not 0 < len(str(text.get("text", ""))) <= 24:
                problems.append(f"must be 1-24 characters [json-pointer:/view/{key}/text]")
        if len(str(view.get("private_metadata", ""))) > 3000:
            problems.append(
                "must be less than 3001 characters [json-pointer:/view/private_metadata]"
            )
        if problems:
            raise SlackError("invalid_arguments", *problems)
        return view

    def _store_view(
        self, view: JsonDict, vid: str | None, source: str, user: str | None
    ) -> JsonDict:
        external_id = view.get("external_id") or ""
        if external_id and any(
            v.view["external_id"] == external_id and v.view["id"] != vid
            for v in self._views.values()
        ):
            raise SlackError("duplicate_external_id")
        vid = vid or f"V{next(self._ids):08d}"
        stored = {
            "type": view["type"], "title": None, "close": None, "submit": None, "blocks": [],
            "private_metadata": "", "callback_id": "", "state": {"values": {}},
            "clear_on_close": False, "notify_on_close": False, "previous_view_id": None, **view,
            "id": vid, "team_id": self.team_id, "external_id": external_id,
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}", "root_view_id": vid,
            "app_id": self.app_id, "bot_id": self.bot_id,
        }  # fmt: skip
        if vid in self._views:
            self._views[vid].view = stored
        else:
            self._views[vid] = _View(stored, source, user)
        return {"view": copy.deepcopy(stored)}

    # -- methods (run under the lock; args are validated against the schema) -------------

    def _auth_test(self, args: JsonDict) -> JsonDict:
        return {
            "url": "https://coffeebuddy-test.slack.com/", "team": self.team_name,
            "user": self.users[self.bot_user_id]["name"], "team_id": self.team_id,
            "user_id": self.bot_user_id, "bot_id": self.bot_id, "is_enterprise_install": False,
        }  # fmt: skip

    def _users_info(self, args: JsonDict) -> JsonDict:
        user = self.users.get(args["user"])
        if user is None:
            raise SlackError("user_not_found")
        return {"user": {**copy.deepcopy(user), "tz_offset": _tz_offset(user["tz"])}}

    def _conversations_open(self, args: JsonDict) -> JsonDict:
        users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
        if not users:
            if not args.get("channel"):
                raise SlackError("users_list_not_supplied")
            return {"channel": {"id": self._channel(args["channel"]).id}}
        if len(users) > 1:
            raise SlackError("invalid_user_combination", "FakeSlack only opens 1:1 DMs")
        already_open = self._dm_id(users[0]) in self.channels
        channel = self._open_dm(users[0])
        info = self._channel_info(channel) if _truthy(args.get("return_im")) else {"id": channel.id}
        extra = {"no_op": True, "already_open": True} if already_open else {}
        return {**extra, "channel": info}

    def _channel_info(self, channel: Channel) -> JsonDict:
        if channel.dm_user is not None:
            return {"id": channel.id, "created": channel.created, "is_im": True,
                    "is_org_shared": False, "user": channel.dm_user, "is_open": True}  # fmt: skip
        return {
            "id": channel.id, "name": channel.name, "name_normalized": channel.name,
            "created": channel.created, "is_channel": True, "is_group": False, "is_im": False,
            "is_mpim": False, "is_private": channel.id.startswith("G"), "is_archived": False,
            "is_member": channel.bot_member, "context_team_id": self.team_id,
        }  # fmt: skip

    def _conversations_info(self, args: JsonDict) -> JsonDict:
        channel = self.channels.get(args["channel"])
        if channel is None:
            raise SlackError("channel_not_found")
        return {"channel": self._channel_info(channel)}

    def _readable_channel(self, args: JsonDict) -> Channel:
        # A bot reads the conversations it is in: its channels and the DMs opened with it.
        channel = self.channels.get(str(args["channel"]))
        if channel is None or (
            channel.dm_user is None and not channel.bot_member and channel.id.startswith("G")
        ):
            raise SlackError("channel_not_found")  # a private channel is invisible to outsiders
        if channel.dm_user is None and not channel.bot_member:
            raise SlackError("not_in_channel")
        return channel

    def _page(
        self, found: list[JsonDict], limit: int, args: JsonDict
    ) -> tuple[list[JsonDict], list[JsonDict]]:
        page, rest = found[:limit], found[limit:]
        with_metadata = _truthy(args.get("include_all_metadata"))
        messages = [copy.deepcopy(m) if with_metadata else self._without_metadata(m) for m in page]
        return messages, rest

    def _conversations_history(self, args: JsonDict) -> JsonDict:
        channel = self._readable_channel(args)
        window = _Window.read(args)
        # Like Slack's: the next page starts at this message (newest first).
        next_ts = window.cursor

        def wanted(ts: int) -> bool:
            return window.within_bounds(ts) and (next_ts is None or ts <= next_ts)

        top_level = [  # thread replies stay in their thread (conversations.replies)
            s.message for s in self._messages.get(channel.id, [])
            if s.message.get("thread_ts", s.message["ts"]) == s.message["ts"]
        ]  # fmt: skip
        found = sorted(
            (m for m in top_level if wanted(_micros(m["ts"]))),
            key=lambda m: _micros(m["ts"]),
            reverse=True,
        )
        messages, rest = self._page(found, window.limit, args)
        return {
            "messages": messages, "has_more": bool(rest), "pin_count": 0,
            "response_metadata": {"next_cursor": _next_cursor(rest)},
        }  # fmt: skip

    def _conversations_replies(self, args: JsonDict) -> JsonDict:
        """A thread, parent first then the replies oldest first, as Slack pages it; a ts
        with no replies gives just that message. Same access rules as the history."""
        channel = self._readable_channel(args)
        stored = [s.message for s in self._messages.get(channel.id, [])]
        target = next((m for m in stored if m["ts"] == str(args["ts"])), None)
        if target is None:
            raise SlackError("thread_not_found")
        root = str(target.get("thread_ts") or target["ts"])
        thread = sorted(
            (m for m in stored if m["ts"] == root or m.get("thread_ts") == root),
            key=lambda m: _micros(m["ts"]),
        )
        window = _Window.read(args)
        start = window.cursor or 0

        def wanted(m: JsonDict) -> bool:
            ts = _micros(m["ts"])
            if m["ts"] == root:  # Slack always leads with the parent on the first page
                return not start
            return window.within_bounds(ts) and ts >= start

        messages, rest = self._page([m for m in thread if wanted(m)], window.limit, args)
        if messages and messages[0]["ts"] == root:
            replies = [m for m in thread if m["ts"] != root]
            messages[0].update(thread_ts=root, reply_count=len(replies))
        return {
            "messages": messages, "has_more": bool(rest),
            "response_metadata": {"next_cursor": _next_cursor(rest)},
        }  # fmt: skip

    def _chat_getPermalink(self, args: JsonDict) -> JsonDict:
        """A link to a message (top-level or a reply) the bot can see; no scope needed."""
        channel = self.channels.get(str(args["channel"]))
        if channel is None or (
            channel.dm_user is None and not channel.bot_member and channel.id.startswith("G")
        ):
            raise SlackError("channel_not_found")
        message = self._find(channel, str(args["message_ts"])).message
        digits = message["ts"].replace(".", "")
        link = f"{self.permalink_base}/archives/{channel.id}/p{digits}"
        if (thread := message.get("thread_ts")) and thread != message["ts"]:
            link += f"?thread_ts={thread}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    def _chat_postMessage(self, args: JsonDict) -> JsonDict:
        channel = self._channel(args["channel"], bot_posts=True)
        content = self._content(args)
        metadata = self._metadata(args)
        ts = self._next_ts()
        message = {
            "type": "message", "user": self.bot_user_id, "bot_id": self.bot_id,
            "app_id": self.app_id, "team": self.team_id, "ts": ts, "text": "", **content,
        }  # fmt: skip
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        if metadata:
            message["metadata"] = metadata
        self._messages.setdefault(channel.id, []).append(_Stored(channel.id, message))
        return {"channel": channel.id, "ts": ts, "message": self._without_metadata(message)}

    def _chat_update(self, args: JsonDict) -> JsonDict:
        channel = self._channel(args["channel"])
        stored = self._find(channel, args["ts"])
        content = self._content(args, required=False)  # absent fields keep their old value
        if not content:
            raise SlackError("no_text")
        metadata = self._metadata(args)  # absent: the old metadata stays; {} removes it
        stored.history.append(copy.deepcopy(stored.message))
        if metadata is not None:
            stored.message.pop("metadata", None)
            if metadata:
                content["metadata"] = metadata
        stored.message.update(content, edited={"user": self.bot_user_id, "ts": self._next_ts()})
        message = self._without_metadata(stored.message)
        return {"channel": channel.id, "ts": args["ts"], "text": message["text"],
                "message": message}  # fmt: skip

    def _chat_delete(self, args: JsonDict) -> JsonDict:
        channel = self._channel(args["channel"])
        self._messages[channel.id].remove(self._find(channel, args["ts"]))
        return {"channel": channel.id, "ts": args["ts"]}

    def _chat_postEphemeral(self, args: JsonDict) -> JsonDict:
        channel = self._channel(args["channel"], bot_posts=True)
        if not self._is_member(channel, args["user"]):
            raise SlackError("user_not_in_channel")
        content = self._content(args)
        ts = self._next_ts()
        ephemeral = {"channel": channel.id, "user": args["user"], "ts": ts, "text": "", **content}
        if args.get("thread_ts"):
            ephemeral["thread_ts"] = str(args["thread_ts"])
        self._ephemerals.append(ephemeral)
        return {"message_ts": ts}

    def _views_open(self, args: JsonDict) -> JsonDict:
        trigger = args.get("trigger_id") or args.get("interactivity_pointer")
        if not trigger:
            raise SlackError("invalid_arguments", "invalid `trigger_id`")
        issued = self._triggers_issued.get(trigger)
        if trigger in self._triggers_used or (
            issued is not None and time.monotonic() - issued > TRIGGER_TTL
        ):
            raise SlackError("expired_trigger_id")
        view = self._parse_view(args, ("modal",))
        result = self._store_view(view, None, "open", None)
        self._triggers_used.add(trigger)
        return result

    def _views_update(self, args: JsonDict) -> JsonDict:
        if not (args.get("view_id") or args.get("external_id")):
            raise SlackError("invalid_arguments", "either `view_id` or `external_id` is required")
        found = [
            v for v in self._views.values()
            if v.view["id"] == args.get("view_id")
            or (args.get("external_id") and v.view["external_id"] == args.get("external_id"))
        ]  # fmt: skip
        if not found:
            raise SlackError("not_found")
        current = found[0].view
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        view = self._parse_view(args, ("modal", "home"))
        return self._store_view(view, current["id"], found[0].source, found[0].user)

    def _views_publish(self, args: JsonDict) -> JsonDict:
        user = args["user_id"]
        if user not in self.users:
            raise SlackError("invalid_arguments", "invalid `user_id`")
        view = self._parse_view(args, ("home",))
        current = [v.view for v in self._views.values() if v.user == user]
        if current and args.get("hash") and args["hash"] != current[0]["hash"]:
            raise SlackError("hash_conflict")
        return self._store_view(view, current[0]["id"] if current else None, "publish", user)

    # -- for the simulator (simulator/people.py): cheap look-ups in long sessions ---------

    def recent_messages(self, channel: str, limit: int = 20) -> list[JsonDict]:
        """The newest ``limit`` of ``messages(channel)``, oldest first. A load test's channel
        holds thousands of messages; copying them all on every poll would dominate it."""
        with self._lock:
            return [
                {**copy.deepcopy(s.message), "channel": s.channel, "updates": len(s.history),
                 "history": copy.deepcopy(s.history)}
                for s in self._messages.get(channel, [])[-limit:]
            ]  # fmt: skip

    def recent_dms(self, user: str, limit: int = 20) -> list[JsonDict]:
        return self.recent_messages(self._dm_id(user), limit)

    def view_opened_with(self, trigger_id: str) -> JsonDict | None:
        """The modal a views.open with this trigger_id opened, as currently shown; None when
        no call with it succeeded. What a person sees after clicking a button that opens a
        form: the simulator fills in and submits exactly this view.

        Each successful views.open is recorded in the same locked step that stores its view,
        and neither list loses entries until ``reset()``, so the n-th newest successful call
        opened the n-th newest opened view. Searching from the newest end keeps this cheap:
        the view wanted was almost always opened moments ago."""
        with self._lock:
            newer = 0
            for call in reversed(self._calls):
                if call.method != "views.open" or not call.ok:
                    continue
                args = call.args
                if trigger_id in (args.get("trigger_id"), args.get("interactivity_pointer")):
                    break
                newer += 1
            else:
                return None
            opened = (v for v in reversed(self._views.values()) if v.source == "open")
            found = next(itertools.islice(opened, newer, None), None)
            return copy.deepcopy(found.view) if found is not None else None
