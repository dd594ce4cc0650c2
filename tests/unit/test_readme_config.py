"""The README's configuration table names every variable the code reads, and the docs, the
overlays and the code agree on where the Vault secret lives (issue 13, item 13)."""

from __future__ import annotations

import re
from pathlib import Path

from coffeebuddy.secrets import DEFAULT_KV_MOUNT, VaultSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SOURCES = [
    *sorted((ROOT / "coffeebuddy").rglob("*.py")),
    *sorted((ROOT / "simulator").rglob("*.py")),
    ROOT / "app.py",
    ROOT / "worker.py",
    ROOT / "gunicorn.conf.py",
]
# How the code reads a variable: the config readers, or a mapping lookup on an environment.
READ = re.compile(
    r"(?:_raw|_int|_float|_secret|_url|_choice|_user_ids|_host_ports)\(\s*\w+,\s*\"([A-Z][A-Z0-9_]+)\""
    r"|(?:env|environ)\.get\(\s*\"([A-Z][A-Z0-9_]+)\""
    r"|(?:env|environ)\[\"([A-Z][A-Z0-9_]+)\"\]"
)


# Not ours to document: WSGI environ keys (the server's raw request line), and what the
# runner sets for its children and the embedded Postgres library.
NOT_SETTINGS = {"PATH_INFO", "RAW_URI", "REQUEST_URI", "TMPDIR", "XDG_RUNTIME_DIR"}


def _variables_read() -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        for match in READ.finditer(path.read_text(encoding="utf-8")):
            found.add(next(group for group in match.groups() if group))
    return found - NOT_SETTINGS


def test_every_variable_the_code_reads_is_in_the_readme() -> None:
    read = _variables_read()
    # The scan must see the variables it is meant to (it can't pass by finding nothing).
    assert {"DATABASE_URL", "LOG_LEVEL", "VAULT_K8S_MOUNT", "COFFEEBUDDY_STATE_DIR"} <= read
    undocumented = sorted(name for name in read if f"`{name}`" not in README)
    assert not undocumented, f"not in README's configuration table: {undocumented}"


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
