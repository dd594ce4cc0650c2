"""Connection pool, transactions, and the named queries in `sql/queries/*.sql`.

Queries are plain SQL a DBA can read, in blocks headed `-- name: some_query`. They are
loaded once at import time of `Queries`; asking for a name that does not exist is a bug
and fails loudly (a test checks every name the code uses).
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
QUERIES_DIR = SQL_DIR / "queries"
MIGRATIONS_DIR = SQL_DIR / "migrations"

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)

Conn = psycopg.Connection[DictRow]


class DatabaseUnavailable(Exception):
    """The database could not be reached (pool timeout or connection failure)."""


def load_queries(directory: Path = QUERIES_DIR) -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        parts = _NAME_LINE.split(text)
        # parts = [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise ValueError(f"query {name!r} defined twice (second in {path.name})")
            queries[name] = body.strip().rstrip(";")
    return queries


class Queries:
    """Named SQL, loaded once."""

    def __init__(self, queries: Mapping[str, str] | None = None) -> None:
        self._queries = dict(queries if queries is not None else load_queries())

    def __getitem__(self, name: str) -> LiteralString:
        try:
            # The text comes from our own .sql files, never from input.
            return self._queries[name]
        except KeyError:
            raise KeyError(f"no SQL query named {name!r} in {QUERIES_DIR}") from None

    def names(self) -> frozenset[str]:
        return frozenset(self._queries)


QUERIES = Queries()


def _check_idle(conn: Conn) -> None:
    """The pool's check on checkout, without a round trip for a live connection: an idle
    connection has nothing to read unless the server closed it or said goodbye (a restart
    sends FATAL and closes the socket; a cut link shows as EOF). Only then does it pay for
    psycopg's real check, which raises and makes the pool take another connection. The
    rare failure this misses (a link lost without a FIN) surfaces as DatabaseUnavailable
    on first use, and the broken connection is discarded when it returns to the pool."""
    try:
        readable = bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):
        readable = True
    if readable or conn.closed:
        ConnectionPool.check_connection(conn)


class Database:
    """The pool plus helpers that run named queries inside one transaction."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        timeout: float = 2.0,
        name: str = "coffeebuddy",
        fail_fast_seconds: float = 0.0,
    ) -> None:
        self.conninfo = conninfo
        # After a failure, fail at once for this long instead of waiting out the pool
        # timeout again: with the database down, a web worker answering "try again" within
        # Slack's 3 s must not queue its requests behind one 2 s wait after another.
        self.fail_fast_seconds = fail_fast_seconds
        self._down_until = 0.0
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            name=name,
            open=False,
            connection_class=psycopg.Connection[DictRow],
            kwargs={"row_factory": dict_row, "application_name": name, "connect_timeout": 3},
            # A connection that died while the database restarted is replaced, not reused;
            # telling costs no round trip (see `_check_idle`).
            check=_check_idle,
            reconnect_timeout=0,
        )

    def open(self, wait: bool = False) -> None:
        # Opening without waiting lets the process start (and answer health checks)
        # while the database is still down.
        self.pool.open(wait=wait)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        if self.fail_fast_seconds and time.monotonic() < self._down_until:
            raise DatabaseUnavailable("the database was unreachable a moment ago")
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            # A deadlock or a canceled statement says nothing about reachability.
            if not isinstance(
                exc, psycopg.errors.TransactionRollback | psycopg.errors.QueryCanceled
            ):
                self._down_until = time.monotonic() + self.fail_fast_seconds
            raise DatabaseUnavailable(str(exc)) from exc

    @contextmanager
    def statement(self) -> Iterator[Conn]:
        """A connection for one statement that is a transaction by itself (autocommit):
        no BEGIN and COMMIT round trips around it."""
        with self.transaction() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = False

    def ping(self) -> bool:
        try:
            with self.transaction() as conn:
                conn.execute("SELECT 1")
            return True
        except DatabaseUnavailable:
            return False


def one(conn: Conn, name: str, params: Mapping[str, Any] | None = None) -> DictRow | None:
    return conn.execute(QUERIES[name], params or {}).fetchone()


def all_rows(conn: Conn, name: str, params: Mapping[str, Any] | None = None) -> list[DictRow]:
    return conn.execute(QUERIES[name], params or {}).fetchall()


def run(conn: Conn, name: str, params: Mapping[str, Any] | None = None) -> int:
    cur = conn.execute(QUERIES[name], params or {})
    return cur.rowcount
