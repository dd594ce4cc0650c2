"""Static checks of what ships: the Slack app manifest and the Dockerfile. They read the
files and cross-check them against each other and against the code (scripts/build-image
builds and runs the image; tests/integration/test_k8s.py checks the Kubernetes manifests)."""

from __future__ import annotations

import ast
import copy
import fnmatch
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "coffeebuddy"
MANIFEST = ROOT / "slack" / "manifest.yaml"
DEDUPE_MANIFEST = ROOT / "slack" / "manifest-channel-dedupe.yaml"
SCHEMA_DIR = ROOT / "tests" / "fixtures" / "slack-manifest-schema"
METHODS_DIR = ROOT / "testkit" / "fakes" / "slack_methods"
K8S = ROOT / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENTRYPOINT = ROOT / "docker-entrypoint.sh"

APP_UID = 10001
APP_PORT = 8080
WORKER_PORT = 9102
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
# Paths inside the container, not temporary files of this test run.
CONTAINER_TMP = "/tmp"  # noqa: S108
METRICS_DIR = "/tmp/metrics"  # noqa: S108

# The Web API lists every scope that can grant a method; for conversation methods they are
# alternatives, one per conversation type. Which one applies depends on how we call it.
SCOPE_CHOICES = {
    # Opens the 1:1 DM with the runner (`users=` one user id): a direct message.
    "conversations.open": ("im:write",),
    # A retried post looks for its own message (by metadata) in the public or private
    # channel of the run, or in the runner's DM; never in group DMs.
    "conversations.history": ("channels:history", "groups:history", "im:history"),
    # ...and a retried reply in the summary's thread (a channel) in that thread.
    "conversations.replies": ("channels:history", "groups:history"),
}
# Slack method names as slack_sdk spells them on WebClient (`chat_postMessage`). Calling
# them directly would bypass `coffeebuddy.slack.api.call` and this scope audit.
SDK_METHOD = re.compile(
    r"^(admin|api|apps|auth|bookmarks|bots|calls|chat|conversations|dialog|dnd|emoji|files|"
    r"pins|reactions|reminders|search|stars|team|usergroups|users|views|workflows)_[a-z]\w*$"
)
SLACK_METHOD_NAME = re.compile(r"^[a-z]+(\.[a-zA-Z]+)+$")


# ---------------------------------------------------------------------------------------
# Slack app manifest
# ---------------------------------------------------------------------------------------


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(manifest, dict)
    return manifest


