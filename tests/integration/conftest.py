"""Fixtures of the integration tests: workers looping in threads as the worker process does
(`looping`), people in the test channel driving the app (`chan`), and the ops API with the
OIDC issuer it trusts (`ops`, `issuer`). The worker factory (`make_worker`) is in
tests/conftest.py: the end-to-end tests use it too."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import falcon.testing
import pytest

from coffeebuddy.config import Config, WorkerSettings
from coffeebuddy.db import Database
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.web.app import create_app
from testkit.fakes.oidc_issuer import FakeIssuer
from testkit.fakes.slack_api import FakeSlack
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel, SqlFn


@pytest.fixture
def looping(make_worker: Callable[..., Worker]) -> Iterator[Callable[[WorkerSettings], Worker]]:
    """Start workers that loop in a thread, as `python worker.py` does; stopped at the end."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(settings: WorkerSettings) -> Worker:
        worker = make_worker(worker_poll_seconds=30)
        worker.settings = settings
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.fixture
def chan(web: SignedClient, worker: Worker, sql: SqlFn, slack: FakeSlack) -> Channel:
    """The test channel, with the app, a worker and the fake Slack behind it."""
    return Channel(web, worker, sql, CHANNEL, slack)


@pytest.fixture
def inbox_chan(
    config: Config,
    app_database: Database,
    make_worker: Callable[..., Worker],
    sql: SqlFn,
    slack: FakeSlack,
) -> Channel:
    """The test channel with the inbox on: the app queues what people send and a worker
    applies it. This worker only drains the inbox when a test asks (run_until_idle)."""
    inbox_config = replace(config, inbox=True)
    return Channel(
        SignedClient(create_app(inbox_config, database=app_database)),
        make_worker(inbox=True),
        sql,
        CHANNEL,
        slack,
    )


@pytest.fixture
def issuer() -> Iterator[FakeIssuer]:
    """An OIDC issuer whose tokens the ops API accepts (see `ops`)."""
    fake = FakeIssuer().start()
    yield fake
    fake.stop()


@pytest.fixture
def ops(config: Config, app_database: Database, issuer: FakeIssuer) -> falcon.testing.TestClient:
    """The app with its ops API on, trusting `issuer`."""
    configured = replace(config, ops_issuer=issuer.url, ops_audience="coffeebuddy-ops")
    return falcon.testing.TestClient(create_app(configured, database=app_database))
