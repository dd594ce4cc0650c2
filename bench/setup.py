"""What the HTTP benchmarks share: a fresh migrated database, the fake Slack with the
benchmark's channels and people, and the real service (gunicorn + worker) on top."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from coffeebuddy.db.migrate import migrate
from tests.fakes.slack_api import FakeSlack
from tests.processes import HttpClient, start_service

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Bench:
    client: HttpClient
    slack: FakeSlack
    url: str
    channels: list[str]
    users: list[str]


@contextmanager
def bench_service(
    channel_prefix: str,
    channels: int,
    *,
    users: int = 30,
    web_workers: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Bench]:
    db_name = f"cb_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    url = f"{ADMIN_URL.rpartition('/')[0]}/{db_name}"
    migrate(url)
    slack = FakeSlack(token="xoxb-test-0000-bot-token")
    slack.start()
    channel_ids = [f"{channel_prefix}{i:04d}" for i in range(channels)]
    user_ids = [f"U0{channel_prefix[2]}{i:03d}" for i in range(users)]
    for channel in channel_ids:
        slack.add_channel(channel, name=channel.lower())
    for user in user_ids:
        slack.add_user(user, tz="Europe/Berlin")
    try:
        with start_service(
            url, slack.base_url, web_workers=web_workers, extra_env=extra_env
        ) as service:
            yield Bench(service.client, slack, url, channel_ids, user_ids)
    finally:
        slack.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
