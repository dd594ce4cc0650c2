"""The Kubernetes manifests as they would be applied: both overlays built with kustomize
(`kubectl kustomize`, as `kubectl apply -k` does), every core object validated against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict), the custom resources (Kong,
Prometheus Operator) checked for the fields we rely on, and everything cross-checked
against the code: ports, routes, settings, metric names. No cluster is needed.

kubectl comes with the machine image; scripts/install_tools.sh installs it where missing.
"""

from __future__ import annotations

import ast
import copy
import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from coffeebuddy.config import Config, declared
from tests.unit.test_packaging import APP_UID, CONTAINER_TMP, dockerfile_uid

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BASE = K8S / "base"
RULES_FILE = BASE / "alerts" / "coffeebuddy-rules.yaml"
PROMETHEUS_RULE = BASE / "prometheusrule.yaml"
README = ROOT / "README.md"
PACKAGE = ROOT / "coffeebuddy"
INSTALL = "scripts/install_tools.sh"

ENVIRONMENTS = ("dev", "prod")
APP_PORT = 8080
WORKER_METRICS_PORT = 9102
IMAGE = "registry.example.internal/coffeebuddy/coffeebuddy"
SECRETS = ("slack_signing_secret", "slack_bot_token", "database_url")
VAULT = "vault.hashicorp.com/"
# Read by the HTTP clients (slack_sdk, urllib) rather than by config.py.
PROXY_SETTINGS = {"HTTPS_PROXY", "NO_PROXY"}
PROXY_PORT = 3128
ISSUER_PORT = 4444
SLACK_PATHS = {"/slack/commands", "/slack/interactions", "/slack/events"}

# The oldest Kubernetes the manifests must still be valid for, and the newest schemas the
# validator ships (removed or renamed fields show up in one or the other).
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "Ingress",
    "Job",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Service",
    "ServiceAccount",
}
CUSTOM_KINDS = {
    ("configuration.konghq.com/v1", "KongPlugin"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
NAMESPACED = CORE_KINDS | {kind for _, kind in CUSTOM_KINDS}

# Series the alert rules read that the app does not export: kube-state-metrics' and the
# scrape's own `up`.
EXTERNAL_METRICS = {
    "up",
    "kube_pod_container_status_ready",
    "kube_deployment_status_replicas_available",
}
# Labels that scraping (ServiceMonitor targets) adds to every series of the app.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "endpoint", "container"}


# ---------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(f"kubectl (for `kubectl kustomize`) not found: run {INSTALL} as root")
    return found


@functools.cache
def _build(path: Path) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"kustomize {path.relative_to(ROOT)} failed:\n{done.stderr}"
    docs = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    assert docs, f"{path}: kustomize built nothing"
    return tuple(docs)


def build(path: Path) -> list[dict[str, Any]]:
    # A deep copy: tests may modify what they get without affecting the others.
    return copy.deepcopy(list(_build(path)))


def overlay(env: str) -> list[dict[str, Any]]:
    return build(K8S / "overlays" / env)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"want one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def pod_annotations(workload: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = workload["spec"]["template"]["metadata"].get("annotations", {})
    return annotations


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "Job")]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist) against labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p["name"] == port]
    return int(number)


def app_routes() -> set[str]:
    source = (PACKAGE / "web" / "app.py").read_text(encoding="utf-8")
    return set(re.findall(r"add_route\(\s*\"([^\"]+)\"", source))


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# ---------------------------------------------------------------------------------------
# The overlays build, and every object is valid
# ---------------------------------------------------------------------------------------


def test_overlays_build_into_one_namespace(env: str) -> None:
    objects = overlay(env)
    kinds = {o["kind"] for o in objects}
    assert kinds == NAMESPACED, f"unexpected or missing kinds: {kinds ^ NAMESPACED}"
    for obj in objects:
        where = f"{env}: {obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["namespace"] == f"coffeebuddy-{env}", where
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "coffeebuddy", where
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "two objects share a kind and name"


