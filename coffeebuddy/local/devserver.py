"""`python -m coffeebuddy serve`: the whole service on one machine for development.

Starts an embedded Postgres when DATABASE_URL is unset, applies migrations, then runs
gunicorn (the web app) and the worker as child processes until either exits or the runner
is told to stop: Ctrl-C, SIGTERM (`kill`, `timeout`) or SIGHUP (a closed terminal) all stop
everything it started. Children also get SIGTERM from the kernel if the runner itself is
killed, and a reaper stops the embedded Postgres then.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import psycopg

from coffeebuddy import preflight
from coffeebuddy.config import (
    ConfigError,
    Problems,
    ServeEnv,
    WorkerSettings,
    load_field,
    read,
)
from coffeebuddy.db.migrate import MigrationError, migrate
from coffeebuddy.local import embedded

ROOT = Path(__file__).resolve().parents[2]
LOCAL_HOST = "127.0.0.1"
DEFAULT_HOST = LOCAL_HOST  # local use: not reachable from other machines
_PR_SET_PDEATHSIG = 1
# The web endpoints Slack is pointed at (the manifest's request URLs).
SLACK_PATHS = "/slack/commands, /slack/interactions, /slack/events"


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    web_workers: int
    # The worker's /metrics port (0: none), checked here as the web port is.
    worker_metrics_port: int = 0

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_environ(
        cls, env: Mapping[str, str], *, port: int | None = None, web_workers: int | None = None
    ) -> ServeSettings:
        """GUNICORN_BIND, else 127.0.0.1 and PORT; --port replaces the port of either.
        GUNICORN_WORKERS, unless --web-workers says otherwise. Raises ConfigError."""
        problems = Problems()
        listen = read(ServeEnv, env, problems)
        metrics_port = load_field(WorkerSettings, "metrics_port", env, problems)
        problems.check()
        host, bound_port = listen.bind or (DEFAULT_HOST, listen.port)
        if port is not None and not 1 <= port <= 65535:
            raise ConfigError(f"--port must be between 1 and 65535, got {port}")
        if web_workers is not None and not 1 <= web_workers <= 64:
            raise ConfigError(f"--web-workers must be between 1 and 64, got {web_workers}")
        return cls(
            host=host,
            port=port or bound_port,
            web_workers=web_workers or listen.web_workers,
            worker_metrics_port=metrics_port,
        )


class PortInUse(Exception):
    pass


def check_ports(settings: ServeSettings) -> None:
    """Fail before starting anything when a port is taken: gunicorn would print
    "Connection in use" five times and exit, after the banner claimed it was serving."""
    _check_port(settings.host, settings.port, "PORT, --port or GUNICORN_BIND")
    if settings.worker_metrics_port:
        _check_port(
            LOCAL_HOST, settings.worker_metrics_port, "COFFEEBUDDY_WORKER_METRICS_PORT (0: none)"
        )


def _check_port(host: str, port: int, setting: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gunicorn does, so a port in TIME_WAIT after the last run counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise PortInUse(
                f"coffeebuddy: port {port} on {host} {reason}; stop what holds it or choose "
                f"another port with {setting}"
            ) from None


class Stop(BaseException):
    """A stop signal arrived; unwinds whatever is starting, like KeyboardInterrupt."""


def _die_with_parent(parent: int) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        # The kernel sends SIGTERM to the child when the runner dies, even by SIGKILL.
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(1)

    return preexec


def serve(env: Mapping[str, str], settings: ServeSettings) -> int:
    """Run everything until stopped; the exit status: 0 after a requested stop, 2 for a
    configuration mistake, 3 when the database can't be reached, else a child's status."""
    env = dict(env)
    # The worker's /metrics, like the web, is for this machine only unless asked otherwise.
    env.setdefault("COFFEEBUDDY_WORKER_METRICS_HOST", LOCAL_HOST)
    embedded_db = not env.get("DATABASE_URL", "").strip()
    # Everything wrong with the configuration, before anything starts.
    preflight.check_config(
        env, stand_ins={"DATABASE_URL": "postgresql://embedded/coffeebuddy"} if embedded_db else {}
    )
    try:
        check_ports(settings)
    except PortInUse as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2

    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        first = not stopping
        stopping.append(signum)
        if first:
            raise Stop

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        # `nohup` or `cmd &` in a script ignore SIGINT/SIGHUP on purpose: keep it so.
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, on_signal)

    children: list[subprocess.Popen[bytes]] = []
    tmp = tempfile.mkdtemp(prefix="coffeebuddy-run-")
    reaper: subprocess.Popen[bytes] | None = None
    code = 0
    try:
        reaper = _start_reaper(env, tmp, embedded_db)
        failed = _prepare_database(env, embedded_db)
        if failed is not None:
            return failed
        code = _run_children(settings, env, tmp, children)
    except Stop:
        code = 0
    finally:
        # Further signals only note themselves: the clean-up below must run to the end.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, lambda signum, frame: stopping.append(signum))
        _stop(children)
        if embedded_db:
            embedded.stop(env)
        shutil.rmtree(tmp, ignore_errors=True)
        if reaper is not None:
            # Everything is cleaned up: the reaper (waiting for this process) has no work.
            reaper.terminate()
            reaper.wait()
    return code


def _start_reaper(env: Mapping[str, str], tmp: str, embedded_db: bool) -> subprocess.Popen[bytes]:
    """What cleans up after this process if it dies without doing so itself."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "coffeebuddy.local.reaper", str(os.getpid()), tmp,
            *([str(embedded.state_dir(env))] if embedded_db else []),
        ],
        cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip


