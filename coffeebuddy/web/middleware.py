"""Request middleware: correlation ids and timing for every request, and Slack's signature
check (over the raw body, before anything parses it), applied by `access.AccessGate` to
every resource marked as a Slack resource."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import falcon
from slack_sdk.signature import Clock, SignatureVerifier

from coffeebuddy import logs
from coffeebuddy.metrics import ERRORS, REQUEST_LATENCY

log = logging.getLogger(__name__)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestContext:
    """A correlation id per request (Kong's X-Request-Id when it sent a sane one)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        incoming = req.get_header("X-Request-Id") or ""
        req.context.correlation_id = (
            incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
        )
        req.context.started = time.perf_counter()
        # Facts a resource adds for the one log line of the request (`log_fact`).
        req.context.log_facts = {}
        req.context.log_scope = logs.context(correlation=req.context.correlation_id)
        req.context.log_scope.__enter__()
        resp.set_header("X-Request-Id", req.context.correlation_id)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        endpoint = req.uri_template or "unmatched"
        REQUEST_LATENCY.labels(endpoint).observe(elapsed)
        if not req.path.startswith(("/health", "/metrics")):
            # One line per request (a line costs about as much CPU as a burst click's SQL):
            # what the resource did rides on it instead of lines of its own.
            log.info(
                "request",
                extra={
                    **getattr(req.context, "log_facts", {}),
                    "method": req.method,
                    # The path asked for, also when no route matched (the metric label
                    # above stays the route template, to keep its series few).
                    "path": req.path[:200],
                    "status": str(resp.status)[:3],
                    "latency_ms": round(elapsed * 1000, 2),
                },
            )
        scope = getattr(req.context, "log_scope", None)
        if scope is not None:
            scope.__exit__(None, None, None)


def log_fact(req: falcon.Request, **facts: Any) -> None:
    """Add facts (keys `coffeebuddy.logs` allows) to the request's log line."""
    context_facts = getattr(req.context, "log_facts", None)
    if context_facts is not None:
        context_facts.update(facts)


# Slack signs with `v0=` and a hex HMAC-SHA256; its timestamps are Unix seconds. Anything
# else is refused before the comparison (hmac.compare_digest raises on non-ASCII text).
_SIGNATURE_SHAPE = re.compile(r"v0=[0-9a-f]{64}")
_TIMESTAMP_SHAPE = re.compile(r"[0-9]{1,12}")


class SigningSecrets:
    """The signing secret in use and, for a short overlap after a rotation, the one before
    it (Slack and the secret store are not switched at the same instant). Swapped as one
    tuple, so a request sees either the old pair or the new one."""

    def __init__(
        self,
        secret: str,
        *,
        overlap_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._overlap = overlap_seconds
        self._clock = clock
        self._state: tuple[SignatureVerifier, SignatureVerifier | None, float] = (
            self._verifier(secret),
            None,
            0.0,
        )
        self._secret = secret

    def _verifier(self, secret: str) -> SignatureVerifier:
        # The verifier's own clock checks staleness; ours only times the overlap.
        return SignatureVerifier(secret, clock=_WallClock(self._clock))

    def rotate(self, secret: str) -> None:
        if secret == self._secret:
            return
        current = self._state[0]
        self._state = (self._verifier(secret), current, self._clock() + self._overlap)
        self._secret = secret

    def is_stale(self, timestamp: str) -> bool:
        """Outside Slack's five minutes either way (the verifier refuses those too)."""
        return abs(self._clock() - int(timestamp)) > 60 * 5

    def is_valid(self, body: bytes, timestamp: str, signature: str) -> bool:
        current, previous, previous_until = self._state
        if current.is_valid(body, timestamp, signature):
            return True
        return (
            previous is not None
            and self._clock() < previous_until
            and previous.is_valid(body, timestamp, signature)
        )


class _WallClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackSignature:
    """The access check of Slack resources: 411 without a Content-Length, 413 for oversized
    bodies, 401 for a missing, malformed, bad or stale signature. The verified raw body is
    left in `req.context.raw_body`."""

    def __init__(self, secrets: SigningSecrets, *, max_body_bytes: int) -> None:
        self._secrets = secrets
        self._max = max_body_bytes

    def __call__(self, req: falcon.Request) -> None:
        if req.content_length is None:
            # A chunked body has no length up front; Slack always sends one. Reading it as
            # empty would check a signature over the wrong bytes.
            ERRORS.labels("bad_request").inc()
            raise falcon.HTTPLengthRequired(description="a Content-Length is required")
        if req.content_length > self._max:
            ERRORS.labels("body_too_large").inc()
            raise falcon.HTTPContentTooLarge(description="request body too large")
        body = req.bounded_stream.read(self._max + 1)
        if len(body) > self._max:
            ERRORS.labels("body_too_large").inc()
            raise falcon.HTTPContentTooLarge(description="request body too large")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            # slack_sdk's verifier decodes the body and would raise; Slack only sends UTF-8.
            ERRORS.labels("bad_request").inc()
            raise falcon.HTTPBadRequest(description="request body is not UTF-8") from None
        timestamp = req.get_header("X-Slack-Request-Timestamp") or ""
        signature = req.get_header("X-Slack-Signature") or ""
        reason = self._rejection(body, timestamp, signature)
        if reason is not None:
            ERRORS.labels("bad_signature").inc()
            log.warning("signature_rejected", extra={"path": req.path[:200], "reason": reason})
            raise falcon.HTTPUnauthorized(
                title="Invalid Slack signature",
                description="missing, invalid or stale X-Slack-Signature",
            )
        req.context.raw_body = body

    def _rejection(self, body: bytes, timestamp: str, signature: str) -> str | None:
        """Why the request is refused (for the log; the client gets one answer), or None."""
        if not timestamp or not signature:
            return "missing"
        # Checked before any comparison: a non-ASCII value would make hmac raise.
        if not _SIGNATURE_SHAPE.fullmatch(signature) or not _TIMESTAMP_SHAPE.fullmatch(timestamp):
            return "malformed"
        if self._secrets.is_valid(body, timestamp, signature):
            return None
        # is_valid refuses both; a signature over an old timestamp could be a replay.
        return "stale" if self._secrets.is_stale(timestamp) else "wrong"
