"""Secrets from Vault (token and Kubernetes auth, against a local server that speaks the
Vault HTTP API through the real hvac client), from Vault Agent files and from the
environment; token renewal and re-login; readiness; and that no secret value ever shows in
an error, a repr or a log line."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coffeebuddy.config import Config, ConfigError, Secret
from coffeebuddy.logs import JsonFormatter
from coffeebuddy.secrets import (
    SECRET_KEYS,
    SecretBundle,
    SecretKeeper,
    SecretSettings,
    SecretSource,
    VaultAuthMethod,
    load_secrets,
)
from coffeebuddy.secrets import sources as secrets_sources
from testkit.fakes.vault_api import FakeVault
from testkit.polling import eventually

PATH = "coffeebuddy/prod"
ROLE = "coffeebuddy"
LOGIN = "/v1/auth/kubernetes/login"
RENEW = "/v1/auth/token/renew-self"
READ = f"/v1/kv/data/{PATH}"


def _values() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        "slack_signing_secret": f"signing-{tag}",
        "slack_bot_token": f"xoxb-1-2-bot-{tag}",
        "database_url": f"postgresql://coffee:pw-{tag}@db.internal:5432/coffeebuddy",
    }


VALUES = _values()
JWT = "eyJhbGciOiJSUzI1NiJ9.sa-token-payload.signature"


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    with FakeVault() as fake:
        fake.put_secret(PATH, VALUES)
        yield fake


@pytest.fixture
def sa_token(tmp_path: Path) -> Path:
    path = tmp_path / "serviceaccount" / "token"
    path.parent.mkdir()
    path.write_text(JWT + "\n")
    return path


@pytest.fixture
def keepers() -> Iterator[Callable[..., SecretKeeper]]:
    """Builds keepers from an env and stops every one of them at the end."""
    made: list[SecretKeeper] = []

    def make(env: dict[str, str], **kwargs: Any) -> SecretKeeper:
        kwargs.setdefault("retry_min_seconds", 0.05)
        kwargs.setdefault("retry_max_seconds", 0.2)
        keeper = SecretKeeper.from_environ(env, **kwargs)
        made.append(keeper)
        return keeper

    yield make
    for keeper in made:
        keeper.stop()


def _vault_env(vault: FakeVault, method: str, **settings: str) -> dict[str, str]:
    return {
        "COFFEEBUDDY_SECRETS_SOURCE": "vault",
        "VAULT_ADDR": vault.url,
        "VAULT_AUTH_METHOD": method,
        "VAULT_SECRET_PATH": PATH,
        **settings,
    }


def token_env(vault: FakeVault, token: str, **extra: str) -> dict[str, str]:
    return _vault_env(vault, "token", **{"VAULT_TOKEN": token, **extra})


def k8s_env(vault: FakeVault, sa_token: Path, **extra: str) -> dict[str, str]:
    settings = {"VAULT_ROLE": ROLE, "VAULT_K8S_TOKEN_PATH": str(sa_token), **extra}
    return _vault_env(vault, "kubernetes", **settings)


def assert_redacted(text: str, *also: str) -> None:
    for value in (*VALUES.values(), JWT, *also):
        assert value not in text, f"a secret value leaked into: {text!r}"


def config_error(env: dict[str, str], *also: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_secrets(env)
    message = str(info.value)
    assert "\n" not in message
    assert_redacted(message, *also)
    assert info.value.__cause__ is None
    return message


def assert_values(bundle: SecretBundle, values: dict[str, str] = VALUES) -> None:
    assert {k: getattr(bundle, k).reveal() for k in SECRET_KEYS} == values


# ---------------------------------------------------------------------------------------
# Vault: reading
# ---------------------------------------------------------------------------------------


def test_token_auth_reads_the_secret_and_wires_into_config(vault: FakeVault) -> None:
    token = vault.add_token()
    env = token_env(vault, token)

    bundle = load_secrets(env)

    assert_values(bundle)
    assert bundle.source is SecretSource.VAULT
    assert bundle.version == 1
    assert bundle.as_environ() == {
        "SLACK_SIGNING_SECRET": VALUES["slack_signing_secret"],
        "SLACK_BOT_TOKEN": VALUES["slack_bot_token"],
        "DATABASE_URL": VALUES["database_url"],
    }
    config = Config.from_environ({**env, **bundle.as_environ()})
    assert config.slack_bot_token.reveal() == VALUES["slack_bot_token"]
    assert config.database_url.reveal() == VALUES["database_url"]
    # The token was checked, then used for the read; nothing logged in.
    assert [(c.method, c.path, c.status, c.token) for c in vault.calls()] == [
        ("GET", "/v1/auth/token/lookup-self", 200, token),
        ("GET", READ, 200, token),
    ]


def test_kubernetes_auth_logs_in_then_reads_in_a_namespace(
    sa_token: Path, keepers: Callable[..., SecretKeeper]
) -> None:
    with FakeVault(namespace="team-coffee", kv_mounts=()) as vault:
        vault.put_secret("apps/coffeebuddy", VALUES, mount="kv")
        vault.add_role(ROLE, JWT, ttl=3600)
        keeper = keepers(
            k8s_env(
                vault,
                sa_token,
                VAULT_KV_MOUNT="kv",
                VAULT_SECRET_PATH="/apps/coffeebuddy/",
                VAULT_NAMESPACE="team-coffee",
            )
        )

        assert (keeper.loaded, keeper.healthy()) == (False, False)
        bundle = keeper.load()

        assert_values(bundle)
        assert (keeper.loaded, keeper.healthy()) == (True, True)
        (issued,) = vault.issued_tokens()
        calls = vault.calls()
        assert [(c.method, c.path, c.status) for c in calls] == [
            ("POST", LOGIN, 200),
            ("GET", "/v1/kv/data/apps/coffeebuddy", 200),
        ]
        assert calls[0].role == ROLE and calls[0].token is None
        assert calls[1].token == issued
        assert {c.namespace for c in calls} == {"team-coffee"}


@pytest.mark.parametrize(
    ("role", "jwt", "why"),
    [
        ("not-coffeebuddy", JWT, "request rejected (HTTP 400)"),
        (ROLE, "eyJ.some-other-service-account.sig", "permission denied"),
    ],
)
def test_failed_kubernetes_login_is_one_line_without_secrets(
    vault: FakeVault, sa_token: Path, role: str, jwt: str, why: str
) -> None:
    vault.add_role(ROLE, JWT)
    sa_token.write_text(jwt)

    message = config_error(k8s_env(vault, sa_token, VAULT_ROLE=role), jwt)

    assert message == f"Vault: kubernetes login as role {role!r} at auth/kubernetes failed: {why}"
    assert vault.calls(READ) == []


def test_unreadable_service_account_token_names_the_setting(
    vault: FakeVault, tmp_path: Path
) -> None:
    missing = tmp_path / "nope" / "token"
    message = config_error(k8s_env(vault, missing))
    assert message == (
        f"VAULT_K8S_TOKEN_PATH: cannot read the service account token {missing} (FileNotFoundError)"
    )


def test_policy_that_does_not_allow_the_path_is_permission_denied(vault: FakeVault) -> None:
    token = vault.add_token(readable=["secret/other-app/*"])
    message = config_error(token_env(vault, token), token)
    assert message == "Vault: permission denied reading kv/coffeebuddy/prod"


def test_expired_or_wrong_token_fails_at_lookup(vault: FakeVault) -> None:
    token = vault.add_token(ttl=60, renewable=True)
    vault.expire(token)
    message = config_error(token_env(vault, token), token)
    assert message == "Vault: VAULT_TOKEN lookup failed: permission denied"
    assert config_error(token_env(vault, "hvs.made-up")) == message


def test_missing_keys_are_named_without_any_value(vault: FakeVault) -> None:
    token = vault.add_token()
    partial = {k: v for k, v in VALUES.items() if k != "slack_bot_token"}
    vault.put_secret(PATH, {**partial, "unrelated": "other-value"})

    message = config_error(token_env(vault, token), token, "other-value")

    assert message == "Vault secret kv/coffeebuddy/prod has no key: slack_bot_token"


def test_empty_and_non_text_values_are_named(vault: FakeVault) -> None:
    token = vault.add_token()
    vault.put_secret(PATH, {**VALUES, "database_url": 42})
    assert config_error(token_env(vault, token)) == (
        "Vault secret kv/coffeebuddy/prod: database_url must be a string"
    )
    vault.put_secret(PATH, {**VALUES, "slack_signing_secret": "  \n"})
    assert config_error(token_env(vault, token)) == (
        "Vault secret kv/coffeebuddy/prod: slack_signing_secret is empty"
    )


def test_missing_secret_and_unknown_mount_are_not_found(vault: FakeVault) -> None:
    token = vault.add_token()
    assert config_error(token_env(vault, token, VAULT_SECRET_PATH="coffeebuddy/nope")) == (
        "Vault: not found reading kv/coffeebuddy/nope"
    )
    assert config_error(token_env(vault, token, VAULT_KV_MOUNT="kv2")) == (
        "Vault: not found reading kv2/coffeebuddy/prod"
    )


def test_unreachable_and_sealed_vault(vault: FakeVault) -> None:
    token = vault.add_token()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    assert config_error(token_env(vault, token, VAULT_ADDR=closed)) == (
        f"Vault: VAULT_TOKEN lookup failed: cannot reach {closed} (ConnectionError)"
    )
    vault.down = True
    assert config_error(token_env(vault, token)) == (
        "Vault: VAULT_TOKEN lookup failed: Vault is sealed or unavailable (HTTP 503)"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"COFFEEBUDDY_SECRETS_SOURCE": "consul"},
            "COFFEEBUDDY_SECRETS_SOURCE must be one of vault, files, env, got 'consul'",
        ),
        (
            {"COFFEEBUDDY_SECRETS_SOURCE": "vault"},
            "VAULT_ADDR is required when COFFEEBUDDY_SECRETS_SOURCE=vault",
        ),
        (
            {"COFFEEBUDDY_SECRETS_SOURCE": "vault", "VAULT_ADDR": "vault:8200"},
            "VAULT_ADDR must be an http(s) URL, got 'vault:8200'",
        ),
        (
            {"COFFEEBUDDY_SECRETS_SOURCE": "vault", "VAULT_ADDR": "https://vault:8200"},
            "VAULT_SECRET_PATH is required when COFFEEBUDDY_SECRETS_SOURCE=vault"
            " (e.g. coffeebuddy/prod)",
        ),
        (
            {
                "COFFEEBUDDY_SECRETS_SOURCE": "vault",
                "VAULT_ADDR": "https://vault:8200",
                "VAULT_SECRET_PATH": PATH,
            },
            "VAULT_ROLE is required when VAULT_AUTH_METHOD=kubernetes",
        ),
        (
            {
                "COFFEEBUDDY_SECRETS_SOURCE": "vault",
                "VAULT_ADDR": "https://vault:8200",
                "VAULT_SECRET_PATH": PATH,
                "VAULT_AUTH_METHOD": "token",
            },
            "VAULT_TOKEN is required when VAULT_AUTH_METHOD=token",
        ),
        (
            {
                "COFFEEBUDDY_SECRETS_SOURCE": "vault",
                "VAULT_ADDR": "https://vault:8200",
                "VAULT_SECRET_PATH": PATH,
                "VAULT_AUTH_METHOD": "approle",
            },
            "VAULT_AUTH_METHOD must be one of kubernetes, token, got 'approle'",
        ),
        (
            {
                "COFFEEBUDDY_SECRETS_SOURCE": "vault",
                "VAULT_ADDR": "https://vault:8200",
                "VAULT_SECRET_PATH": PATH,
                "VAULT_ROLE": ROLE,
                "VAULT_CACERT": "/nonexistent/ca.pem",
            },
            "VAULT_CACERT /nonexistent/ca.pem is not a readable file",
        ),
    ],
)
def test_settings_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    # The first problem is this one; later ones follow from the same incomplete setup.
    assert config_error(env).split("; ")[0] == message


def test_every_vault_settings_mistake_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        SecretSettings.from_environ(
            {
                "COFFEEBUDDY_SECRETS_SOURCE": "vault",
                "COFFEEBUDDY_SECRETS_POLL_SECONDS": "0",
                "VAULT_TIMEOUT_SECONDS": "soon",
            }
        )
    assert info.value.problems == (
        "COFFEEBUDDY_SECRETS_POLL_SECONDS must be between 0.01 and 3600, got 0.0",
        "VAULT_ADDR is required when COFFEEBUDDY_SECRETS_SOURCE=vault",
        "VAULT_SECRET_PATH is required when COFFEEBUDDY_SECRETS_SOURCE=vault"
        " (e.g. coffeebuddy/prod)",
        "VAULT_TIMEOUT_SECONDS must be a number, got 'soon'",
        "VAULT_ROLE is required when VAULT_AUTH_METHOD=kubernetes",
    )


def test_settings_defaults() -> None:
    settings = SecretSettings.from_environ(
        {
            "COFFEEBUDDY_SECRETS_SOURCE": "VAULT",
            "VAULT_ADDR": "https://vault.internal:8200",
            "VAULT_ROLE": ROLE,
            "VAULT_SECRET_PATH": PATH,
        }
    )
    vault = settings.vault
    assert vault is not None
    assert vault.auth_method is VaultAuthMethod.KUBERNETES
    assert str(vault.k8s_token_path) == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert (vault.k8s_mount, vault.kv_mount, vault.where) == (
        "kubernetes",
        "kv",
        "kv/coffeebuddy/prod",
    )
    assert vault.namespace is None and vault.cacert is None and vault.token is None
    assert SecretSettings.from_environ({}).source is SecretSource.ENV
    assert str(SecretSettings.from_environ({}).secrets_dir) == "/vault/secrets"


# ---------------------------------------------------------------------------------------
# Vault Agent files and the environment
# ---------------------------------------------------------------------------------------


def write_files(directory: Path, values: dict[str, str]) -> None:
    directory.mkdir(exist_ok=True)
    for key, value in values.items():
        # The agent renders a template to a temporary file and renames it into place.
        tmp = directory / f".{key}.tmp"
        tmp.write_text(value + "\n")
        os.replace(tmp, directory / key)


def files_env(directory: Path) -> dict[str, str]:
    return {
        "COFFEEBUDDY_SECRETS_SOURCE": "files",
        "COFFEEBUDDY_SECRETS_DIR": str(directory),
        "COFFEEBUDDY_SECRETS_POLL_SECONDS": "0.05",
    }


def test_files_source_reads_the_agent_files_and_picks_up_a_rotation(
    tmp_path: Path, keepers: Callable[..., SecretKeeper]
) -> None:
    directory = tmp_path / "vault-secrets"
    write_files(directory, VALUES)
    changes: list[SecretBundle] = []
    keeper = keepers(files_env(directory), on_change=changes.append)

    keeper.start()

    assert_values(keeper.bundle)  # trailing newlines of the templates are gone
    assert keeper.bundle.source is SecretSource.FILES
    assert keeper.healthy()

    rotated = {**VALUES, "slack_bot_token": "xoxb-1-2-rotated-token"}
    write_files(directory, {"slack_bot_token": rotated["slack_bot_token"]})
    eventually(lambda: len(changes) == 1, what="the rotated token")
    assert_values(keeper.bundle, rotated)
    assert changes == [keeper.bundle]

    # A file that vanishes (the agent mid-rewrite) keeps the last good values.
    (directory / "database_url").unlink()
    time.sleep(0.2)
    assert_values(keeper.bundle, rotated)
    assert keeper.healthy()
    assert len(changes) == 1


def test_files_source_names_missing_files_only(tmp_path: Path) -> None:
    directory = tmp_path / "vault-secrets"
    write_files(directory, {"slack_signing_secret": VALUES["slack_signing_secret"]})
    message = config_error(files_env(directory))
    assert message == (
        f"COFFEEBUDDY_SECRETS_DIR {directory} has no file for: slack_bot_token, database_url"
    )


def test_env_source_is_the_default_and_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets_sources, "_env_warned", threading.Event())
    env = {
        "SLACK_SIGNING_SECRET": VALUES["slack_signing_secret"],
        "SLACK_BOT_TOKEN": VALUES["slack_bot_token"],
        "DATABASE_URL": VALUES["database_url"],
    }
    with caplog.at_level(logging.INFO, logger="coffeebuddy.secrets"):
        first, second = load_secrets(env), load_secrets(env)

    assert_values(first)
    assert first == second and first.source is SecretSource.ENV
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["secrets_from_environment"]
    assert "development" in JsonFormatter().format(warnings[0])


def test_env_source_names_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets_sources, "_env_warned", threading.Event())
    message = config_error({"SLACK_SIGNING_SECRET": VALUES["slack_signing_secret"]})
    assert message == "SLACK_BOT_TOKEN, DATABASE_URL required but not set"


def test_nothing_prints_a_secret_value(
    vault: FakeVault, sa_token: Path, tmp_path: Path, keepers: Callable[..., SecretKeeper]
) -> None:
    token = vault.add_token()
    write_files(tmp_path / "files", VALUES)
    bundles = [
        load_secrets(token_env(vault, token)),
        load_secrets(files_env(tmp_path / "files")),
        load_secrets({f"{k.upper()}": v for k, v in VALUES.items()}),
    ]
    keeper = keepers(token_env(vault, token))
    keeper.load()
    for bundle in bundles:
        shown = [repr(bundle), str(bundle), f"{bundle}", f"{bundle!r}"]
        for key in SECRET_KEYS:
            secret = getattr(bundle, key)
            assert isinstance(secret, Secret)
            shown += [repr(secret), str(secret), f"{secret}"]
        assert_redacted(" ".join(shown), token)
        assert "********" in repr(bundle)
    assert_redacted(repr(keeper.settings) + repr(keeper.settings.vault), token)


# ---------------------------------------------------------------------------------------
# Vault: keeping the token alive, readiness
# ---------------------------------------------------------------------------------------


def test_token_is_renewed_before_it_expires(
    vault: FakeVault, keepers: Callable[..., SecretKeeper]
) -> None:
    token = vault.add_token(ttl=3, renewable=True)
    first_expiry = vault.token(token).expires_at
    assert first_expiry is not None
    keeper = keepers(token_env(vault, token)).start()

    eventually(
        lambda: len(vault.calls(RENEW)) >= 2 and time.monotonic() > first_expiry + 0.1,
        what="two renewals, the token past its first TTL",
    )

    renewals = vault.calls(RENEW)
    # Each renewal succeeded, so each came while the token was still valid.
    assert all(c.ok and c.token == token for c in renewals)
    assert renewals[0].at < first_expiry
    assert vault.token_valid(token)
    assert keeper.healthy()
    assert_values(keeper.refresh())


def test_failed_renewal_logs_in_again_with_kubernetes_auth(
    vault: FakeVault, sa_token: Path, keepers: Callable[..., SecretKeeper]
) -> None:
    vault.add_role(ROLE, JWT, ttl=3, renewable=True)
    vault.fail_renewals(500, "internal error")
    keeper = keepers(k8s_env(vault, sa_token)).start()
    (first,) = vault.issued_tokens()

    eventually(lambda: len(vault.issued_tokens()) >= 2, what="a second login")

    first_expiry = vault.token(first).expires_at
    assert first_expiry is not None
    renewals = vault.calls(RENEW)
    assert renewals and renewals[0].status == 500 and renewals[0].token == first
    relogin = vault.calls(LOGIN)[1]
    assert relogin.ok and relogin.at < first_expiry
    assert keeper.healthy()
    assert_values(keeper.refresh())
    assert vault.calls(READ)[-1].token == vault.issued_tokens()[1]


def test_non_renewable_kubernetes_token_is_replaced_by_a_new_login(
    vault: FakeVault, sa_token: Path, keepers: Callable[..., SecretKeeper]
) -> None:
    vault.add_role(ROLE, JWT, ttl=3, renewable=False)
    keeper = keepers(k8s_env(vault, sa_token)).start()
    (first,) = vault.issued_tokens()
    first_expiry = vault.token(first).expires_at
    assert first_expiry is not None

    eventually(lambda: len(vault.issued_tokens()) >= 2, what="a second login")

    assert vault.calls(LOGIN)[1].at < first_expiry
    assert vault.calls(RENEW) == []
    assert keeper.healthy()


def test_renewal_capped_by_max_ttl_leads_to_a_new_login(
    vault: FakeVault, sa_token: Path, keepers: Callable[..., SecretKeeper]
) -> None:
    # Renewed at 4 s, the token has 1.5 s left of its max TTL: Vault grants 1 s of the 6.
    vault.add_role(ROLE, JWT, ttl=6, renewable=True, max_ttl=5.5)
    keeper = keepers(k8s_env(vault, sa_token)).start()
    (first,) = vault.issued_tokens()

    eventually(lambda: len(vault.issued_tokens()) >= 2, what="a second login")

    (renewal,) = vault.calls(RENEW)
    assert renewal.ok and renewal.token == first
    assert vault.calls(LOGIN)[1].at > renewal.at
    assert keeper.healthy()


def test_readiness_follows_vault_outage_and_recovery(
    vault: FakeVault,
    sa_token: Path,
    keepers: Callable[..., SecretKeeper],
    caplog: pytest.LogCaptureFixture,
) -> None:
    vault.add_role(ROLE, JWT, ttl=2, renewable=True)

    def events() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "coffeebuddy.secrets"]

    with caplog.at_level(logging.DEBUG):
        keeper = keepers(k8s_env(vault, sa_token)).start()
        (first,) = vault.issued_tokens()
        assert keeper.healthy()

        vault.down = True
        eventually(lambda: not keeper.healthy(), what="readiness to turn false")
        # The keeper errs early: Vault's clock lets the token live a moment longer.
        eventually(lambda: not vault.token_valid(first), what="the token to expire in Vault")
        assert not keeper.healthy()
        assert keeper.loaded  # the secrets are still in memory
        eventually(
            lambda: "vault_token_expired" in events(), what="a failed attempt after the expiry"
        )
        assert any(c.status == 503 for c in vault.calls(RENEW) + vault.calls(LOGIN))

        vault.down = False
        eventually(keeper.healthy, what="readiness to come back")

    assert len(vault.issued_tokens()) >= 2
    assert_values(keeper.refresh())
    assert {"vault_token_renew_failed", "vault_recovered"} <= set(events())
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(r) for r in caplog.records)
    assert_redacted(logged, *vault.issued_tokens())


def test_static_token_that_expires_turns_readiness_false_for_good(
    vault: FakeVault, keepers: Callable[..., SecretKeeper]
) -> None:
    token = vault.add_token(ttl=2, renewable=False)
    keeper = keepers(token_env(vault, token)).start()
    assert keeper.healthy()

    eventually(lambda: not keeper.healthy(), what="readiness to turn false")
    # The keeper errs early: Vault's clock lets the token live a moment longer.
    eventually(lambda: not vault.token_valid(token), what="the token to expire in Vault")
    time.sleep(0.2)
    assert not keeper.healthy()
    assert vault.calls(RENEW) == []  # a non-renewable token is not pestered
    with pytest.raises(ConfigError, match=r"^Vault: permission denied reading kv/coffee"):
        keeper.refresh()


def test_token_that_never_expires_needs_no_care(
    vault: FakeVault, keepers: Callable[..., SecretKeeper]
) -> None:
    token = vault.add_token(ttl=0)
    keeper = keepers(token_env(vault, token)).start()
    time.sleep(0.2)
    assert keeper.healthy()
    assert [c.path for c in vault.calls()] == ["/v1/auth/token/lookup-self", READ]