def manifest_validator() -> jsonschema.protocols.Validator:
    """Slack's umbrella schema, its remote `$ref`s served from the vendored copies."""
    schema = json.loads((SCHEMA_DIR / "manifest.schema.json").read_text(encoding="utf-8"))
    # The draft decides the validator class; a schema update that changes it must be seen.
    assert schema["$schema"] == DRAFT_07
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft7Validator
    jsonschema.Draft7Validator.check_schema(schema)

    remote = sorted({ref for ref in _refs(schema) if ref.startswith("https://")})
    assert remote, "the umbrella schema should point at the per-version schemas"
    resources = []
    for url in remote:
        local = SCHEMA_DIR / url.rsplit("/", 1)[-1]
        assert local.is_file(), f"{url} is not vendored in {SCHEMA_DIR.relative_to(ROOT)}"
        contents = json.loads(local.read_text(encoding="utf-8"))
        jsonschema.Draft7Validator.check_schema(contents)
        resources.append((url, referencing.jsonschema.DRAFT7.create_resource(contents)))
    # No `retrieve` hook: a reference that is not vendored fails instead of going online.
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(resources)
    return jsonschema.Draft7Validator(
        schema, registry=registry, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_manifest_is_valid_against_slacks_schema() -> None:
    errors = list(manifest_validator().iter_errors(load_manifest()))
    # `oneOf` over the schema versions wraps the real complaints; show those.
    problems = sorted({f"{list(e.absolute_path)}: {e.message[:200]}" for e in _leaves(errors)})
    assert not errors, "\n".join(problems)


def _leaves(
    errors: list[jsonschema.ValidationError],
) -> Iterator[jsonschema.ValidationError]:
    for error in errors:
        if error.context:
            yield from _leaves(error.context)
        else:
            yield error


def test_schema_really_checks_the_manifest() -> None:
    # Guards against a validator that passes everything (e.g. an unresolved `oneOf` branch).
    validator = manifest_validator()
    broken = copy.deepcopy(load_manifest())
    broken["features"]["slash_commands"][0]["command"] = "coffee"  # no leading slash
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(load_manifest())
    broken["settings"]["interactivity"]["request_uri"] = "https://typo.example"
    assert not validator.is_valid(broken)


def slack_methods_called() -> dict[str, list[str]]:
    """Every Web API method the package calls through `call(client, "method.name", ...)`."""
    found: dict[str, list[str]] = {}
    problems: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in ("api_call",) or (name and SDK_METHOD.match(name)):
                problems.append(f"{where}: WebClient.{name}() bypasses call()")
            if name != "call":
                continue
            method = node.args[1] if len(node.args) >= 2 else None
            if not (isinstance(method, ast.Constant) and isinstance(method.value, str)):
                problems.append(f"{where}: call() without a literal method name")
                continue
            if not SLACK_METHOD_NAME.match(method.value):
                problems.append(f"{where}: {method.value!r} is not a Slack method name")
                continue
            found.setdefault(method.value, []).append(where)
    assert not problems, "\n".join(problems)
    return found


def bot_scopes_for(method: str) -> set[str]:
    path = METHODS_DIR / f"{method}.json"
    assert path.is_file(), (
        f"{method} is called but not described in {METHODS_DIR.relative_to(ROOT)}; vendor "
        "its schema from slack-ruby/slack-api-ref to learn its scope"
    )
    scopes = json.loads(path.read_text(encoding="utf-8")).get("scope", {}).get("bot", [])
    if not scopes:
        return set()  # e.g. views.open: the trigger_id is the permission
    if method in SCOPE_CHOICES:
        choices = set(SCOPE_CHOICES[method])
        assert choices <= set(scopes), f"{method}: {choices} are not among its scopes {scopes}"
        return choices
    assert len(scopes) == 1, f"{method} accepts any of {scopes}: add it to SCOPE_CHOICES"
    return {str(scopes[0])}


def test_the_scanner_sees_the_calls_we_know_about() -> None:
    called = slack_methods_called()
    assert {"chat.postMessage", "users.info", "views.open"} <= called.keys()


# Reading channel history is opt-in (COFFEEBUDDY_CHANNEL_POST_DEDUPE and its manifest).
CHANNEL_READ_SCOPES = {"channels:history", "groups:history"}


def test_bot_scopes_are_exactly_the_ones_the_code_needs() -> None:
    needed = {"commands"}  # the /coffee slash command
    for method in slack_methods_called():
        needed |= bot_scopes_for(method)
    for manifest, wanted in (
        (load_manifest(), needed - CHANNEL_READ_SCOPES),
        (load_manifest(DEDUPE_MANIFEST), needed),
    ):
        scopes = manifest["oauth_config"]["scopes"]
        declared = scopes["bot"]
        assert len(declared) == len(set(declared)), "duplicate bot scope"
        assert set(declared) == wanted, (
            f"unused: {sorted(set(declared) - wanted)}, missing: {sorted(wanted - set(declared))}"
        )
        assert set(scopes) == {"bot"}, "no user or optional scopes"


def test_default_scopes_are_least_privilege() -> None:
    assert set(load_manifest()["oauth_config"]["scopes"]["bot"]) == {
        "commands",
        "chat:write",
        "users:read",
        "im:write",
        "im:history",
    }
    # The two manifests differ only in the channel-reading scopes.
    default, dedupe = load_manifest(), load_manifest(DEDUPE_MANIFEST)
    dedupe["oauth_config"]["scopes"]["bot"] = [
        s for s in dedupe["oauth_config"]["scopes"]["bot"] if s not in CHANNEL_READ_SCOPES
    ]
    assert default == dedupe
    assert not list(manifest_validator().iter_errors(load_manifest(DEDUPE_MANIFEST)))


def _routes() -> set[str]:
    source = (PACKAGE / "web" / "app.py").read_text(encoding="utf-8")
    return set(re.findall(r"add_route\(\s*\"([^\"]+)\"", source))


def test_manifest_features_and_urls() -> None:
    manifest = load_manifest()
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is False
    # The Events API only for the App Home tab: nothing that needs another scope.
    events = settings["event_subscriptions"]
    assert events["bot_events"] == ["app_home_opened"]
    assert "user_events" not in events
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/coffee"
    assert command["usage_hint"] == "[time] [note] | help"
    assert manifest["features"]["bot_user"]["display_name"]
    routes = _routes()
    for url in (
        command["url"],
        settings["interactivity"]["request_url"],
        events["request_url"],
    ):
        assert url.startswith("https://"), url
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        assert path in routes, f"{url}: the app serves no {path}"


# ---------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    stage: int


def dockerfile() -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, value.strip(), stage))
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def _exec_form(value: str) -> list[str]:
    parsed = json.loads(value) if value.startswith("[") else shlex.split(value)
    assert isinstance(parsed, list)
    return [str(part) for part in parsed]


