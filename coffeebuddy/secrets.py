"""Where the Slack and database secrets come from: Vault, Vault Agent files, or (for local
development only) the environment.

Wiring is one line for a one-shot process and three for a long-running one:

    config = Config.from_environ({**env, **load_secrets(env).as_environ()})

    keeper = SecretKeeper.from_environ(env).start()   # loads, then keeps the token alive
    config = Config.from_environ({**env, **keeper.bundle.as_environ()})
    ...readiness: keeper.healthy() ... shutdown: keeper.stop()

Every failure is a `ConfigError` whose one line names the setting, path or key involved and
never a secret value. Vault's own error texts are not echoed either: the status is enough
to act on, and Vault's audit log has the rest.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import hvac
import hvac.exceptions

from coffeebuddy.config import ConfigError, Secret

log = logging.getLogger(__name__)

# The keys of the KV secret, the Vault Agent file names, and the attributes of SecretBundle.
SECRET_KEYS = ("slack_signing_secret", "slack_bot_token", "database_url")
# The variables Config.from_environ reads them from.
ENV_NAMES = {
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "database_url": "DATABASE_URL",
}
DEFAULT_K8S_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105
DEFAULT_SECRETS_DIR = "/vault/secrets"
# Where README's "Deploying" and the k8s overlays keep the secret (KV v2 mounted at kv/).
DEFAULT_KV_MOUNT = "kv"
# A token is renewed (or a new one obtained) when this share of its TTL has passed.
RENEW_AT = 2 / 3
# Renewal granting less than this share of the login TTL means the token hit its max TTL;
# with Kubernetes auth a fresh login is better than renewing ever shorter leases.
MIN_RENEWED_SHARE = 1 / 3

_env_warned = threading.Event()


class SecretSource(enum.StrEnum):
    VAULT = "vault"
    FILES = "files"
    ENV = "env"


class VaultAuthMethod(enum.StrEnum):
    KUBERNETES = "kubernetes"
    TOKEN = "token"  # noqa: S105 - the name of an auth method, not a password


@dataclass(frozen=True)
class SecretBundle:
    """The secrets the app needs, redacted in every repr."""

    slack_signing_secret: Secret
    slack_bot_token: Secret
    database_url: Secret
    source: SecretSource
    # The KV v2 version the values were read from (Vault only).
    version: int | None = None

    def as_environ(self) -> dict[str, str]:
        """The variables `Config.from_environ` reads, to be merged over the environment."""
        return {ENV_NAMES[key]: getattr(self, key).reveal() for key in SECRET_KEYS}

    def same_values(self, other: SecretBundle) -> bool:
        return all(getattr(self, k) == getattr(other, k) for k in SECRET_KEYS)


@dataclass(frozen=True)
class VaultSettings:
    addr: str
    auth_method: VaultAuthMethod
    secret_path: str
    kv_mount: str = DEFAULT_KV_MOUNT
    role: str | None = None
    k8s_token_path: Path = Path(DEFAULT_K8S_TOKEN_PATH)
    k8s_mount: str = "kubernetes"
    token: Secret | None = None
    namespace: str | None = None
    cacert: Path | None = None
    timeout_seconds: float = 5.0

    @property
    def where(self) -> str:
        """The secret's name as operators write it: `kv/coffeebuddy/prod`."""
        return f"{self.kv_mount}/{self.secret_path}"

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> VaultSettings:
        addr = _raw(env, "VAULT_ADDR")
        if addr is None:
            raise ConfigError("VAULT_ADDR is required when COFFEEBUDDY_SECRETS_SOURCE=vault")
        parts = urlsplit(addr)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"VAULT_ADDR must be an http(s) URL, got {addr!r}")
        method_name = (_raw(env, "VAULT_AUTH_METHOD") or VaultAuthMethod.KUBERNETES).lower()
        try:
            method = VaultAuthMethod(method_name)
        except ValueError:
            raise ConfigError(
                f"VAULT_AUTH_METHOD must be one of kubernetes, token, got {method_name!r}"
            ) from None
        secret_path = (_raw(env, "VAULT_SECRET_PATH") or "").strip("/")
        if not secret_path:
            raise ConfigError(
                "VAULT_SECRET_PATH is required when COFFEEBUDDY_SECRETS_SOURCE=vault"
                " (e.g. coffeebuddy/prod)"
            )
        kv_mount = (_raw(env, "VAULT_KV_MOUNT") or DEFAULT_KV_MOUNT).strip("/")
        role = _raw(env, "VAULT_ROLE")
        token = _raw(env, "VAULT_TOKEN")
        if method is VaultAuthMethod.KUBERNETES and role is None:
            raise ConfigError("VAULT_ROLE is required when VAULT_AUTH_METHOD=kubernetes")
        if method is VaultAuthMethod.TOKEN and token is None:
            raise ConfigError("VAULT_TOKEN is required when VAULT_AUTH_METHOD=token")
        cacert = _raw(env, "VAULT_CACERT")
        if cacert is not None and not Path(cacert).is_file():
            raise ConfigError(f"VAULT_CACERT {cacert} is not a readable file")
        timeout = _raw(env, "VAULT_TIMEOUT_SECONDS")
        try:
            timeout_seconds = float(timeout) if timeout is not None else 5.0
        except ValueError:
            raise ConfigError(f"VAULT_TIMEOUT_SECONDS must be a number, got {timeout!r}") from None
        if not 0.1 <= timeout_seconds <= 120:
            raise ConfigError(f"VAULT_TIMEOUT_SECONDS must be between 0.1 and 120, got {timeout}")
        return cls(
            addr=addr,
            auth_method=method,
            secret_path=secret_path,
            kv_mount=kv_mount,
            role=role,
            k8s_token_path=Path(_raw(env, "VAULT_K8S_TOKEN_PATH") or DEFAULT_K8S_TOKEN_PATH),
            k8s_mount=(_raw(env, "VAULT_K8S_MOUNT") or "kubernetes").strip("/"),
            token=Secret(token) if token is not None else None,
            namespace=_raw(env, "VAULT_NAMESPACE"),
            cacert=Path(cacert) if cacert is not None else None,
            timeout_seconds=timeout_seconds,
        )