def test_the_base_builds_and_the_overlays_change_it() -> None:
    base = build(BASE)
    assert {o["kind"] for o in base} == NAMESPACED
    assert all("namespace" not in o["metadata"] for o in base), "the base sets no namespace"
    assert overlay("dev") != overlay("prod")


def test_core_objects_are_valid_kubernetes(env: str) -> None:
    validated = set()
    for obj in overlay(env):
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                pytest.fail(
                    f"{env}: {obj['kind']}/{obj['metadata']['name']} is not valid for "
                    f"Kubernetes {version}: {path}: {error.message}"
                )
        validated.add(obj["kind"])
    assert validated == CORE_KINDS


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d["spec"].update(replicas="two"), "'two' is not of type 'integer'"),
        (lambda d: pod_spec(d).update(hostNetwrk=True), "hostNetwrk"),
        (lambda d: d["spec"].pop("selector"), "'selector' is a required property"),
    ],
)
def test_the_validator_rejects_what_a_cluster_would(change: Any, complaint: str) -> None:
    """The strict schemas do catch typos and wrong types (else the test above proves nothing)."""
    web = one(overlay("prod"), "Deployment", "coffeebuddy-web")
    change(web)
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        kubernetes_validate.validate(web, KUBERNETES_VERSIONS[0], strict=True)
    assert complaint in caught.value.message


# ---------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------


def test_replicas_and_rolling_updates(env: str) -> None:
    objects = overlay(env)
    web = one(objects, "Deployment", "coffeebuddy-web")
    worker = one(objects, "Deployment", "coffeebuddy-worker")
    assert web["spec"]["replicas"] == (2 if env == "prod" else 1)
    assert worker["spec"]["replicas"] >= 2
    base = build(BASE)
    assert one(base, "Deployment", "coffeebuddy-web")["spec"]["replicas"] == 2
    assert one(base, "Deployment", "coffeebuddy-worker")["spec"]["replicas"] >= 2
    for deployment in (web, worker):
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        # Never fewer pods than wanted during a rollout.
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
        assert strategy["rollingUpdate"]["maxSurge"] >= 1
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"], labels)


def _check_probes(container: dict[str, Any], port: int) -> None:
    """Readiness and liveness ask /health/ready and /health/live on `port`, each answering
    within its period; liveness gives up later than readiness: a slow database makes a pod
    unready, not dead."""
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert container_port(container, check["port"]) == port, probe
        assert container[probe]["timeoutSeconds"] < container[probe]["periodSeconds"]
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert (
        live["periodSeconds"] * live["failureThreshold"]
        > ready["periodSeconds"] * ready["failureThreshold"]
    )


def test_web_probes_and_graceful_stop(env: str) -> None:
    web = one(overlay(env), "Deployment", "coffeebuddy-web")
    pod = pod_spec(web)
    (container,) = pod["containers"]
    routes = app_routes()
    _check_probes(container, APP_PORT)
    assert {"/health/ready", "/health/live"} <= set(routes)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # gunicorn needs time to finish its requests after the preStop pause.
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + 20


def test_worker_runs_the_worker_and_stops_gracefully(env: str) -> None:
    worker = one(overlay(env), "Deployment", "coffeebuddy-worker")
    pod = pod_spec(worker)
    (container,) = pod["containers"]
    assert "command" not in container, "the image ENTRYPOINT prepares the metrics directory"
    assert container["args"] == ["python", "worker.py"]
    # In-flight jobs finish after SIGTERM; a job lease (60 s by default) covers the rest.
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert container_port(container, "metrics") == WORKER_METRICS_PORT
    # The worker answers its health checks on its metrics port (maintenance.serve_metrics).
    _check_probes(container, WORKER_METRICS_PORT)
    config = one(overlay(env), "ConfigMap", "coffeebuddy-config")["data"]
    assert config["COFFEEBUDDY_WORKER_METRICS_PORT"] == str(WORKER_METRICS_PORT)


