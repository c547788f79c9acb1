"""The worker's contract in the Helm chart: probes, grace period and ports, only variables the
worker reads, the migrations as a hook or an init container, and every volume mount's volume."""

from __future__ import annotations

from typing import Any

from .chart import (
    API_AUTH_VARIABLES,
    RELEASE,
    api_pod,
    containers,
    env_of,
    find,
    one,
    pod_specs,
    render,
    worker_container,
)
from .conftest import VALUE_SETS


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
