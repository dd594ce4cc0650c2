"""The app's settings: every field names its variable, default and bounds once (see
`loader`). Secrets are wrapped in `Secret` so that a stray `repr()` or log line never shows
them. Everything missing or malformed is named in one `ConfigError`, one line each, so an
operator fixes them all in one go; the entry points print those lines and exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from coffeebuddy.config.converters import (
    Invalid,
    Secret,
    boolean,
    choice,
    host_port,
    host_ports,
    http_url,
    https_origins,
    integer,
    number,
    secret,
    slack_user_ids,
    switch,
)
from coffeebuddy.config.loader import (
    load,
    load_field,
    nested,
    setting,
)

DEFAULT_SLACK_API_BASE_URL = "https://slack.com/api/"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _check_db_url(value: str) -> None:
    if not value.startswith(("postgresql://", "postgres://")) and "dbname=" not in value:
        raise Invalid("must be a postgresql:// URL or a libpq conninfo string")


def _check_bot_token(value: str) -> None:
    if not value.startswith("xoxb-"):
        raise Invalid("must be a bot token (starts with xoxb-)")


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    # Port of the worker's own /metrics endpoint; 0 serves none.
    metrics_port: int = setting("COFFEEBUDDY_WORKER_METRICS_PORT", 9102, integer(0, 65535))
    # Address it listens on: all interfaces in the cluster (Prometheus and the probes come
    # from outside the pod), 127.0.0.1 under scripts/run.
    metrics_host: str = setting("COFFEEBUDDY_WORKER_METRICS_HOST", "0.0.0.0")  # noqa: S104
    # `done` jobs are deleted this long after they finished; `dead` ones are kept longer
    # so that operators can look at them and retry them.
    job_retention_hours: int = setting("COFFEEBUDDY_JOB_RETENTION_HOURS", 24, integer(1, 24 * 365))
    dead_job_retention_days: int = setting(
        "COFFEEBUDDY_DEAD_JOB_RETENTION_DAYS", 14, integer(1, 365)
    )
    # How often the queue gauges (depth, oldest due job, dead jobs) are read from the table.
    stats_interval_seconds: float = setting(
        "COFFEEBUDDY_WORKER_STATS_SECONDS", 15.0, number(0.1, 600)
    )
    # Timeout of each Slack call a job makes; a job's lease is renewed while it runs, so a
    # slow Slack never hands a live job to a second worker.
    slack_timeout_seconds: float = setting(
        "COFFEEBUDDY_WORKER_SLACK_TIMEOUT_SECONDS", 10.0, number(1.0, 60)
    )
    # The worker's CPU priority (os.nice increment): below the web's, so that when both
    # share cores, a burst's requests are answered first and its jobs done right after.
    nice: int = setting("COFFEEBUDDY_WORKER_NICE", 10, integer(0, 19))
    # The Slack rate budget the worker replicas share (coffeebuddy/slack/budget.py): off,
    # every replica calls Slack as fast as its jobs come and learns of limits from 429s.
    slack_budget: bool = setting("COFFEEBUDDY_SLACK_BUDGET", True, switch)
    # Calls a minute per workspace for Slack's Tier 3 methods (chat.update,
    # conversations.open, ...) and Tier 4 ones (chat.postEphemeral, views.*, users.info),
    # and chat.postMessage calls a second per channel: Slack's published limits. Lower them
    # to leave room for another app on the same token; raise them only if Slack did.
    slack_tier3_per_minute: int = setting(
        "COFFEEBUDDY_SLACK_TIER3_PER_MINUTE", 50, integer(1, 10_000)
    )
    slack_tier4_per_minute: int = setting(
        "COFFEEBUDDY_SLACK_TIER4_PER_MINUTE", 100, integer(1, 10_000)
    )
    slack_channel_posts_per_second: float = setting(
        "COFFEEBUDDY_SLACK_CHANNEL_POSTS_PER_SECOND", 1.0, number(0.01, 100)
    )
    # Not read from the environment (tests and benchmarks set them):
    # how often the prune job runs, and how many rows one DELETE removes.
    prune_interval_seconds: float = 3600.0
    prune_batch_size: int = 1000
    # A prune run stops after this many batches and comes back soon for the rest, so a
    # huge backlog never holds one job (and its lease) for long.
    prune_max_batches: int = 50

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> WorkerSettings:
        return load(cls, env)


@dataclass(frozen=True, kw_only=True)
class Config:
    database_url: Secret = setting("DATABASE_URL", convert=secret(_check_db_url))
    slack_signing_secret: Secret = setting("SLACK_SIGNING_SECRET", convert=secret())
    slack_bot_token: Secret = setting("SLACK_BOT_TOKEN", convert=secret(_check_bot_token))
    slack_api_base_url: str = setting(
        "SLACK_API_BASE_URL", DEFAULT_SLACK_API_BASE_URL, http_url(trailing_slash=True)
    )
    # Slack user ids allowed to close or cancel any run, besides workspace admins/owners.
    admin_user_ids: frozenset[str] = setting(
        "COFFEEBUDDY_ADMIN_USER_IDS", frozenset(), slack_user_ids
    )
    # Slack bodies are a few KB; anything far larger is not from Slack.
    max_body_bytes: int = setting(
        "COFFEEBUDDY_MAX_BODY_BYTES", 64 * 1024, integer(1024, 1024 * 1024)
    )
    db_pool_min: int = setting("COFFEEBUDDY_DB_POOL_MIN", 1, integer(0, 100))
    db_pool_max: int = setting("COFFEEBUDDY_DB_POOL_MAX", 8, integer(1, 100))
    # Timeout for Slack calls made in the request path (views.open, users.info).
    slack_timeout_seconds: float = setting(
        "COFFEEBUDDY_SLACK_TIMEOUT_SECONDS", 2.0, number(0.1, 30)
    )
    # How long a profile (time zone, admin flag) fetched from users.info is trusted.
    profile_ttl_seconds: int = setting(
        "COFFEEBUDDY_PROFILE_TTL_SECONDS", 24 * 3600, integer(0, 30 * 86400)
    )
    # For CoffeeBuddy admin rights the workspace-admin flag is trusted only this long: a
    # demoted Slack admin loses them within minutes, not a day.
    admin_check_ttl_seconds: int = setting(
        "COFFEEBUDDY_ADMIN_CHECK_TTL_SECONDS", 300, integer(0, 86400)
    )
    # Clicks within this window are folded into one chat.update of the run message.
    refresh_coalesce_ms: int = setting("COFFEEBUDDY_REFRESH_COALESCE_MS", 700, integer(0, 10_000))
    # Acknowledge "Use my usual" and the order form with one insert into the job queue
    # (the inbox) and let the worker apply them: a burst then costs the web little more
    # than its floor; the worker applies a run's actions in the order they came, a batch
    # per transaction (see README "The inbox"). Off: the request applies them itself.
    inbox: bool = setting("COFFEEBUDDY_INBOX", True, switch)
    # The work a burst leaves the worker (inboxed actions, new runs' messages) waits for a
    # pause this long in its arrivals, so that it is done after the burst (inboxed actions
    # in a few large batches) rather than beside it, on the cores of the web answering
    # it (see `coffeebuddy.store.queue.Pacing`)...
    burst_quiet_ms: int = setting("COFFEEBUDDY_BURST_QUIET_MS", 200, integer(0, 5_000))
    # ...but never longer than this after the oldest of it arrived.
    burst_max_wait_ms: int = setting("COFFEEBUDDY_BURST_MAX_WAIT_MS", 1500, integer(0, 30_000))
    worker_concurrency: int = setting("COFFEEBUDDY_WORKER_CONCURRENCY", 4, integer(1, 64))
    worker_poll_seconds: float = setting("COFFEEBUDDY_WORKER_POLL_SECONDS", 1.0, number(0.05, 60))
    job_lease_seconds: int = setting("COFFEEBUDDY_JOB_LEASE_SECONDS", 60, integer(5, 3600))
    # Settings only the worker process uses.
    worker: WorkerSettings = nested(WorkerSettings)
    log_level: str = setting("LOG_LEVEL", "INFO", choice(*LOG_LEVELS))
    # Kafka brokers (host:port) for the event relay; empty turns the relay off.
    kafka_bootstrap_servers: tuple[str, ...] = setting("KAFKA_BOOTSTRAP_SERVERS", (), host_ports)
    # Events read, published and marked sent per relay round.
    relay_batch: int = setting("COFFEEBUDDY_RELAY_BATCH", 500, integer(1, 10_000))
    # How often the relay looks for events when no NOTIFY woke it.
    relay_poll_seconds: float = setting("COFFEEBUDDY_RELAY_POLL_SECONDS", 1.0, number(0.05, 60))
    # Published events are kept this long in the outbox (for inspection), then pruned.
    event_retention_days: int = setting("COFFEEBUDDY_EVENT_RETENTION_DAYS", 7, integer(1, 3650))
    # Global bounds for a channel's data retention (channel admins choose within them).
    retention_min_days: int = setting("COFFEEBUDDY_RETENTION_MIN_DAYS", 1, integer(1, 3650))
    retention_max_days: int = setting("COFFEEBUDDY_RETENTION_MAX_DAYS", 365, integer(1, 3650))
    # The operations API (off when no issuer is set): bearer JWTs from this Ory issuer,
    # for this audience, carrying this scope.
    ops_issuer: str | None = setting("COFFEEBUDDY_OPS_ISSUER", None, http_url(trailing_slash=False))
    ops_audience: str | None = setting("COFFEEBUDDY_OPS_AUDIENCE", None)
    ops_scope: str = setting("COFFEEBUDDY_OPS_SCOPE", "coffeebuddy:ops")
    # Ops tokens living longer than this (exp - iat) are refused: they are standing keys.
    ops_max_token_lifetime_seconds: int = setting(
        "COFFEEBUDDY_OPS_MAX_TOKEN_LIFETIME_SECONDS", 3600, integer(60, 24 * 3600)
    )
    # Origins (scheme://host[:port]) a response_url may point at besides Slack's hooks host
    # and the origin of slack_api_base_url; anything else is never POSTed to.
    response_url_origins: tuple[str, ...] = setting(
        "COFFEEBUDDY_RESPONSE_URL_ORIGINS", (), https_origins
    )
    # A retried channel post first looks for its message in the channel's history (needs
    # the channels:history and groups:history scopes: slack/manifest-channel-dedupe.yaml).
    # Off by default: the bot then reads no channel, and a crash in the moment between
    # Slack accepting a post and the worker recording it can, rarely, show it twice.
    channel_post_dedupe: bool = setting("COFFEEBUDDY_CHANNEL_POST_DEDUPE", False, boolean)
    # After the signing secret rotates, requests signed with the previous one are still
    # accepted this long (Slack and the secret store never switch at the same instant).
    signing_secret_overlap_seconds: int = setting(
        "COFFEEBUDDY_SIGNING_SECRET_OVERLAP_SECONDS", 300, integer(0, 24 * 3600)
    )

    @property
    def retention_bounds(self) -> tuple[int, int]:
        return self.retention_min_days, self.retention_max_days

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Config:
        return load(cls, env)

    def combination_problems(self) -> Iterator[str]:
        """Rules across settings, checked once each is read (a bad one is None here)."""
        if self.ops_issuer and not self.ops_audience:
            yield "COFFEEBUDDY_OPS_AUDIENCE is required when COFFEEBUDDY_OPS_ISSUER is set"
        low, high = self.retention_bounds
        # 90 days is the retention every new channel starts with.
        if low is not None and high is not None and not low <= 90 <= high:
            yield "COFFEEBUDDY_RETENTION_MIN_DAYS..COFFEEBUDDY_RETENTION_MAX_DAYS must include 90"


@dataclass(frozen=True)
class ServeEnv:
    """What the dev runner (`python -m coffeebuddy serve`, coffeebuddy/local/devserver.py)
    reads besides `Config`: where the web listens and how many processes serve it. The
    container's gunicorn reads GUNICORN_BIND and GUNICORN_WORKERS itself (gunicorn.conf.py)."""

    # The web's port on 127.0.0.1 (`--port` wins over it).
    port: int = setting("PORT", 8080, integer(1, 65535))
    # Host and port together; sets both, `--port` still wins over its port.
    bind: tuple[str, int] | None = setting("GUNICORN_BIND", None, host_port)
    # `--web-workers` wins over it.
    web_workers: int = setting("GUNICORN_WORKERS", 2, integer(1, 64))


def log_level(env: Mapping[str, str]) -> str:
    """LOG_LEVEL, checked: entry points set up logging with it before reading the rest."""
    level: str = load_field(Config, "log_level", env)
    return level


def kafka_bootstrap_servers(env: Mapping[str, str]) -> tuple[str, ...]:
    """KAFKA_BOOTSTRAP_SERVERS on its own, for tools that need no other setting (the
    operator's `events tail`)."""
    servers: tuple[str, ...] = load_field(Config, "kafka_bootstrap_servers", env)
    return servers
