"""Build the web app and the worker from the environment; fail fast on bad config."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NoReturn

import falcon
from slack_sdk import WebClient

from coffeebuddy import logs, preflight
from coffeebuddy.config import (
    Config,
    ConfigError,
    WorkerSettings,
    log_level,
    report_config_error,
)
from coffeebuddy.db import Database
from coffeebuddy.events.relay import start_relay
from coffeebuddy.jobs.context import Context
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.secrets import (
    SecretBundle,
    SecretKeeper,
    SecretSettings,
    SecretSource,
    load_secrets,
)
from coffeebuddy.service.people import People
from coffeebuddy.service.runs import RunService
from coffeebuddy.slack.api import make_client
from coffeebuddy.slack.budget import Budget
from coffeebuddy.slack.gateway import WebSlackGateway
from coffeebuddy.slack.response_url import ResponseUrlPolicy


def load_config(env: Mapping[str, str]) -> Config:
    try:
        return Config.from_environ(env)
    except ConfigError as exc:
        _die(exc)


def check_first(env: Mapping[str, str]) -> None:
    """Every configuration mistake visible before the secrets are read, named at once; then
    logging at the checked LOG_LEVEL (set up earlier, a bad level would be a traceback)."""
    try:
        preflight.check_config(env)
    except ConfigError as exc:
        _die(exc)
    logs.setup(log_level(env))


def _die(exc: ConfigError) -> NoReturn:
    # One clear line per mistake, then stop: a half-configured process must not serve.
    report_config_error(exc)
    raise SystemExit(2)


def environ_with_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """For one-shot commands (migrate, jobs): the secrets read once, no renewal thread.
    Raises ConfigError."""
    if SecretSettings.from_environ(env).source is SecretSource.ENV:
        return dict(env)
    return {**env, **load_secrets(env).as_environ()}


class SecretListeners:
    """Fans a rotated secret bundle out to whatever holds a copy of a secret (the signature
    check, the Slack clients), so a rotation takes effect without a restart."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[SecretBundle], None]] = []

    def add(self, listener: Callable[[SecretBundle], None]) -> None:
        self._listeners.append(listener)

    def __call__(self, bundle: SecretBundle) -> None:
        for listener in self._listeners:
            listener(bundle)

    def follow(self, keeper: SecretKeeper | None) -> None:
        # A rotation between the keeper's start and the listeners' registration is applied
        # now (each listener ignores values it already has).
        if keeper is not None:
            self(keeper.bundle)


def slack_token_listener(client: WebClient) -> Callable[[SecretBundle], None]:
    def swap(bundle: SecretBundle) -> None:
        # slack_sdk reads `token` on every call; one attribute store swaps it for all threads.
        client.token = bundle.slack_bot_token.reveal()

    return swap


def keep_secrets(
    env: Mapping[str, str], on_change: Callable[[SecretBundle], None] | None = None
) -> tuple[dict[str, str], SecretKeeper | None]:
    """The environment with the secrets filled in from Vault or the Vault Agent's files,
    and the keeper that renews them (None when they come from the environment itself,
    which is for local development only)."""
    try:
        if SecretSettings.from_environ(env).source is SecretSource.ENV:
            return dict(env), None
        keeper = SecretKeeper.from_environ(env, on_change=on_change).start()
    except ConfigError as exc:
        _die(exc)
    return {**env, **keeper.bundle.as_environ()}, keeper


def web_app(env: Mapping[str, str]) -> falcon.App[falcon.Request, falcon.Response]:
    from coffeebuddy.slack.gateway import WebSlackGateway
    from coffeebuddy.web.app import create_app
    from coffeebuddy.web.middleware import SigningSecrets

    check_first(env)
    listeners = SecretListeners()
    full_env, keeper = keep_secrets(env, on_change=listeners)
    config = load_config(full_env)
    logs.setup(config.log_level)
    signing = SigningSecrets(
        config.slack_signing_secret.reveal(), overlap_seconds=config.signing_secret_overlap_seconds
    )
    client = make_client(config, timeout=config.slack_timeout_seconds)
    listeners.add(lambda bundle: signing.rotate(bundle.slack_signing_secret.reveal()))
    listeners.add(slack_token_listener(client))
    listeners.follow(keeper)
    return create_app(
        config,
        slack=WebSlackGateway(client),
        signing_secrets=signing,
        secrets_ok=keeper.healthy if keeper else lambda: True,
    )


def response_url_policy(config: Config) -> ResponseUrlPolicy:
    return ResponseUrlPolicy.for_slack_api(config.slack_api_base_url, config.response_url_origins)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def build_worker(config: Config, settings: WorkerSettings | None = None) -> Worker:
    settings = settings or config.worker
    database = Database(
        config.database_url.reveal(),
        min_size=1,
        max_size=config.worker_concurrency + 2,
        name="coffeebuddy-worker",
    )
    database.open(wait=False)
    # Job handlers may wait longer for Slack than a request can; the worker renews the
    # leases of the jobs it runs.
    client = make_client(config, timeout=settings.slack_timeout_seconds)
    # Inboxed actions are applied by the same service the web uses; Slack calls it makes
    # (views.open for someone whose usual vanished) go through the worker's client.
    gateway = WebSlackGateway(client)
    people = People(database, gateway, config, _utcnow)
    context = Context(
        database=database,
        slack=client,
        response_urls=response_url_policy(config),
        channel_history=config.channel_post_dedupe,
        profile_ttl_seconds=config.profile_ttl_seconds,
        runs=RunService(database, gateway, config, people=people, clock=_utcnow),
        budget=Budget.from_settings(database, settings),
    )
    return Worker(config, database, context, settings)


def run_worker(env: Mapping[str, str]) -> int:
    check_first(env)
    listeners = SecretListeners()
    full_env, keeper = keep_secrets(env, on_change=listeners)
    config = load_config(full_env)
    logs.setup(config.log_level)
    if config.worker.nice:
        os.nice(config.worker.nice)
    worker = build_worker(config)
    listeners.add(slack_token_listener(worker.context.slack))
    listeners.follow(keeper)
    worker.install_signal_handlers()
    worker.serve_metrics()
    relay = start_relay(config)
    try:
        worker.run()
    finally:
        if relay is not None:
            relay.stop()
        if keeper is not None:
            keeper.stop()
        worker.database.close()
    return 0
