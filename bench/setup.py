"""What the HTTP benchmarks share: a fresh migrated database, the fake Slack with the
benchmark's channels and people, and the real service (gunicorn + worker) on top."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from coffeebuddy.db.migrate import migrate
from testkit.databases import scratch_database
from testkit.fakes.slack_api import FakeSlack
from testkit.processes import HttpClient, start_service


@dataclass(frozen=True)
class Bench:
    client: HttpClient
    slack: FakeSlack
    url: str
    channels: list[str]
    users: list[str]


def add_inbox_option(parser: argparse.ArgumentParser) -> None:
    """`--inbox on|off`: the benchmarks that drive the HTTP service measure either path."""
    parser.add_argument(
        "--inbox",
        choices=("on", "off"),
        default="on",
        help="COFFEEBUDDY_INBOX for the service (on, its default; off: the request applies)",
    )


@contextmanager
def bench_service(
    channel_prefix: str,
    channels: int,
    *,
    users: int = 30,
    web_workers: int = 2,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[Bench]:
    with scratch_database("cb_bench") as url:
        migrate(url)
        with _serve(url, channel_prefix, channels, users, web_workers, extra_env, workers) as bench:
            yield bench


@contextmanager
def _serve(
    url: str,
    channel_prefix: str,
    channels: int,
    users: int,
    web_workers: int,
    extra_env: dict[str, str] | None,
    workers: int = 1,
) -> Iterator[Bench]:
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
            url, slack.base_url, web_workers=web_workers, extra_env=extra_env, workers=workers
        ) as service:
            yield Bench(service.client, slack, url, channel_ids, user_ids)
    finally:
        slack.stop()


def wait_for_no_due_jobs(
    conn: psycopg.Connection[Any], *, ahead: str, timeout: float, every: float
) -> bool:
    """Wait (at most `timeout` seconds) until no job is queued or running that is due within
    `ahead` (an SQL interval): the worker is done with what came before. True when it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
            " AND run_at <= now() + %s::interval",
            (ahead,),
        ).fetchone()
        if row is not None and row[0] == 0:
            return True
        time.sleep(every)
    return False
