"""Answers through an interaction's `response_url` (valid 30 minutes, 5 uses).

The URL arrives inside the (signed) payload, but the worker POSTs to it later from inside
the cluster, so it is only used when its origin is on an allow-list: Slack's hooks host,
the origin of `SLACK_API_BASE_URL` (an egress proxy or a test double) and the operator's
`COFFEEBUDDY_RESPONSE_URL_ORIGINS`. Redirects are never followed: a 3xx counts as "not
delivered", and the caller falls back to `chat.postEphemeral`.
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

SLACK_HOOKS_ORIGIN = "https://hooks.slack.com"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host:port` of an absolute http(s) URL (lower-cased, explicit port), or
    None for anything else, including URLs carrying credentials."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    return f"{parts.scheme}://{parts.hostname.lower()}:{port or _DEFAULT_PORTS[parts.scheme]}"


class ResponseUrlPolicy:
    """Which response_url origins the service may POST to."""

    def __init__(self, origins: Iterable[str]) -> None:
        allowed = {origin_of(o) for o in (SLACK_HOOKS_ORIGIN, *origins)}
        self._origins = frozenset(o for o in allowed if o is not None)

    @classmethod
    def for_slack_api(cls, slack_api_base_url: str, extra: Iterable[str] = ()) -> ResponseUrlPolicy:
        return cls([slack_api_base_url, *extra])

    def allows(self, url: str) -> bool:
        return origin_of(url) in self._origins


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        # Returning None makes urllib raise the 3xx as an HTTPError instead of following it.
        return None


@functools.cache
def _tls() -> ssl.SSLContext:
    # One TLS context for every post: the default HTTPS handler would load the system's CA
    # certificates again for each one (~50 ms of CPU, the bulk of a confirmation's cost).
    return ssl.create_default_context()


def _opener() -> urllib.request.OpenerDirector:
    # Built per use so that HTTPS_PROXY/NO_PROXY are read from the environment as it is now.
    return urllib.request.build_opener(
        _NoRedirects, urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=_tls())
    )


def post_ephemeral(
    url: str,
    text: str,
    *,
    timeout: float,
    policy: ResponseUrlPolicy,
    blocks: list[dict[str, Any]] | None = None,
) -> bool:
    """True when Slack accepted the message; False when the URL is not allowed, expired,
    was used up or redirected. Server errors and rate limits raise, so a job can retry."""
    if not policy.allows(url):
        # Never log the URL itself: it is a bearer credential for the interaction.
        log.warning("response_url_refused", extra={"reason": "origin_not_allowed"})
        return False
    message: dict[str, Any] = {
        "response_type": "ephemeral", "replace_original": False, "text": text,
    }  # fmt: skip
    if blocks:
        message["blocks"] = blocks
    body = json.dumps(message)
    request = urllib.request.Request(  # noqa: S310 (origin checked against the allow-list)
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with _opener().open(request, timeout=timeout) as answer:
            answer.read()
        return True
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise
        if 300 <= exc.code < 400:
            log.warning("response_url_refused", extra={"reason": "redirect"})
        return False
