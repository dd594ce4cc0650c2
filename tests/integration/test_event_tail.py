"""`python -m coffeebuddy events tail` when it cannot do its job: each case a clear line on
stderr and an exit status, never a traceback. (What it prints when it can is in
tests/e2e/test_event_contract.py.)"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator

import pytest

from coffeebuddy import __main__ as cli
from coffeebuddy.events import tail as event_tail
from testkit.kafka_broker import KafkaBroker, running_broker


@pytest.fixture
def empty_kafka() -> Iterator[KafkaBroker]:
    with running_broker(partitions=None) as broker:
        yield broker


def _tail(*argv: str, env: dict[str, str]) -> int:
    parser = argparse.ArgumentParser()
    event_tail.add_parser(parser.add_subparsers(dest="command"))
    return event_tail.run(parser.parse_args(["events", "tail", *argv]), env, io.StringIO())


def test_a_run_id_that_is_not_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["events", "tail", "--run", "lobby-cafe"])
    assert exited.value.code == 2
    assert "not a run id: 'lobby-cafe'" in capsys.readouterr().err


def test_without_brokers_it_says_which_setting_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _tail(env={}) == 2
    assert "set KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap" in capsys.readouterr().err
    assert _tail(env={"KAFKA_BOOTSTRAP_SERVERS": "kafka:notaport"}) == 2
    assert "KAFKA_BOOTSTRAP_SERVERS must be comma-separated host:port" in capsys.readouterr().err


def test_topics_that_do_not_exist_yet_are_named(
    empty_kafka: KafkaBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _tail("--no-follow", "--bootstrap", empty_kafka.bootstrap, env={})
    err = capsys.readouterr().err
    assert code == 1
    assert "topic coffeebuddy.run.events does not exist (yet)" in err
    assert "none of the topics exists yet" in err
