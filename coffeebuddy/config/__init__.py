"""One typed configuration, built once from the environment: `Config.from_environ(env)`.

`settings` declares every setting (variable, default, bounds) once, `loader` reads them and
`converters` turn the variables' text into values.
"""

from coffeebuddy.config.converters import Secret
from coffeebuddy.config.loader import (
    ConfigError,
    Declared,
    Problems,
    declared,
    load_field,
    read,
    report_config_error,
)
from coffeebuddy.config.settings import (
    DEFAULT_SLACK_API_BASE_URL,
    LOG_LEVELS,
    Config,
    ServeEnv,
    WorkerSettings,
    kafka_bootstrap_servers,
    log_level,
)

__all__ = [
    "DEFAULT_SLACK_API_BASE_URL",
    "LOG_LEVELS",
    "Config",
    "ConfigError",
    "Declared",
    "Problems",
    "Secret",
    "ServeEnv",
    "WorkerSettings",
    "declared",
    "kafka_bootstrap_servers",
    "load_field",
    "log_level",
    "read",
    "report_config_error",
]
