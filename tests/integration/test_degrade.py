"""When the database goes away the service degrades instead of failing hard: Slack users get
a clear "try again" answer within Slack's deadline, readiness goes 503, nothing is half
written, and everything recovers by itself once the database is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from coffeebuddy.config import Config, Secret
from coffeebuddy.db import Database
from coffeebuddy.slack import run_blocks
from coffeebuddy.web.app import create_app
from testkit.fakes.slack_api import FakeSlack
from tests.conftest import CHANNEL, SignedClient
from tests.driver import Channel
from tests.tcp_proxy import TcpProxy

DB_DOWN = "CoffeeBuddy can't reach its database right now, try again in a minute."
# Slack shows an error to the user after 3 s; our answer must come well before.
SLACK_DEADLINE_SECONDS = 3.0


@pytest.fixture
def proxy(database_url: str) -> Iterator[TcpProxy]:
    parts = urlsplit(database_url)
    tcp = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield tcp
    tcp.close()


@pytest.fixture
def proxied(config: Config, proxy: TcpProxy, database_url: str) -> Iterator[SignedClient]:
    parts = urlsplit(database_url)
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    url = urlunsplit(parts._replace(netloc=netloc))
    database = Database(url, min_size=1, max_size=2, timeout=1.0, name="test-degrade")
    database.open(wait=True)
    yield SignedClient(create_app(replace(config, database_url=Secret(url)), database=database))
    database.close()


def test_database_outage_degrades_and_recovers(
    proxied: SignedClient, proxy: TcpProxy, worker: Any, sql: Any, slack: FakeSlack
) -> None:
    chan = Channel(proxied, worker, sql, CHANNEL, slack)
    run_id = chan.start("U0ANA", "Lobby")
    chan.submit("U0BEN", "flat white")
    assert proxied.get("/health/ready").status_code == 200
    before = sql("SELECT count(*) FROM orders")

    proxy.cut()
    started = time.monotonic()
    answer = chan.command("U0CAT", "in 20m")
    assert time.monotonic() - started < SLACK_DEADLINE_SECONDS
    assert answer["text"] == DB_DOWN
    assert chan.submit("U0CAT", "tea", run_id=run_id) == {
        "response_action": "errors",
        "errors": {"order": DB_DOWN},
    }
    chan.click("U0DAN", run_blocks.ACTION_USE_USUAL, run_id)
    assert DB_DOWN in chan.told("U0DAN")
    assert proxied.get("/health/ready").status_code == 503
    # Nothing was half written while the database was away.
    assert sql("SELECT count(*) FROM orders") == before
    assert sql("SELECT count(*) FROM runs") == [(1,)]

    proxy.restore()
    deadline = time.monotonic() + 20
    while proxied.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "readiness never recovered"
        time.sleep(0.2)
    assert chan.submit("U0CAT", "tea", run_id=run_id) is None
    chan.work()  # the worker applies what the inbox acknowledged
    assert sql("SELECT count(*) FROM orders WHERE run_id = %s AND canceled_at IS NULL", run_id) == [
        (2,)
    ]


def test_after_a_failure_the_web_database_answers_at_once_for_a_moment(
    proxy: TcpProxy, database_url: str
) -> None:
    """With the database down, a second caller is not made to wait out the pool timeout
    again (sync web workers would queue behind such waits past Slack's deadline); after
    the window a call tries the database again, and finds it back."""
    parts = urlsplit(database_url)
    url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    database = Database(url, min_size=0, max_size=1, timeout=0.5, fail_fast_seconds=0.5)
    database.open(wait=False)
    asked: list[int] = []
    real = database.pool.connection

    def counting(*args: Any, **kwargs: Any) -> Any:
        asked.append(1)
        return real(*args, **kwargs)

    database.pool.connection = counting  # type: ignore[method-assign]
    try:
        proxy.cut()
        assert database.ping() is False
        assert database.ping() is False
        assert len(asked) == 1  # the second failed without asking the pool
        proxy.restore()
        deadline = time.monotonic() + 10
        while not database.ping():
            assert time.monotonic() < deadline, "the database never came back"
            time.sleep(0.1)
        assert len(asked) >= 2
    finally:
        database.close()
