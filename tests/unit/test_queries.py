"""Every query name the code asks for exists in `sql/queries/*.sql`, every query there is
used, and the loader refuses ambiguity."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from coffeebuddy.db import QUERIES, Queries, load_queries

PACKAGE = Path(__file__).resolve().parents[2] / "coffeebuddy"

# db.one(conn, "name", ...), also split over lines and with any connection variable.
_NAMED_CALL = re.compile(
    r"""\bdb\.(?:one|all_rows|run)\(\s*\w+\s*,\s*(?P<q>["'])(?P<name>[a-z_][a-z0-9_]*)(?P=q)"""
)
_ANY_CALL = re.compile(r"\bdb\.(?:one|all_rows|run)\(")


def _sources() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}


def _used_names() -> dict[str, list[str]]:
    """Query name -> where it is used (file:line)."""
    used: dict[str, list[str]] = {}
    for path, text in _sources().items():
        for match in _NAMED_CALL.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            used.setdefault(match["name"], []).append(f"{path.relative_to(PACKAGE)}:{line}")
    return used


def test_scan_finds_the_queries() -> None:
    # Guards against a regex that silently matches nothing.
    assert len(_used_names()) >= 20


def test_every_used_query_exists() -> None:
    missing = {name: where for name, where in _used_names().items() if name not in QUERIES.names()}
    assert missing == {}


def test_every_query_is_used() -> None:
    # A query nothing asks for is dead weight a DBA still has to read and keep working.
    assert sorted(QUERIES.names() - set(_used_names())) == []


def test_every_query_call_names_its_query_literally() -> None:
    # A computed name would escape the check above.
    sites = [
        f"{path.relative_to(PACKAGE)}:{text.count(chr(10), 0, m.start()) + 1}"
        for path, text in _sources().items()
        for m in _ANY_CALL.finditer(text)
        if not _NAMED_CALL.match(text, m.start())
    ]
    assert sites == []


def test_multi_line_calls_are_found() -> None:
    # `enqueue_job` and `claim_jobs` are only ever called with the name on its own line.
    text = '    row = db.one(\n        conn,\n        "enqueue_job",\n        {},\n    )'
    match = _NAMED_CALL.search(text)
    assert match is not None and match["name"] == "enqueue_job"
    assert {"enqueue_job", "claim_jobs"} <= set(_used_names())


def test_duplicate_name_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: find_run\nSELECT 1;\n", encoding="utf-8")
    (tmp_path / "b.sql").write_text(
        "-- name: other\nSELECT 2;\n\n-- name: find_run\nSELECT 3;\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"'find_run' defined twice \(second in b\.sql\)"):
        load_queries(tmp_path)


def test_loader_splits_named_blocks(tmp_path: Path) -> None:
    (tmp_path / "q.sql").write_text(
        "-- queries about runs\n\n-- name: first\nSELECT 1\nFROM runs;\n\n"
        "--name:second\nSELECT %(x)s;\n",
        encoding="utf-8",
    )
    assert load_queries(tmp_path) == {"first": "SELECT 1\nFROM runs", "second": "SELECT %(x)s"}


def test_unknown_name_raises_a_helpful_key_error() -> None:
    queries = Queries({"known": "SELECT 1"})
    assert queries["known"] == "SELECT 1"
    with pytest.raises(KeyError, match=r"no SQL query named 'no_such_query' in .*queries"):
        queries["no_such_query"]
    with pytest.raises(KeyError, match="no_such_query"):
        QUERIES["no_such_query"]
