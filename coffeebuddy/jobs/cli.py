"""`python -m coffeebuddy jobs list|retry`: what operators need to see and re-run jobs.

Talks to the database in DATABASE_URL over one short connection; without it, to the
embedded database of a running `scripts/run` (found under COFFEEBUDDY_STATE_DIR). Never
prints a payload: payloads can hold response URLs, which let anyone holding them post as the app.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import UTC
from typing import TextIO

import psycopg
from psycopg.rows import dict_row

from coffeebuddy import preflight
from coffeebuddy.config import ConfigError, report_config_error
from coffeebuddy.db import Conn
from coffeebuddy.jobs.kinds import KINDS, allowed_attempts
from coffeebuddy.store import queue
from coffeebuddy.store.queue import JobInfo


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = sub.add_parser("jobs", help="list jobs, re-run dead ones (DATABASE_URL)")
    actions = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = actions.add_parser("list", help="newest jobs first (no payloads)")
    listing.add_argument("--status", choices=queue.STATUSES)
    listing.add_argument("--limit", type=_limit, default=50, help="at most this many (50)")
    retry = actions.add_parser(
        "retry", help="put dead jobs back in the queue, due now with fresh attempts"
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "ids", nargs="*", type=_job_id, default=[], metavar="ID", help="dead job ids"
    )
    which.add_argument("--all-dead", action="store_true", help="every dead job")


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return value


def _job_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a job id: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a job id: {text!r}")
    return value


def run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO | None = None) -> int:
    out = out or sys.stdout
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        report_config_error(
            ConfigError(
                "DATABASE_URL is required but not set (and no scripts/run database is running)"
            )
        )
        return 2
    if args.jobs_command == "retry" and not args.all_dead and not args.ids:
        print("coffeebuddy: give job ids, or --all-dead", file=sys.stderr)
        return 2
    try:
        with psycopg.connect(url, row_factory=dict_row, connect_timeout=5) as conn:
            if args.jobs_command == "list":
                return _list(conn, args.status, args.limit, out)
            return _retry(conn, None if args.all_dead else args.ids, out)
    except psycopg.OperationalError as exc:
        print(preflight.database_unreachable(url, exc), file=sys.stderr)
        return 3
    except psycopg.errors.UndefinedTable:
        print(
            "coffeebuddy: the database has no job queue yet; run `python -m coffeebuddy "
            "migrate` (scripts/run does) first",
            file=sys.stderr,
        )
        return 3


def _list(conn: Conn, status: str | None, limit: int, out: TextIO) -> int:
    jobs = queue.list_jobs(conn, status=status, limit=limit)
    if not jobs:
        print(f"no {status} jobs" if status else "no jobs", file=out)
        return 0
    print(_table(jobs), file=out)
    return 0


def _table(jobs: list[JobInfo]) -> str:
    header = ("ID", "KIND", "STATUS", "ATTEMPTS", "RUN_AT (UTC)", "LAST_ERROR")
    rows = [
        (
            str(j.id),
            j.kind,
            j.status,
            f"{j.attempts}/{allowed_attempts(KINDS.get(j.kind), j.max_attempts)}",
            j.run_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            j.last_error or "-",
        )
        for j in jobs
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(r, widths, strict=False)), r[-1]])
        for r in [header, *rows]
    )


def _retry(conn: Conn, ids: list[int] | None, out: TextIO) -> int:
    revived = queue.retry_dead(conn, ids)
    for job_id, kind in revived:
        print(f"job {job_id} ({kind}) queued again", file=out)
    if ids is None:
        if not revived:
            print("no dead jobs", file=out)
        return 0
    done = {job_id for job_id, _ in revived}
    left = [i for i in dict.fromkeys(ids) if i not in done]
    if not left:
        return 0
    found = queue.statuses(conn, left)
    for job_id in left:
        status = found.get(job_id)
        if status is None:
            print(f"job {job_id}: no such job", file=sys.stderr)
        elif status != "dead":
            print(
                f"job {job_id} is {status}, not dead: only dead jobs can be retried",
                file=sys.stderr,
            )
        else:
            print(
                f"job {job_id}: a queued job with the same key will do its work; left dead",
                file=sys.stderr,
            )
    return 1