@dataclass(frozen=True)
class SecretSettings:
    source: SecretSource
    vault: VaultSettings | None = None
    secrets_dir: Path = Path(DEFAULT_SECRETS_DIR)
    # How often the files source looks for files the Vault Agent rewrote.
    poll_seconds: float = 10.0

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> SecretSettings:
        name = (_raw(env, "COFFEEBUDDY_SECRETS_SOURCE") or SecretSource.ENV).lower()
        try:
            source = SecretSource(name)
        except ValueError:
            raise ConfigError(
                f"COFFEEBUDDY_SECRETS_SOURCE must be one of vault, files, env, got {name!r}"
            ) from None
        poll = _raw(env, "COFFEEBUDDY_SECRETS_POLL_SECONDS")
        try:
            poll_seconds = float(poll) if poll is not None else 10.0
        except ValueError:
            raise ConfigError(
                f"COFFEEBUDDY_SECRETS_POLL_SECONDS must be a number, got {poll!r}"
            ) from None
        if not 0.01 <= poll_seconds <= 3600:
            raise ConfigError(
                f"COFFEEBUDDY_SECRETS_POLL_SECONDS must be between 0.01 and 3600, got {poll}"
            )
        return cls(
            source=source,
            vault=VaultSettings.from_environ(env) if source is SecretSource.VAULT else None,
            secrets_dir=Path(_raw(env, "COFFEEBUDDY_SECRETS_DIR") or DEFAULT_SECRETS_DIR),
            poll_seconds=poll_seconds,
        )


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
        value = _raw(env, ENV_NAMES["database_url"]) or ""
    if not value:
        raise ConfigError("DATABASE_URL is required but not set")
    return value


# ---------------------------------------------------------------------------------------
# Vault
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lease:
    """What we know about the current Vault token."""

    ttl: float  # seconds; 0 means the token never expires
    renewable: bool
    obtained_at: float  # clock reading taken before the request, so expiry errs early

    @property
    def expires_at(self) -> float | None:
        return self.obtained_at + self.ttl if self.ttl > 0 else None


