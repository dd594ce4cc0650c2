"""One typed configuration, built once from the environment.

Secrets are wrapped in `Secret` so that a stray `repr()` or log line never shows them.
Everything missing or malformed is collected while the environment is read, and one
`ConfigError` names every bad variable (one line each), so an operator fixes them all in
one go; the entry points print those lines and exit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_SLACK_API_BASE_URL = "https://slack.com/api/"


class ConfigError(Exception):
    """Configuration is missing or invalid: one line per problem for the operator."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems: tuple[str, ...] = problems


class EnvReader(Mapping[str, str]):
    """The environment being read, and every problem found in it so far.

    The readers below (`_int`, `_secret`, ...) record a problem here and carry on with the
    default, so one run names every bad variable; `check()` raises them all at once. Given
    a plain mapping instead, a reader raises at the first problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []

    def __getitem__(self, key: str) -> str:
        return self._env[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)

    def check(self) -> None:
        if self.problems:
            raise ConfigError(*dict.fromkeys(self.problems))


def _invalid(env: Mapping[str, str], problem: str) -> None:
    if isinstance(env, EnvReader):
        env.problems.append(problem)
    else:
        raise ConfigError(problem)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(env: Mapping[str, str]) -> str:
    """LOG_LEVEL, checked: entry points set up logging with it before reading the rest."""
    return _choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS)


@dataclass(frozen=True)
class Secret:
    """A value that must never be printed."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass(frozen=True)
class WorkerSettings:
    # Port of the worker's own /metrics endpoint; 0 serves none.
    metrics_port: int = 9102
    # Address it listens on: all interfaces in the cluster (Prometheus and the probes come
    # from outside the pod), 127.0.0.1 under scripts/run.
    metrics_host: str = "0.0.0.0"  # noqa: S104
    # `done` jobs are deleted this long after they finished; `dead` ones are kept longer
    # so that operators can look at them and retry them.
    job_retention_hours: int = 24
    dead_job_retention_days: int = 14
    # How often the queue gauges (depth, oldest due job, dead jobs) are read from the table.
    stats_interval_seconds: float = 15.0
    # How often the prune job runs, and how many rows one DELETE removes.
    prune_interval_seconds: float = 3600.0
    prune_batch_size: int = 1000
    # A prune run stops after this many batches and comes back soon for the rest, so a
    # huge backlog never holds one job (and its lease) for long.
    prune_max_batches: int = 50
    # Timeout of each Slack call a job makes; a job's lease is renewed while it runs, so a
    # slow Slack never hands a live job to a second worker.
    slack_timeout_seconds: float = 10.0
    # The worker's CPU priority (os.nice increment): below the web's, so that when both
    # share cores, a burst's requests are answered first and its jobs done right after.
    nice: int = 10

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> WorkerSettings:
        reader = env if isinstance(env, EnvReader) else EnvReader(env)
        settings = cls._read(reader)
        if reader is not env:
            reader.check()
        return settings

    @classmethod
    def _read(cls, env: Mapping[str, str]) -> WorkerSettings:
        return cls(
            metrics_port=_int(env, "COFFEEBUDDY_WORKER_METRICS_PORT", 9102, 0, 65535),
            metrics_host=_raw(env, "COFFEEBUDDY_WORKER_METRICS_HOST") or "0.0.0.0",  # noqa: S104
            job_retention_hours=_int(env, "COFFEEBUDDY_JOB_RETENTION_HOURS", 24, 1, 24 * 365),
            dead_job_retention_days=_int(env, "COFFEEBUDDY_DEAD_JOB_RETENTION_DAYS", 14, 1, 365),
            stats_interval_seconds=_float(env, "COFFEEBUDDY_WORKER_STATS_SECONDS", 15.0, 0.1, 600),
            slack_timeout_seconds=_float(
                env, "COFFEEBUDDY_WORKER_SLACK_TIMEOUT_SECONDS", 10.0, 1.0, 60
            ),
            nice=_int(env, "COFFEEBUDDY_WORKER_NICE", 10, 0, 19),
        )


