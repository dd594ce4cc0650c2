"""Where the secrets come from, declared like every other setting (see config.loader)."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from coffeebuddy.config.converters import (
    Secret,
    http_url,
    member,
    number,
    path,
    readable_file,
    secret,
    trimmed,
)
from coffeebuddy.config.loader import (
    Problems,
    load,
    read,
    setting,
)

# The keys of the KV secret, the Vault Agent file names, and the attributes of SecretBundle.
SECRET_KEYS = ("slack_signing_secret", "slack_bot_token", "database_url")
# The variables Config.from_environ reads them from.
ENV_NAMES = {
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "database_url": "DATABASE_URL",
}
DEFAULT_K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105
DEFAULT_SECRETS_DIR = "/vault/secrets"
# Where README's "Deploying" and the k8s overlays keep the secret (KV v2 mounted at kv/).
DEFAULT_KV_MOUNT = "kv"
_WITH_VAULT = "when COFFEEBUDDY_SECRETS_SOURCE=vault"


class SecretSource(enum.StrEnum):
    VAULT = "vault"
    FILES = "files"
    ENV = "env"


class VaultAuthMethod(enum.StrEnum):
    KUBERNETES = "kubernetes"
    TOKEN = "token"  # noqa: S105 - the name of an auth method, not a password


@dataclass(frozen=True, kw_only=True)
class VaultSettings:
    addr: str = setting("VAULT_ADDR", convert=http_url(), required=_WITH_VAULT)
    auth_method: VaultAuthMethod = setting(
        "VAULT_AUTH_METHOD", VaultAuthMethod.KUBERNETES, member(VaultAuthMethod)
    )
    secret_path: str = setting(
        "VAULT_SECRET_PATH", convert=trimmed("/"), required=f"{_WITH_VAULT} (e.g. coffeebuddy/prod)"
    )
    kv_mount: str = setting("VAULT_KV_MOUNT", DEFAULT_KV_MOUNT, trimmed("/"))
    # Required with the kubernetes method (see combination_problems).
    role: str | None = setting("VAULT_ROLE", None)
    k8s_token_path: Path = setting("VAULT_K8S_TOKEN_PATH", Path(DEFAULT_K8S_TOKEN_PATH), path)
    k8s_mount: str = setting("VAULT_K8S_MOUNT", "kubernetes", trimmed("/"))
    # Required with the token method.
    token: Secret | None = setting("VAULT_TOKEN", None, secret())
    namespace: str | None = setting("VAULT_NAMESPACE", None)
    cacert: Path | None = setting("VAULT_CACERT", None, readable_file)
    timeout_seconds: float = setting("VAULT_TIMEOUT_SECONDS", 5.0, number(0.1, 120))

    @property
    def where(self) -> str:
        """The secret's name as operators write it: `kv/coffeebuddy/prod`."""
        return f"{self.kv_mount}/{self.secret_path}"

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> VaultSettings:
        return load(cls, env)

    def combination_problems(self) -> Iterator[str]:
        if self.auth_method is VaultAuthMethod.KUBERNETES and self.role is None:
            yield "VAULT_ROLE is required when VAULT_AUTH_METHOD=kubernetes"
        if self.auth_method is VaultAuthMethod.TOKEN and self.token is None:
            yield "VAULT_TOKEN is required when VAULT_AUTH_METHOD=token"


@dataclass(frozen=True, kw_only=True)
class SecretSettings:
    source: SecretSource = setting(
        "COFFEEBUDDY_SECRETS_SOURCE", SecretSource.ENV, member(SecretSource)
    )
    secrets_dir: Path = setting("COFFEEBUDDY_SECRETS_DIR", Path(DEFAULT_SECRETS_DIR), path)
    # How often the files source looks for files the Vault Agent rewrote.
    poll_seconds: float = setting("COFFEEBUDDY_SECRETS_POLL_SECONDS", 10.0, number(0.01, 3600))
    # Read only for the vault source.
    vault: VaultSettings | None = None

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> SecretSettings:
        problems = Problems()
        settings = read(cls, env, problems)
        if settings.source is SecretSource.VAULT:
            settings = replace(settings, vault=read(VaultSettings, env, problems))
        problems.check()
        return settings