class _VaultClient:
    """The few hvac calls we make, answers checked and turned into plain values."""

    def __init__(self, settings: VaultSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        # Everything is passed explicitly: hvac would otherwise fall back to VAULT_TOKEN,
        # ~/.vault-token and VAULT_CACERT of the process environment.
        self._client: Any = hvac.Client(
            url=settings.addr,
            token=settings.token.reveal() if settings.token is not None else "",
            verify=str(settings.cacert) if settings.cacert is not None else True,
            timeout=settings.timeout_seconds,
            namespace=settings.namespace,
        )
        self.login_ttl = 0.0

    def authenticate(self) -> _Lease:
        """Log in (Kubernetes) or look the configured token up (token auth)."""
        if self.settings.auth_method is VaultAuthMethod.KUBERNETES:
            return self.login()
        started = self._clock()
        answer = self._client.auth.token.lookup_self()
        data = _mapping(_mapping(answer).get("data"))
        lease = _Lease(
            ttl=_number(data.get("ttl")),
            renewable=bool(data.get("renewable")),
            obtained_at=started,
        )
        self.login_ttl = _number(data.get("creation_ttl")) or lease.ttl
        return lease

    def login(self) -> _Lease:
        # Projected service account tokens are rotated by the kubelet: read it every time.
        jwt = self.settings.k8s_token_path.read_text(encoding="utf-8").strip()
        started = self._clock()
        answer = self._client.auth.kubernetes.login(
            role=self.settings.role, jwt=jwt, mount_point=self.settings.k8s_mount
        )
        lease = _auth_lease(answer, started)
        self.login_ttl = lease.ttl
        return lease

    def renew(self) -> _Lease:
        started = self._clock()
        lease = _auth_lease(self._client.auth.token.renew_self(), started)
        if lease.ttl <= 0:
            # A renewal capped by the token's max TTL can report 0 seconds: "expiring now",
            # not "never expires" as on a login.
            lease = _Lease(ttl=0.001, renewable=lease.renewable, obtained_at=started)
        return lease

    def close(self) -> None:
        self._client.adapter.close()

    def read(self) -> tuple[dict[str, Any], int | None]:
        answer = self._client.secrets.kv.v2.read_secret_version(
            path=self.settings.secret_path,
            mount_point=self.settings.kv_mount,
            raise_on_deleted_version=True,
        )
        outer = _mapping(_mapping(answer).get("data"))
        version = _mapping(outer.get("metadata")).get("version")
        return dict(_mapping(outer.get("data"))), version if isinstance(version, int) else None


def _auth_lease(answer: object, started: float) -> _Lease:
    auth = _mapping(_mapping(answer).get("auth"))
    if not isinstance(auth.get("client_token"), str):
        raise hvac.exceptions.UnexpectedError("no auth.client_token in the answer")
    return _Lease(
        ttl=_number(auth.get("lease_duration")),
        renewable=bool(auth.get("renewable")),
        obtained_at=started,
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


_VAULT_FAILURES: tuple[type[BaseException], ...] = (hvac.exceptions.VaultError, OSError)


def _why(exc: BaseException, addr: str) -> str:
    """A short, secret-free reason. requests' errors are OSErrors (IOError)."""
    e = hvac.exceptions
    reasons: list[tuple[Any, str]] = [
        (e.Forbidden, "permission denied"),
        (e.Unauthorized, "unauthorized (HTTP 401)"),
        (e.InvalidPath, "not found"),
        (e.InvalidRequest, "request rejected (HTTP 400)"),
        (e.RateLimitExceeded, "rate limited (HTTP 429)"),
        (e.VaultDown, "Vault is sealed or unavailable (HTTP 503)"),
        (e.VaultNotInitialized, "Vault is not initialized (HTTP 501)"),
        (e.InternalServerError, "Vault internal error (HTTP 500)"),
        (e.BadGateway, "bad gateway (HTTP 502)"),
    ]
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    if isinstance(exc, e.VaultError):
        return f"unexpected answer ({type(exc).__name__})"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot read {exc.filename} ({type(exc).__name__})"
    return f"cannot reach {addr} ({type(exc).__name__})"


# ---------------------------------------------------------------------------------------
# The keeper
# ---------------------------------------------------------------------------------------


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
        self._vault = _VaultClient(settings.vault, clock) if settings.vault is not None else None
        self._lease: _Lease | None = None
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
            bundle = _read_files(self.settings.secrets_dir)
        else:
            bundle = _read_env(self._env)
        self._bundle = bundle
        log.info("secrets_loaded", extra={"kind": source.value, "count": len(SECRET_KEYS)})
        return bundle

    def refresh(self) -> SecretBundle:
        """Read the secrets again with the current token or files; raises ConfigError."""
        if self.settings.source is SecretSource.VAULT:
            with self._lock:
                bundle = self._read_vault()
        elif self.settings.source is SecretSource.FILES:
            bundle = _read_files(self.settings.secrets_dir)
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
            except _VAULT_FAILURES as exc:
                raise ConfigError(_auth_failure(settings, exc)) from None
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
        except _VAULT_FAILURES as exc:
            raise ConfigError(f"Vault: {_why(exc, vault.settings.addr)} reading {where}") from None
        return _bundle(values, SecretSource.VAULT, f"Vault secret {where}", version)

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
            except _VAULT_FAILURES as exc:
                self._note_failure(exc)
                return
            recovered = self._failures > 0
            self._lease, self._failures, self._retry_at = new, 0, None
            self._expiry_logged = False
            if recovered:
                log.info("vault_recovered", extra={"kind": vault.settings.auth_method.value})

    def _renew_or_login(
        self, vault: _VaultClient, lease: _Lease | None, expired: bool, can_login: bool
    ) -> _Lease:
        if lease is not None and lease.renewable and not expired:
            try:
                new = vault.renew()
            except _VAULT_FAILURES as exc:
                if not can_login:
                    raise
                log.warning(
                    "vault_token_renew_failed",
                    extra={"error": type(exc).__name__, "reason": _why(exc, vault.settings.addr)},
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
            facts.update(error=type(exc).__name__, reason=_why(exc, self._vault.settings.addr))
        log.warning("vault_token_maintenance_failed", extra=facts)
        if not self.healthy() and not self._expiry_logged:
            self._expiry_logged = True
            log.error("vault_token_expired", extra={"count": self._failures})

    # -- files ----------------------------------------------------------------------------

    def _run_files(self) -> None:
        while not self._stopping.wait(self.settings.poll_seconds):
            try:
                bundle = _read_files(self.settings.secrets_dir)
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


def _auth_failure(settings: VaultSettings, exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return (
            f"VAULT_K8S_TOKEN_PATH: cannot read the service account token"
            f" {settings.k8s_token_path} ({type(exc).__name__})"
        )
    why = _why(exc, settings.addr)
    if settings.auth_method is VaultAuthMethod.KUBERNETES:
        return (
            f"Vault: kubernetes login as role {settings.role!r}"
            f" at auth/{settings.k8s_mount} failed: {why}"
        )
    return f"Vault: VAULT_TOKEN lookup failed: {why}"


# ---------------------------------------------------------------------------------------
# Files and environment
# ---------------------------------------------------------------------------------------


def _read_files(directory: Path) -> SecretBundle:
    values: dict[str, Any] = {}
    for key in SECRET_KEYS:
        path = directory / key
        try:
            values[key] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue  # reported by _bundle with the other missing keys
        except OSError as exc:
            raise ConfigError(
                f"COFFEEBUDDY_SECRETS_DIR: cannot read {path} ({type(exc).__name__})"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"COFFEEBUDDY_SECRETS_DIR: {path} is not UTF-8 text") from None
    return _bundle(values, SecretSource.FILES, f"COFFEEBUDDY_SECRETS_DIR {directory}")


def _read_env(env: Mapping[str, str]) -> SecretBundle:
    if not _env_warned.is_set():
        _env_warned.set()
        log.warning(
            "secrets_from_environment",
            extra={"reason": "environment secrets are for local development only"},
        )
    missing = [ENV_NAMES[k] for k in SECRET_KEYS if _raw(env, ENV_NAMES[k]) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} required but not set")
    return _bundle({k: env[ENV_NAMES[k]] for k in SECRET_KEYS}, SecretSource.ENV, "environment")


def _bundle(
    values: Mapping[str, Any], source: SecretSource, where: str, version: int | None = None
) -> SecretBundle:
    """Check the keys (never the values: their names go in the message, values never do)."""
    missing = [k for k in SECRET_KEYS if k not in values]
    if source is SecretSource.FILES and missing:
        raise ConfigError(f"{where} has no file for: {', '.join(missing)}")
    if missing:
        raise ConfigError(f"{where} has no key: {', '.join(missing)}")
    not_text = [k for k in SECRET_KEYS if not isinstance(values[k], str)]
    if not_text:
        raise ConfigError(f"{where}: {', '.join(not_text)} must be a string")
    empty = [k for k in SECRET_KEYS if not values[k].strip()]
    if empty:
        raise ConfigError(f"{where}: {', '.join(empty)} is empty")
    return SecretBundle(
        slack_signing_secret=Secret(values["slack_signing_secret"].strip()),
        slack_bot_token=Secret(values["slack_bot_token"].strip()),
        database_url=Secret(values["database_url"].strip()),
        source=source,
        version=version,
    )


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()