def _prepare_database(env: dict[str, str], embedded_db: bool) -> int | None:
    """Start the embedded Postgres if there is no DATABASE_URL (setting it in `env`), then
    migrate; the exit status when that failed, else None."""
    if embedded_db:
        try:
            env["DATABASE_URL"] = embedded.start(env)
        except (OSError, subprocess.SubprocessError, psycopg.Error) as exc:
            print(
                f"coffeebuddy: the embedded Postgres did not start: "
                f"{embedded.describe_failure(exc)} (its log: {embedded.pgdata(env) / 'log'};"
                " LOG_LEVEL=DEBUG shows more)",
                file=sys.stderr,
            )
            return 3
        print(f"coffeebuddy: embedded Postgres in {embedded.pgdata(env)}", flush=True)
        print(f"coffeebuddy: DATABASE_URL={env['DATABASE_URL']}", flush=True)
    try:
        migrate(env["DATABASE_URL"])
    except psycopg.OperationalError as exc:
        print(preflight.database_unreachable(env["DATABASE_URL"], exc), file=sys.stderr)
        return 3
    except MigrationError as exc:
        print(f"coffeebuddy: migration error: {exc}", file=sys.stderr)
        return 1
    return None


def _run_children(
    settings: ServeSettings,
    env: dict[str, str],
    tmp: str,
    children: list[subprocess.Popen[bytes]],
) -> int:
    """Start the web and the worker (into `children`) and wait until one of them exits;
    its status."""
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir = os.path.join(tmp, "metrics")
    os.mkdir(metrics_dir)
    env["TMPDIR"] = tmp  # what the children leave behind goes with the runner
    children.append(_start(_gunicorn(settings), env))
    children.append(_start([sys.executable, str(ROOT / "worker.py")], env))
    print(
        f"coffeebuddy: web on http://{settings.bind} (Slack request URLs: {SLACK_PATHS}), "
        "worker running. Ctrl-C stops everything.",
        flush=True,
    )
    while all(child.poll() is None for child in children):
        time.sleep(0.2)
    return max((child.returncode or 0) for child in children)


def _gunicorn(settings: ServeSettings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "app:app",
        "--bind",
        settings.bind,
        "--workers",
        str(settings.web_workers),
        "--config",
        str(ROOT / "gunicorn.conf.py"),
    ]


def _start(argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        # Their own process group: a terminal's Ctrl-C reaches only the runner, which stops
        # them in order (web and worker finish what they are doing, then the database).
        process_group=0,
        preexec_fn=_die_with_parent(os.getpid()),  # no threads here yet
    )


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # Its process group: a gunicorn master that hangs also leaves its workers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
