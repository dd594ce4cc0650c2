"""Converters: a stripped, non-empty string in; the value out, or `Invalid("must be ...")`,
which the loader puts after the variable's name. None of them quotes a secret."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit


class Invalid(ValueError):
    """Raised by a converter: what is wrong with the value, after the variable's name."""


@dataclass(frozen=True)
class Secret:
    """A value that must never be printed."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


def text(value: str) -> str:
    return value


def trimmed(chars: str) -> Callable[[str], str]:
    """Without leading and trailing `chars` (mount points and paths: "kv/" is "kv")."""
    return lambda value: value.strip(chars)


def integer(lo: int, hi: int) -> Callable[[str], int]:
    return _bounded(int, "an integer", lo, hi)


def number(lo: float, hi: float) -> Callable[[str], float]:
    # The bounds print as written ("between 0.1 and 600"), the value as parsed ("got 0.0").
    return _bounded(float, "a number", lo, hi)


def _bounded[N: (int, float)](
    parse: Callable[[str], N], what: str, lo: float, hi: float
) -> Callable[[str], N]:
    def convert(value: str) -> N:
        try:
            parsed = parse(value)
        except ValueError:
            raise Invalid(f"must be {what}, got {value!r}") from None
        if not lo <= parsed <= hi:
            raise Invalid(f"must be between {lo} and {hi}, got {parsed}")
        return parsed

    return convert


def boolean(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise Invalid(f"must be true or false, got {value!r}")


def choice(*allowed: str) -> Callable[[str], str]:
    """One of `allowed` (upper case), in any case."""

    def convert(value: str) -> str:
        value = value.upper()
        if value not in allowed:
            raise Invalid(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return convert


def switch(value: str) -> bool:
    """ON or OFF, in any case."""
    return choice("ON", "OFF")(value) == "ON"


def member[E: StrEnum](kind: type[E]) -> Callable[[str], E]:
    """A member of a string enum, by its (lower case) value, in any case."""

    def convert(value: str) -> E:
        value = value.lower()
        try:
            return kind(value)
        except ValueError:
            names = ", ".join(m.value for m in kind)
            raise Invalid(f"must be one of {names}, got {value!r}") from None

    return convert


def http_url(trailing_slash: bool | None = None) -> Callable[[str], str]:
    """An http(s) URL; with `trailing_slash` True one is added, with False any is removed."""

    def convert(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise Invalid(f"must be an http(s) URL, got {value!r}")
        if trailing_slash is None:
            return value
        if trailing_slash:
            return value if value.endswith("/") else value + "/"
        return value.rstrip("/")

    return convert


def secret(check: Callable[[str], None] | None = None) -> Callable[[str], Secret]:
    """A Secret; `check` may refuse the value's form (its message never quotes it)."""

    def convert(value: str) -> Secret:
        if check is not None:
            check(value)
        return Secret(value)

    return convert


def _items(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def slack_user_ids(value: str) -> frozenset[str]:
    ids = _items(value)
    bad = [i for i in ids if not re.fullmatch(r"[UW][A-Z0-9]{2,30}", i)]
    if bad:
        raise Invalid(f"must be comma-separated Slack user ids, bad: {', '.join(bad)}")
    return frozenset(ids)


def https_origins(value: str) -> tuple[str, ...]:
    origins = tuple(part.rstrip("/") for part in _items(value))
    bad = []
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme != "https" or not parts.hostname or parts.path or "@" in parts.netloc:
            bad.append(origin)
    if bad:
        raise Invalid("must be comma-separated https://host[:port] origins, bad: " + ", ".join(bad))
    return origins


def host_ports(value: str) -> tuple[str, ...]:
    servers = tuple(_items(value))
    pattern = r"(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.\-]+):[0-9]{1,5}"
    bad = [s for s in servers if not re.fullmatch(pattern, s)]
    if bad or not servers:
        raise Invalid(f"must be comma-separated host:port pairs, bad: {', '.join(bad) or value!r}")
    return servers


def host_port(value: str) -> tuple[str, int]:
    """One listening address, "host:port" or "[v6]:port"."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise Invalid(f"must be host:port, got {value!r}")
    return host, int(port)


def path(value: str) -> Path:
    return Path(value)


def readable_file(value: str) -> Path:
    if not Path(value).is_file():
        raise Invalid(f"{value} is not a readable file")
    return Path(value)