@dataclass(frozen=True)
class Config:
    database_url: Secret
    slack_signing_secret: Secret
    slack_bot_token: Secret
    slack_api_base_url: str = DEFAULT_SLACK_API_BASE_URL
    # Slack user ids allowed to close or cancel any run, besides workspace admins/owners.
    admin_user_ids: frozenset[str] = frozenset()
    # Slack bodies are a few KB; anything far larger is not from Slack.
    max_body_bytes: int = 64 * 1024
    db_pool_min: int = 1
    db_pool_max: int = 8
    # Timeout for Slack calls made in the request path (views.open, users.info).
    slack_timeout_seconds: float = 2.0
    # How long a profile (time zone, admin flag) fetched from users.info is trusted.
    profile_ttl_seconds: int = 24 * 3600
    # For CoffeeBuddy admin rights the workspace-admin flag is trusted only this long: a
    # demoted Slack admin loses them within minutes, not a day.
    admin_check_ttl_seconds: int = 300
    # Clicks within this window are folded into one chat.update of the run message.
    refresh_coalesce_ms: int = 700
    # Acknowledge "Use my usual" and the order form with one insert into the job queue
    # (the inbox) and let the worker apply them: a burst then costs the web little more
    # than its floor; the worker applies a run's actions in the order they came, a batch
    # per transaction (see README "The inbox"). Off: the request applies them itself.
    inbox: bool = True
    worker_concurrency: int = 4
    worker_poll_seconds: float = 1.0
    job_lease_seconds: int = 60
    log_level: str = "INFO"
    # Settings only the worker process uses.
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    # Kafka brokers (host:port) for the event relay; empty turns the relay off.
    kafka_bootstrap_servers: tuple[str, ...] = ()
    # Events read, published and marked sent per relay round.
    relay_batch: int = 500
    # How often the relay looks for events when no NOTIFY woke it.
    relay_poll_seconds: float = 1.0
    # Published events are kept this long in the outbox (for inspection), then pruned.
    event_retention_days: int = 7
    # Global bounds for a channel's data retention (channel admins choose within them).
    retention_min_days: int = 1
    retention_max_days: int = 365
    # The operations API (off when no issuer is set): bearer JWTs from this Ory issuer,
    # for this audience, carrying this scope.
    ops_issuer: str | None = None
    ops_audience: str | None = None
    ops_scope: str = "coffeebuddy:ops"
    # Ops tokens living longer than this (exp - iat) are refused: they are standing keys.
    ops_max_token_lifetime_seconds: int = 3600
    # Origins (scheme://host[:port]) a response_url may point at besides Slack's hooks host
    # and the origin of slack_api_base_url; anything else is never POSTed to.
    response_url_origins: tuple[str, ...] = ()
    # After the signing secret rotates, requests signed with the previous one are still
    # accepted this long (Slack and the secret store never switch at the same instant).
    signing_secret_overlap_seconds: int = 300
    # A retried channel post first looks for its message in the channel's history (needs
    # the channels:history and groups:history scopes: slack/manifest-channel-dedupe.yaml).
    # Off by default: the bot then reads no channel, and a crash in the moment between
    # Slack accepting a post and the worker recording it can, rarely, show it twice.
    channel_post_dedupe: bool = False

    @property
    def retention_bounds(self) -> tuple[int, int]:
        return self.retention_min_days, self.retention_max_days

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Config:
        env = reader = EnvReader(env)
        config = cls(
            database_url=_secret(env, "DATABASE_URL", check=_check_db_url),
            slack_signing_secret=_secret(env, "SLACK_SIGNING_SECRET"),
            slack_bot_token=_secret(env, "SLACK_BOT_TOKEN", check=_check_bot_token),
            slack_api_base_url=_url(env, "SLACK_API_BASE_URL", DEFAULT_SLACK_API_BASE_URL),
            admin_user_ids=_user_ids(env, "COFFEEBUDDY_ADMIN_USER_IDS"),
            max_body_bytes=_int(env, "COFFEEBUDDY_MAX_BODY_BYTES", 64 * 1024, 1024, 1024 * 1024),
            db_pool_min=_int(env, "COFFEEBUDDY_DB_POOL_MIN", 1, 0, 100),
            db_pool_max=_int(env, "COFFEEBUDDY_DB_POOL_MAX", 8, 1, 100),
            slack_timeout_seconds=_float(env, "COFFEEBUDDY_SLACK_TIMEOUT_SECONDS", 2.0, 0.1, 30),
            profile_ttl_seconds=_int(env, "COFFEEBUDDY_PROFILE_TTL_SECONDS", 86400, 0, 30 * 86400),
            admin_check_ttl_seconds=_int(env, "COFFEEBUDDY_ADMIN_CHECK_TTL_SECONDS", 300, 0, 86400),
            refresh_coalesce_ms=_int(env, "COFFEEBUDDY_REFRESH_COALESCE_MS", 700, 0, 10_000),
            inbox=_choice(env, "COFFEEBUDDY_INBOX", "ON", ("ON", "OFF")) == "ON",
            worker_concurrency=_int(env, "COFFEEBUDDY_WORKER_CONCURRENCY", 4, 1, 64),
            worker_poll_seconds=_float(env, "COFFEEBUDDY_WORKER_POLL_SECONDS", 1.0, 0.05, 60),
            job_lease_seconds=_int(env, "COFFEEBUDDY_JOB_LEASE_SECONDS", 60, 5, 3600),
            worker=WorkerSettings.from_environ(env),
            log_level=log_level(env),
            kafka_bootstrap_servers=kafka_bootstrap_servers(env),
            relay_batch=_int(env, "COFFEEBUDDY_RELAY_BATCH", 500, 1, 10_000),
            relay_poll_seconds=_float(env, "COFFEEBUDDY_RELAY_POLL_SECONDS", 1.0, 0.05, 60),
            event_retention_days=_int(env, "COFFEEBUDDY_EVENT_RETENTION_DAYS", 7, 1, 3650),
            retention_min_days=_int(env, "COFFEEBUDDY_RETENTION_MIN_DAYS", 1, 1, 3650),
            retention_max_days=_int(env, "COFFEEBUDDY_RETENTION_MAX_DAYS", 365, 1, 3650),
            ops_issuer=_url(env, "COFFEEBUDDY_OPS_ISSUER", "").rstrip("/")
            if _raw(env, "COFFEEBUDDY_OPS_ISSUER")
            else None,
            ops_audience=_raw(env, "COFFEEBUDDY_OPS_AUDIENCE"),
            ops_scope=_raw(env, "COFFEEBUDDY_OPS_SCOPE") or "coffeebuddy:ops",
            ops_max_token_lifetime_seconds=_int(
                env, "COFFEEBUDDY_OPS_MAX_TOKEN_LIFETIME_SECONDS", 3600, 60, 24 * 3600
            ),
            response_url_origins=_origins(env, "COFFEEBUDDY_RESPONSE_URL_ORIGINS"),
            channel_post_dedupe=_bool(env, "COFFEEBUDDY_CHANNEL_POST_DEDUPE", False),
            signing_secret_overlap_seconds=_int(
                env, "COFFEEBUDDY_SIGNING_SECRET_OVERLAP_SECONDS", 300, 0, 24 * 3600
            ),
        )
        if config.ops_issuer and not config.ops_audience:
            _invalid(env, "COFFEEBUDDY_OPS_AUDIENCE is required when COFFEEBUDDY_OPS_ISSUER is set")
        if not config.retention_min_days <= 90 <= config.retention_max_days:
            # 90 days is the retention every new channel starts with.
            _invalid(
                env,
                "COFFEEBUDDY_RETENTION_MIN_DAYS..COFFEEBUDDY_RETENTION_MAX_DAYS must include 90",
            )
        reader.check()
        return config


