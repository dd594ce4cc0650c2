"""A local fake of the HashiCorp Vault HTTP API: just what CoffeeBuddy uses.

It is a real HTTP server on 127.0.0.1, so the production code talks to it through the real
``hvac.Client(url=fake.url)``. Served:

- ``POST /v1/auth/{mount}/login`` — Kubernetes auth: checks the role and its JWT;
- ``GET /v1/auth/token/lookup-self`` and ``POST /v1/auth/token/renew-self``;
- ``GET /v1/{mount}/data/{path}`` — KV version 2 reads.

Answers and errors have Vault's shapes: ``{"errors": [...]}`` with 400 for an unknown role,
403 ``permission denied`` for a missing, wrong or expired token (or a policy that does not
allow the path), 404 for a missing secret, 503 while `down`. TTLs are whole seconds as in
Vault, and tokens really expire, so renewal can be tested with TTLs of a few seconds.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import secrets
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlsplit

from testkit.fakes.loopback import LoopbackFake, LoopbackHandler, LoopbackServer

type JsonDict = dict[str, Any]
type _Reply = tuple[int, JsonDict | None]


@dataclass(frozen=True)
class Call:
    """One request the fake answered."""

    method: str
    path: str
    status: int
    at: float  # time.monotonic() when the request arrived
    token: str | None = None  # X-Vault-Token as sent
    namespace: str | None = None  # X-Vault-Namespace as sent
    role: str | None = None  # for logins

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Token:
    id: str
    accessor: str
    ttl: int  # the TTL every renewal asks for; 0: never expires
    renewable: bool
    readable: tuple[str, ...]  # fnmatch patterns of "mount/path" this token may read
    issued_at: float
    expires_at: float | None
    max_ttl: float | None = None  # seconds after issue; renewals are capped by it
    role: str | None = None
    namespace: str | None = None
    revoked: bool = False

    def valid(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)

    def remaining(self, now: float) -> int:
        # Vault reports whole seconds, truncated.
        return 0 if self.expires_at is None else max(0, int(self.expires_at - now))


@dataclass
class Role:
    name: str
    jwt: str
    ttl: int
    renewable: bool
    max_ttl: float | None
    readable: tuple[str, ...]
    mount: str


@dataclass
class _Failure:
    status: int
    errors: list[str]
    left: int | None  # None: until cleared


@dataclass
class _KvEntry:
    versions: list[tuple[JsonDict, str]] = field(default_factory=list)  # (data, created_time)


class _Server(LoopbackServer):
    fake: FakeVault


class _Handler(LoopbackHandler):
    server: _Server

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, verb: str) -> None:
        try:
            status, payload = self.server.fake._handle(
                verb, self.path, dict(self.headers), self._body()
            )
            body = json.dumps(payload).encode() if payload is not None else b""
            content_type = "application/json"
        except Exception:  # a bug in the fake: show it in the failing test, not on stderr
            status, body, content_type = 500, traceback.format_exc().encode(), "text/plain"
        self._answer(status, {"Content-Type": content_type} if body else {}, body)


def _errors(status: int, *errors: str) -> _Reply:
    return status, {"errors": list(errors)}


_DENIED = (403, {"errors": ["permission denied"]})


class FakeVault(LoopbackFake):
    """Vault with Kubernetes and token auth and KV v2 mounts, on a local port. Thread-safe."""

    def __init__(self, *, namespace: str | None = None, kv_mounts: Iterable[str] = ("kv",)):
        # When set, every request must carry this X-Vault-Namespace (an enterprise
        # namespace); without it nothing is found there.
        self.namespace = namespace
        self.kv_mounts = set(kv_mounts)
        # While True every request is answered 503 "Vault is sealed".
        self.down = False
        self._lock = threading.RLock()
        self._tokens: dict[str, Token] = {}
        self._roles: dict[tuple[str, str], Role] = {}  # (mount, name)
        self._kv: dict[tuple[str, str], _KvEntry] = {}  # (mount, path)
        self._calls: list[Call] = []
        self._issued: list[str] = []
        self._renew_failure: _Failure | None = None
        self._ids = itertools.count(1)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        return self._serve(server, "fake-vault")

    @property
    def url(self) -> str:
        """For VAULT_ADDR."""
        return self._root_url()

    # -- setup ----------------------------------------------------------------------------

    def add_token(
        self,
        token: str | None = None,
        *,
        ttl: int = 0,
        renewable: bool = False,
        max_ttl: float | None = None,
        readable: Iterable[str] = ("*",),
    ) -> str:
        """A token as `vault token create` makes it; ttl=0 never expires (like root)."""
        with self._lock:
            return self._issue(token, ttl, renewable, max_ttl, tuple(readable), None).id

    def add_role(
        self,
        name: str,
        jwt: str,
        *,
        ttl: int = 3600,
        renewable: bool = True,
        max_ttl: float | None = None,
        readable: Iterable[str] = ("*",),
        mount: str = "kubernetes",
    ) -> None:
        """A Kubernetes auth role; a login must present exactly `jwt` (no JWT is verified)."""
        with self._lock:
            self._roles[(mount, name)] = Role(
                name, jwt, ttl, renewable, max_ttl, tuple(readable), mount
            )

    def put_secret(self, path: str, data: JsonDict, *, mount: str = "kv") -> int:
        """Write a new version of a KV v2 secret; returns its version number."""
        with self._lock:
            self.kv_mounts.add(mount)
            entry = self._kv.setdefault((mount, path.strip("/")), _KvEntry())
            created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            entry.versions.append((dict(data), created))
            return len(entry.versions)

    def fail_renewals(
        self, status: int = 500, error: str = "internal error", *, times: int | None = None
    ) -> None:
        """Answer the next `times` renew-self calls (all, if None) with this error."""
        with self._lock:
            self._renew_failure = _Failure(status, [error], times)

    def clear_failures(self) -> None:
        with self._lock:
            self._renew_failure = None

    def expire(self, token: str) -> None:
        with self._lock:
            self._tokens[token].expires_at = time.monotonic()

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens[token].revoked = True

    # -- inspection -----------------------------------------------------------------------

    def calls(self, path: str | None = None, method: str | None = None) -> list[Call]:
        """Answered requests, oldest first; `path` is matched exactly (``/v1/...``)."""
        with self._lock:
            return [
                c
                for c in self._calls
                if (path is None or c.path == path) and (method is None or c.method == method)
            ]

    def issued_tokens(self) -> list[str]:
        """Tokens handed out by logins, oldest first."""
        with self._lock:
            return list(self._issued)

    def token(self, token: str) -> Token:
        with self._lock:
            return self._tokens[token]

    def token_valid(self, token: str) -> bool:
        with self._lock:
            found = self._tokens.get(token)
            return found is not None and found.valid(time.monotonic())

    # -- HTTP -----------------------------------------------------------------------------

    def _handle(
        self, verb: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, JsonDict | None]:
        now = time.monotonic()
        path = urlsplit(target).path
        lower = {k.lower(): v for k, v in headers.items()}
        token = lower.get("x-vault-token")
        namespace = lower.get("x-vault-namespace")
        body: JsonDict = {}
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                return self._record(Call(verb, path, 400, now, token, namespace), *_BAD_JSON)
            body = parsed
        with self._lock:
            status, payload = self._route(verb, path, token, namespace, body, now)
            role = body.get("role") if path.endswith("/login") else None
            self._calls.append(Call(verb, path, status, now, token, namespace, role))
        return status, payload

    def _record(self, call: Call, status: int, payload: JsonDict | None) -> _Reply:
        with self._lock:
            self._calls.append(call)
        return status, payload

    def _route(
        self,
        verb: str,
        path: str,
        token: str | None,
        namespace: str | None,
        body: JsonDict,
        now: float,
    ) -> _Reply:
        if self.down:
            return _errors(503, "Vault is sealed")
        if self.namespace is not None and namespace != self.namespace:
            return _DENIED
        if not path.startswith("/v1/"):
            return _errors(404)
        route = path.removeprefix("/v1/")
        if route.startswith("auth/") and route.endswith("/login") and verb in ("POST", "PUT"):
            return self._login(route.removeprefix("auth/").removesuffix("/login"), body, now)
        if route == "auth/token/lookup-self" and verb == "GET":
            return self._lookup_self(token, now)
        if route == "auth/token/renew-self" and verb in ("POST", "PUT"):
            return self._renew_self(token, body, now)
        mount, sep, rest = route.partition("/data/")
        if sep and verb == "GET":
            return self._kv_read(mount, rest.strip("/"), token, now)
        return _errors(404, f'no handler for route "{route}"')

    def _login(self, mount: str, body: JsonDict, now: float) -> _Reply:
        name, jwt = body.get("role"), body.get("jwt")
        if not isinstance(name, str) or not name:
            return _errors(400, "missing role")
        if not isinstance(jwt, str) or not jwt:
            return _errors(400, "missing jwt")
        role = self._roles.get((mount, name))
        if role is None:
            return _errors(400, f'invalid role name "{name}"')
        if jwt != role.jwt:
            return _DENIED
        issued = self._issue(None, role.ttl, role.renewable, role.max_ttl, role.readable, name)
        issued.namespace = self.namespace
        self._issued.append(issued.id)
        return 200, _answer(auth=_auth(issued, issued.ttl))

    def _lookup_self(self, token: str | None, now: float) -> _Reply:
        found = self._valid(token, now)
        if found is None:
            return _DENIED
        return 200, _answer(
            data={
                "accessor": found.accessor,
                "creation_ttl": found.ttl,
                "display_name": f"kubernetes-{found.role}" if found.role else "token",
                "explicit_max_ttl": int(found.max_ttl or 0),
                "id": found.id,
                "meta": {"role": found.role} if found.role else None,
                "num_uses": 0,
                "orphan": found.role is not None,
                "path": "auth/kubernetes/login" if found.role else "auth/token/create",
                "policies": ["default", "coffeebuddy"],
                "renewable": found.renewable,
                "ttl": found.remaining(now),
                "type": "service",
            }
        )

    def _renew_self(self, token: str | None, body: JsonDict, now: float) -> _Reply:
        found = self._valid(token, now)
        if found is None:
            return _DENIED
        failure = self._renew_failure
        if failure is not None:
            if failure.left is not None:
                failure.left -= 1
                if failure.left <= 0:
                    self._renew_failure = None
            return failure.status, {"errors": failure.errors}
        if not found.renewable or found.ttl == 0:
            return _errors(400, "lease is not renewable")
        increment = body.get("increment")
        wanted = float(increment) if isinstance(increment, int | float) else float(found.ttl)
        if found.max_ttl is not None:
            wanted = min(wanted, found.issued_at + found.max_ttl - now)
        wanted = max(wanted, 0.0)
        found.expires_at = now + wanted
        return 200, _answer(auth=_auth(found, int(wanted)))

    def _kv_read(self, mount: str, path: str, token: str | None, now: float) -> _Reply:
        found = self._valid(token, now)
        if found is None:
            return _DENIED
        if mount not in self.kv_mounts:
            return _errors(404, f'no handler for route "{mount}/data/{path}"')
        if not any(fnmatch.fnmatchcase(f"{mount}/{path}", p) for p in found.readable):
            return _DENIED
        entry = self._kv.get((mount, path))
        if entry is None or not entry.versions:
            return _errors(404)
        data, created = entry.versions[-1]
        return 200, _answer(
            data={
                "data": dict(data),
                "metadata": {
                    "created_time": created,
                    "custom_metadata": None,
                    "deletion_time": "",
                    "destroyed": False,
                    "version": len(entry.versions),
                },
            }
        )

    # -- helpers --------------------------------------------------------------------------

    def _valid(self, token: str | None, now: float) -> Token | None:
        found = self._tokens.get(token) if token else None
        return found if found is not None and found.valid(now) else None

    def _issue(
        self,
        token: str | None,
        ttl: int,
        renewable: bool,
        max_ttl: float | None,
        readable: tuple[str, ...],
        role: str | None,
    ) -> Token:
        now = time.monotonic()
        issued = Token(
            id=token or f"hvs.{secrets.token_urlsafe(18)}",
            accessor=f"acc{next(self._ids)}",
            ttl=ttl,
            renewable=renewable,
            readable=readable,
            issued_at=now,
            expires_at=now + ttl if ttl > 0 else None,
            max_ttl=max_ttl,
            role=role,
        )
        self._tokens[issued.id] = issued
        return issued


_BAD_JSON = (400, {"errors": ["failed to parse JSON input"]})


def _auth(token: Token, lease_duration: int) -> JsonDict:
    return {
        "client_token": token.id,
        "accessor": token.accessor,
        "policies": ["default", "coffeebuddy"],
        "token_policies": ["default", "coffeebuddy"],
        "metadata": {"role": token.role} if token.role else None,
        "lease_duration": lease_duration,
        "renewable": token.renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": token.role is not None,
    }


def _answer(*, auth: JsonDict | None = None, data: JsonDict | None = None) -> JsonDict:
    return {
        "request_id": secrets.token_hex(8),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": auth,
    }
