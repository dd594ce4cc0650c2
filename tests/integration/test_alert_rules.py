"""The alert rules under promtool: `promtool check rules` (syntax, templates) and `promtool
test rules` with k8s/base/alerts/coffeebuddy-rules.test.yaml (input series, expected alerts
with their rendered annotations). Then the unit tests themselves are tested: each alert
broken on purpose must make them fail, or they would pass whatever the rules say.

promtool comes from the Debian package `prometheus`; scripts/install_tools.sh installs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "k8s" / "base" / "alerts"
RULES = ALERTS / "coffeebuddy-rules.yaml"
TESTS = ALERTS / "coffeebuddy-rules.test.yaml"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found: run scripts/install_tools.sh as root "
            "(it installs the Debian package `prometheus`)"
        )
    return found


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def alerts(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alerts(load(RULES))]


def test_promtool_checks_the_rules() -> None:
    done = run("check", "rules", RULES.name, cwd=ALERTS)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"SUCCESS: {len(alert_names())} rules found" in output


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    rules = load(RULES)
    rules["groups"][0]["rules"][0]["expr"] = "sum(rate(coffeebuddy_errors_total[5m]) >"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(rules), encoding="utf-8")
    done = run("check", "rules", RULES.name, cwd=tmp_path)
    assert done.returncode != 0


def test_the_rules_pass_their_unit_tests() -> None:
    done = run("test", "rules", TESTS.name, cwd=ALERTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = load(TESTS)
    assert tests["rule_files"] == [RULES.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
            for expected in check.get("exp_alerts") or []:
                # The rendered annotations are part of what is tested.
                annotations = expected["exp_annotations"]
                assert set(annotations) == {"summary", "description", "runbook_url"}
    assert firing == quiet == set(alert_names())


# ---------------------------------------------------------------------------------------
# The unit tests catch broken rules
# ---------------------------------------------------------------------------------------


def expect_failure(tmp_path: Path, rules: dict[str, Any], alert: str) -> None:
    """promtool test rules fails for `alert` with these rules."""
    (tmp_path / RULES.name).write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    shutil.copy(TESTS, tmp_path / TESTS.name)
    check = run("check", "rules", RULES.name, cwd=tmp_path)
    assert check.returncode == 0, "the broken rule must still be valid PromQL"
    done = run("test", "rules", TESTS.name, cwd=tmp_path)
    assert done.returncode != 0, f"the unit tests did not notice a broken {alert}"
    assert re.search(rf"alertname: {alert}\b", done.stdout + done.stderr)


def rule(rules: dict[str, Any], alert: str) -> dict[str, Any]:
    (found,) = [r for r in alerts(rules) if r["alert"] == alert]
    return found


@pytest.mark.parametrize("alert", alert_names())
def test_an_alert_that_never_fires_fails_the_tests(tmp_path: Path, alert: str) -> None:
    rules = load(RULES)
    rule(rules, alert)["expr"] = "vector(1) > 2"
    expect_failure(tmp_path, rules, alert)


@pytest.mark.parametrize("alert", [r["alert"] for r in alerts(load(RULES)) if r.get("for")])
def test_an_alert_without_its_for_duration_fails_the_tests(tmp_path: Path, alert: str) -> None:
    rules = load(RULES)
    del rule(rules, alert)["for"]
    expect_failure(tmp_path, rules, alert)


def _replace(old: str, new: str) -> Callable[[str], str]:
    def change(expr: str) -> str:
        assert old in expr, f"{old!r} not in the expression any more: update this test"
        return expr.replace(old, new)

    return change


# Tempting mistakes, each of which one of the quiet cases is there to catch.
MISTAKES = {
    "every error type counts": (
        "CoffeeBuddyHighErrorRatio",
        _replace('{type=~"internal|database"}', ""),
    ),
    "no minimum number of errors": (
        "CoffeeBuddyHighErrorRatio",
        lambda expr: expr.split("\nand\n")[0],
    ),
    "any container called web": (
        "CoffeeBuddyWebNotReady",
        _replace(', pod=~"coffeebuddy-web-.+"', ""),
    ),
    "one web replica missing is down": (
        "CoffeeBuddyWebDown",
        _replace(") == 0", ") < 2"),
    ),
    "only scrape failures count as worker down": (
        "CoffeeBuddyWorkerDown",
        lambda expr: expr.split("\nor\n")[0],
    ),
    "the dead-jobs gauge, which stays up for 14 days": (
        "CoffeeBuddyDeadJobs",
        lambda _: "sum by (namespace, kind) (coffeebuddy_jobs_dead) > 0",
    ),
    "increase() alone misses a series' first dead job": (
        "CoffeeBuddyDeadJobs",
        lambda _: (
            'sum by (namespace, kind) (increase(coffeebuddy_jobs_total{outcome="dead"}[15m])) > 0'
        ),
    ),
    "every series looks new after a Prometheus outage": (
        "CoffeeBuddyDeadJobs",
        _replace('unless on () absent(up{job="coffeebuddy-worker"} offset 15m)', ""),
    ),
    "a short queue burst counts as stalled": (
        "CoffeeBuddyJobQueueStalled",
        _replace(
            "(coffeebuddy_job_oldest_due_age_seconds)",
            "(max_over_time(coffeebuddy_job_oldest_due_age_seconds[5m]))",
        ),
    ),
    "a one-second promise instead of one minute": (
        "CoffeeBuddyRemindersLate",
        _replace("> 60", "> 1"),
    ),
    "the median reminder instead of the slow ones": (
        "CoffeeBuddyRemindersLate",
        _replace("histogram_quantile(0.95,", "histogram_quantile(0.5,"),
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_tempting_mistake_fails_the_tests(tmp_path: Path, mistake: str) -> None:
    alert, change = MISTAKES[mistake]
    rules = load(RULES)
    target = rule(rules, alert)
    target["expr"] = change(target["expr"])
    expect_failure(tmp_path, rules, alert)
