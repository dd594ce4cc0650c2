"""The README's configuration table names every variable the code reads, and the docs, the
overlays and the code agree on where the Vault secret lives (issue 13, item 13)."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

from coffeebuddy.config import Config, Declared, ServeEnv, declared
from coffeebuddy.secrets import DEFAULT_KV_MOUNT, SecretSettings, VaultSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Every setting the settings classes declare (the Vault ones are read for that source only,
# ServeEnv's by the dev runner).
SETTINGS = [
    *declared(Config),
    *declared(SecretSettings),
    *declared(VaultSettings),
    *declared(ServeEnv),
]
# Variables read outside the settings classes: the dev runner, the demo, gunicorn.conf.py.
OTHER_SOURCES = [
    *sorted((ROOT / "coffeebuddy").rglob("*.py")),
    *sorted((ROOT / "simulator").rglob("*.py")),
    ROOT / "app.py",
    ROOT / "worker.py",
    ROOT / "gunicorn.conf.py",
]
READ = re.compile(
    r"(?:env|environ)\.get\(\s*\"([A-Z][A-Z0-9_]+)\""
    r"|(?:env|environ)\[\"([A-Z][A-Z0-9_]+)\"\]"
)
# Not ours to document: WSGI environ keys (the server's raw request line), and what the
# runner sets for its children and the embedded Postgres library.
NOT_SETTINGS = {"PATH_INFO", "RAW_URI", "REQUEST_URI", "TMPDIR", "XDG_RUNTIME_DIR"}


def _read_elsewhere() -> set[str]:
    found: set[str] = set()
    for path in OTHER_SOURCES:
        for match in READ.finditer(path.read_text(encoding="utf-8")):
            found.add(next(group for group in match.groups() if group))
    return found - NOT_SETTINGS


def _rows() -> dict[str, str]:
    """Each variable of README's configuration tables, and the default column of its row."""
    rows: dict[str, str] = {}
    for line in README.splitlines():
        cells = line.split("|")
        if len(cells) < 4 or not cells[1].strip().startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1]):
            rows[name] = cells[2]
    return rows


def _documented_defaults(setting: Declared) -> set[str] | None:
    """How README may write the default, or None when the column is free text."""
    default: Any = setting.default
    if not setting.has_default:
        return {"required"}
    if isinstance(default, bool):
        return {"`true`", "`on`"} if default else {"`false`", "`off`"}
    if isinstance(default, int):
        return {f"`{default}`"}
    if isinstance(default, float):
        return {f"`{default:g}`"}
    if isinstance(default, str | Enum | Path):
        return {f"`{default.value if isinstance(default, Enum) else default}`"}
    return None  # unset or empty: README says what that means


def test_the_settings_are_declared_with_their_variables() -> None:
    # The listing must see the settings it is meant to (it can't pass by finding nothing).
    names = [s.env for s in SETTINGS]
    assert {
        "DATABASE_URL",
        "LOG_LEVEL",
        "COFFEEBUDDY_WORKER_NICE",
        "VAULT_K8S_MOUNT",
        "PORT",
    } <= set(names)
    assert len(names) == len(set(names)), "a variable is declared twice"
    assert {"COFFEEBUDDY_STATE_DIR", "GUNICORN_BIND"} <= _read_elsewhere()


def test_every_variable_the_code_reads_is_in_the_readme() -> None:
    rows = _rows()
    read = {s.env for s in SETTINGS} | _read_elsewhere()
    undocumented = sorted(name for name in read if name not in rows)
    assert not undocumented, f"not in README's configuration table: {undocumented}"


def test_the_readme_gives_each_default_the_code_declares() -> None:
    rows = _rows()
    wrong = []
    for setting in SETTINGS:
        expected = _documented_defaults(setting)
        if expected is not None and not any(text in rows[setting.env] for text in expected):
            wrong.append(f"{setting.env}: README says {rows[setting.env].strip()!r}")
    assert not wrong, wrong


def test_the_readme_documents_no_setting_the_code_does_not_read() -> None:
    read = {s.env for s in SETTINGS} | _read_elsewhere()
    # Read by the HTTP clients (slack_sdk, urllib) themselves.
    read |= {"HTTPS_PROXY", "NO_PROXY"}
    stale = sorted(name for name in _rows() if name.isupper() and name not in read)
    assert not stale, f"README documents variables nothing reads: {stale}"


def test_log_level_lists_its_values() -> None:
    (row,) = [line for line in README.splitlines() if line.startswith("| `LOG_LEVEL`")]
    for level in ("DEBUG", "INFO", "WARNING", "ERROR"):
        assert level in row


def test_vault_kv_mount_default_is_where_the_deployment_keeps_the_secret() -> None:
    settings = VaultSettings.from_environ(
        {"VAULT_ADDR": "https://vault.internal", "VAULT_ROLE": "r", "VAULT_SECRET_PATH": "a/b"}
    )
    assert settings.kv_mount == DEFAULT_KV_MOUNT
    agent_paths = set()
    for overlay in (ROOT / "k8s" / "overlays").glob("*/workloads.yaml"):
        agent_paths |= set(re.findall(r'agent-inject-secret-\w+: "([^"]+)"', overlay.read_text()))
    assert agent_paths, "the overlays name no Vault secret"
    # KV v2 paths read `<mount>/data/<path>`.
    assert {path.split("/data/", 1)[0] for path in agent_paths} == {settings.kv_mount}
    assert f"`{settings.kv_mount}/coffeebuddy/<env>`" in README
    (row,) = [line for line in README.splitlines() if line.startswith("| `VAULT_KV_MOUNT`")]
    assert f"`{settings.kv_mount}`" in row