def test_every_container_is_locked_down_and_sized(env: str) -> None:
    images = set()
    for workload in workloads(overlay(env)):
        pod = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod.get("initContainers", []) + pod["containers"]:
            security = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security.get("runAsNonRoot", True) is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            assert {"cpu", "memory"} <= requests.keys() & limits.keys(), where
            image = container["image"]
            assert re.fullmatch(rf"{re.escape(IMAGE)}(:[\w.\-]+|@sha256:[0-9a-f]{{64}})", image)
            assert not image.endswith(":latest"), where
            images.add(image)
    assert len(images) == 1, f"{env}: one image for every workload, got {images}"


def test_migration_job(env: str) -> None:
    job = one(overlay(env), "Job", "coffeebuddy-migrate")
    pod = pod_spec(job)
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["args"] == ["python", "-m", "coffeebuddy", "migrate"]
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["activeDeadlineSeconds"] > 0


def test_pod_disruption_budgets_protect_without_blocking_drains(env: str) -> None:
    objects = overlay(env)
    for component in ("web", "worker"):
        deployment = one(objects, "Deployment", f"coffeebuddy-{component}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        budgets = [
            p
            for p in of_kind(objects, "PodDisruptionBudget")
            if selects(p["spec"]["selector"], labels)
        ]
        assert len(budgets) == 1, component
        spec, replicas = budgets[0]["spec"], deployment["spec"]["replicas"]
        if "minAvailable" in spec:
            # One pod stays through a drain, and a drain can still evict one.
            assert spec["minAvailable"] == 1, component
            assert replicas - spec["minAvailable"] >= 1, f"{env}: {component} blocks drains"
        else:
            assert replicas == 1 and spec["maxUnavailable"] == 1, component
        if env == "prod":
            assert spec.get("minAvailable") == 1, component


# ---------------------------------------------------------------------------------------
# Secrets from Vault, configuration
# ---------------------------------------------------------------------------------------


def test_vault_agent_writes_each_secret_for_the_environment(env: str) -> None:
    objects = overlay(env)
    accounts = {o["metadata"]["name"]: o for o in of_kind(objects, "ServiceAccount")}
    path = f"kv/data/coffeebuddy/{env}"
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)
        annotations = pod_annotations(workload)
        assert annotations[f"{VAULT}agent-inject"] == "true", name
        only_init = annotations.get(f"{VAULT}agent-pre-populate-only", "false")
        if workload["kind"] == "Job":
            # Init container only: a sidecar would keep the Job's pod from completing.
            assert only_init == "true", name
        else:
            # The sidecar rewrites the files when a secret changes in Vault; the app
            # (files source) picks them up without a restart.
            assert only_init == "false", name
        assert annotations[f"{VAULT}role"] == f"coffeebuddy-{env}", name
        # Each pod gets only the secrets it uses: the migration Job only the database URL.
        wanted = ("database_url",) if workload["kind"] == "Job" else SECRETS
        injected = {
            key.removeprefix(f"{VAULT}agent-inject-secret-")
            for key in annotations
            if key.startswith(f"{VAULT}agent-inject-secret-")
        }
        assert injected == set(wanted), name
        for secret in wanted:
            assert annotations[f"{VAULT}agent-inject-secret-{secret}"] == path, (name, secret)
            template = annotations[f"{VAULT}agent-inject-template-{secret}"]
            # The file holds the plain value: no newline, no key=value, no JSON.
            assert template == (
                f'{{{{- with secret "{path}" -}}}}{{{{ .Data.data.{secret} }}}}{{{{- end -}}}}'
            ), (name, secret)
            assert annotations[f"{VAULT}agent-inject-perms-{secret}"] == "0440", (name, secret)
        # The agent runs in the app's group, so the 0440 files are readable by the app.
        assert annotations[f"{VAULT}agent-run-as-group"] == str(
            pod["securityContext"]["runAsGroup"]
        )
        # Kubernetes auth with a projected token that only the Vault Agent mounts.
        assert pod["serviceAccountName"] in accounts, name
        assert accounts[pod["serviceAccountName"]]["automountServiceAccountToken"] is False
        token_volume = annotations[f"{VAULT}agent-service-account-token-volume-name"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == token_volume]
        (source,) = volume["projected"]["sources"]
        assert source["serviceAccountToken"]["audience"] == "vault", name
        assert source["serviceAccountToken"]["path"] == "token", name
        for container in pod["containers"]:
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert token_volume not in mounts, f"{name}: the app must not hold the Vault token"
            env_vars = {e["name"]: e for e in container.get("env", [])}
            assert env_vars["COFFEEBUDDY_SECRETS_SOURCE"]["value"] == "files", name
            for var in env_vars.values():
                assert "secretKeyRef" not in var.get("valueFrom", {}), f"{name}: {var['name']}"


