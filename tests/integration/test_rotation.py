"""A rotated signing secret or bot token takes effect in the running process: through the
Vault Agent's files (the web app as `coffeebuddy web` builds it) and through Vault itself
(the worker's Slack client). The previous signing secret is accepted for a short overlap."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from coffeebuddy import logs
from coffeebuddy.entry import SecretListeners, build_worker, load_config, slack_token_listener
from coffeebuddy.secrets import SecretKeeper
from coffeebuddy.slack import run_blocks
from coffeebuddy.web.middleware import SigningSecrets
from testkit.fakes.slack_api import FakeSlack
from testkit.fakes.vault_api import FakeVault
from testkit.polling import eventually
from testkit.slack_payloads import block_action_body, command_body, sign
from tests.conftest import CHANNEL

OLD_SECRET = "old-signing-secret-0123456789"
NEW_SECRET = "new-signing-secret-9876543210"


def _write(directory: Path, values: dict[str, str]) -> None:
    directory.mkdir(exist_ok=True)
    for key, value in values.items():
        tmp = directory / f".{key}.tmp"
        tmp.write_text(value + "\n")
        tmp.replace(directory / key)


@pytest.fixture
def quiet_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    # web_app() configures the root logger for a process; keep pytest's capture intact.
    monkeypatch.setattr(logs, "setup", lambda level="INFO": None)


@pytest.fixture
def web_from_files(
    tmp_path: Path, database_url: str, slack: FakeSlack, quiet_logs: None
) -> Callable[..., tuple[falcon.testing.TestClient, Path]]:
    from coffeebuddy.entry import web_app

    made: list[Any] = []

    def make(**extra: str) -> tuple[falcon.testing.TestClient, Path]:
        directory = tmp_path / f"secrets-{uuid.uuid4().hex[:6]}"
        _write(
            directory,
            {
                "slack_signing_secret": OLD_SECRET,
                "slack_bot_token": slack.token,
                "database_url": database_url,
            },
        )
        env = {
            "COFFEEBUDDY_SECRETS_SOURCE": "files",
            "COFFEEBUDDY_SECRETS_DIR": str(directory),
            "COFFEEBUDDY_SECRETS_POLL_SECONDS": "0.05",
            "SLACK_API_BASE_URL": slack.base_url,
            "COFFEEBUDDY_DB_POOL_MIN": "0",
            **extra,
        }
        app = web_app(env)
        made.append(app)
        return falcon.testing.TestClient(app), directory

    return make


def _help(client: falcon.testing.TestClient, secret: str) -> int:
    body = command_body(user_id="U0ANA", channel_id=CHANNEL, text="help")
    return client.simulate_post(
        "/slack/commands", body=body, headers=sign(body, secret=secret)
    ).status_code


def test_files_rotation_swaps_the_signing_secret_and_the_bot_token(
    web_from_files: Callable[..., tuple[falcon.testing.TestClient, Path]],
    slack: FakeSlack,
    sql: Any,
) -> None:
    client, directory = web_from_files()
    assert _help(client, OLD_SECRET) == 200
    assert _help(client, NEW_SECRET) == 401

    new_token = "xoxb-rotated-" + uuid.uuid4().hex[:8]
    slack.token = new_token  # Slack revoked the old token
    _write(directory, {"slack_signing_secret": NEW_SECRET, "slack_bot_token": new_token})
    eventually(lambda: _help(client, NEW_SECRET) == 200, what="the new signing secret")
    # Inside the overlap the previous secret still works (Slack may still use it).
    assert _help(client, OLD_SECRET) == 200

    # A request-path Slack call (views.open for "Place order") uses the new token.
    body = command_body(user_id="U0ANA", channel_id=CHANNEL, text="Lobby")
    started = client.simulate_post(
        "/slack/commands", body=body, headers=sign(body, secret=NEW_SECRET)
    )
    assert started.status_code == 200
    ((run_id,),) = sql("SELECT id::text FROM runs")
    click = block_action_body(
        user_id="U0BEN",
        channel_id=CHANNEL,
        action_id=run_blocks.ACTION_PLACE_ORDER,
        value=run_id,
        response_url=slack.response_url("ben"),
        trigger_id=slack.trigger_id(),
    )
    assert (
        client.simulate_post(
            "/slack/interactions", body=click, headers=sign(click, secret=NEW_SECRET)
        ).status_code
        == 200
    )
    calls = slack.calls("views.open")
    assert len(calls) == 1
    assert calls[0].error is None


def test_without_overlap_the_old_secret_stops_working(
    web_from_files: Callable[..., tuple[falcon.testing.TestClient, Path]],
) -> None:
    client, directory = web_from_files(COFFEEBUDDY_SIGNING_SECRET_OVERLAP_SECONDS="0")
    _write(directory, {"slack_signing_secret": NEW_SECRET})
    eventually(lambda: _help(client, NEW_SECRET) == 200, what="the new signing secret")
    assert _help(client, OLD_SECRET) == 401


def test_the_overlap_ends() -> None:
    now = [1_000_000.0]
    secrets = SigningSecrets(OLD_SECRET, overlap_seconds=60, clock=lambda: now[0])
    body = b"a=1"

    def valid(secret: str) -> bool:
        headers = sign(body, secret=secret, timestamp=int(now[0]))
        return secrets.is_valid(
            body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
        )

    secrets.rotate(NEW_SECRET)
    assert valid(NEW_SECRET) and valid(OLD_SECRET)
    now[0] += 61
    assert valid(NEW_SECRET) and not valid(OLD_SECRET)
    secrets.rotate(NEW_SECRET)  # the same value again is not a rotation
    assert not valid(OLD_SECRET)


def test_vault_rotation_reaches_the_worker_slack_client(
    database_url: str, slack: FakeSlack, sql: Any, web: Any
) -> None:
    path = "coffeebuddy/prod"
    with FakeVault() as vault:
        token = vault.add_token()
        vault.put_secret(
            path,
            {
                "slack_signing_secret": OLD_SECRET,
                "slack_bot_token": slack.token,
                "database_url": database_url,
            },
        )
        env = {
            "COFFEEBUDDY_SECRETS_SOURCE": "vault",
            "VAULT_ADDR": vault.url,
            "VAULT_AUTH_METHOD": "token",
            "VAULT_TOKEN": token,
            "VAULT_SECRET_PATH": path,
            "COFFEEBUDDY_SECRETS_POLL_SECONDS": "0.05",
            "SLACK_API_BASE_URL": slack.base_url,
        }
        listeners = SecretListeners()
        keeper = SecretKeeper.from_environ(env, on_change=listeners).start()
        config = load_config({**env, **keeper.bundle.as_environ()})
        worker = build_worker(replace(config, refresh_coalesce_ms=0, burst_quiet_ms=0))
        try:
            listeners.add(slack_token_listener(worker.context.slack))
            listeners.follow(keeper)

            new_token = "xoxb-vault-rotated-" + uuid.uuid4().hex[:8]
            slack.token = new_token
            vault.put_secret(
                path,
                {
                    "slack_signing_secret": NEW_SECRET,
                    "slack_bot_token": new_token,
                    "database_url": database_url,
                },
            )
            eventually(lambda: worker.context.slack.token == new_token, what="the rotated token")
            # A job that calls Slack now succeeds with the new token.
            body = command_body(user_id="U0ANA", channel_id=CHANNEL, text="Lobby")
            assert web.post("/slack/commands", body).status_code == 200
            worker.run_until_idle()
            assert slack.messages(CHANNEL), "the run message was posted with the new token"
        finally:
            keeper.stop()
            worker.database.close()
