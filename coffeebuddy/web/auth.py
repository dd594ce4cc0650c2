"""Service-to-service auth for the operations API: bearer JWTs from the in-cluster Ory
(Hydra) issuer, checked against the issuer's JWKS found by OIDC discovery.

The web runs on a few sync workers shared with Slack and the health probes, so nothing a
caller sends may make a worker wait on the issuer: a token's shape, issuer, expiry and
lifetime are checked before any network call; only one discovery runs at a time (others
answer 503 at once instead of queueing behind it); and a failed discovery or JWKS fetch is
remembered with exponential backoff, answering 503 until the next attempt is due.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt

# Asymmetric only: a shared-secret (HS*) or unsigned ("none") token is never accepted.
ALGORITHMS = ["RS256", "ES256"]
LEEWAY_SECONDS = 30
# A token with an unknown kid refetches the JWKS (key rotation), at most this often, so
# garbage kids can't make us hammer the issuer.
REFETCH_COOLDOWN_SECONDS = 30.0
# Hydra's access tokens are well under 2 KB; anything far larger is not one.
MAX_TOKEN_CHARS = 8192
# After a failed discovery or JWKS fetch, the issuer is not asked again for this long,
# doubling per failure up to the maximum.
BACKOFF_MIN_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


class AuthError(Exception):
    """Rejected: `status` is 401 (who are you?), 403 (not allowed) or 503 (the issuer is
    unknown right now); `reason` is a short code for logs, never the token."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class JwtVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        scope: str,
        *,
        timeout: float = 3.0,
        max_lifetime_seconds: int = 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.scope = scope
        self._timeout = timeout
        self._max_lifetime = max_lifetime_seconds
        self._clock = clock
        # Held only while one thread talks to the issuer; others never wait for it.
        self._discovering = threading.Lock()
        self._jwks: jwt.PyJWKClient | None = None
        self._failures = 0
        self._retry_at = 0.0

    # -- the issuer, with backoff --------------------------------------------------------

    def _available(self) -> None:
        if self._failures and self._clock() < self._retry_at:
            raise AuthError(503, "issuer_backoff")

    def _failed(self) -> None:
        self._failures += 1
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_MIN_SECONDS * 2 ** min(self._failures - 1, 16))
        self._retry_at = self._clock() + delay

    def _client(self) -> jwt.PyJWKClient:
        jwks = self._jwks
        if jwks is not None:
            return jwks
        self._available()
        if not self._discovering.acquire(blocking=False):
            raise AuthError(503, "issuer_discovery_in_progress")
        try:
            if self._jwks is None:
                try:
                    self._jwks = self._discover()
                except AuthError:
                    self._failed()
                    raise
                self._failures = 0
            return self._jwks
        finally:
            self._discovering.release()

    def _discover(self) -> jwt.PyJWKClient:
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as answer:  # noqa: S310 (operator-configured issuer)
                discovery = json.loads(answer.read())
        except (OSError, ValueError):
            raise AuthError(503, "issuer_unreachable") from None
        if not isinstance(discovery, dict) or not isinstance(discovery.get("jwks_uri"), str):
            raise AuthError(503, "issuer_discovery_invalid")
        if str(discovery.get("issuer", "")).rstrip("/") != self.issuer:
            raise AuthError(503, "issuer_mismatch")
        # Keys are cached; a token with an unknown kid refetches the set (rotation).
        return jwt.PyJWKClient(
            discovery["jwks_uri"],
            cache_keys=True,
            lifespan=300,
            timeout=self._timeout,
            cooldown_duration=REFETCH_COOLDOWN_SECONDS,
        )

    def _signing_key(self, token: str) -> Any:
        client = self._client()
        self._available()
        try:
            key = client.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            self._failed()
            raise AuthError(503, "jwks_unreachable") from None
        except jwt.PyJWKClientError:
            raise AuthError(401, "unknown_key") from None
        self._failures = 0
        return key.key

    # -- the token -----------------------------------------------------------------------

    def _precheck(self, token: str) -> None:
        """Everything that can be said about the token without the issuer's keys."""
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError(401, "malformed_token")
        parts = token.split(".")
        if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
            raise AuthError(401, "malformed_token")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise AuthError(401, "malformed_token") from None
        if header.get("alg") not in ALGORITHMS or not isinstance(header.get("kid"), str):
            raise AuthError(401, "malformed_token")
        if str(claims.get("iss", "")).rstrip("/") != self.issuer:
            raise AuthError(401, "wrong_issuer")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise AuthError(401, "missing_exp_or_iat")
        if exp < time.time() - LEEWAY_SECONDS:
            raise AuthError(401, "expired")
        if exp - iat > self._max_lifetime:
            # A long-lived token is a standing credential; ops callers get short ones.
            raise AuthError(401, "lifetime_too_long")

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, if the Authorization header carries one we accept."""
        # The scheme name is case-insensitive (RFC 7235).
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "no_bearer_token")
        self._precheck(token)
        key = self._signing_key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "expired") from None
        except jwt.InvalidTokenError:
            raise AuthError(401, "invalid_token") from None
        if self.scope not in _scopes(claims):
            raise AuthError(403, "missing_scope")
        return claims


def _scopes(claims: dict[str, Any]) -> set[str]:
    # Hydra puts granted scopes in `scp` (a list); others use a space-separated `scope`.
    granted = claims.get("scp")
    scopes = {s for s in granted if isinstance(s, str)} if isinstance(granted, list) else set()
    scope = claims.get("scope")
    return scopes | (set(scope.split()) if isinstance(scope, str) else set())
