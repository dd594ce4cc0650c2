"""Command line: `python -m coffeebuddy migrate | serve | jobs list | jobs retry | events tail`."""

from __future__ import annotations

import argparse
import os
import sys

from coffeebuddy import event_tail, logs
from coffeebuddy.config import ConfigError
from coffeebuddy.entry import environ_with_secrets
from coffeebuddy.jobs import cli as jobs_cli
from coffeebuddy.secrets import load_database_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coffeebuddy")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending SQL migrations (DATABASE_URL)")
    serve = sub.add_parser(
        "serve", help="run web + worker locally (embedded Postgres when DATABASE_URL is unset)"
    )
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    serve.add_argument("--web-workers", type=int, default=2)
    jobs_cli.add_parser(sub)
    event_tail.add_parser(sub)
    args = parser.parse_args(argv)

    if args.command == "serve":
        return _serve(args.port, args.web_workers)
    if args.command == "migrate":
        return _migrate()
    if args.command == "events":
        # Kafka needs no secret here: no Vault round trip for a debugging tool.
        return event_tail.run(args, os.environ)
    try:
        # Vault or the Vault Agent's files may hold DATABASE_URL.
        env = environ_with_secrets(os.environ)
    except ConfigError as exc:
        print(f"coffeebuddy: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "jobs":
        # Output for a person at a terminal, not JSON log lines.
        return jobs_cli.run(args, env)
    return 2


def _migrate() -> int:
    from coffeebuddy.migrate import MigrationError, migrate

    logs.setup(os.environ.get("LOG_LEVEL", "INFO").upper())
    try:
        # The migration Job's pod holds only the database URL (Vault Agent file or env).
        url = load_database_url(os.environ)
    except ConfigError as exc:
        print(f"coffeebuddy: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        applied = migrate(url)
    except MigrationError as exc:
        print(f"coffeebuddy: migration error: {exc}", file=sys.stderr)
        return 1
    print(f"migrations applied: {', '.join(applied) if applied else 'none (schema current)'}")
    return 0


def _serve(port: int, web_workers: int) -> int:
    from coffeebuddy.devserver import serve as run_serve

    logs.setup(os.environ.get("LOG_LEVEL", "INFO").upper())
    try:
        return run_serve(port=port, web_workers=web_workers)
    except ConfigError as exc:
        print(f"coffeebuddy: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
