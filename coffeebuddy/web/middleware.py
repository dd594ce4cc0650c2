"""Request middleware: correlation ids and timing for every request, and Slack's signature
check (over the raw body, before anything parses it) for every `/slack/` request."""

from __future__ import annotations

import logging
import re
import time
import uuid
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
            log.info(
                "request",
                extra={
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


class SlackSignature:
    """Reject what Slack did not sign: 413 for oversized bodies, 401 for a missing, bad or
    stale signature. The verified raw body is left in `req.context.raw_body`."""

    def __init__(self, signing_secret: str, *, max_body_bytes: int, clock: Clock | None = None):
        self._verifier = SignatureVerifier(signing_secret, clock=clock or Clock())
        self._max = max_body_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not req.path.startswith("/slack/"):
            return
        if req.content_length is not None and req.content_length > self._max:
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
        # The verifier would raise on a non-numeric timestamp; that is a wrong signature.
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return "wrong"
        if self._verifier.is_valid(body, timestamp, signature):
            return None
        # is_valid refuses both; a signature over an old timestamp could be a replay.
        if abs(self._verifier.clock.now() - int(timestamp)) > 60 * 5:
            return "stale"
        return "wrong"
