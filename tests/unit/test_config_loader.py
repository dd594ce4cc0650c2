"""The settings loader: each converter, inclusive bounds, required settings, nested classes,
rules across fields, and every problem named at once."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import MISSING, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from coffeebuddy.config import (
    Config,
    ServeEnv,
    WorkerSettings,
    declared,
    load_field,
    report_config_error,
)
from coffeebuddy.config.converters import (
    Invalid,
    Secret,
    boolean,
    choice,
    host_ports,
    http_url,
    https_origins,
    integer,
    member,
    number,
    path,
    readable_file,
    secret,
    slack_user_ids,
    switch,
    trimmed,
)
from coffeebuddy.config.loader import (
    ConfigError,
    Problems,
    load,
    nested,
    read,
    setting,
)


def _invalid(convert: Any, value: str) -> str:
    with pytest.raises(Invalid) as info:
        convert(value)
    return str(info.value)


# ---------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------


def test_integer_bounds_are_inclusive() -> None:
    convert = integer(1, 10)
    assert (convert("1"), convert("10"), convert("+7")) == (1, 10, 7)
    assert _invalid(convert, "0") == "must be between 1 and 10, got 0"
    assert _invalid(convert, "11") == "must be between 1 and 10, got 11"
    assert _invalid(convert, "1.5") == "must be an integer, got '1.5'"
    assert _invalid(convert, "ten") == "must be an integer, got 'ten'"


def test_number_bounds_keep_how_they_were_written() -> None:
    convert = number(0.1, 600)
    assert (convert("0.1"), convert("600"), convert("2.5")) == (0.1, 600.0, 2.5)
    assert _invalid(convert, "0") == "must be between 0.1 and 600, got 0.0"
    assert _invalid(convert, "soon") == "must be a number, got 'soon'"


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("Yes", True), ("off", False)])
def test_boolean(value: str, expected: bool) -> None:
    assert boolean(value) is expected


def test_boolean_refuses_anything_else() -> None:
    assert _invalid(boolean, "maybe") == "must be true or false, got 'maybe'"


def test_choice_is_case_blind_and_lists_the_choices() -> None:
    convert = choice("DEBUG", "INFO")
    assert convert("debug") == "DEBUG"
    assert _invalid(convert, "loud") == "must be one of DEBUG, INFO, got 'LOUD'"


def test_switch_is_on_or_off() -> None:
    assert (switch("on"), switch("OFF")) == (True, False)
    assert _invalid(switch, "true") == "must be one of ON, OFF, got 'TRUE'"


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


def test_member_of_a_string_enum() -> None:
    assert member(Colour)("RED") is Colour.RED
    assert _invalid(member(Colour), "Green") == "must be one of red, blue, got 'green'"


def test_http_url_and_its_trailing_slash() -> None:
    assert http_url()("https://vault:8200") == "https://vault:8200"
    assert http_url(trailing_slash=True)("http://h/api") == "http://h/api/"
    assert http_url(trailing_slash=True)("http://h/api/") == "http://h/api/"
    assert http_url(trailing_slash=False)("https://ory.internal//") == "https://ory.internal"
    for bad in ("vault:8200", "ftp://h/", "https://"):
        assert _invalid(http_url(), bad) == f"must be an http(s) URL, got {bad!r}"


def test_secret_is_wrapped_and_its_check_never_quotes_it() -> None:
    def check(value: str) -> None:
        if not value.startswith("xoxb-"):
            raise Invalid("must be a bot token (starts with xoxb-)")

    assert secret(check)("xoxb-1").reveal() == "xoxb-1"
    message = _invalid(secret(check), "xoxp-private-value")
    assert "private-value" not in message
    assert secret()("anything") == Secret("anything")


def test_lists() -> None:
    assert slack_user_ids(" U0A1, W0B2 ,") == frozenset({"U0A1", "W0B2"})
    assert _invalid(slack_user_ids, "U0A1,alice,C0CHAN") == (
        "must be comma-separated Slack user ids, bad: alice, C0CHAN"
    )
    assert https_origins("https://a.example/, https://b.example:8443") == (
        "https://a.example",
        "https://b.example:8443",
    )
    assert _invalid(https_origins, "http://a.example,https://u@b.example").endswith(
        "bad: http://a.example, https://u@b.example"
    )
    assert host_ports("k-0:9092, [::1]:9093") == ("k-0:9092", "[::1]:9093")
    assert _invalid(host_ports, "kafka") == "must be comma-separated host:port pairs, bad: 'kafka'"
    assert _invalid(host_ports, ",") == "must be comma-separated host:port pairs, bad: ','"


def test_paths(tmp_path: Path) -> None:
    assert trimmed("/")("/kv/") == "kv"
    assert path("/vault/secrets") == Path("/vault/secrets")
    file = tmp_path / "ca.pem"
    file.write_text("x")
    assert readable_file(str(file)) == file
    assert _invalid(readable_file, str(tmp_path)) == f"{tmp_path} is not a readable file"


# ---------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Inner:
    port: int = setting("T_PORT", 80, integer(1, 65535))


@dataclass(frozen=True, kw_only=True)
class Sample:
    token: Secret = setting("T_TOKEN", convert=secret())
    mount: str = setting("T_MOUNT", convert=trimmed("/"), required="when T_MODE=vault")
    size: int = setting("T_SIZE", 5, integer(1, 10))
    low: int = setting("T_LOW", 1, integer(0, 100))
    high: int = setting("T_HIGH", 9, integer(0, 100))
    name: str = setting("T_NAME", "plain")
    inner: Inner = nested(Inner)
    not_from_env: int = 3

    def combination_problems(self) -> Iterator[str]:
        if self.low is not None and self.high is not None and self.low > self.high:
            yield "T_LOW must not be above T_HIGH"


GOOD = {"T_TOKEN": "t", "T_MOUNT": "kv"}


def test_defaults_and_values() -> None:
    sample = load(Sample, {**GOOD, "T_SIZE": " 7 ", "T_PORT": "8080", "T_NAME": "  "})
    assert sample.token.reveal() == "t"
    assert (sample.mount, sample.size, sample.name, sample.not_from_env) == ("kv", 7, "plain", 3)
    assert sample.inner == Inner(port=8080)
    assert load(Sample, GOOD).inner == Inner()


def test_every_problem_is_named_at_once_in_field_order_then_the_rules() -> None:
    with pytest.raises(ConfigError) as info:
        load(Sample, {"T_MOUNT": "/", "T_SIZE": "11", "T_LOW": "50", "T_HIGH": "5", "T_PORT": "x"})
    assert info.value.problems == (
        "T_TOKEN is required but not set",
        # Nothing left once trimmed counts as unset.
        "T_MOUNT is required when T_MODE=vault",
        "T_SIZE must be between 1 and 10, got 11",
        "T_PORT must be an integer, got 'x'",
        "T_LOW must not be above T_HIGH",
    )
    assert str(info.value) == "; ".join(info.value.problems)


def test_a_rule_across_fields_skips_a_field_that_was_bad() -> None:
    with pytest.raises(ConfigError) as info:
        load(Sample, {**GOOD, "T_LOW": "500", "T_HIGH": "5"})
    assert info.value.problems == ("T_LOW must be between 0 and 100, got 500",)


def test_one_field_on_its_own() -> None:
    assert load_field(Sample, "size", {"T_SIZE": "2", "T_LOW": "bad"}) == 2
    assert load_field(Sample, "size", {}) == 5
    with pytest.raises(ConfigError, match=r"^T_SIZE must be an integer"):
        load_field(Sample, "size", {"T_SIZE": "two"})
    problems = Problems()
    assert load_field(Sample, "size", {"T_SIZE": "two"}, problems) == 5
    with pytest.raises(ConfigError, match=r"^T_SIZE must be an integer"):
        problems.check()


def test_the_dev_runner_settings_collect_their_problems() -> None:
    problems = Problems()
    read(ServeEnv, {"PORT": "0", "GUNICORN_WORKERS": "3", "GUNICORN_BIND": "nowhere"}, problems)
    assert problems == [
        "PORT must be between 1 and 65535, got 0",
        "GUNICORN_BIND must be host:port, got 'nowhere'",
    ]
    listen = load(ServeEnv, {"GUNICORN_BIND": "[::1]:9000", "GUNICORN_WORKERS": "3"})
    assert listen == ServeEnv(port=8080, bind=("::1", 9000), web_workers=3)
    assert load(ServeEnv, {}) == ServeEnv()


def test_declared_lists_every_setting_with_its_default() -> None:
    listed = {(d.env, d.field, d.default, d.required) for d in declared(Sample)}
    assert listed == {
        ("T_TOKEN", "token", MISSING, "but not set"),
        ("T_MOUNT", "mount", MISSING, "when T_MODE=vault"),
        ("T_SIZE", "size", 5, None),
        ("T_LOW", "low", 1, None),
        ("T_HIGH", "high", 9, None),
        ("T_NAME", "name", "plain", None),
        ("T_PORT", "port", 80, None),
    }


def test_the_app_declares_each_default_once() -> None:
    # What the dataclass says is what an empty environment gives: there is no second copy.
    settings = {d.field: d for d in declared(WorkerSettings)}
    assert WorkerSettings.from_environ({}) == WorkerSettings()
    assert settings["metrics_port"].default == WorkerSettings().metrics_port == 9102
    required = [d.env for d in declared(Config) if not d.has_default]
    assert required == ["DATABASE_URL", "SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"]


def test_the_error_message_is_one_line_per_problem_and_each_once() -> None:
    out = io.StringIO()
    report_config_error(ConfigError("A is bad", "B is required but not set", "A is bad"), out)
    assert out.getvalue().splitlines() == [
        "coffeebuddy: configuration error: A is bad",
        "coffeebuddy: configuration error: B is required but not set",
    ]