def test_vault_files_are_the_ones_the_app_reads() -> None:
    from coffeebuddy import secrets

    assert secrets.SECRET_KEYS == SECRETS
    # Where the Vault Agent injector mounts its shared volume in every container.
    assert secrets.DEFAULT_SECRETS_DIR == "/vault/secrets"
    for workload in workloads(build(BASE)):
        for container in pod_spec(workload)["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            assert "COFFEEBUDDY_SECRETS_DIR" not in names, "the default is the injector's"


def test_environments_use_their_own_vault_role_path_and_host() -> None:
    def identity(env: str) -> set[str]:
        objects = overlay(env)
        values = {
            value
            for workload in workloads(objects)
            for key, value in pod_annotations(workload).items()
            if key == f"{VAULT}role" or key.startswith(f"{VAULT}agent-inject-secret-")
        }
        ingress = one(objects, "Ingress", "coffeebuddy")
        return values | {rule["host"] for rule in ingress["spec"]["rules"]}

    dev, prod = identity("dev"), identity("prod")
    assert dev and prod and not dev & prod


def test_configmap_is_settings_the_app_accepts(env: str) -> None:
    objects = overlay(env)
    data = one(objects, "ConfigMap", "coffeebuddy-config")["data"]
    settings = {d.env for d in declared(Config)}
    for key in data.keys() - PROXY_SETTINGS:
        assert key in settings, f"{key} is not a setting of Config"
    assert not {"SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "DATABASE_URL"} & data.keys()
    # The real parser accepts the values (secrets here are stand-ins, never in ConfigMaps).
    config = Config.from_environ(
        {
            **data,
            "SLACK_SIGNING_SECRET": "stand-in",
            "SLACK_BOT_TOKEN": "xoxb-stand-in",
            "DATABASE_URL": "postgresql://stand-in/coffeebuddy",
        }
    )
    assert config.slack_api_base_url.startswith("https://")
    assert config.log_level == ("DEBUG" if env == "dev" else "INFO")
    for workload in workloads(objects):
        for container in pod_spec(workload)["containers"]:
            refs = [e["configMapRef"]["name"] for e in container.get("envFrom", [])]
            assert refs == ["coffeebuddy-config"], workload["metadata"]["name"]


# ---------------------------------------------------------------------------------------
# Network: Services, Kong, NetworkPolicies
# ---------------------------------------------------------------------------------------


def test_services_reach_the_right_ports(env: str) -> None:
    objects = overlay(env)
    expected = {"coffeebuddy-web": ("web", APP_PORT), "coffeebuddy-worker": ("worker", 9102)}
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    assert services.keys() == expected.keys()
    for name, (component, port) in expected.items():
        service = services[name]
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name
        deployment = one(objects, "Deployment", f"coffeebuddy-{component}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects({"matchLabels": service["spec"]["selector"]}, labels), name
        # Selects this component's pods only (the Job's pods carry the app label too).
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == component
        (container,) = pod_spec(deployment)["containers"]
        for service_port in service["spec"]["ports"]:
            assert container_port(container, service_port["targetPort"]) == port, name
    assert services["coffeebuddy-worker"]["spec"]["clusterIP"] == "None", "headless"


def test_kong_exposes_only_the_slack_callbacks(env: str) -> None:
    objects = overlay(env)
    (ingress,) = of_kind(objects, "Ingress")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "kong"
    assert "defaultBackend" not in spec
    paths = [p for rule in spec["rules"] for p in rule["http"]["paths"]]
    assert {p["path"] for p in paths} == SLACK_PATHS
    assert len(paths) == len(SLACK_PATHS)
    # Exact: a Prefix /slack would also route whatever else the app ever serves below it.
    assert {p["pathType"] for p in paths} == {"Exact"}
    assert app_routes() >= SLACK_PATHS
    hidden = {r for r in app_routes() if r.startswith(("/metrics", "/health"))}
    assert hidden == {"/metrics", "/health/live", "/health/ready"}
    assert not hidden & {p["path"] for p in paths}
    web_service = one(objects, "Service", "coffeebuddy-web")
    for path in paths:
        backend = path["backend"]["service"]
        assert backend["name"] == "coffeebuddy-web"
        assert backend["port"]["name"] in {p["name"] for p in web_service["spec"]["ports"]}
    hosts = {rule["host"] for rule in spec["rules"]}
    assert hosts == {h for t in spec["tls"] for h in t["hosts"]}, "HTTPS for every host"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["konghq.com/protocols"] == "https"
    assert annotations["konghq.com/methods"] == "POST"


def test_slack_app_urls_are_the_kong_routes() -> None:
    manifest = yaml.safe_load((ROOT / "slack" / "manifest.yaml").read_text(encoding="utf-8"))
    urls = [c["url"] for c in manifest["features"]["slash_commands"]]
    urls.append(manifest["settings"]["interactivity"]["request_url"])
    urls.append(manifest["settings"]["event_subscriptions"]["request_url"])
    assert {"/" + u.split("://", 1)[1].split("/", 1)[1] for u in urls} == SLACK_PATHS


def test_kong_plugins_limit_size_and_rate(env: str) -> None:
    objects = overlay(env)
    (ingress,) = of_kind(objects, "Ingress")
    plugins = {p["metadata"]["name"]: p for p in of_kind(objects, "KongPlugin")}
    attached = ingress["metadata"]["annotations"]["konghq.com/plugins"].split(",")
    assert sorted(attached) == sorted(plugins), "every KongPlugin is attached, none missing"
    by_type = {p["plugin"]: p for p in plugins.values()}
    assert by_type.keys() == {"request-size-limiting", "rate-limiting"}
    for plugin in plugins.values():
        assert plugin["apiVersion"] == "configuration.konghq.com/v1"
        assert set(plugin) <= {"apiVersion", "kind", "metadata", "plugin", "config", "disabled"}
    size = by_type["request-size-limiting"]["config"]
    assert size["size_unit"] == "bytes"
    data = one(objects, "ConfigMap", "coffeebuddy-config")["data"]
    # The gateway refuses exactly what the app would refuse (413 either way).
    app_limit = int(data.get("COFFEEBUDDY_MAX_BODY_BYTES", Config.max_body_bytes))
    assert size["allowed_payload_size"] == app_limit == 64 * 1024
    rate = by_type["rate-limiting"]["config"]
    windows = {"second", "minute", "hour", "day", "month", "year"}
    assert rate.keys() & windows, "a rate limit needs at least one window"
    assert all(isinstance(rate[w], int) and rate[w] > 0 for w in rate.keys() & windows)
    assert rate["policy"] in {"local", "cluster", "redis"}
    assert rate["limit_by"] in {"consumer", "credential", "ip", "service", "header", "path"}


def _policies_for(objects: list[dict[str, Any]], labels: dict[str, str], kind: str) -> list[Any]:
    return [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)
    ]


def _ports(rules: list[dict[str, Any]]) -> set[tuple[int, str]]:
    return {(p["port"], p.get("protocol", "TCP")) for rule in rules for p in rule["ports"]}


def test_network_policies(env: str) -> None:
    objects = overlay(env)
    pods = {
        w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: w["spec"][
            "template"
        ]["metadata"]["labels"]
        for w in workloads(objects)
    }
    assert pods.keys() == {"web", "worker", "migrate"}
    # Default deny: everything not allowed below is refused, both ways.
    assert any(
        p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "coffeebuddy"}}
        and sorted(p["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in of_kind(objects, "NetworkPolicy")
    )
    for component, labels in pods.items():
        ingress = _policies_for(objects, labels, "Ingress")
        egress = _policies_for(objects, labels, "Egress")
        # Default deny: some policy selects every pod for both directions.
        assert ingress and egress, component
        for policy in ingress + egress:
            for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
                assert rule.get("ports"), f"{policy['metadata']['name']}: a rule without ports"
        allowed_in = _ports([r for p in ingress for r in p["spec"].get("ingress", [])])
        allowed_out = _ports([r for p in egress for r in p["spec"].get("egress", [])])
        common = {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (8200, "TCP")}
        if component == "web":
            assert allowed_in == {(APP_PORT, "TCP")}
            assert allowed_out == common | {(PROXY_PORT, "TCP"), (ISSUER_PORT, "TCP")}
        elif component == "worker":
            assert allowed_in == {(WORKER_METRICS_PORT, "TCP")}
            assert allowed_out == common | {(PROXY_PORT, "TCP"), (9092, "TCP")}
        else:
            assert allowed_in == set()
            assert allowed_out == common

    def sources(component: str) -> list[dict[str, Any]]:
        policies = _policies_for(objects, pods[component], "Ingress")
        return [peer for p in policies for r in p["spec"].get("ingress", []) for peer in r["from"]]

    def namespace_of(peer: dict[str, Any]) -> str:
        name: str = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        return name

    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    assert {namespace_of(peer) for peer in sources("web")} == {"kong", "monitoring"}
    assert prometheus in sources("web")
    assert sources("worker") == [prometheus]
    # No rule is open to everyone (an empty peer or an ipBlock of the whole world).
    for policy in of_kind(objects, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            peers = rule.get("from", rule.get("to"))
            assert peers, f"{policy['metadata']['name']}: a rule open to every peer"
            assert all(peer for peer in peers), policy["metadata"]["name"]


# ---------------------------------------------------------------------------------------
# Monitoring: ServiceMonitors and the PrometheusRule
# ---------------------------------------------------------------------------------------


def test_service_monitors_scrape_web_and_worker(env: str) -> None:
    objects = overlay(env)
    services = of_kind(objects, "Service")
    scraped: dict[str, int] = {}
    for monitor in of_kind(objects, "ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        spec = monitor["spec"]
        assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
        assert "jobLabel" not in spec, "the rules expect job = the Service name"
        (service,) = [s for s in services if selects(spec["selector"], s["metadata"]["labels"])]
        component = service["spec"]["selector"]["app.kubernetes.io/component"]
        (container,) = pod_spec(one(objects, "Deployment", f"coffeebuddy-{component}"))[
            "containers"
        ]
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert endpoint["path"] == "/metrics"
            assert endpoint["port"] in ports, f"{service['metadata']['name']} has no such port"
            target = ports[endpoint["port"]]["targetPort"]
            scraped[service["metadata"]["name"]] = container_port(container, target)
    assert scraped == {"coffeebuddy-web": APP_PORT, "coffeebuddy-worker": WORKER_METRICS_PORT}
    assert "/metrics" in app_routes()


def load_rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return rules


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"]]


def test_prometheus_rule_is_the_rules_file(env: str) -> None:
    (rule,) = of_kind(overlay(env), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == load_rules(), (
        f"{PROMETHEUS_RULE.relative_to(ROOT)} differs from {RULES_FILE.relative_to(ROOT)}: "
        "regenerate it with the command at its top"
    )
    assert set(load_rules()) == {"groups"}


def test_alerts_carry_severity_summary_description_and_runbook() -> None:
    alerts = alert_rules()
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    assert {
        "CoffeeBuddyHighErrorRatio",
        "CoffeeBuddyWebNotReady",
        "CoffeeBuddyDeadJobs",
        "CoffeeBuddyJobQueueStalled",
        "CoffeeBuddyEventBacklogOld",
        "CoffeeBuddyRemindersLate",
    } <= set(names)
    for alert in alerts:
        name = alert["alert"]
        assert re.fullmatch(r"CoffeeBuddy[A-Z][A-Za-z]+", name)
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == f"README.md#alert-{name.lower()}", name
        # Alerts are per environment: every expression keeps the namespace label.
        assert "{{ $labels.namespace }}" in annotations["summary"], name


def github_anchor(heading: str) -> str:
    """How GitHub turns a heading into an anchor: lower case, punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_runbook_anchors_exist_in_the_readme() -> None:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", README.read_text(encoding="utf-8"), re.M)
    anchors = {github_anchor(h) for h in headings}
    assert github_anchor("Alert: CoffeeBuddyHighErrorRatio") == "alert-coffeebuddyhigherrorratio"
    missing = [
        a["alert"]
        for a in alert_rules()
        if a["annotations"]["runbook_url"].split("#", 1)[1] not in anchors
    ]
    assert not missing, (
        "README.md has no runbook section for: "
        + ", ".join(missing)
        + " (add a heading like `### Alert: CoffeeBuddyHighErrorRatio` for each)"
    )


# ---------------------------------------------------------------------------------------
# The alert expressions read metrics the app exports
# ---------------------------------------------------------------------------------------

_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def promql_selectors(expr: str) -> Iterator[tuple[str, str]]:
    """(metric name, label matcher text) for every series selector in a PromQL expression."""
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\boffset\s+\d+[smhdwy]", " ", text)
    pattern = re.compile(r'([A-Za-z_:][A-Za-z0-9_:]*)?\s*(\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})?')
    position = 0
    while position < len(text):
        found = pattern.match(text, position)
        if found is None or found.end() == position:
            position += 1
            continue
        name, matchers = found.group(1), found.group(2) or ""
        position = found.end()
        rest = text[position:].lstrip()
        if name is None or name.lower() in _PROMQL_WORDS or rest.startswith("("):
            continue
        if name[0].isdigit():
            continue
        yield name, matchers


def test_promql_selector_parsing() -> None:
    expr = (
        'sum by (namespace, le) (rate(a_bucket{x="1", y=~"p|q"}[5m])) / ignoring(le) b '
        'unless on () absent(up{job="j"} offset 15m) > 0.5 and c_total offset 1h'
    )
    assert list(promql_selectors(expr)) == [
        ("a_bucket", '{x="1", y=~"p|q"}'),
        ("b", ""),
        ("up", '{job="j"}'),
        ("c_total", ""),
    ]


def exported_metrics() -> dict[str, set[str]]:
    """Series names the app exposes, each with the label names it may carry."""
    tree = ast.parse((PACKAGE / "metrics.py").read_text(encoding="utf-8"))
    exported: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        kind = node.func.id
        if kind not in {"Counter", "Gauge", "Histogram", "Summary"}:
            continue
        first = node.args[0]
        assert isinstance(first, ast.Constant) and isinstance(first.value, str)
        name = first.value
        labels: set[str] = set()
        if len(node.args) >= 3 and isinstance(node.args[2], ast.List | ast.Tuple):
            labels = {e.value for e in node.args[2].elts if isinstance(e, ast.Constant)}
        for keyword in node.keywords:
            if keyword.arg == "labelnames" and isinstance(keyword.value, ast.List | ast.Tuple):
                labels = {e.value for e in keyword.value.elts if isinstance(e, ast.Constant)}
        if kind == "Counter":
            base = name.removesuffix("_total")
            exported[f"{base}_total"] = labels
        elif kind == "Gauge":
            exported[name] = labels
        else:
            exported[f"{name}_count"] = labels
            exported[f"{name}_sum"] = labels
            if kind == "Histogram":
                exported[f"{name}_bucket"] = labels | {"le"}
    assert "coffeebuddy_requests_total" in exported
    return exported


def test_alert_expressions_use_real_metrics_and_labels() -> None:
    exported = exported_metrics()
    package_source = "\n".join(
        p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts
    )
    used_app_metrics = set()
    for alert in alert_rules():
        selectors = list(promql_selectors(alert["expr"]))
        assert selectors, alert["alert"]
        for name, matchers in selectors:
            where = f"{alert['alert']}: {name}"
            if name in EXTERNAL_METRICS:
                continue
            assert name in exported, f"{where} is not exported by coffeebuddy/metrics.py"
            used_app_metrics.add(name)
            for label, _op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
                assert label in exported[name] | TARGET_LABELS, f"{where}: no label {label}"
                if label in exported[name]:
                    # The values matched are ones the code sets.
                    for alternative in value.split("|"):
                        assert f'"{alternative}"' in package_source, f"{where}: {alternative}"
    assert {
        "coffeebuddy_errors_total",
        "coffeebuddy_requests_total",
        "coffeebuddy_jobs_total",
        "coffeebuddy_job_oldest_due_age_seconds",
        "coffeebuddy_event_backlog_age_seconds",
        "coffeebuddy_reminder_lateness_seconds_bucket",
    } <= used_app_metrics


def test_dead_job_alert_counts_new_dead_jobs_not_the_gauge() -> None:
    (dead,) = [a for a in alert_rules() if a["alert"] == "CoffeeBuddyDeadJobs"]
    names = {name for name, _ in promql_selectors(dead["expr"])}
    assert "coffeebuddy_jobs_dead" not in names, "the gauge stays up for 14 days"
    assert "coffeebuddy_jobs_total" in names
    assert re.search(r'increase\(coffeebuddy_jobs_total\{outcome="dead"\}\[15m\]\)', dead["expr"])


def test_alert_jobs_are_the_scraped_services() -> None:
    services = {s["metadata"]["name"] for s in of_kind(build(BASE), "Service")}
    monitored = {
        s["metadata"]["name"]
        for s in of_kind(build(BASE), "Service")
        for m in of_kind(build(BASE), "ServiceMonitor")
        if selects(m["spec"]["selector"], s["metadata"]["labels"])
    }
    for alert in alert_rules():
        for _, matchers in promql_selectors(alert["expr"]):
            for job in re.findall(r'\bjob\s*=\s*"([^"]+)"', matchers):
                assert job in services & monitored, f"{alert['alert']}: no scrape job {job}"
    deployments = {d["metadata"]["name"] for d in of_kind(build(BASE), "Deployment")}
    for alert in alert_rules():
        for name in re.findall(r'deployment\s*=\s*"([^"]+)"', alert["expr"]):
            assert name in deployments, alert["alert"]
        for pattern in re.findall(r'pod\s*=~\s*"([^"]+)"', alert["expr"]):
            assert any(pattern.startswith(d) for d in deployments), alert["alert"]


def test_egress_proxy_setting_matches_the_network_policy(env: str) -> None:
    from urllib.parse import urlsplit

    data = one(overlay(env), "ConfigMap", "coffeebuddy-config")["data"]
    proxy = urlsplit(data["HTTPS_PROXY"])
    assert proxy.port == PROXY_PORT
    # In-cluster peers (Postgres, Vault, the Ory issuer, Kafka) must not go to the proxy.
    assert ".svc" in data["NO_PROXY"].split(",")


# ---------------------------------------------------------------------------------------
# The base as written (each file, before kustomize builds it)
# ---------------------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    """The base's manifests (what its kustomization lists) and every kustomization file.
    The overlays' patches and the built overlays are checked above, the Prometheus rules
    files by tests/integration/test_alert_rules.py too."""
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


def written_workloads() -> list[dict[str, Any]]:
    found = workloads(k8s_objects())
    assert found, "no workloads"
    return found


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
    for workload in written_workloads():
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
    images = {c["image"] for w in written_workloads() for c in pod_spec(w)["containers"]}
    assert len(images) == 1, images
    (image,) = images
    last = image.rsplit("/", 1)[-1]
    assert ":" in last or "@sha256:" in image, f"{image}: not pinned"
    assert not image.endswith(":latest"), image


def test_web_deployment() -> None:
    web = deployment("web")
    spec = web["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    (container,) = pod_spec(web)["containers"]
    assert "command" not in container and "args" not in container, "web runs the image CMD"
    routes = app_routes()
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert path in routes, f"the app serves no {path}"
        assert container_port(container, check["port"]) == APP_PORT, probe
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


def test_migration_job_as_written() -> None:
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
        assert container_port(container, port["targetPort"]) == APP_PORT
