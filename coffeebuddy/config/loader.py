"""Settings declared once, read by one loader.

A settings class is a frozen dataclass whose fields say where they come from:

    metrics_port: int = setting("COFFEEBUDDY_WORKER_METRICS_PORT", 9102, integer(0, 65535))

The field's metadata holds the variable's name, the default and the converter, so the
default is written in one place and tests (and the README check) can list every setting
without reading source text. `load()` reads every field of a class (and of the settings
classes nested in it), collects every problem, and raises one `ConfigError` naming them all.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, TextIO

from coffeebuddy.config.converters import Invalid, text

# Where a field's declaration is kept in its metadata.
_SETTING = "coffeebuddy.setting"
_NESTED = "coffeebuddy.nested"


class ConfigError(Exception):
    """Configuration is missing or invalid: one line per problem for the operator."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems: tuple[str, ...] = problems


def report_config_error(exc: ConfigError, out: TextIO | None = None) -> None:
    """The one place the configuration error message is written: one line per problem,
    each saying what kind of error it is (every entry point and command prints through it)."""
    out = out or sys.stderr
    # Once each: the dev runner checks the worker's port both on its own and with Config.
    for problem in dict.fromkeys(exc.problems or (str(exc),)):
        print(f"coffeebuddy: configuration error: {problem}", file=out, flush=True)


@dataclass(frozen=True)
class EnvVar:
    """How one field is read: from `name`, through `convert`; `required` is the rest of
    the "<NAME> is required ..." line when an unset variable is a mistake."""

    name: str
    convert: Callable[[str], Any]
    required: str | None = None


@dataclass(frozen=True)
class Declared:
    """One setting as the tests and the README see it."""

    env: str
    field: str
    owner: type
    default: Any  # dataclasses.MISSING when the setting has no default
    required: str | None

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING


def setting(
    env: str,
    default: Any = MISSING,
    convert: Callable[[str], Any] | None = None,
    *,
    required: str | bool = False,
) -> Any:
    """A field read from the variable `env`. Without a default the setting is required
    (`required` may word why: "when VAULT_AUTH_METHOD=token")."""
    if required is True or (default is MISSING and not required):
        required = "but not set"
    var = EnvVar(env, convert or text, required or None)
    return field(default=default, metadata={_SETTING: var})


def nested(cls: type[Any]) -> Any:
    """A field holding another settings class, read from the same environment."""
    return field(default_factory=cls, metadata={_NESTED: cls})


class Problems(list[str]):
    """Every problem found while reading, raised together by `check()`."""

    def check(self) -> None:
        if self:
            raise ConfigError(*dict.fromkeys(self))


def read[T](cls: type[T], env: Mapping[str, str], problems: Problems) -> T:
    """An instance of `cls` from `env`, recording problems instead of raising. A field whose
    value is missing or bad is None, so that checks across fields can skip it; the caller
    raises (`problems.check()`) before anyone uses the instance."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if _NESTED in f.metadata:
            values[f.name] = read(f.metadata[_NESTED], env, problems)
        elif _SETTING in f.metadata:
            values[f.name] = _read_var(f.metadata[_SETTING], f.default, env, problems)
    instance = cls(**values)
    # Rules across fields ("VAULT_ROLE is required when VAULT_AUTH_METHOD=kubernetes").
    check = getattr(instance, "combination_problems", None)
    if check is not None:
        problems.extend(check())
    return instance


def load[T](cls: type[T], env: Mapping[str, str]) -> T:
    """An instance of `cls` from `env`, or one ConfigError naming every problem."""
    problems = Problems()
    instance = read(cls, env, problems)
    problems.check()
    return instance


def load_field(
    cls: type[Any], name: str, env: Mapping[str, str], problems: Problems | None = None
) -> Any:
    """One field of `cls` on its own (LOG_LEVEL before logging is set up, the brokers for
    `events tail`); raises ConfigError, or given `problems` records the problem there and
    returns the default."""
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    found = Problems() if problems is None else problems
    value = _read_var(f.metadata[_SETTING], f.default, env, found)
    if problems is None:
        found.check()
    return f.default if value is None and f.default is not MISSING else value


def declared(cls: type[Any]) -> list[Declared]:
    """Every setting `cls` reads, nested classes included, in the order they are read."""
    found: list[Declared] = []
    for f in dataclasses.fields(cls):
        if _NESTED in f.metadata:
            found.extend(declared(f.metadata[_NESTED]))
        elif _SETTING in f.metadata:
            var: EnvVar = f.metadata[_SETTING]
            found.append(Declared(var.name, f.name, cls, f.default, var.required))
    return found


def _read_var(var: EnvVar, default: Any, env: Mapping[str, str], problems: Problems) -> Any:
    raw = env.get(var.name)
    value = raw.strip() if raw is not None else ""
    if value:
        try:
            converted = var.convert(value)
        except Invalid as exc:
            problems.append(f"{var.name} {exc}")
            return None
        if converted != "":
            return converted
    # Unset, blank, or nothing left once converted (a VAULT_SECRET_PATH of "/").
    if var.required is not None:
        problems.append(f"{var.name} is required {var.required}")
        return None
    return None if default is MISSING else default
