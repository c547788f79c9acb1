"""The Helm chart renders: `helm lint --strict` with every value set, every manifest valid for
Kubernetes (kubernetes-validate; custom resources against the fields their operators need),
selectors that match, version and chart labels, nothing optional by default, and NOTES.txt."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from .chart import NAMESPACE, POD_KINDS, RELEASE, helm_args, kubernetes_validate, render, yaml
from .conftest import CHART, CI_VALUES, KUBE_VERSION, VALUE_SETS, output, run

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


def test_default_values_create_no_optional_resources(helm: str) -> None:
    kinds = sorted(d["kind"] for d in render(helm, None))
    assert kinds == ["Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceAccount"]


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
