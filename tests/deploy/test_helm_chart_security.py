"""The Helm chart's security: the restricted Pod Security Standard on every pod, the image's
user, secrets only from Secret references (TLS material mounted where the env points, each
component's database Secret), and a NetworkPolicy that allows what the worker needs."""

from __future__ import annotations

from typing import Any

from .chart import api_pod, containers, env_of, find, one, pod_specs, render, worker_container, yaml
from .conftest import CHART, ROOT, VALUE_SETS

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


def test_network_policy_allows_what_the_worker_needs(helm: str) -> None:
    docs = render(helm, VALUE_SETS["all-on"])
    policy = one(docs, "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {53, 9093, 5432} <= egress_ports
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {8080, 8000}
