"""Mistakes get one line each (issue 13, items 7-9): every bad variable is named at once,
an invalid LOG_LEVEL is a configuration error rather than a traceback, and a database that
does not answer is one line from the commands that need it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from coffeebuddy.config import Config, ConfigError, WorkerSettings
from coffeebuddy.preflight import check_config

ROOT = Path(__file__).resolve().parents[2]
VALID = {
    "DATABASE_URL": "postgresql://coffee:pw-7781@127.0.0.1:5432/coffeebuddy",
    "SLACK_SIGNING_SECRET": "signing-secret",
    "SLACK_BOT_TOKEN": "xoxb-1-2",
}
LEVEL_LINE = (
    "coffeebuddy: configuration error: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, "
    "got 'VERBOSE'"
)


def _problems(env: dict[str, str]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        Config.from_environ(env)
    return info.value.problems


def test_every_missing_secret_is_named() -> None:
    assert _problems({}) == (
        "DATABASE_URL is required but not set",
        "SLACK_SIGNING_SECRET is required but not set",
        "SLACK_BOT_TOKEN is required but not set",
    )


def test_missing_and_invalid_variables_are_named_together() -> None:
    problems = _problems(
        {
            "DATABASE_URL": "mysql://x",
            "SLACK_BOT_TOKEN": "xoxp-user",
            "COFFEEBUDDY_DB_POOL_MAX": "lots",
            "COFFEEBUDDY_WORKER_STATS_SECONDS": "0",
            "COFFEEBUDDY_RETENTION_MIN_DAYS": "100",
            "LOG_LEVEL": "verbose",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka",
            "COFFEEBUDDY_OPS_ISSUER": "https://ory.internal",
        }
    )
    named = [p.split(" ", 1)[0] for p in problems]
    assert named == [
        "DATABASE_URL",
        "SLACK_SIGNING_SECRET",
        "SLACK_BOT_TOKEN",
        "COFFEEBUDDY_DB_POOL_MAX",
        "COFFEEBUDDY_WORKER_STATS_SECONDS",
        "LOG_LEVEL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "COFFEEBUDDY_OPS_AUDIENCE",
        "COFFEEBUDDY_RETENTION_MIN_DAYS..COFFEEBUDDY_RETENTION_MAX_DAYS",
    ]
    # Each is still one line, and the message as a whole stays one line too.
    assert all("\\n" not in p for p in problems)


def test_worker_settings_alone_still_raise_for_their_own_mistakes() -> None:
    with pytest.raises(ConfigError) as info:
        WorkerSettings.from_environ(
            {"COFFEEBUDDY_WORKER_METRICS_PORT": "x", "COFFEEBUDDY_JOB_RETENTION_HOURS": "0"}
        )
    assert len(info.value.problems) == 2


def test_preflight_adds_the_secret_source_mistakes_and_stands_in_for_vault_values() -> None:
    with pytest.raises(ConfigError) as info:
        check_config({"COFFEEBUDDY_SECRETS_SOURCE": "vault", "LOG_LEVEL": "loud"})
    # Every Vault mistake is named (they are read like every other setting), then Config's.
    assert [p.split(" ", 1)[0] for p in info.value.problems] == [
        "VAULT_ADDR",
        "VAULT_SECRET_PATH",
        "VAULT_ROLE",
        "LOG_LEVEL",
    ]
    # With the files source the secrets come later: only real mistakes are named.
    config = check_config({"COFFEEBUDDY_SECRETS_SOURCE": "files"})
    assert config.log_level == "INFO"


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["worker.py"],
        ["-c", "import app"],
        ["-m", "coffeebuddy", "migrate"],
        ["-m", "coffeebuddy", "jobs", "list"],
        ["-m", "coffeebuddy", "serve"],
    ],
    ids=["worker", "web", "migrate", "jobs", "serve"],
)
def test_an_invalid_log_level_is_one_line(argv: list[str], tmp_path: Path) -> None:
    result = _run(argv, **VALID, LOG_LEVEL="verbose", COFFEEBUDDY_STATE_DIR=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [LEVEL_LINE]
    assert "Traceback" not in result.stdout


def test_the_dev_runner_names_every_mistake_at_once(tmp_path: Path) -> None:
    result = _run(
        ["-m", "coffeebuddy", "serve"],
        LOG_LEVEL="verbose",
        GUNICORN_WORKERS="many",
        COFFEEBUDDY_STATE_DIR=str(tmp_path / "state"),
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "coffeebuddy: configuration error: GUNICORN_WORKERS must be an integer, got 'many'",
        "coffeebuddy: configuration error: SLACK_SIGNING_SECRET is required but not set",
        "coffeebuddy: configuration error: SLACK_BOT_TOKEN is required but not set",
        LEVEL_LINE,
    ]
    assert not (tmp_path / "state").exists()  # nothing was started


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


@pytest.mark.parametrize(
    "argv",
    [["-m", "coffeebuddy", "migrate"], ["-m", "coffeebuddy", "serve"]],
    ids=["migrate", "serve"],
)
def test_an_unreachable_database_is_one_line(argv: list[str]) -> None:
    port = _closed_port()
    result = _run(
        argv,
        **{
            **VALID,
            "DATABASE_URL": f"postgresql://coffee:pw-7781@127.0.0.1:{port}/coffeebuddy",
            "PORT": str(_closed_port()),
            "COFFEEBUDDY_WORKER_METRICS_PORT": "0",
        },
    )
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"coffeebuddy: cannot reach the database at 127.0.0.1:{port}/coffeebuddy: "
    )
    assert "DATABASE_URL" in lines[0]
    assert "pw-7781" not in result.stderr + result.stdout


def test_an_embedded_postgres_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "pgdata").write_text("not a directory")
    result = _run(
        ["-m", "coffeebuddy", "serve"],
        SLACK_SIGNING_SECRET="s",
        SLACK_BOT_TOKEN="xoxb-1",
        COFFEEBUDDY_STATE_DIR=str(state),
        PORT=str(_closed_port()),
        COFFEEBUDDY_WORKER_METRICS_PORT="0",
    )
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("coffeebuddy: the embedded Postgres did not start: ")
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize("argv", [["worker.py"], ["-c", "import app"]], ids=["worker", "web"])
def test_entry_points_fail_fast_with_one_line_per_mistake(argv: list[str]) -> None:
    result = _run(argv)
    assert result.returncode != 0
    # Every missing variable is named at once, one line each (issue 13, item 9).
    assert result.stderr.splitlines() == [
        f"coffeebuddy: configuration error: {name} is required but not set"
        for name in ("DATABASE_URL", "SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN")
    ]
    assert result.stdout == ""


def test_the_worker_process_refuses_a_bad_setting() -> None:
    result = _run(
        ["worker.py"],
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        SLACK_SIGNING_SECRET="s",
        SLACK_BOT_TOKEN="xoxb-1",
        COFFEEBUDDY_JOB_RETENTION_HOURS="forever",
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "coffeebuddy: configuration error: "
        "COFFEEBUDDY_JOB_RETENTION_HOURS must be an integer, got 'forever'"
    )
