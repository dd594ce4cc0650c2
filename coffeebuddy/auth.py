"""Service-to-service auth for the operations API: bearer JWTs from the in-cluster Ory
(Hydra) issuer, checked against the issuer's JWKS found by OIDC discovery."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import jwt

# Asymmetric only: a shared-secret (HS*) or unsigned ("none") token is never accepted.
ALGORITHMS = ["RS256", "ES256"]
LEEWAY_SECONDS = 30
# A token with an unknown kid refetches the JWKS (key rotation), at most this often, so
# garbage kids can't make us hammer the issuer.
REFETCH_COOLDOWN_SECONDS = 30.0


class AuthError(Exception):
    """Rejected: `status` is 401 (who are you?) or 403 (not allowed); `reason` is a short
    code for logs, never the token."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class JwtVerifier:
    def __init__(self, issuer: str, audience: str, scope: str, *, timeout: float = 3.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.scope = scope
        self._timeout = timeout
        self._lock = threading.Lock()
        self._jwks: jwt.PyJWKClient | None = None

    def _client(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._jwks is None:
                url = f"{self.issuer}/.well-known/openid-configuration"
                try:
                    with urllib.request.urlopen(url, timeout=self._timeout) as answer:  # noqa: S310 (operator-configured issuer)
                        discovery = json.loads(answer.read())
                except (OSError, ValueError):
                    raise AuthError(401, "issuer_unreachable") from None
                if not isinstance(discovery, dict) or not isinstance(
                    discovery.get("jwks_uri"), str
                ):
                    raise AuthError(401, "issuer_discovery_invalid")
                if str(discovery.get("issuer", "")).rstrip("/") != self.issuer:
                    raise AuthError(401, "issuer_mismatch")
                # Keys are cached; a token with an unknown kid refetches the set (rotation).
                self._jwks = jwt.PyJWKClient(
                    discovery["jwks_uri"],
                    cache_keys=True,
                    lifespan=300,
                    timeout=self._timeout,
                    cooldown_duration=REFETCH_COOLDOWN_SECONDS,
                )
            return self._jwks

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, if the Authorization header carries one we accept."""
        # The scheme name is case-insensitive (RFC 7235).
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "no_bearer_token")
        try:
            key = self._client().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "expired") from None
        except (jwt.PyJWKClientError, jwt.InvalidTokenError):
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
