"""WorkerSettings.from_environ: defaults, parsing, and one clear line for a bad value (the
real `python worker.py` is in tests/integration/test_config_errors.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coffeebuddy.config import ConfigError, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    settings = WorkerSettings.from_environ({})
    assert settings == WorkerSettings()
    assert settings.metrics_port == 9102
    assert settings.job_retention_hours == 24
    assert settings.dead_job_retention_days == 14
    assert settings.stats_interval_seconds == 15.0
    assert settings.prune_interval_seconds == 3600.0
    assert settings.nice == 10


def test_values_from_the_environment() -> None:
    settings = WorkerSettings.from_environ(
        {
            "COFFEEBUDDY_WORKER_METRICS_PORT": "0",
            "COFFEEBUDDY_JOB_RETENTION_HOURS": " 6 ",
            "COFFEEBUDDY_DEAD_JOB_RETENTION_DAYS": "30",
            "COFFEEBUDDY_WORKER_STATS_SECONDS": "2.5",
            "COFFEEBUDDY_WORKER_CONCURRENCY": "not mine, ignored",
            "COFFEEBUDDY_WORKER_NICE": "0",
        }
    )
    assert settings.nice == 0
    assert (settings.metrics_port, settings.job_retention_hours) == (0, 6)
    assert settings.dead_job_retention_days == 30
    assert settings.stats_interval_seconds == 2.5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("COFFEEBUDDY_WORKER_METRICS_PORT", "http", "must be an integer, got 'http'"),
        ("COFFEEBUDDY_WORKER_METRICS_PORT", "70000", "must be between 0 and 65535, got 70000"),
        ("COFFEEBUDDY_JOB_RETENTION_HOURS", "0", "must be between 1 and 8760, got 0"),
        ("COFFEEBUDDY_DEAD_JOB_RETENTION_DAYS", "1.5", "must be an integer, got '1.5'"),
        ("COFFEEBUDDY_WORKER_STATS_SECONDS", "soon", "must be a number, got 'soon'"),
        ("COFFEEBUDDY_WORKER_STATS_SECONDS", "0", "must be between 0.1 and 600, got 0.0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        WorkerSettings.from_environ({name: value})
    assert str(info.value) == f"{name} {message}"
