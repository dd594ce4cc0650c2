"""Relay settings from the environment, and the retry delay the relay backs off with."""

from __future__ import annotations

import pytest

from coffeebuddy.config import Config, ConfigError
from coffeebuddy.events.producer import Backoff
from coffeebuddy.events.relay import EventRelay

REQUIRED = {
    "DATABASE_URL": "postgresql://coffee@db.internal:5432/coffeebuddy",
    "SLACK_SIGNING_SECRET": "signing-secret",
    "SLACK_BOT_TOKEN": "xoxb-1111-2222-bot-token-value",
}


def test_kafka_is_off_by_default() -> None:
    config = Config.from_environ(REQUIRED)
    assert config.kafka_bootstrap_servers == ()
    assert config.relay_batch == 500
    assert config.relay_poll_seconds == 1.0
    assert config.event_retention_days == 7


def test_relay_settings_are_read() -> None:
    config = Config.from_environ(
        {
            **REQUIRED,
            "KAFKA_BOOTSTRAP_SERVERS": " kafka-0.kafka:9092, kafka-1.kafka:9092 ,[::1]:9093",
            "COFFEEBUDDY_RELAY_BATCH": "200",
            "COFFEEBUDDY_RELAY_POLL_SECONDS": "0.5",
            "COFFEEBUDDY_EVENT_RETENTION_DAYS": "30",
        }
    )
    assert config.kafka_bootstrap_servers == (
        "kafka-0.kafka:9092",
        "kafka-1.kafka:9092",
        "[::1]:9093",
    )
    relay = EventRelay.from_config(config)
    assert relay.bootstrap_servers == config.kafka_bootstrap_servers
    assert relay.batch_size == 200
    assert relay.poll_seconds == 0.5
    assert relay.retention_seconds == 30 * 86400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka-0"),
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9092,kafka://kafka-1:9092"),
        ("KAFKA_BOOTSTRAP_SERVERS", ","),
        ("COFFEEBUDDY_RELAY_BATCH", "0"),
        ("COFFEEBUDDY_RELAY_BATCH", "lots"),
        ("COFFEEBUDDY_RELAY_POLL_SECONDS", "0"),
        ("COFFEEBUDDY_EVENT_RETENTION_DAYS", "0"),
    ],
)
def test_bad_relay_settings_fail_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as info:
        Config.from_environ({**REQUIRED, name: value})
    assert "\n" not in str(info.value)


def test_backoff_grows_is_capped_and_resets() -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    delays = [backoff.next() for _ in range(12)]
    assert all(0 < d <= 30.0 for d in delays)
    # Jitter is within ±50 %, so the fifth delay (nominal 8 s) beats the first (nominal 0.5 s).
    assert delays[4] > delays[0] * 2
    assert delays[-1] >= 15.0  # nominal 30 s (capped), jitter halves it at worst
    backoff.reset()
    assert backoff.next() <= 0.75
