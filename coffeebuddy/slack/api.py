"""The Slack Web API client, and what a Slack failure means for us and for the user."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from slack_sdk.web import SlackResponse

from coffeebuddy.config import Config
from coffeebuddy.metrics import SLACK_CALLS

# Errors no retry can fix: a person has to change the app or the channel.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "team_access_not_granted",
        "no_permission",
        "ekm_access_denied",
    }
)

_HINTS = {
    "not_in_channel": "I'm not a member of this channel yet. Invite me with "
    "`/invite @CoffeeBuddy`, then try again.",
    "channel_not_found": "I can't see this channel. If it is private, invite me with "
    "`/invite @CoffeeBuddy`, then try again.",
    "is_archived": "This channel is archived, so I can't post here.",
    "invalid_auth": "CoffeeBuddy's Slack credentials were rejected. Ask your CoffeeBuddy "
    "operators to check the app installation and its bot token.",
    "account_inactive": "CoffeeBuddy's Slack app has been deactivated or uninstalled. Ask a "
    "workspace admin to reinstall it.",
    "token_revoked": "CoffeeBuddy's Slack token was revoked. Ask a workspace admin to "
    "reinstall the app.",
    "restricted_action": "A workspace setting stops me from posting here. Ask a workspace "
    "admin to allow CoffeeBuddy in this channel.",
}


def make_client(config: Config, *, timeout: float) -> WebClient:
    # One quick retry on a dropped connection; rate limits and server errors are handled
    # by rescheduling jobs, never by sleeping.
    client = WebClient(
        token=config.slack_bot_token.reveal(),
        base_url=config.slack_api_base_url,
        timeout=max(1, round(timeout)),
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
        proxy=egress_proxy(config.slack_api_base_url),
    )
    # slack_sdk falls back to HTTPS_PROXY by itself and knows nothing of NO_PROXY.
    client.proxy = egress_proxy(config.slack_api_base_url)
    return client


def egress_proxy(url: str) -> str | None:
    """The proxy for `url` from HTTPS_PROXY/HTTP_PROXY, unless NO_PROXY exempts its host."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme) or None


def call(client: WebClient, method: str, **kwargs: Any) -> SlackResponse:
    """Call a Web API method by its Slack name, counting the result per method."""
    fn = getattr(client, method.replace(".", "_"))
    try:
        response: SlackResponse = fn(**kwargs)
    except SlackApiError as exc:
        SLACK_CALLS.labels(method, str(exc.response.get("error") or exc.response.status_code)).inc()
        raise
    except Exception:
        SLACK_CALLS.labels(method, "network").inc()
        raise
    SLACK_CALLS.labels(method, "ok").inc()
    return response


FailureKind = Literal["rate_limited", "transient", "permanent", "other"]


@dataclass(frozen=True)
class SlackFailure:
    kind: FailureKind
    code: str
    retry_after: float | None = None
    # What the person who acted should be told, when it is something they can fix.
    hint: str | None = None


def classify(exc: BaseException) -> SlackFailure | None:
    """What a Slack failure means; None when `exc` is not a Slack or network failure."""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        code = str(exc.response.get("error") or f"http_{status}")
        if status == 429 or code == "ratelimited":
            header = exc.response.headers.get("Retry-After") or exc.response.headers.get(
                "retry-after"
            )
            try:
                after = float(header) if header is not None else 30.0
            except (TypeError, ValueError):
                after = 30.0
            return SlackFailure("rate_limited", "ratelimited", retry_after=max(after, 1.0))
        if status >= 500:
            return SlackFailure("transient", f"http_{status}")
        if code in PERMANENT_ERRORS:
            return SlackFailure("permanent", code, hint=user_hint(code, exc.response.get("needed")))
        return SlackFailure("other", code)
    if isinstance(exc, socket.timeout | TimeoutError) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError)
    ):
        return SlackFailure("transient", "timeout")
    if isinstance(exc, urllib.error.URLError | ConnectionError):
        return SlackFailure("transient", "network")
    if isinstance(exc, SlackRequestError):
        return SlackFailure("transient", "request_error")
    return None


FailureCategory = Literal["slack_error", "timeout", "internal"]


def failure_category(failure: SlackFailure | None) -> FailureCategory:
    """Why a run failed, for the pilot's error rate: Slack refused or was unreachable,
    Slack did not answer in time, or something on our side (no Slack failure at all)."""
    if failure is None:
        return "internal"
    return "timeout" if failure.code == "timeout" else "slack_error"


def user_hint(code: str, needed: object = None) -> str:
    if code == "missing_scope":
        scope = f"`{needed}` " if isinstance(needed, str) and needed else ""
        return (
            f"CoffeeBuddy is missing the {scope}permission in Slack. Ask a workspace admin "
            "to reinstall the app with the scopes in its manifest."
        )
    return _HINTS.get(code, f"Slack refused the request ({code}).")