def _flags_and_args(value: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(value)
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    return flags, [w for w in words if not w.startswith("--")]


def dockerfile_uid() -> int:
    users = [i.value for i in final_stage() if i.keyword == "USER"]
    assert users, "the final stage has no USER"
    user = users[-1].split(":", 1)[0]
    # Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
    assert user.isdigit(), f"USER {users[-1]} should be a numeric uid"
    return int(user)


def build_args() -> dict[str, str]:
    """Defaults of the ARGs declared before the first FROM (usable in FROM lines)."""
    args = [i.value for i in dockerfile() if i.keyword == "ARG" and i.stage == -1]
    return dict(a.partition("=")[::2] for a in args)


def test_base_images_are_pinned_python_312_slim() -> None:
    defaults = build_args()

    def resolve(image: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m[1] or m[2]], image)

    froms = [resolve(i.value).split() for i in dockerfile() if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    stage_names = {words[2] for words in froms if len(words) == 3 and words[1].upper() == "AS"}
    for words in froms:
        image = words[0]
        if image in stage_names:
            continue
        assert re.fullmatch(r"python:3\.12\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), (
            f"FROM {image}: want python:3.12.<patch>-slim[-<debian>]"
        )
        assert "latest" not in image


def test_runtime_user_is_not_root() -> None:
    assert dockerfile_uid() != 0
    users = [i.value for i in final_stage() if i.keyword == "USER"]
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dependencies_come_from_requirements_in_a_builder_stage() -> None:
    instructions = dockerfile()
    final = max(i.stage for i in instructions)
    installs = [
        i
        for i in instructions
        if i.keyword == "RUN" and re.search(r"\bpip\b.*\binstall\b", i.value)
    ]
    assert installs, "no pip install"
    for run in installs:
        assert run.stage != final, "install in the builder, copy the venv into the runtime"
        assert "--no-cache-dir" in run.value
        assert re.search(r"-r\s+\S*requirements\.txt\b", run.value), run.value
    copied = [i for i in final_stage() if i.keyword == "COPY" and "--from=" in i.value]
    assert any("/opt/venv" in i.value for i in copied), "the runtime stage copies the venv"


def test_runtime_environment_and_port() -> None:
    env: dict[str, str] = {}
    for i in final_stage():
        if i.keyword == "ENV":
            env.update(word.partition("=")[::2] for word in shlex.split(i.value))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == METRICS_DIR
    exposed = {p for i in final_stage() if i.keyword == "EXPOSE" for p in i.value.split()}
    assert str(APP_PORT) in exposed or f"{APP_PORT}/tcp" in exposed
    assert str(WORKER_PORT) in exposed or f"{WORKER_PORT}/tcp" in exposed
    assert f":{APP_PORT}" in (ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")


def test_default_command_is_gunicorn_through_the_entrypoint() -> None:
    final = final_stage()
    (entrypoint,) = [_exec_form(i.value) for i in final if i.keyword == "ENTRYPOINT"]
    cmd = [_exec_form(i.value) for i in final if i.keyword == "CMD"][-1]
    assert cmd[:4] == ["gunicorn", "app:app", "--config", "gunicorn.conf.py"]
    target = entrypoint[0]
    copies = [_flags_and_args(i.value)[1] for i in final if i.keyword == "COPY"]
    assert any(args[-1] == target and args[0] == ENTRYPOINT.name for args in copies)


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, glob) for c in candidates):
            ignored = not negate
    return ignored


def test_image_holds_the_app_and_the_build_context_allows_it() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources: set[str] = set()
    for i in dockerfile():
        if i.keyword in ("COPY", "ADD"):
            flags, args = _flags_and_args(i.value)
            if "from" not in flags:
                sources.update(a.rstrip("/") for a in args[:-1])
    final_sources = {
        a.rstrip("/")
        for i in final_stage()
        if i.keyword == "COPY" and "--from=" not in i.value
        for a in _flags_and_args(i.value)[1][:-1]
    }
    assert {"app.py", "worker.py", "gunicorn.conf.py", "coffeebuddy", "sql"} <= final_sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not _dockerignored(source, patterns), f"{source} is excluded by .dockerignore"
    for secret_or_junk in (
        ".git",
        ".venv",
        ".state",
        "tests",
        "testkit",
        ".env",
        "coffeebuddy/__pycache__",
    ):
        assert _dockerignored(secret_or_junk, patterns), f"{secret_or_junk} enters the context"


def test_vendored_schema_keeps_its_license() -> None:
    assert "MIT License" in (SCHEMA_DIR / "LICENSE").read_text(encoding="utf-8")
