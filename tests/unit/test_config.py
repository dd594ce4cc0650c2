"""Config.from_environ: fails fast with one line naming the variable; secrets never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from coffeebuddy.config import DEFAULT_SLACK_API_BASE_URL, Config, ConfigError, Secret

ROOT = Path(__file__).resolve().parents[2]

DB_URL = "postgresql://coffee:db-password-42@db.internal:5432/coffeebuddy"
SIGNING_SECRET = "signing-secret-s3cr3t-value"
BOT_TOKEN = "xoxb-1111-2222-bot-token-value"
REQUIRED = {
    "DATABASE_URL": DB_URL,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "SLACK_BOT_TOKEN": BOT_TOKEN,
}


def _error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        Config.from_environ(env)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_minimal_environment_gives_defaults() -> None:
    config = Config.from_environ(REQUIRED)
    assert config.database_url.reveal() == DB_URL
    assert config.slack_signing_secret.reveal() == SIGNING_SECRET
    assert config.slack_bot_token.reveal() == BOT_TOKEN
    assert config.slack_api_base_url == DEFAULT_SLACK_API_BASE_URL == "https://slack.com/api/"
    assert config.admin_user_ids == frozenset()
    assert config.max_body_bytes == 64 * 1024
    assert config.log_level == "INFO"


def test_every_setting_is_read() -> None:
    config = Config.from_environ(
        {
            **REQUIRED,
            "SLACK_API_BASE_URL": "http://slack-fake.internal:8080/api/",
            "COFFEEBUDDY_ADMIN_USER_IDS": " U0ADMIN1, W0ADMIN2 ,",
            "COFFEEBUDDY_MAX_BODY_BYTES": "2048",
            "COFFEEBUDDY_DB_POOL_MIN": "0",
            "COFFEEBUDDY_DB_POOL_MAX": "20",
            "COFFEEBUDDY_SLACK_TIMEOUT_SECONDS": "1.5",
            "COFFEEBUDDY_PROFILE_TTL_SECONDS": "60",
            "COFFEEBUDDY_REFRESH_COALESCE_MS": "0",
            "COFFEEBUDDY_INBOX": "on",
            "COFFEEBUDDY_WORKER_CONCURRENCY": "2",
            "COFFEEBUDDY_WORKER_POLL_SECONDS": "0.5",
            "COFFEEBUDDY_JOB_LEASE_SECONDS": "30",
            "LOG_LEVEL": "debug",
        }
    )
    assert config.slack_api_base_url == "http://slack-fake.internal:8080/api/"
    assert config.admin_user_ids == frozenset({"U0ADMIN1", "W0ADMIN2"})
    assert config.max_body_bytes == 2048
    assert (config.db_pool_min, config.db_pool_max) == (0, 20)
    assert config.slack_timeout_seconds == 1.5
    assert config.profile_ttl_seconds == 60
    assert config.refresh_coalesce_ms == 0
    assert config.inbox is True
    assert config.worker_concurrency == 2
    assert config.worker_poll_seconds == 0.5
    assert config.job_lease_seconds == 30
    assert config.log_level == "DEBUG"


def test_the_inbox_is_on_unless_turned_off() -> None:
    assert Config.from_environ(REQUIRED).inbox is True
    assert Config.from_environ({**REQUIRED, "COFFEEBUDDY_INBOX": "Off"}).inbox is False
    with pytest.raises(ConfigError, match="COFFEEBUDDY_INBOX"):
        Config.from_environ({**REQUIRED, "COFFEEBUDDY_INBOX": "maybe"})


def test_libpq_conninfo_is_accepted() -> None:
    config = Config.from_environ({**REQUIRED, "DATABASE_URL": "host=db dbname=coffee user=cb"})
    assert config.database_url.reveal() == "host=db dbname=coffee user=cb"


@pytest.mark.parametrize("name", sorted(REQUIRED))
@pytest.mark.parametrize("value", [None, "", "   "])
def test_each_required_variable(name: str, value: str | None) -> None:
    env = {k: v for k, v in REQUIRED.items() if k != name}
    if value is not None:
        env[name] = value
    message = _error(env)
    assert message.startswith(name)
    assert "required" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://coffee@db/coffeebuddy"),
        ("DATABASE_URL", "db.internal:5432"),
        ("SLACK_BOT_TOKEN", "xoxp-a-user-token"),
        ("SLACK_BOT_TOKEN", "bot-token"),
        ("COFFEEBUDDY_ADMIN_USER_IDS", "U0ADMIN1,alice"),
        ("COFFEEBUDDY_ADMIN_USER_IDS", "C0CHANNEL1"),
        ("COFFEEBUDDY_ADMIN_USER_IDS", "u0lowercase"),
        ("COFFEEBUDDY_MAX_BODY_BYTES", "64k"),
        ("COFFEEBUDDY_MAX_BODY_BYTES", "1.5"),
        ("COFFEEBUDDY_MAX_BODY_BYTES", "10"),
        ("COFFEEBUDDY_MAX_BODY_BYTES", "99999999"),
        ("COFFEEBUDDY_DB_POOL_MAX", "0"),
        ("COFFEEBUDDY_DB_POOL_MIN", "-1"),
        ("COFFEEBUDDY_WORKER_CONCURRENCY", "many"),
        ("COFFEEBUDDY_JOB_LEASE_SECONDS", "1"),
        ("COFFEEBUDDY_SLACK_TIMEOUT_SECONDS", "fast"),
        ("COFFEEBUDDY_SLACK_TIMEOUT_SECONDS", "120"),
        ("SLACK_API_BASE_URL", "slack.com/api"),
        ("SLACK_API_BASE_URL", "ftp://slack.com/api/"),
        ("SLACK_API_BASE_URL", "https://"),
        ("LOG_LEVEL", "chatty"),
    ],
)
def test_invalid_value_names_the_variable(name: str, value: str) -> None:
    message = _error({**REQUIRED, name: value})
    assert message.startswith(name)


def test_out_of_range_message_gives_the_range() -> None:
    message = _error({**REQUIRED, "COFFEEBUDDY_DB_POOL_MAX": "1000"})
    assert message == "COFFEEBUDDY_DB_POOL_MAX must be between 1 and 100, got 1000"


def test_bad_admin_ids_are_listed() -> None:
    message = _error({**REQUIRED, "COFFEEBUDDY_ADMIN_USER_IDS": "U0GOOD1,alice,U0GOOD2,bob"})
    assert message.endswith("bad: alice, bob")


def test_base_url_gets_a_trailing_slash() -> None:
    config = Config.from_environ({**REQUIRED, "SLACK_API_BASE_URL": "http://127.0.0.1:9999/api"})
    assert config.slack_api_base_url == "http://127.0.0.1:9999/api/"


def test_secret_never_shows_its_value() -> None:
    secret = Secret("hunter2-the-value")
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", str([secret])):
        assert "hunter2" not in shown
    assert secret.reveal() == "hunter2-the-value"


def test_config_repr_hides_every_secret() -> None:
    config = Config.from_environ(REQUIRED)
    for shown in (repr(config), str(config)):
        assert "Secret(" in shown
        for value in (DB_URL, "db-password-42", SIGNING_SECRET, BOT_TOKEN, "bot-token-value"):
            assert value not in shown


def test_config_error_messages_do_not_echo_secrets() -> None:
    message = _error({**REQUIRED, "SLACK_BOT_TOKEN": "xoxp-user-token-value"})
    assert "user-token-value" not in message
    message = _error({**REQUIRED, "DATABASE_URL": "mysql://u:db-password-42@db/x"})
    assert "db-password-42" not in message
