"""Static checks of what ships: the Slack app manifest, the Kubernetes manifests and the
Dockerfile. No cluster is available in CI, so these read the files and cross-check them
against each other and against the code (scripts/build-image builds and runs the image)."""

from __future__ import annotations

import ast
import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema
import yaml

from coffeebuddy.config import Config, declared

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "coffeebuddy"
MANIFEST = ROOT / "slack" / "manifest.yaml"
DEDUPE_MANIFEST = ROOT / "slack" / "manifest-channel-dedupe.yaml"
SCHEMA_DIR = ROOT / "tests" / "fixtures" / "slack-manifest-schema"
METHODS_DIR = ROOT / "tests" / "fakes" / "slack_methods"
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
# Kubernetes
# ---------------------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    """The base's manifests (what its kustomization lists) and every kustomization file.
    The overlays' patches, the built overlays and the Prometheus rules files are checked by
    tests/unit/test_k8s.py and tests/integration/test_alert_rules.py."""
    base = K8S / "base"
    listed = yaml.safe_load((base / "kustomization.yaml").read_text(encoding="utf-8"))
    files = [base / name for name in listed["resources"]]
    files += sorted(K8S.rglob("kustomization.yaml"))
    assert files, "no Kubernetes manifests found"
    return files


def k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is None:
                continue
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"
            objects.append({**doc, "__file__": path})
    return objects


def workloads() -> list[dict[str, Any]]:
    found = [o for o in k8s_objects() if o["kind"] in ("Deployment", "Job", "CronJob")]
    assert found, "no workloads"
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    result: dict[str, Any] = spec["template"]["spec"]
    return result


def deployment(component: str) -> dict[str, Any]:
    (found,) = [
        o
        for o in k8s_objects()
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    return found


def test_every_k8s_yaml_parses_into_objects() -> None:
    for obj in k8s_objects():
        assert obj.get("apiVersion") and obj.get("kind"), obj["__file__"]
        if obj["kind"] != "Kustomization":
            assert obj["metadata"]["name"], obj["__file__"]
            assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "coffeebuddy"


def test_kustomizations_list_existing_files_and_nothing_is_left_out() -> None:
    kustomizations = [o for o in k8s_objects() if o["kind"] == "Kustomization"]
    assert kustomizations
    for k in kustomizations:
        folder = k["__file__"].parent
        names = [*k.get("resources", []), *k.get("bases", []), *k.get("patchesStrategicMerge", [])]
        names += [p["path"] for p in k.get("patches", []) if "path" in p]
        listed = {(folder / r).resolve() for r in names}
        for path in listed:
            assert path.exists(), f"{k['__file__']}: {path} does not exist"
        siblings = {p.resolve() for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"}
        assert siblings <= listed, f"{folder}: not in kustomization: {siblings - listed}"


def test_workloads_run_locked_down() -> None:
    for workload in workloads():
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)
        pod_security = pod.get("securityContext", {})
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            security = container.get("securityContext", {})
            where = f"{name}/{container['name']}"
            # Set for the whole pod, and no container may switch it off.
            assert pod_security.get("runAsNonRoot") is True, f"{name}: runAsNonRoot"
            assert security.get("runAsNonRoot", True) is True, f"{where}: runAsNonRoot"
            uid = security.get("runAsUser", pod_security.get("runAsUser", APP_UID))
            assert uid == APP_UID == dockerfile_uid(), f"{where}: uid {uid}"
            assert security.get("readOnlyRootFilesystem") is True, f"{where}: read-only root"
            assert security.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in security.get("capabilities", {}).get("drop", []), where
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources.get(kind, {}).keys(), f"{where}: {kind}"
            # The read-only root needs a writable /tmp (PROMETHEUS_MULTIPROC_DIR lives there).
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == CONTAINER_TMP]
            assert tmp, f"{where}: no /tmp mount"
            assert "emptyDir" in volumes[tmp[0]["name"]], f"{where}: /tmp is not an emptyDir"


def test_workloads_share_one_pinned_image() -> None:
    images = {c["image"] for w in workloads() for c in pod_spec(w)["containers"]}
    assert len(images) == 1, images
    (image,) = images
    last = image.rsplit("/", 1)[-1]
    assert ":" in last or "@sha256:" in image, f"{image}: not pinned"
    assert not image.endswith(":latest"), image


def _resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(number)


def test_web_deployment() -> None:
    web = deployment("web")
    spec = web["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    (container,) = pod_spec(web)["containers"]
    assert "command" not in container and "args" not in container, "web runs the image CMD"
    routes = _routes()
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert path in routes, f"the app serves no {path}"
        assert _resolve_port(container, check["port"]) == APP_PORT, probe
    assert APP_PORT in {p["containerPort"] for p in container["ports"]}


def test_web_and_worker_get_config_and_secrets() -> None:
    configmaps = {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == "ConfigMap"}
    for component in ("web", "worker"):
        workload = deployment(component)
        (container,) = pod_spec(workload)["containers"]
        refs = {e["configMapRef"]["name"] for e in container.get("envFrom", [])}
        assert refs and refs <= configmaps.keys(), component
        # Secrets are files that Vault Agent writes to /vault/secrets (test_k8s.py has the
        # details), never plain env values.
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["COFFEEBUDDY_SECRETS_SOURCE"]["value"] == "files"
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        for key in ("slack_signing_secret", "slack_bot_token", "database_url"):
            assert f"vault.hashicorp.com/agent-inject-secret-{key}" in annotations, component
        assert not env.keys() & {"SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "DATABASE_URL"}


def test_configmap_keys_are_settings_the_app_reads() -> None:
    settings = {d.env for d in declared(Config)}
    (configmap,) = [o for o in k8s_objects() if o["kind"] == "ConfigMap"]
    data = configmap["data"]
    assert {"SLACK_API_BASE_URL", "LOG_LEVEL", "COFFEEBUDDY_ADMIN_USER_IDS"} <= data.keys()
    for key, value in data.items():
        # The proxy variables are read by the HTTP clients themselves (see slack/api.py).
        if key not in {"HTTPS_PROXY", "NO_PROXY"}:
            assert key in settings, f"{key} is not a setting of Config"
        assert isinstance(value, str), f"{key}: ConfigMap values must be strings"
    assert not {"SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "DATABASE_URL"} & data.keys()


def test_worker_deployment() -> None:
    worker = deployment("worker")
    assert worker["spec"]["replicas"] >= 2
    pod = pod_spec(worker)
    assert pod["terminationGracePeriodSeconds"] == 30
    (container,) = pod["containers"]
    # Only `args`: the image ENTRYPOINT still prepares the metrics directory.
    assert "command" not in container
    assert container["args"] == ["python", "worker.py"]


def test_migration_job() -> None:
    (job,) = [o for o in k8s_objects() if o["kind"] == "Job"]
    pod = pod_spec(job)
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert "command" not in container
    assert container["args"] == ["python", "-m", "coffeebuddy", "migrate"]


def test_service_targets_the_web_pods() -> None:
    (service,) = [
        o
        for o in k8s_objects()
        if o["kind"] == "Service"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "web"
    ]
    web = deployment("web")
    pod_labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    (container,) = pod_spec(web)["containers"]
    for port in service["spec"]["ports"]:
        assert _resolve_port(container, port["targetPort"]) == APP_PORT


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
    for secret_or_junk in (".git", ".venv", ".state", "tests", ".env", "coffeebuddy/__pycache__"):
        assert _dockerignored(secret_or_junk, patterns), f"{secret_or_junk} enters the context"


def test_entrypoint_empties_the_metrics_dir_then_execs(tmp_path: Path) -> None:
    assert os.access(ENTRYPOINT, os.X_OK), "docker-entrypoint.sh must be executable"
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_1234.db").write_bytes(b"stale")
    (metrics / ".hidden").write_bytes(b"stale")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    done = subprocess.run(
        [
            "sh",
            str(ENTRYPOINT),
            "sh",
            "-c",
            'ls -A "$PROMETHEUS_MULTIPROC_DIR"; echo "exec:$0"',
            "x",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert done.stdout == "exec:x\n"
    assert metrics.is_dir()
    # A directory that does not exist yet is created.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "new" / "metrics")
    subprocess.run(["sh", str(ENTRYPOINT), "true"], env=env, timeout=10, check=True)
    assert (tmp_path / "new" / "metrics").is_dir()


def test_entrypoint_refuses_a_relative_metrics_dir(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PROMETHEUS_MULTIPROC_DIR": "metrics"}
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "true"], env=env, cwd=tmp_path, capture_output=True, timeout=10
    )
    assert done.returncode != 0
    assert not (tmp_path / "metrics").exists()


def test_vendored_schema_keeps_its_license() -> None:
    assert "MIT License" in (SCHEMA_DIR / "LICENSE").read_text(encoding="utf-8")
