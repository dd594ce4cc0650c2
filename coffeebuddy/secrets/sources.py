"""The secrets as a value (`SecretBundle`), read from the Vault Agent's files or (for local
development only) the environment; Vault answers are checked here too. Messages name the
setting, path or key involved, never a value."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coffeebuddy.config.converters import Secret
from coffeebuddy.config.loader import ConfigError
from coffeebuddy.secrets.settings import ENV_NAMES, SECRET_KEYS, SecretSource

# One logger for the whole package: operators filter on "coffeebuddy.secrets".
log = logging.getLogger("coffeebuddy.secrets")

_env_warned = threading.Event()


@dataclass(frozen=True)
class SecretBundle:
    """The secrets the app needs, redacted in every repr."""

    slack_signing_secret: Secret
    slack_bot_token: Secret
    database_url: Secret
    source: SecretSource
    # The KV v2 version the values were read from (Vault only).
    version: int | None = None

    def as_environ(self) -> dict[str, str]:
        """The variables `Config.from_environ` reads, to be merged over the environment."""
        return {ENV_NAMES[key]: getattr(self, key).reveal() for key in SECRET_KEYS}

    def same_values(self, other: SecretBundle) -> bool:
        return all(getattr(self, k) == getattr(other, k) for k in SECRET_KEYS)


def read_files(directory: Path) -> SecretBundle:
    values: dict[str, Any] = {}
    for key in SECRET_KEYS:
        path = directory / key
        try:
            values[key] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue  # reported by _bundle with the other missing keys
        except OSError as exc:
            raise ConfigError(
                f"COFFEEBUDDY_SECRETS_DIR: cannot read {path} ({type(exc).__name__})"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"COFFEEBUDDY_SECRETS_DIR: {path} is not UTF-8 text") from None
    return bundle_of(values, SecretSource.FILES, f"COFFEEBUDDY_SECRETS_DIR {directory}")


def read_env(env: Mapping[str, str]) -> SecretBundle:
    if not _env_warned.is_set():
        _env_warned.set()
        log.warning(
            "secrets_from_environment",
            extra={"reason": "environment secrets are for local development only"},
        )
    missing = [ENV_NAMES[k] for k in SECRET_KEYS if _set(env, ENV_NAMES[k]) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required but not set")
    return bundle_of({k: env[ENV_NAMES[k]] for k in SECRET_KEYS}, SecretSource.ENV, "environment")


def bundle_of(
    values: Mapping[str, Any], source: SecretSource, where: str, version: int | None = None
) -> SecretBundle:
    """Check the keys (never the values: their names go in the message, values never do)."""
    missing = [k for k in SECRET_KEYS if k not in values]
    if source is SecretSource.FILES and missing:
        raise ConfigError(f"{where} has no file for: {', '.join(missing)}")
    if missing:
        raise ConfigError(f"{where} has no key: {', '.join(missing)}")
    not_text = [k for k in SECRET_KEYS if not isinstance(values[k], str)]
    if not_text:
        raise ConfigError(f"{where}: {', '.join(not_text)} must be a string")
    empty = [k for k in SECRET_KEYS if not values[k].strip()]
    if empty:
        raise ConfigError(f"{where}: {', '.join(empty)} is empty")
    return SecretBundle(
        slack_signing_secret=Secret(values["slack_signing_secret"].strip()),
        slack_bot_token=Secret(values["slack_bot_token"].strip()),
        database_url=Secret(values["database_url"].strip()),
        source=source,
        version=version,
    )


def _set(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()
