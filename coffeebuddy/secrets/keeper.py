"""Keeps the secrets usable while the process runs: Vault token renewal and re-login, and
re-reading rotated values (Vault, or the Vault Agent's files)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from coffeebuddy.config.loader import ConfigError
from coffeebuddy.secrets.settings import (
    ENV_NAMES,
    SECRET_KEYS,
    SecretSettings,
    SecretSource,
    VaultAuthMethod,
)
from coffeebuddy.secrets.sources import SecretBundle, bundle_of, read_env, read_files
from coffeebuddy.secrets.vault import VAULT_FAILURES, Lease, VaultClient, login_failure, why

# One logger for the whole package: operators filter on "coffeebuddy.secrets".
log = logging.getLogger("coffeebuddy.secrets")

# A token is renewed (or a new one obtained) when this share of its TTL has passed.
RENEW_AT = 2 / 3
# Renewal granting less than this share of the login TTL means the token hit its max TTL;
# with Kubernetes auth a fresh login is better than renewing ever shorter leases.
MIN_RENEWED_SHARE = 1 / 3


def load_secrets(env: Mapping[str, str]) -> SecretBundle:
    """Read the secrets once (no renewal thread), for one-shot processes and simple wiring."""
    keeper = SecretKeeper.from_environ(env)
    try:
        return keeper.load()
    finally:
        keeper.stop()


def load_database_url(env: Mapping[str, str]) -> str:
    """Only the database URL, for the migration Job: its pod is given no other secret (with
    the files source only `database_url` needs to exist). Raises ConfigError."""
    settings = SecretSettings.from_environ(env)
    if settings.source is SecretSource.FILES:
        path = settings.secrets_dir / "database_url"
        try:
            value = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(
                f"COFFEEBUDDY_SECRETS_DIR {settings.secrets_dir} has no file for: database_url"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"COFFEEBUDDY_SECRETS_DIR: cannot read {path} ({type(exc).__name__})"
            ) from None
    elif settings.source is SecretSource.VAULT:
        value = load_secrets(env).database_url.reveal()
    else:
        value = (env.get(ENV_NAMES["database_url"]) or "").strip()
    if not value:
        raise ConfigError("DATABASE_URL is required but not set")
    return value


class SecretKeeper:
    """Loads the secrets and keeps them usable while the process runs.

    Vault: a background thread renews the token at 2/3 of its TTL; with Kubernetes auth it
    logs in again when renewal fails, the token is not renewable or it reached its max TTL.
    Files: a background thread re-reads the Vault Agent's files and swaps the bundle when
    they change (`on_change` is told). Env: nothing to keep.

    `healthy()` is the readiness answer: the secrets are loaded and, for Vault, the token is
    not past its expiry (a failed renewal only counts once the token has run out).
    """

    def __init__(
        self,
        settings: SecretSettings,
        *,
        env: Mapping[str, str] | None = None,
        on_change: Callable[[SecretBundle], None] | None = None,
        retry_min_seconds: float = 1.0,
        retry_max_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        # Only the env source reads secrets from here.
        self._env = env if env is not None else os.environ
        self._on_change = on_change
        self._retry_min = retry_min_seconds
        self._retry_max = retry_max_seconds
        self._clock = clock
        self._lock = threading.Lock()  # one Vault conversation at a time
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._bundle: SecretBundle | None = None
        self._vault = VaultClient(settings.vault, clock) if settings.vault is not None else None
        self._lease: Lease | None = None
        self._failures = 0
        self._retry_at: float | None = None
        self._expiry_logged = False
        self._idle = False
        self._file_error: str | None = None

    @classmethod
    def from_environ(cls, env: Mapping[str, str], **kwargs: Any) -> SecretKeeper:
        return cls(SecretSettings.from_environ(env), env=env, **kwargs)

    # -- public ---------------------------------------------------------------------------

    @property
    def source(self) -> SecretSource:
        return self.settings.source

    @property
    def loaded(self) -> bool:
        return self._bundle is not None

    @property
    def bundle(self) -> SecretBundle:
        bundle = self._bundle
        if bundle is None:
            raise RuntimeError("secrets are not loaded yet: call load() or start() first")
        return bundle

    def healthy(self) -> bool:
        if self._bundle is None:
            return False
        if self._vault is None:
            return True
        lease = self._lease
        expires_at = lease.expires_at if lease is not None else None
        return expires_at is None or self._clock() < expires_at

    def load(self) -> SecretBundle:
        """Read the secrets now (logging in to Vault first); raises ConfigError."""
        source = self.settings.source
        if source is SecretSource.VAULT:
            bundle = self._load_vault()
        elif source is SecretSource.FILES:
            bundle = read_files(self.settings.secrets_dir)
        else:
            bundle = read_env(self._env)
        self._bundle = bundle
        log.info("secrets_loaded", extra={"kind": source.value, "count": len(SECRET_KEYS)})
        return bundle

    def refresh(self) -> SecretBundle:
        """Read the secrets again with the current token or files; raises ConfigError."""
        if self.settings.source is SecretSource.VAULT:
            with self._lock:
                bundle = self._read_vault()
        elif self.settings.source is SecretSource.FILES:
            bundle = read_files(self.settings.secrets_dir)
        else:
            return self.bundle
        self._swap(bundle)
        return bundle

    def start(self) -> Self:
        """Load (if not yet loaded) and start the background thread; idempotent."""
        if self._bundle is None:
            self.load()
        if self._thread is not None or self.settings.source is SecretSource.ENV:
            return self
        self._stopping.clear()
        target = self._run_vault if self._vault is not None else self._run_files
        self._thread = threading.Thread(target=target, name="secret-keeper", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread and close the Vault connection; the bundle stays."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        if self._vault is not None:
            with self._lock:
                self._vault.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc: type[BaseException] | None, val: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- vault ----------------------------------------------------------------------------

    @property
    def _can_login(self) -> bool:
        """Kubernetes auth can always get a new token; a static VAULT_TOKEN cannot."""
        vault = self.settings.vault
        return vault is not None and vault.auth_method is VaultAuthMethod.KUBERNETES

    def _load_vault(self) -> SecretBundle:
        vault = self._vault
        assert vault is not None
        settings = vault.settings
        with self._lock:
            try:
                self._lease = vault.authenticate()
            except VAULT_FAILURES as exc:
                raise ConfigError(login_failure(settings, exc)) from None
            lease = self._lease
            if lease.ttl > 0 and not lease.renewable and not self._can_login:
                log.warning("vault_token_not_renewable", extra={"delay_s": self._lease.ttl})
            log.info(
                "vault_authenticated",
                extra={"kind": settings.auth_method.value, "delay_s": self._lease.ttl},
            )
            return self._read_vault()

    def _read_vault(self) -> SecretBundle:
        vault = self._vault
        assert vault is not None
        where = vault.settings.where
        try:
            values, version = vault.read()
        except VAULT_FAILURES as exc:
            raise ConfigError(f"Vault: {why(exc, vault.settings.addr)} reading {where}") from None
        return bundle_of(values, SecretSource.VAULT, f"Vault secret {where}", version)

    def _run_vault(self) -> None:
        # Besides caring for the token, read the secret again every poll interval: a value
        # rotated in Vault must reach the running process (see `_swap`).
        next_read = self._clock() + self.settings.poll_seconds
        while True:
            token_due = self._vault_due_in()
            read_due = max(0.0, next_read - self._clock())
            if self._stopping.wait(read_due if token_due is None else min(token_due, read_due)):
                return
            if self._clock() >= next_read:
                next_read = self._clock() + self.settings.poll_seconds
                self._reread_vault()
            token_due = self._vault_due_in()
            if token_due is None or token_due > 0:
                continue
            try:
                self._maintain_token()
            except Exception:  # the keeper thread must outlive any surprise
                log.exception("vault_keeper_error")
                self._note_failure()

    def _reread_vault(self) -> None:
        if not self.healthy():
            return  # the token is being cared for; reading now would only fail
        try:
            self.refresh()
        except ConfigError as exc:
            # Keep serving the last good values; the next read tries again.
            log.warning("secrets_vault_unreadable", extra={"reason": str(exc)})
        except Exception:
            log.exception("secrets_vault_error")

    def _vault_due_in(self) -> float | None:
        if self._idle:
            return None
        if self._retry_at is not None:
            return max(0.0, self._retry_at - self._clock())
        lease = self._lease
        if lease is None or lease.ttl <= 0:
            return None  # a token that never expires needs no care
        return max(0.0, lease.obtained_at + lease.ttl * RENEW_AT - self._clock())

    def _maintain_token(self) -> None:
        vault = self._vault
        assert vault is not None
        can_login = self._can_login
        with self._lock:
            lease = self._lease
            expired = not self.healthy()
            if not can_login and expired:
                # A static token that ran out cannot come back (a restart with a new
                # VAULT_TOKEN can): stop trying; readiness stays false.
                self._idle, self._retry_at = True, None
                if not self._expiry_logged:
                    self._expiry_logged = True
                    log.error("vault_token_expired", extra={"kind": "token"})
                return
            if not can_login and (lease is None or not lease.renewable):
                # Nothing to do but to notice the expiry when it comes.
                self._retry_at = lease.expires_at if lease is not None else None
                self._idle = self._retry_at is None
                return
            try:
                new = self._renew_or_login(vault, lease, expired, can_login)
            except VAULT_FAILURES as exc:
                self._note_failure(exc)
                return
            recovered = self._failures > 0
            self._lease, self._failures, self._retry_at = new, 0, None
            self._expiry_logged = False
            if recovered:
                log.info("vault_recovered", extra={"kind": vault.settings.auth_method.value})

    def _renew_or_login(
        self, vault: VaultClient, lease: Lease | None, expired: bool, can_login: bool
    ) -> Lease:
        if lease is not None and lease.renewable and not expired:
            try:
                new = vault.renew()
            except VAULT_FAILURES as exc:
                if not can_login:
                    raise
                log.warning(
                    "vault_token_renew_failed",
                    extra={"error": type(exc).__name__, "reason": why(exc, vault.settings.addr)},
                )
            else:
                if not can_login or new.ttl >= vault.login_ttl * MIN_RENEWED_SHARE:
                    log.info("vault_token_renewed", extra={"delay_s": new.ttl})
                    return new
                log.info("vault_token_max_ttl", extra={"delay_s": new.ttl})
        new = vault.login()
        log.info("vault_authenticated", extra={"kind": "kubernetes", "delay_s": new.ttl})
        return new

    def _note_failure(self, exc: BaseException | None = None) -> None:
        self._failures += 1
        delay = min(self._retry_max, self._retry_min * 2 ** min(self._failures - 1, 30))
        self._retry_at = self._clock() + delay
        facts: dict[str, Any] = {"count": self._failures, "delay_s": delay}
        if exc is not None and self._vault is not None:
            facts.update(error=type(exc).__name__, reason=why(exc, self._vault.settings.addr))
        log.warning("vault_token_maintenance_failed", extra=facts)
        if not self.healthy() and not self._expiry_logged:
            self._expiry_logged = True
            log.error("vault_token_expired", extra={"count": self._failures})

    # -- files ----------------------------------------------------------------------------

    def _run_files(self) -> None:
        while not self._stopping.wait(self.settings.poll_seconds):
            try:
                bundle = read_files(self.settings.secrets_dir)
            except ConfigError as exc:
                # Keep serving the last good values: the agent may be mid-rewrite.
                if self._file_error != str(exc):
                    self._file_error = str(exc)
                    log.warning("secrets_files_unreadable", extra={"reason": str(exc)})
                continue
            except Exception:
                log.exception("secrets_files_error")
                continue
            self._file_error = None
            self._swap(bundle)

    def _swap(self, bundle: SecretBundle) -> None:
        old = self._bundle
        self._bundle = bundle
        if old is not None and not old.same_values(bundle):
            changed = sum(getattr(old, k) != getattr(bundle, k) for k in SECRET_KEYS)
            log.info("secrets_rotated", extra={"kind": bundle.source.value, "count": changed})
            if self._on_change is not None:
                try:
                    self._on_change(bundle)
                except Exception:
                    log.exception("secrets_on_change_failed")
