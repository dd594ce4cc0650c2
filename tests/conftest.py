"""Shared fixtures: a real Postgres (one fresh database per test, cloned from a migrated
template), the fake Slack Web API, the Falcon app and a worker wired to both."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import falcon.testing
import psycopg
import pytest

from coffeebuddy.config import Config, Secret, WorkerSettings
from coffeebuddy.db import Database
from coffeebuddy.db.migrate import migrate
from coffeebuddy.entry import build_worker
from coffeebuddy.jobs.worker import Worker
from coffeebuddy.web.app import create_app
from testkit import BOT_TOKEN
from testkit.databases import ADMIN_URL, db_url, scratch_database
from testkit.fakes.slack_api import FakeSlack
from testkit.slack_payloads import SIGNING_SECRET, sign
from tests import contract

CHANNEL = "C0COFFEE01"
USERS = ("U0ANA", "U0BEN", "U0CAT", "U0DAN", "U0EVE", "U0FAY", "U0GUS")


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    name = f"cb_tpl_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(db_url(name))
    yield name
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(template_db: str) -> Iterator[str]:
    with scratch_database("cb_t", template=template_db) as url:
        yield url
        # Whatever a test made the code write, the event contract must allow it.
        broken = contract.check_outbox(url)
    assert not broken, "events outside their schema (events/schemas/):\n" + "\n".join(broken)


@pytest.fixture
def sql(database_url: str) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    """Run SQL against the test database and get rows back (for assertions)."""
    conn = psycopg.connect(database_url, autocommit=True)

    def query(text: str, *params: Any) -> list[tuple[Any, ...]]:
        cur = conn.execute(text, params or None)
        return cur.fetchall() if cur.description else []

    yield query
    conn.close()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(token=BOT_TOKEN)
    fake.start()
    fake.add_channel(CHANNEL, name="coffee")
    for user in USERS:
        fake.add_user(user, name=user.lower()[2:], tz="Europe/Berlin")
    yield fake
    fake.stop()


@pytest.fixture
def config(database_url: str, slack: FakeSlack) -> Config:
    return Config(
        database_url=Secret(database_url),
        slack_signing_secret=Secret(SIGNING_SECRET),
        slack_bot_token=Secret(BOT_TOKEN),
        slack_api_base_url=slack.base_url,
        admin_user_ids=frozenset({"U0ADMIN"}),
        # Integration tests run jobs as soon as they are written; coalescing has its own test.
        refresh_coalesce_ms=0,
        # ...and the paced kinds (inboxed actions, run messages) as soon as they arrive;
        # waiting for a burst to end has its own tests (tests/integration/test_pacing.py).
        burst_quiet_ms=0,
        db_pool_min=0,
        db_pool_max=4,
        # Jobs run back to back here, far faster than Slack's limits allow: the shared rate
        # budget has its own tests (tests/integration/test_budget.py) and the e2e tests
        # run with it on.
        worker=WorkerSettings(slack_budget=False),
    )


class SignedClient:
    """Posts to the app exactly as Slack would: form-encoded and signed."""

    def __init__(self, app: Any) -> None:
        self.client = falcon.testing.TestClient(app)

    def post(self, path: str, body: bytes, **sign_kwargs: Any) -> falcon.testing.Result:
        return self.client.simulate_post(path, body=body, headers=sign(body, **sign_kwargs))

    def get(self, path: str) -> falcon.testing.Result:
        return self.client.simulate_get(path)


@pytest.fixture
def app_database(config: Config) -> Iterator[Database]:
    database = Database(config.database_url.reveal(), min_size=0, max_size=4, name="test-web")
    database.open(wait=False)
    yield database
    database.close()


@pytest.fixture
def web(config: Config, app_database: Database) -> SignedClient:
    return SignedClient(create_app(config, database=app_database))


@pytest.fixture
def make_worker(config: Config) -> Iterator[Callable[..., Worker]]:
    """Workers on the test's configuration, with any setting overridden; closed at the end."""
    made: list[Worker] = []

    def factory(**overrides: Any) -> Worker:
        worker = build_worker(replace(config, **overrides))
        made.append(worker)
        return worker

    yield factory
    for worker in made:
        worker.database.close()


@pytest.fixture
def worker(make_worker: Callable[..., Worker]) -> Worker:
    return make_worker()
