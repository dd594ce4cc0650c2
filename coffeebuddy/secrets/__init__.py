"""Where the Slack and database secrets come from: Vault, Vault Agent files, or (for local
development only) the environment.

Wiring is one line for a one-shot process and three for a long-running one:

    config = Config.from_environ({**env, **load_secrets(env).as_environ()})

    keeper = SecretKeeper.from_environ(env).start()   # loads, then keeps the token alive
    config = Config.from_environ({**env, **keeper.bundle.as_environ()})
    ...readiness: keeper.healthy() ... shutdown: keeper.stop()

Every failure is a `ConfigError` whose one line names the setting, path or key involved and
never a secret value. The rooms: `settings` (what the environment says), `sources` (the
bundle, files and environment), `vault` (the Vault client) and `keeper` (renewal).
"""

from coffeebuddy.secrets.keeper import (
    MIN_RENEWED_SHARE,
    RENEW_AT,
    SecretKeeper,
    load_database_url,
    load_secrets,
)
from coffeebuddy.secrets.settings import (
    DEFAULT_K8S_TOKEN_PATH,
    DEFAULT_KV_MOUNT,
    DEFAULT_SECRETS_DIR,
    ENV_NAMES,
    SECRET_KEYS,
    SecretSettings,
    SecretSource,
    VaultAuthMethod,
    VaultSettings,
)
from coffeebuddy.secrets.sources import SecretBundle

__all__ = [
    "DEFAULT_K8S_TOKEN_PATH",
    "DEFAULT_KV_MOUNT",
    "DEFAULT_SECRETS_DIR",
    "ENV_NAMES",
    "MIN_RENEWED_SHARE",
    "RENEW_AT",
    "SECRET_KEYS",
    "SecretBundle",
    "SecretKeeper",
    "SecretSettings",
    "SecretSource",
    "VaultAuthMethod",
    "VaultSettings",
    "load_database_url",
    "load_secrets",
]
