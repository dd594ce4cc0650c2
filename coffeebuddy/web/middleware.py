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
                    "path": endpoint,
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
        # The verifier would raise on a non-numeric timestamp; that is a bad signature too.
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not (
            signature and self._verifier.is_valid(body, timestamp, signature)
        ):
            ERRORS.labels("bad_signature").inc()
            log.warning("signature_rejected", extra={"path": req.path})
            raise falcon.HTTPUnauthorized(
                title="Invalid Slack signature",
                description="missing, invalid or stale X-Slack-Signature",
            )
        req.context.raw_body = body
