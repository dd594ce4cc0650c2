"""The few Vault calls the keeper makes (hvac), and secret-free reasons for their failures.

Vault's own error texts are not echoed: the status is enough to act on, and Vault's audit
log has the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions

from coffeebuddy.secrets.settings import VaultAuthMethod, VaultSettings


@dataclass(frozen=True)
class Lease:
    """What we know about the current Vault token."""

    ttl: float  # seconds; 0 means the token never expires
    renewable: bool
    obtained_at: float  # clock reading taken before the request, so expiry errs early

    @property
    def expires_at(self) -> float | None:
        return self.obtained_at + self.ttl if self.ttl > 0 else None


class VaultClient:
    """The few hvac calls we make, answers checked and turned into plain values."""

    def __init__(self, settings: VaultSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        # Everything is passed explicitly: hvac would otherwise fall back to VAULT_TOKEN,
        # ~/.vault-token and VAULT_CACERT of the process environment.
        self._client: Any = hvac.Client(
            url=settings.addr,
            token=settings.token.reveal() if settings.token is not None else "",
            verify=str(settings.cacert) if settings.cacert is not None else True,
            timeout=settings.timeout_seconds,
            namespace=settings.namespace,
        )
        self.login_ttl = 0.0

    def authenticate(self) -> Lease:
        """Log in (Kubernetes) or look the configured token up (token auth)."""
        if self.settings.auth_method is VaultAuthMethod.KUBERNETES:
            return self.login()
        started = self._clock()
        answer = self._client.auth.token.lookup_self()
        data = _mapping(_mapping(answer).get("data"))
        lease = Lease(
            ttl=_number(data.get("ttl")),
            renewable=bool(data.get("renewable")),
            obtained_at=started,
        )
        self.login_ttl = _number(data.get("creation_ttl")) or lease.ttl
        return lease

    def login(self) -> Lease:
        # Projected service account tokens are rotated by the kubelet: read it every time.
        jwt = self.settings.k8s_token_path.read_text(encoding="utf-8").strip()
        started = self._clock()
        answer = self._client.auth.kubernetes.login(
            role=self.settings.role, jwt=jwt, mount_point=self.settings.k8s_mount
        )
        lease = _auth_lease(answer, started)
        self.login_ttl = lease.ttl
        return lease

    def renew(self) -> Lease:
        started = self._clock()
        lease = _auth_lease(self._client.auth.token.renew_self(), started)
        if lease.ttl <= 0:
            # A renewal capped by the token's max TTL can report 0 seconds: "expiring now",
            # not "never expires" as on a login.
            lease = Lease(ttl=0.001, renewable=lease.renewable, obtained_at=started)
        return lease

    def close(self) -> None:
        self._client.adapter.close()

    def read(self) -> tuple[dict[str, Any], int | None]:
        answer = self._client.secrets.kv.v2.read_secret_version(
            path=self.settings.secret_path,
            mount_point=self.settings.kv_mount,
            raise_on_deleted_version=True,
        )
        outer = _mapping(_mapping(answer).get("data"))
        version = _mapping(outer.get("metadata")).get("version")
        return dict(_mapping(outer.get("data"))), version if isinstance(version, int) else None


def _auth_lease(answer: object, started: float) -> Lease:
    auth = _mapping(_mapping(answer).get("auth"))
    if not isinstance(auth.get("client_token"), str):
        raise hvac.exceptions.UnexpectedError("no auth.client_token in the answer")
    return Lease(
        ttl=_number(auth.get("lease_duration")),
        renewable=bool(auth.get("renewable")),
        obtained_at=started,
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


VAULT_FAILURES: tuple[type[BaseException], ...] = (hvac.exceptions.VaultError, OSError)


def why(exc: BaseException, addr: str) -> str:
    """A short, secret-free reason. requests' errors are OSErrors (IOError)."""
    e = hvac.exceptions
    reasons: list[tuple[Any, str]] = [
        (e.Forbidden, "permission denied"),
        (e.Unauthorized, "unauthorized (HTTP 401)"),
        (e.InvalidPath, "not found"),
        (e.InvalidRequest, "request rejected (HTTP 400)"),
        (e.RateLimitExceeded, "rate limited (HTTP 429)"),
        (e.VaultDown, "Vault is sealed or unavailable (HTTP 503)"),
        (e.VaultNotInitialized, "Vault is not initialized (HTTP 501)"),
        (e.InternalServerError, "Vault internal error (HTTP 500)"),
        (e.BadGateway, "bad gateway (HTTP 502)"),
    ]
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    if isinstance(exc, e.VaultError):
        return f"unexpected answer ({type(exc).__name__})"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot read {exc.filename} ({type(exc).__name__})"
    return f"cannot reach {addr} ({type(exc).__name__})"


def login_failure(settings: VaultSettings, exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return (
            f"VAULT_K8S_TOKEN_PATH: cannot read the service account token"
            f" {settings.k8s_token_path} ({type(exc).__name__})"
        )
    reason = why(exc, settings.addr)
    if settings.auth_method is VaultAuthMethod.KUBERNETES:
        return (
            f"Vault: kubernetes login as role {settings.role!r}"
            f" at auth/{settings.k8s_mount} failed: {reason}"
        )
    return f"Vault: VAULT_TOKEN lookup failed: {reason}"
