"""The floor: the least any Slack endpoint on this stack can do, to compare CoffeeBuddy with.

A Falcon WSGI app that, for every POST under /slack/, checks Slack's signature over the raw
body with slack_sdk's `SignatureVerifier` (as `coffeebuddy.web.middleware` does), does ONE
insert into a tiny table over a psycopg pool, and answers 200 with a small JSON body. It is
served by the same gunicorn, with the same `gunicorn.conf.py` and worker count, as the
service (see `serve_floor`), so what CoffeeBuddy costs above it is CoffeeBuddy's own work.

    gunicorn 'bench.floor_app:create_app()' --config gunicorn.conf.py
    # env: DATABASE_URL, SLACK_SIGNING_SECRET, GUNICORN_BIND, GUNICORN_WORKERS
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import falcon
import psycopg
from psycopg_pool import ConnectionPool
from slack_sdk.signature import SignatureVerifier

from testkit.processes import free_port, reap

ROOT = Path(__file__).resolve().parents[1]
TABLE = "floor_hits"
SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY,"
    " received_at timestamptz NOT NULL DEFAULT now(), path text NOT NULL, bytes int NOT NULL)"
)
FLOOR_APP_NAME = "coffeebuddy-floor"  # its backends' application_name, for bench.cpu
MAX_BODY_BYTES = 64 * 1024  # as CoffeeBuddy's default COFFEEBUDDY_MAX_BODY_BYTES


class SlackEndpoint:
    def __init__(self, verifier: SignatureVerifier, pool: ConnectionPool) -> None:
        self._verifier = verifier
        self._pool = pool

    def on_post(self, req: falcon.Request, resp: falcon.Response, kind: str) -> None:
        body = req.bounded_stream.read(MAX_BODY_BYTES + 1)
        timestamp = req.get_header("X-Slack-Request-Timestamp") or ""
        signature = req.get_header("X-Slack-Signature") or ""
        if not (
            len(body) <= MAX_BODY_BYTES
            and timestamp.isdigit()
            and self._verifier.is_valid(body, timestamp, signature)
        ):
            raise falcon.HTTPUnauthorized(title="Invalid Slack signature")
        with self._pool.connection() as conn:
            conn.execute(f"INSERT INTO {TABLE} (path, bytes) VALUES (%s, %s)", (kind, len(body)))
        resp.media = {"ok": True}


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


def create_app(env: Mapping[str, str] | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    """The WSGI app; gunicorn calls this factory in each worker (`create_app()`)."""
    env = os.environ if env is None else env
    pool = ConnectionPool(
        env["DATABASE_URL"],
        min_size=1,
        max_size=2,
        open=False,
        kwargs={"application_name": FLOOR_APP_NAME},
    )
    pool.open(wait=True)
    app = falcon.App()
    app.add_route(
        "/slack/{kind}", SlackEndpoint(SignatureVerifier(env["SLACK_SIGNING_SECRET"]), pool)
    )
    app.add_route("/health", Health())
    return app


@contextmanager
def serve_floor(
    database_url: str,
    signing_secret: str,
    *,
    web_workers: int,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """The floor app on gunicorn, started as `testkit.processes.start_service` starts the
    service's (same interpreter, config file and worker count); yields its base URL."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="cb-floor-")) / "web.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "SLACK_SIGNING_SECRET": signing_secret,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(web_workers),
        **(extra_env or {}),
    }
    with log.open("wb") as out:
        web = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "bench.floor_app:create_app()",
                "--config", "gunicorn.conf.py",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(base + "/health", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or web.poll() is not None:
                    raise RuntimeError("the floor app never became ready:\n" + log.read_text())
                time.sleep(0.1)
            yield base
        finally:
            if web.poll() is None:
                web.send_signal(signal.SIGTERM)
            reap(web, timeout=30)
            shutil.rmtree(log.parent, ignore_errors=True)
