"""The internal operations API: run status, re-run a dead job, trigger the retention purge.
Every request needs a bearer JWT from the in-cluster Ory issuer with the ops scope."""

from __future__ import annotations

import logging
from typing import Any

import falcon
from psycopg.types.json import Jsonb

from coffeebuddy import db
from coffeebuddy.db import Database
from coffeebuddy.service.privacy import purge_now
from coffeebuddy.store import queue
from coffeebuddy.store.runs import parse_uuid
from coffeebuddy.web.access import OpsResource
from coffeebuddy.web.auth import AuthError, JwtVerifier

log = logging.getLogger(__name__)


class OpsAuth:
    """The access check of ops resources (applied by `access.AccessGate` to every resource
    marked `OpsResource`): no acceptable token, no entry."""

    def __init__(self, verifier: JwtVerifier) -> None:
        self._verifier = verifier

    def __call__(self, req: falcon.Request) -> None:
        try:
            claims = self._verifier.verify(req.get_header("Authorization"))
        except AuthError as exc:
            log.warning("ops_auth_rejected", extra={"reason": exc.reason, "path": req.path})
            if exc.status == 403:
                raise falcon.HTTPForbidden(description="token lacks the required scope") from None
            if exc.status == 503:
                raise falcon.HTTPServiceUnavailable(
                    description="the token issuer is unavailable, try again later",
                    retry_after=5,
                ) from None
            raise falcon.HTTPUnauthorized(
                description="a valid bearer token is required", challenges=["Bearer"]
            ) from None
        req.context.ops_subject = str(claims.get("sub", ""))[:200]


class OpsRun(OpsResource):
    def __init__(self, database: Database) -> None:
        self._db = database

    def on_get(self, req: falcon.Request, resp: falcon.Response, run_id: str) -> None:
        parsed = parse_uuid(run_id)
        if parsed is None:
            raise falcon.HTTPNotFound()
        with self._db.transaction() as conn:
            row = db.one(conn, "ops_run_status", {"run_id": parsed})
        if row is None:
            raise falcon.HTTPNotFound()
        resp.media = {key: _json(value) for key, value in row.items()}


class OpsRetryJob(OpsResource):
    def __init__(self, database: Database) -> None:
        self._db = database

    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        with self._db.transaction() as conn:
            job = db.one(conn, "get_job", {"id": job_id})
            if job is None:
                raise falcon.HTTPNotFound()
            if job["status"] != "dead":
                raise falcon.HTTPConflict(description=f"job {job_id} is {job['status']}, not dead")
            revived = queue.retry_dead(conn, [job_id])
            if revived:
                _audit(conn, req, "job_retried", {"job_id": job_id})
        if not revived:
            raise falcon.HTTPConflict(description="a job doing the same work is already queued")
        log.info("ops_job_retried", extra={"job_id": job_id, "user_id": req.context.ops_subject})
        resp.media = {"id": job_id, "status": "queued"}


class OpsPurge(OpsResource):
    def __init__(self, database: Database) -> None:
        self._db = database

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        with self._db.transaction() as conn:
            counts = purge_now(conn)
            _audit(conn, req, "retention_purge", {"purged": counts})
        log.info("ops_retention_purged", extra={"user_id": req.context.ops_subject})
        resp.media = {"purged": counts}


def _audit(conn: db.Conn, req: falcon.Request, action: str, details: dict[str, Any]) -> None:
    # In the same transaction as the change: no change without its audit row.
    db.run(
        conn,
        "insert_ops_action",
        {"subject": req.context.ops_subject, "action": action, "details": Jsonb(details)},
    )


def _json(value: Any) -> Any:
    return (
        value.isoformat()
        if hasattr(value, "isoformat")
        else (str(value) if value is not None and not isinstance(value, int | str) else value)
    )
