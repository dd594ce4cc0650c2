"""The WSGI application: wiring only."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import falcon

from coffeebuddy.config import Config
from coffeebuddy.db import Database, DatabaseUnavailable, migrate
from coffeebuddy.errors import BadRequest, CoffeeBuddyError
from coffeebuddy.metrics import ERRORS, render
from coffeebuddy.service.admin import AdminService
from coffeebuddy.service.commands import Commands
from coffeebuddy.service.home import HomeService
from coffeebuddy.service.people import People
from coffeebuddy.service.privacy import PrivacyService
from coffeebuddy.service.ratings import RatingService
from coffeebuddy.service.runs import RunService
from coffeebuddy.service.stats import StatsService
from coffeebuddy.service.swap import SwapService
from coffeebuddy.slack.api import make_client
from coffeebuddy.slack.gateway import SlackGateway, WebSlackGateway
from coffeebuddy.slack.response_url import ResponseUrlPolicy
from coffeebuddy.web.access import AccessGate, PublicResource, is_slack_request
from coffeebuddy.web.auth import JwtVerifier
from coffeebuddy.web.events import SlackEvents
from coffeebuddy.web.middleware import RequestContext, SigningSecrets, SlackSignature
from coffeebuddy.web.ops import OpsAuth, OpsPurge, OpsRetryJob, OpsRun
from coffeebuddy.web.slack_resources import (
    DB_DOWN_TEXT,
    SlackCommands,
    SlackInteractions,
    internal_error_text,
    report_internal,
)

log = logging.getLogger(__name__)

# With the database down, how long the web fails fast after a failed attempt.
WEB_FAIL_FAST_SECONDS = 1.0


class Live(PublicResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready(PublicResource):
    """Ready when the secrets are loaded, the database answers and its schema is at least the
    one this code needs (migrate.SCHEMA_VERSION), whatever migration files are installed."""

    # Checking migrations costs a query; readiness probes come every few seconds.
    _SCHEMA_CHECK_EVERY = 30.0

    def __init__(self, database: Database, secrets_ok: Callable[[], bool]) -> None:
        self._db = database
        self._secrets_ok = secrets_ok
        self._schema_ok_at = 0.0

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {
            "secrets": self._secrets_ok(),
            "database": self._db.ping(),
            "migrations": True,
        }
        if checks["database"] and time.monotonic() - self._schema_ok_at > self._SCHEMA_CHECK_EVERY:
            try:
                checks["migrations"] = migrate.schema_is_current(
                    migrate.schema_version(self._db.conninfo)
                )
            except Exception:
                checks["migrations"] = False
            if checks["migrations"]:
                self._schema_ok_at = time.monotonic()
        ok = all(checks.values())
        resp.status = falcon.HTTP_200 if ok else falcon.HTTP_503
        resp.media = {"status": "ok" if ok else "unavailable", "checks": checks}


class Metrics(PublicResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        body, content_type = render()
        resp.data = body
        resp.content_type = content_type


def _slack_answer(resp: falcon.Response, text: str) -> None:
    # Slack shows a 200 answer to the user; any other status is an opaque failure to them.
    resp.status = falcon.HTTP_200
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps({"response_type": "ephemeral", "text": text}).encode()


def _on_bad_request(
    req: falcon.Request, resp: falcon.Response, ex: BadRequest, params: Any
) -> None:
    ERRORS.labels("bad_request").inc()
    log.warning("bad_request", extra={"reason": ex.user_message[:100]})
    resp.status = falcon.HTTP_400
    resp.media = {"title": "400 Bad Request", "description": ex.user_message}


def _on_db_down(
    req: falcon.Request, resp: falcon.Response, ex: DatabaseUnavailable, params: Any
) -> None:
    ERRORS.labels("database").inc()
    log.error("database_unavailable")
    if is_slack_request(req):
        _slack_answer(resp, DB_DOWN_TEXT)
    else:
        resp.status = falcon.HTTP_503
        resp.media = {"title": "503 Service Unavailable", "description": "database unavailable"}


def _on_domain_error(
    req: falcon.Request, resp: falcon.Response, ex: CoffeeBuddyError, params: Any
) -> None:
    # An expected failure with a message the person can act on (e.g. Slack unreachable
    # while reading their time zone).
    ERRORS.labels("domain").inc()
    if is_slack_request(req):
        _slack_answer(resp, ex.user_message)
    else:
        resp.status = falcon.HTTP_409
        resp.media = {"title": "409 Conflict", "description": ex.user_message}


def _on_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    reference = report_internal(ex)
    if is_slack_request(req):
        _slack_answer(resp, internal_error_text(reference))
    else:
        resp.status = falcon.HTTP_500
        resp.media = {"title": "500 Internal Server Error", "description": f"reference {reference}"}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: Config,
    *,
    database: Database | None = None,
    slack: SlackGateway | None = None,
    secrets_ok: Callable[[], bool] = lambda: True,
    clock: Callable[[], datetime] = _utcnow,
    signing_secrets: SigningSecrets | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """The WSGI app: its collaborators built once, then routes and error handlers."""
    if database is None:
        database = _open_database(config)
    if slack is None:
        slack = WebSlackGateway(make_client(config, timeout=config.slack_timeout_seconds))
    if signing_secrets is None:
        signing_secrets = SigningSecrets(config.slack_signing_secret.reveal())
    gate = AccessGate(
        slack=SlackSignature(signing_secrets, max_body_bytes=config.max_body_bytes),
        ops=_ops_auth(config),
    )
    middleware: list[Any] = [RequestContext(), gate]
    app = falcon.App(middleware=middleware)
    app.req_options.auto_parse_form_urlencoded = False
    _add_slack_routes(app, config, database, slack, clock)
    app.add_route("/health/live", Live())
    app.add_route("/health/ready", Ready(database, secrets_ok))
    app.add_route("/metrics", Metrics())
    if config.ops_issuer:
        app.add_route("/ops/runs/{run_id}", OpsRun(database))
        app.add_route("/ops/jobs/{job_id:int}/retry", OpsRetryJob(database))
        app.add_route("/ops/retention/purge", OpsPurge(database))
    # Falcon picks the most specific handler for an exception's class.
    app.add_error_handler(Exception, _on_unexpected)
    app.add_error_handler(CoffeeBuddyError, _on_domain_error)
    app.add_error_handler(DatabaseUnavailable, _on_db_down)
    app.add_error_handler(BadRequest, _on_bad_request)
    return app


def _open_database(config: Config) -> Database:
    database = Database(
        config.database_url.reveal(),
        min_size=config.db_pool_min,
        max_size=config.db_pool_max,
        name="coffeebuddy-web",
        # One 2 s wait for a connection per window, then answers at once (see db.py).
        fail_fast_seconds=WEB_FAIL_FAST_SECONDS,
    )
    database.open(wait=False)
    return database


def _ops_auth(config: Config) -> OpsAuth | None:
    """Bearer-token checks for /ops/, when an issuer and audience are configured."""
    if not (config.ops_issuer and config.ops_audience):
        return None
    verifier = JwtVerifier(
        config.ops_issuer,
        config.ops_audience,
        config.ops_scope,
        max_lifetime_seconds=config.ops_max_token_lifetime_seconds,
    )
    return OpsAuth(verifier)


def _add_slack_routes(
    app: falcon.App[falcon.Request, falcon.Response],
    config: Config,
    database: Database,
    slack: SlackGateway,
    clock: Callable[[], datetime],
) -> None:
    """The use cases, built once per process, behind Slack's three endpoints."""
    people = People(database, slack, config, clock)
    runs = RunService(database, slack, config, people=people, clock=clock)
    admin = AdminService(database, slack, config, people, clock)
    stats = StatsService(database, config, clock, people)
    commands = Commands(runs, admin, stats, PrivacyService(database))
    interactions = SlackInteractions(
        runs,
        admin,
        swap=SwapService(database),
        ratings=RatingService(database, config),
        stats=stats,
        response_urls=ResponseUrlPolicy.for_slack_api(
            config.slack_api_base_url, config.response_url_origins
        ),
    )
    app.add_route("/slack/commands", SlackCommands(commands))
    app.add_route("/slack/interactions", interactions)
    app.add_route("/slack/events", SlackEvents(HomeService(database)))
