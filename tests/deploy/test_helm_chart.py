"""The Helm chart: lint, render with default and all-on values, validate the manifests against
the Kubernetes schemas, and check what the worker needs (probes, grace period, secrets, the
restricted Pod Security Standard, the shipped monitoring files)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    CHART,
    CI_VALUES,
    KUBE_VERSION,
    MONITORING,
    ROOT,
    missing,
    output,
    require_module,
    run,
)

yaml = require_module("yaml", "PyYAML (comes with kubernetes-validate)")
kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")

NAMESPACE = "delivery"
RELEASE = "drw"
VALUE_SETS = {
    "default": None,
    "all-on": CI_VALUES / "all-on-values.yaml",
    "hpa-initcontainer": CI_VALUES / "hpa-initcontainer-values.yaml",
    "keda-prometheus": CI_VALUES / "keda-prometheus-values.yaml",
}
POD_KINDS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[name-defined,misc]
    """A YAML loader that rejects duplicate keys (the API server rejects them too)."""


def _construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def helm_args(values: Path | None, *extra: str) -> list[str]:
    args = ["--kube-version", KUBE_VERSION, *extra]
    if values is not None:
        args += ["-f", str(values)]
    return args


def render(helm: str, values: Path | None, *extra: str) -> list[dict[str, Any]]:
    result = run(
        [
            helm,
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            *helm_args(values, *extra),
        ]
    )
    assert result.returncode == 0, output(result)
    docs = [d for d in yaml.load_all(result.stdout, Loader=_UniqueKeyLoader) if d]
    assert docs, "helm template rendered nothing"
    return docs


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, helm: str) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(helm, VALUE_SETS[request.param])


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in POD_KINDS
    ]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# --- lint -------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_helm_lint_strict(helm: str, values: str) -> None:
    result = run([helm, "lint", "--strict", str(CHART), *helm_args(VALUE_SETS[values])])
    assert result.returncode == 0, output(result)
    assert "0 chart(s) failed" in result.stdout, output(result)


def test_all_on_values_switch_every_option_on() -> None:
    values = yaml.safe_load((CI_VALUES / "all-on-values.yaml").read_text())
    for option in (
        "keda",
        "serviceMonitor",
        "prometheusRule",
        "grafanaDashboard",
        "networkPolicy",
        "api",
    ):
        assert values[option]["enabled"] is True, option
    assert values["kafka"]["tls"]["enabled"] is True
    assert values["kafka"]["securityProtocol"] == "SASL_SSL"
    assert values["database"]["tls"]["rootCertSecret"]
    hpa = yaml.safe_load((CI_VALUES / "hpa-initcontainer-values.yaml").read_text())
    assert hpa["autoscaling"]["enabled"] is True


# --- schema validation of the rendered manifests ----------------------------------------------

# Custom resources: kubernetes-validate only knows the built-in kinds, so these are checked
# against the fields their operators require.
CUSTOM_RESOURCES: dict[tuple[str, str], list[str]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ["spec.selector", "spec.endpoints"],
    ("monitoring.coreos.com/v1", "PrometheusRule"): ["spec.groups"],
    ("keda.sh/v1alpha1", "ScaledObject"): ["spec.scaleTargetRef.name", "spec.triggers"],
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ["spec.secretTargetRef"],
}


def _get(doc: dict[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        assert isinstance(value, dict) and part in value, f"missing {dotted}"
        value = value[part]
    return value


def test_manifests_validate_against_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if key in CUSTOM_RESOURCES:
            for field in CUSTOM_RESOURCES[key]:
                assert _get(doc, field), f"{where}: empty {field}"
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is not a valid Kubernetes {KUBE_VERSION} object: {exc}")
        assert doc["metadata"].get("namespace") in (NAMESPACE, "monitoring"), where
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, where
        assert labels["app.kubernetes.io/name"] == "delivery-receipts-worker", where


def test_all_on_renders_every_kind(helm: str) -> None:
    kinds = {d["kind"] for d in render(helm, VALUE_SETS["all-on"])}
    assert kinds >= {
        "Deployment",
        "Service",
        "ServiceAccount",
        "PodDisruptionBudget",
        "Job",
        "ScaledObject",
        "TriggerAuthentication",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
        "NetworkPolicy",
        "Ingress",
        "HorizontalPodAutoscaler",
    }
    hpa_kinds = {d["kind"] for d in render(helm, VALUE_SETS["hpa-initcontainer"])}
    assert "HorizontalPodAutoscaler" in hpa_kinds


def test_selectors_match_pod_labels(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] == "Deployment"
    }
    for d in docs:
        if d["kind"] == "Deployment":
            selector = d["spec"]["selector"]["matchLabels"]
            assert selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        if d["kind"] in ("Service", "PodDisruptionBudget", "ServiceMonitor"):
            selector = d["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            matching = [n for n, labels in pods.items() if selector.items() <= labels.items()]
            assert len(matching) == 1, f"{d['kind']}/{d['metadata']['name']} selects {matching}"


# --- Pod Security Standard "restricted" ------------------------------------------------------


def test_pods_meet_restricted_pod_security_standard(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    specs = pod_specs(docs)
    assert specs
    for where, pod in specs:
        psc = pod.get("securityContext", {})
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(host), f"{where}: {host}"
        assert pod.get("automountServiceAccountToken") is False, where
        for volume in pod.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUME_TYPES, f"{where}: volume {volume['name']} {kinds}"
        for c in containers(pod):
            cwhere = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            assert not sc.get("privileged"), cwhere
            assert sc.get("allowPrivilegeEscalation") is False, cwhere
            assert sc.get("readOnlyRootFilesystem") is True, cwhere
            caps = sc.get("capabilities", {})
            assert "ALL" in caps.get("drop", []), cwhere
            assert set(caps.get("add", [])) <= {"NET_BIND_SERVICE"}, cwhere
            run_as_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            assert run_as_non_root is True, cwhere
            run_as_user = sc.get("runAsUser", psc.get("runAsUser"))
            assert run_as_user is not None and run_as_user != 0, cwhere
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), cwhere
            for port in c.get("ports", []):
                assert "hostPort" not in port, cwhere
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{cwhere}: /tmp must be an emptyDir (root fs is read-only)"
            for path, mount in mounts.items():
                if path != "/tmp":
                    assert mount.get("readOnly") is True, f"{cwhere}: {path} writable"
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp, where


def test_pod_uid_is_the_images_user() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = values["podSecurityContext"]["runAsUser"]
    assert values["securityContext"]["runAsUser"] == uid
    assert f"USER {uid}:{uid}" in dockerfile


# --- the worker's contract: probes, grace period, env, secrets --------------------------------


def worker_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = one(docs, "Deployment", f"{RELEASE}-delivery-receipts-worker")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "worker"]
    return pod, container


def test_worker_probes_grace_period_and_ports(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    pod, c = worker_container(docs)
    env = env_of(c)
    assert c["args"] == ["run"]
    assert "command" not in c, "the image's ENTRYPOINT (delivery-receipts-worker) must be used"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (port,) = c["ports"]
    assert port["name"] == "http"
    assert str(port["containerPort"]) == env["HTTP_PORT"]["value"]
    assert pod["terminationGracePeriodSeconds"] > float(env["SHUTDOWN_GRACE_S"]["value"])
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    service = one(docs, "Service", f"{RELEASE}-delivery-receipts-worker")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


# The secure-by-default API's variables (issue 12: several accounts from a credentials file,
# explicit open mode, the public URL in links), which the `api` command reads.
API_AUTH_VARIABLES = {"API_CREDENTIALS_FILE", "API_AUTH_DISABLED", "API_PUBLIC_BASE_URL"}


def test_env_names_are_worker_settings(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Every variable the chart sets is one the worker reads (worker.config.Settings)."""
    from dataclasses import fields

    from worker.config import Settings

    known = {f.name.upper() for f in fields(Settings)} | API_AUTH_VARIABLES
    _, docs = rendered
    for where, pod in pod_specs(docs):
        for c in containers(pod):
            unknown = set(env_of(c)) - known
            assert not unknown, f"{where} {c['name']}: variables the worker ignores: {unknown}"


