"""Checks made before a process starts anything, so a mistake costs one short message.

Every configuration problem that can be seen from the environment alone is reported in one
go: the secret source's settings and the typed `Config`. When Vault or the Vault Agent's
files will supply the database URL and the Slack secrets, stand-ins take their place here;
the real values are checked once they are read.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg.conninfo import conninfo_to_dict

from coffeebuddy.config import Config, ConfigError
from coffeebuddy.secrets import ENV_NAMES, SecretSettings, SecretSource

# Valid-looking values for the variables a secret source fills in later.
_STAND_INS = {
    "DATABASE_URL": "postgresql://stand-in/coffeebuddy",
    "SLACK_SIGNING_SECRET": "stand-in",
    "SLACK_BOT_TOKEN": "xoxb-stand-in",
}


def check_config(env: Mapping[str, str], *, stand_ins: Mapping[str, str] | None = None) -> Config:
    """The configuration, or one ConfigError naming every problem found.

    `stand_ins` fill variables something else provides later (the dev runner's embedded
    database); the secret source's variables get stand-ins when Vault or files supply them."""
    problems: list[str] = []
    filled = {**(stand_ins or {}), **env}
    try:
        source = SecretSettings.from_environ(env).source
    except ConfigError as exc:
        problems.extend(exc.problems)
        source = None
    if source is not SecretSource.ENV:
        filled.update({name: _STAND_INS[name] for name in ENV_NAMES.values()})
    config: Config | None = None
    try:
        config = Config.from_environ(filled)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems or config is None:
        raise ConfigError(*problems)
    return config


def database_unreachable(url: str, exc: psycopg.Error) -> str:
    """One line for a database that did not answer: where it was looked for and why, never
    the password (the URL is not echoed, only its host, port and database)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        parts = {}
    host = parts.get("host") or "localhost"
    where = f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}".rstrip("/")
    reason = _first_line(str(exc)) or type(exc).__name__
    return f"coffeebuddy: cannot reach the database at {where}: {reason} (check DATABASE_URL)"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
