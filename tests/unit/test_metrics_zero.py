"""Labelled counters exist at 0 before their first event, for every label value the code
uses, so rate() and the alerts see zero rather than nothing (issue 13, item 11)."""

from __future__ import annotations

import ast
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from coffeebuddy import metrics

PACKAGE = Path(metrics.__file__).resolve().parent


def _samples(registry: CollectorRegistry | None = None) -> set[tuple[str, tuple[str, ...]]]:
    from prometheus_client import REGISTRY

    text = generate_latest(registry or REGISTRY).decode()
    found = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found.add((sample.name, tuple(sample.labels.values())))
    return found


def _literal_label_uses() -> set[tuple[str, tuple[str, ...]]]:
    """Every `COUNTER.labels("a", ...)` in the package whose values are all literals."""
    counters = {
        name: value._name + "_total"
        for name, value in vars(metrics).items()
        if isinstance(value, metrics.Counter)
    }
    uses = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "labels"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in counters
                and node.args
                and all(isinstance(a, ast.Constant) for a in node.args)
            ):
                values = tuple(str(a.value) for a in node.args)  # type: ignore[attr-defined]
                uses.add((counters[node.func.value.id], values))
    return uses


def test_every_literal_label_in_the_code_is_exported_at_zero_from_import() -> None:
    uses = _literal_label_uses()
    # The scan finds the counters the web uses (it must not pass by finding nothing).
    assert ("coffeebuddy_errors_total", ("bad_signature",)) in uses
    assert ("coffeebuddy_runs_total", ("canceled",)) in uses
    missing = uses - _samples()
    assert not missing, f"counters not created at 0 for known labels: {sorted(missing)}"


def test_known_labels_are_exported_before_any_event() -> None:
    exported = _samples()
    for counter, label_sets in metrics.KNOWN_LABELS.items():
        for labels in label_sets:
            assert (counter._name + "_total", tuple(labels)) in exported


def test_errors_and_runs_start_with_every_type() -> None:
    exported = _samples()
    for kind in ("bad_signature", "database", "internal", "body_too_large"):
        assert ("coffeebuddy_errors_total", (kind,)) in exported
    for status in ("started", "closed", "canceled", "failed"):
        assert ("coffeebuddy_runs_total", (status,)) in exported
    for score in "12345":
        assert ("coffeebuddy_csat_ratings_total", (score,)) in exported