SECRET_VARIABLES = (
    "DATABASE_URL",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "API_AUTH_TOKEN",
    "API_AUTH_ACCOUNT_SID",
)


def test_secrets_come_from_secret_references(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    assert not find(docs, "Secret"), "the chart must not carry secrets"
    for where, pod in pod_specs(docs):
        for c in containers(pod):
            env = env_of(c)
            assert "DATABASE_URL" in env, f"{where} {c['name']}"
            for name in SECRET_VARIABLES:
                if name in env:
                    assert "value" not in env[name], f"{where}: {name} inline"
                    assert env[name]["valueFrom"]["secretKeyRef"]["name"], where


def test_tls_material_is_mounted_where_the_env_points(helm: str) -> None:
    docs = render(helm, VALUE_SETS["all-on"])
    pod, c = worker_container(docs)
    env = env_of(c)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for var, key in (
        ("KAFKA_SSL_CAFILE", "ca.crt"),
        ("KAFKA_SSL_CERTFILE", "tls.crt"),
        ("KAFKA_SSL_KEYFILE", "tls.key"),
    ):
        assert env[var]["value"] == f"{mounts['kafka-tls']}/{key}"
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-client-tls"
    assert volumes["postgres-ca"]["secret"]["secretName"] == "postgres-ca"
    assert mounts["postgres-ca"] == "/etc/delivery-receipts-worker/postgres-ca"
    assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "delivery-receipts-db"
    trigger = one(docs, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["tls"] == "enable"
    auth = one(docs, "TriggerAuthentication")["spec"]["secretTargetRef"]
    assert {a["parameter"] for a in auth} == {"username", "password", "ca", "cert", "key"}


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(helm: str) -> None:
    docs = render(helm, None)
    job = one(docs, "Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert set(hooks) == {"pre-install", "pre-upgrade"}
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # The chart's ServiceAccount is not there yet when a pre-install hook runs.
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "default"
    assert "initContainers" not in one(docs, "Deployment")["spec"]["template"]["spec"]


def test_migrations_as_an_init_container(helm: str) -> None:
    docs = render(helm, VALUE_SETS["hpa-initcontainer"])
    assert not find(docs, "Job")
    pod, _ = worker_container(docs)
    (init,) = pod["initContainers"]
    assert init["args"] == ["migrate"]
    deployment = one(docs, "Deployment", f"{RELEASE}-delivery-receipts-worker")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


API = f"{RELEASE}-delivery-receipts-worker-api"


def api_pod(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = one(docs, "Deployment", API)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_api_deployment_with_a_credentials_file(helm: str) -> None:
    docs = render(helm, VALUE_SETS["all-on"])
    pod, c = api_pod(docs)
    assert c["args"] == ["api"]
    env = env_of(c)
    assert env["API_PORT"]["value"] == "8000"
    # The credentials file is mounted from the Secret, and API_CREDENTIALS_FILE names it.
    path = env["API_CREDENTIALS_FILE"]["value"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert path == f"{mounts['api-auth']['mountPath']}/accounts"
    assert mounts["api-auth"]["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "api-auth")["secret"]
    assert volume["secretName"] == "delivery-receipts-api-auth"
    assert volume["items"] == [{"key": "accounts", "path": "accounts"}]
    assert not {"API_AUTH_DISABLED", "API_AUTH_TOKEN", "API_AUTH_ACCOUNT_SID"} & set(env)
    # Without api.publicBaseUrl, the first Ingress host, https because a TLS entry lists it.
    assert env["API_PUBLIC_BASE_URL"]["value"] == "https://receipts.example.com"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["envFrom"] == [{"configMapRef": {"name": "delivery-receipts-api-extra"}}]
    one(docs, "Service", API)


def test_api_in_explicit_open_mode_with_own_probes(helm: str) -> None:
    docs = render(helm, VALUE_SETS["hpa-initcontainer"])
    pod, c = api_pod(docs)
    env = env_of(c)
    assert env["API_AUTH_DISABLED"]["value"] == "true"
    assert "API_CREDENTIALS_FILE" not in env
    assert "api-auth" not in {v["name"] for v in pod["volumes"]}
    assert env["API_PUBLIC_BASE_URL"]["value"] == "https://api.example.com/receipts"
    assert c["livenessProbe"]["periodSeconds"] == 20
    # httpGet: null in the values drops the default handler (values merge with the defaults).
    assert c["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert "httpGet" not in c["readinessProbe"]
    assert c["readinessProbe"]["periodSeconds"] == 5
    assert one(docs, "Deployment", API)["spec"]["replicas"] == 2
    assert not find(docs, "Ingress")


def test_api_credentials_from_extra_env_from(helm: str) -> None:
    """Credentials the chart cannot see (an envFrom Secret) are accepted as they are."""
    docs = render(helm, VALUE_SETS["keda-prometheus"])
    _, c = api_pod(docs)
    assert not API_AUTH_VARIABLES & set(env_of(c))
    assert c["envFrom"] == [{"secretRef": {"name": "delivery-receipts-api-env"}}]


def test_api_ingress_and_autoscaling(helm: str) -> None:
    docs = render(helm, VALUE_SETS["all-on"])
    ingress = one(docs, "Ingress", API)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["spec"]["tls"] == [
        {"secretName": "receipts-example-com-tls", "hosts": ["receipts.example.com"]}
    ]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "receipts.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": API, "port": {"name": "http"}}
    service = one(docs, "Service", API)
    assert service["spec"]["ports"][0]["name"] == "http"
    hpa = one(docs, "HorizontalPodAutoscaler", API)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": API}
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["metrics"]}
    assert targets["cpu"]["averageUtilization"] == 70
    assert targets["memory"]["averageUtilization"] == 80
    assert "replicas" not in one(docs, "Deployment", API)["spec"], "the HPA owns the count"


def test_pods_carry_version_and_chart_labels(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    for d in docs:
        if d["kind"] not in POD_KINDS:
            continue
        labels = d["spec"]["template"]["metadata"]["labels"]
        where = f"{d['kind']}/{d['metadata']['name']}"
        assert labels["helm.sh/chart"] == f"{chart['name']}-{chart['version']}", where
        assert (
            labels["app.kubernetes.io/version"]
            == d["metadata"]["labels"]["app.kubernetes.io/version"]
        ), where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where


def _database_secret(container: dict[str, Any]) -> tuple[str, str]:
    ref = env_of(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_database_credentials_per_component(helm: str) -> None:
    docs = render(helm, VALUE_SETS["all-on"])
    _, worker = worker_container(docs)
    (migrate,) = one(docs, "Job")["spec"]["template"]["spec"]["containers"]
    _, api = api_pod(docs)
    assert _database_secret(worker) == ("delivery-receipts-db", "database-url")  # the common one
    assert _database_secret(migrate) == ("delivery-receipts-db-owner", "database-url")
    assert _database_secret(api) == ("delivery-receipts-db-readonly", "readonly-url")
    # The init container of mode "initContainer" uses the migrations' credentials too.
    docs = render(
        helm,
        VALUE_SETS["hpa-initcontainer"],
        "--set",
        "database.migrate.existingSecret=db-owner",
        "--set",
        "database.worker.urlKey=worker-url",
    )
    pod, worker = worker_container(docs)
    (init,) = pod["initContainers"]
    assert _database_secret(init) == ("db-owner", "database-url")
    assert _database_secret(worker) == ("drw-delivery-receipts-worker-database", "worker-url")


def test_every_mount_has_its_volume(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for where, pod in pod_specs(docs):
        names = [v["name"] for v in pod.get("volumes", [])]
        assert len(names) == len(set(names)), f"{where}: volume names repeat: {names}"
        for c in containers(pod):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in names, f"{where} {c['name']}: no volume {mount['name']}"


def test_extra_volumes_and_env_of_each_component(helm: str) -> None:
    docs = render(helm, VALUE_SETS["all-on"])
    job_pod = one(docs, "Job")["spec"]["template"]["spec"]
    api_spec, _ = api_pod(docs)
    worker_spec, _ = worker_container(docs)
    for where, pod in (("worker", worker_spec), ("api", api_spec), ("migrate", job_pod)):
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["corporate-ca"]["configMap"]["name"] == "corporate-ca", where
        (c,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["corporate-ca"] == "/etc/ssl/corporate", where
    (migrate,) = job_pod["containers"]
    assert env_of(migrate)["LOG_LEVEL"]["value"] == "INFO"
    assert migrate["envFrom"] == [{"secretRef": {"name": "delivery-receipts-migrate-extra"}}]
    # Mode initContainer: the migrations' volumes join the worker pod's, without repeating one
    # the worker already has.
    docs = render(helm, VALUE_SETS["hpa-initcontainer"])
    pod, worker = worker_container(docs)
    names = [v["name"] for v in pod["volumes"]]
    assert names.count("corporate-ca") == 1 and "migration-scripts" in names
    (init,) = pod["initContainers"]
    assert {m["name"] for m in init["volumeMounts"]} >= {"corporate-ca", "migration-scripts"}
    assert "migration-scripts" not in {m["name"] for m in worker["volumeMounts"]}


def test_network_policy_allows_what_the_worker_needs(helm: str) -> None:
    docs = render(helm, VALUE_SETS["all-on"])
    policy = one(docs, "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {53, 9093, 5432} <= egress_ports
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {8080, 8000}


# --- monitoring shipped by the chart ----------------------------------------------------------


def test_chart_files_are_in_step(helm: str) -> None:
    """The dashboard's copy in the chart, monitoring/rules.yml (the chart's rules rendered with
    the default values) and the chart's README (helm-docs) are what
    scripts/sync_chart_files.py generates."""
    copy = CHART / "files" / "grafana" / "delivery-receipts.json"
    assert not copy.is_symlink(), f"{copy} must be a real file (helm packages no symlinks)"
    result = run([sys.executable, str(ROOT / "scripts" / "sync_chart_files.py"), "--check"])
    if result.returncode == 2 and "is not installed" in result.stderr:
        missing("helm-docs")
    assert result.returncode == 0, output(result)


def test_prometheus_rule_and_dashboard_render(helm: str) -> None:
    docs = render(helm, VALUE_SETS["all-on"])
    rule = one(docs, "PrometheusRule")
    groups = {g["name"]: g for g in rule["spec"]["groups"]}
    assert set(groups) == {"delivery-receipts.recording", "delivery-receipts.alerts"}
    alerts = {r["alert"]: r for r in groups["delivery-receipts.alerts"]["rules"]}
    assert "DeliveryReceiptsOutboxStuck" not in alerts
    backlog = alerts["DeliveryReceiptsOutboxBacklog"]
    assert backlog["labels"] == {"severity": "page", "team": "messaging"}
    assert backlog["for"] == "20m" and backlog["expr"].strip().endswith("> 20000")
    assert backlog["annotations"]["runbook_url"].startswith("https://git.example.com/")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboard = one(docs, "ConfigMap", f"{RELEASE}-delivery-receipts-worker-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    (data,) = dashboard["data"].values()
    source = MONITORING / "grafana" / "delivery-receipts.json"
    assert json.loads(data) == json.loads(source.read_text())
    monitor = one(docs, "ServiceMonitor")["spec"]
    assert monitor["endpoints"][0]["port"] == "http"
    assert monitor["endpoints"][0]["path"] == "/metrics"


def test_default_values_create_no_optional_resources(helm: str) -> None:
    kinds = sorted(d["kind"] for d in render(helm, None))
    assert kinds == ["Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceAccount"]


# --- values: schema and documentation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["terminationGracePeriodSeconds=20"], "terminationGracePeriodSeconds must be greater"),
        (["autoscaling.enabled=true", "keda.enabled=true"], "mutually exclusive"),
        (
            ["kafka.securityProtocol=SASL_SSL", "kafka.sasl.mechanism=PLAIN"],
            "kafka.sasl.existingSecret",
        ),
        (["kafka.tls.enabled=true", "kafka.securityProtocol=SSL"], "kafka.tls.existingSecret"),
        (["kafka.securityProtocol=TLS"], "securityProtocol"),
        (["kafka.sasl.mechanism=GSSAPI"], "mechanism"),
        (["migrations.mode=sometimes"], "mode"),
        (["replicaCount=-1"], "replicaCount"),
        (["kafkaa.bootstrapServers=x"], "kafkaa"),
        (["keda.enabled=true", "keda.trigger=prometheus"], "prometheusServerAddress"),
        (["api.enabled=true"], "the API refuses to start without credentials"),
        (
            ["api.enabled=true", "api.auth.disabled=true", "api.auth.existingSecret=creds"],
            "exclusive",
        ),
        (["api.auth.tokenKey=auth-token"], "tokenKey"),
        (["api.ingress.enabled=true", "api.ingress.hosts[0].host=x.example.com"], "api.enabled"),
        (["api.enabled=true", "api.auth.disabled=true", "api.ingress.enabled=true"], "hosts"),
        (["api.ingress.hosts[0].host=x", "api.ingress.hosts[0].paths[0].path=nope"], "path"),
        (
            [
                "api.autoscaling.minReplicas=5",
                "api.autoscaling.maxReplicas=3",
                "api.autoscaling.enabled=true",
            ],
            "maxReplicas",
        ),
        (["api.publicBaseUrl=receipts.example.com"], "publicBaseUrl"),
        (["api.readinessProbe.tcpSocket.port=http"], "api.readinessProbe needs exactly one"),
        (["livenessProbe.exec.command[0]=true"], "livenessProbe needs exactly one"),
        (["database.api.existingSecret=Not_A_Name"], "existingSecret"),
        (["worker.extraVolumeMounts[0].name=x"], "mountPath"),
        (["prometheusRule.enabled=true"], "DeliveryReceiptsWorkerDown would always fire"),
        (["prometheusRule.alerts.DeliveryReceiptsWorkerNotReady.for=5 minutes"], "for"),
        (["prometheusRule.alerts.DeliveryReceiptsTypo.enabled=false"], "DeliveryReceiptsTypo"),
        (["prometheusRule.alerts.DeliveryReceiptsDeadLetters.threshold=2"], "threshold"),
        (["prometheusRule.additionalRuleLabels.bad-name=x"], "bad-name"),
    ],
)
def test_invalid_values_are_rejected(helm: str, sets: list[str], message: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    result = run([helm, "template", RELEASE, str(CHART), *helm_args(None, *args)])
    assert result.returncode != 0, f"accepted {sets}"
    assert message in result.stderr, output(result)


def _schema_leaves(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of every value the chart defines (free-form Kubernetes objects are leaves)."""
    paths: set[str] = set()
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        paths.add(path)
        if "properties" in sub:
            paths |= _schema_leaves(sub, path + ".")
    return paths


def _documented_keys(values_text: str) -> tuple[set[str], list[str]]:
    """Dotted paths of the keys in values.yaml, and those with no comment right above them."""
    keys: set[str] = set()
    undocumented: list[str] = []
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in values_text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#") or stripped.startswith("- "):
            previous = stripped
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), key])
        keys.add(path)
        if not previous.startswith("#"):
            undocumented.append(path)
        stack.append((indent, key))
        previous = stripped
    return keys, undocumented


def test_every_value_is_in_the_schema_and_commented() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defined = _schema_leaves(schema) - {"global"}
    keys, undocumented = _documented_keys((CHART / "values.yaml").read_text())
    assert defined <= keys, f"in the schema but not in values.yaml: {sorted(defined - keys)}"
    # Keys below a free-form Kubernetes object (resources, probes, ...) are that object's own.
    not_in_schema = sorted(k for k in keys - defined if _parent_defined(k, schema))
    assert not not_in_schema, f"in values.yaml but not in the schema: {not_in_schema}"
    missing = sorted(k for k in undocumented if k in defined)
    assert not missing, f"values without a comment right above them in values.yaml: {missing}"


def _parent_defined(key: str, schema: dict[str, Any]) -> bool:
    """True when the key's parent is a chart-defined object (one with "properties")."""
    node = schema
    for part in key.split(".")[:-1]:
        node = node.get("properties", {}).get(part, {})
    return "properties" in node


def test_notes_render(helm: str, tmp_path: Path) -> None:
    """NOTES.txt renders (helm template skips it, so render it through tpl in a copy)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "notes.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n'
    )
    for values in (None, VALUE_SETS["all-on"]):
        result = run(
            [
                helm,
                "template",
                RELEASE,
                str(chart),
                "--namespace",
                NAMESPACE,
                "--show-only",
                "templates/zz-notes.yaml",
                *helm_args(values),
            ]
        )
        assert result.returncode == 0, output(result)
        notes = yaml.safe_load(result.stdout)["data"]["notes"]
        deployment = f"deployment/{RELEASE}-delivery-receipts-worker"
        assert f"kubectl -n {NAMESPACE} rollout status {deployment}" in notes
        assert "create secret generic" in notes