def kafka_bootstrap_servers(env: Mapping[str, str]) -> tuple[str, ...]:
    """KAFKA_BOOTSTRAP_SERVERS on its own, for tools that need no other setting (the
    operator's `events tail`)."""
    return _host_ports(env, "KAFKA_BOOTSTRAP_SERVERS")


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _secret(
    env: Mapping[str, str], name: str, check: Callable[[str, str], None] | None = None
) -> Secret:
    value = _raw(env, name)
    if value is None:
        _invalid(env, f"{name} is required but not set")
        return Secret("")
    if check is not None:
        try:
            check(name, value)
        except ConfigError as exc:
            _invalid(env, str(exc))
    return Secret(value)


def _check_db_url(name: str, value: str) -> None:
    if not value.startswith(("postgresql://", "postgres://")) and "dbname=" not in value:
        raise ConfigError(f"{name} must be a postgresql:// URL or a libpq conninfo string")


def _check_bot_token(name: str, value: str) -> None:
    if not value.startswith("xoxb-"):
        raise ConfigError(f"{name} must be a bot token (starts with xoxb-)")


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = _raw(env, name) or default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        _invalid(env, f"{name} must be an http(s) URL, got {value!r}")
        value = default or "http://invalid/"
    return value if value.endswith("/") else value + "/"


def _user_ids(env: Mapping[str, str], name: str) -> frozenset[str]:
    value = _raw(env, name)
    if value is None:
        return frozenset()
    ids = [part.strip() for part in value.split(",") if part.strip()]
    bad = [i for i in ids if not re.fullmatch(r"[UW][A-Z0-9]{2,30}", i)]
    if bad:
        _invalid(env, f"{name} must be comma-separated Slack user ids, bad: {', '.join(bad)}")
    return frozenset(i for i in ids if i not in bad)


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    value = _raw(env, name)
    if value is None:
        return ()
    origins = tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
    bad = []
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme != "https" or not parts.hostname or parts.path or "@" in parts.netloc:
            bad.append(origin)
    if bad:
        raise ConfigError(
            f"{name} must be comma-separated https://host[:port] origins, bad: " + ", ".join(bad)
        )
    return origins


def _host_ports(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    value = _raw(env, name)
    if value is None:
        return ()
    servers = tuple(part.strip() for part in value.split(",") if part.strip())
    bad = [
        s for s in servers if not re.fullmatch(r"(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.\-]+):[0-9]{1,5}", s)
    ]
    if bad or not servers:
        _invalid(
            env, f"{name} must be comma-separated host:port pairs, bad: {', '.join(bad) or value!r}"
        )
        return ()
    return servers


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    value = _raw(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        _invalid(env, f"{name} must be an integer, got {value!r}")
        return default
    if not lo <= number <= hi:
        _invalid(env, f"{name} must be between {lo} and {hi}, got {number}")
        return default
    return number


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    value = _raw(env, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        _invalid(env, f"{name} must be a number, got {value!r}")
        return default
    if not lo <= number <= hi:
        _invalid(env, f"{name} must be between {lo} and {hi}, got {number}")
        return default
    return number


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = _raw(env, name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (_raw(env, name) or default).upper()
    if value not in allowed:
        _invalid(env, f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return default
    return value
