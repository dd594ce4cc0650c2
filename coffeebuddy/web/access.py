"""Who may reach which resource, decided by the resource that matched, never by path text.

Falcon routes `//ops/x` (and `/%2Fops/x`, which the server decodes to `//ops/x`) to the
`/ops/x` resource while `req.path` keeps the extra slash, so a prefix check on the path
can be walked around. Each resource class therefore declares its access with a marker
base class, and `AccessGate.process_resource` checks the marker of the resource Falcon
actually picked. A resource without a marker is refused (fail closed). Paths that are not
canonical (empty segments, encoded slashes, a trailing slash) are refused before routing.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

import falcon

from coffeebuddy.metrics import ERRORS

log = logging.getLogger(__name__)


class SlackResource:
    """Reached only with a valid Slack signature over the raw body."""

    access = "slack"


class OpsResource:
    """Reached only with a bearer JWT from the ops issuer carrying the ops scope."""

    access = "ops"


class PublicResource:
    """Health and metrics: no credentials (the NetworkPolicy and ingress keep them inside)."""

    access = "public"


class Check(Protocol):
    def __call__(self, req: falcon.Request) -> None: ...


# An encoded slash or backslash in the raw request line would be decoded into a separator
# by the server, after any proxy matched its routes on the encoded form.
_ENCODED_SEPARATOR = re.compile(r"%(2f|5c)", re.IGNORECASE)


def canonical_path_problem(req: falcon.Request) -> str | None:
    """Why the request's path is not in its one canonical form, or None when it is."""
    path = req.path
    if path != "/" and (path.endswith("/") or "//" in path):
        return "empty_segment"
    if "\\" in path:
        return "backslash"
    raw = req.env.get("RAW_URI") or req.env.get("REQUEST_URI") or ""
    if _ENCODED_SEPARATOR.search(str(raw).partition("?")[0]):
        return "encoded_separator"
    return None


class AccessGate:
    """Middleware: refuse non-canonical paths, then apply the matched resource's access."""

    def __init__(self, *, slack: Check, ops: Check | None) -> None:
        self._checks: dict[str, Check | None] = {"slack": slack, "ops": ops}

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        problem = canonical_path_problem(req)
        if problem is not None:
            ERRORS.labels("bad_request").inc()
            log.warning("path_refused", extra={"reason": problem, "path": req.path[:200]})
            raise falcon.HTTPNotFound(description="no such path (paths must be canonical)")

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        if resource is None:
            return  # Falcon answers 404.
        access = getattr(resource, "access", None)
        req.context.access = access
        if access == "public":
            return
        check = self._checks.get(access) if isinstance(access, str) else None
        if check is None:
            # An unmarked resource, or ops routes without an issuer: refuse rather than guess.
            log.error("access_undeclared", extra={"path": req.path[:200]})
            raise falcon.HTTPNotFound()
        check(req)


def verified_body(req: falcon.Request) -> bytes:
    """The raw body whose Slack signature was checked. A Slack resource reached without
    one (a wiring mistake) answers 401 rather than parsing unverified input."""
    body = getattr(req.context, "raw_body", None)
    if not isinstance(body, bytes):
        ERRORS.labels("bad_signature").inc()
        log.warning("signature_missing", extra={"path": req.path[:200]})
        raise falcon.HTTPUnauthorized(
            title="Invalid Slack signature", description="missing X-Slack-Signature"
        )
    return body


def is_slack_request(req: falcon.Request) -> bool:
    """For error handlers: answer in Slack's shape only where Slack is the caller."""
    return getattr(req.context, "access", None) == "slack"
