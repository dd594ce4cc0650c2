"""Command line: `python -m coffeebuddy migrate | serve | jobs list | jobs retry | events tail`."""

from __future__ import annotations

import argparse
import os
import sys

import psycopg

from coffeebuddy import logs, preflight
from coffeebuddy.config import ConfigError, log_level, report_config_error
from coffeebuddy.entry import environ_with_secrets
from coffeebuddy.events import tail as event_tail
from coffeebuddy.jobs import cli as jobs_cli
from coffeebuddy.local import embedded
from coffeebuddy.secrets import load_database_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coffeebuddy")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending SQL migrations (DATABASE_URL)")
    serve = sub.add_parser(
        "serve", help="run web + worker locally (embedded Postgres when DATABASE_URL is unset)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="listen on this port (PORT, GUNICORN_BIND; 8080)"
    )
    serve.add_argument(
        "--web-workers", type=int, default=None, help="gunicorn workers (GUNICORN_WORKERS; 2)"
    )
    jobs_cli.add_parser(sub)
    event_tail.add_parser(sub)
    args = parser.parse_args(argv)

    if args.command == "migrate":
        return _migrate()
    if args.command == "events":
        # Kafka needs no secret here: no Vault round trip for a debugging tool.
        return event_tail.run(args, os.environ)
    try:
        if args.command == "serve":
            return _serve(args.port, args.web_workers)
        log_level(os.environ)  # a bad LOG_LEVEL is named like every other mistake
        # Vault or the Vault Agent's files may hold DATABASE_URL.
        env = environ_with_secrets(os.environ)
    except ConfigError as exc:
        report_config_error(exc)
        return 2
    if args.command == "jobs":
        if not env.get("DATABASE_URL", "").strip():
            # What `scripts/run` started, when it runs: the README's commands work as written.
            url = embedded.running_url(env)
            if url is not None:
                env["DATABASE_URL"] = url
        # Output for a person at a terminal, not JSON log lines.
        return jobs_cli.run(args, env)
    return 2


def _migrate() -> int:
    from coffeebuddy.db.migrate import MigrationError, migrate

    try:
        level = log_level(os.environ)
        # The migration Job's pod holds only the database URL (Vault Agent file or env).
        url = load_database_url(os.environ)
    except ConfigError as exc:
        report_config_error(exc)
        return 2
    logs.setup(level)
    try:
        applied = migrate(url)
    except psycopg.OperationalError as exc:
        print(preflight.database_unreachable(url, exc), file=sys.stderr)
        return 3
    except MigrationError as exc:
        print(f"coffeebuddy: migration error: {exc}", file=sys.stderr)
        return 1
    print(f"migrations applied: {', '.join(applied) if applied else 'none (schema current)'}")
    return 0


def _serve(port: int | None, web_workers: int | None) -> int:
    from coffeebuddy.local.devserver import ServeSettings, serve

    problems: list[str] = []
    settings = None
    try:
        settings = ServeSettings.from_environ(os.environ, port=port, web_workers=web_workers)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        # The embedded database stands in for an unset DATABASE_URL.
        preflight.check_config(os.environ, stand_ins={"DATABASE_URL": "postgresql://embedded/x"})
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems or settings is None:
        report_config_error(ConfigError(*problems))
        return 2
    logs.setup(log_level(os.environ))
    try:
        return serve(os.environ, settings)
    except ConfigError as exc:
        report_config_error(exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
