"""The Helm chart's values: invalid ones (schema violations, forbidden combinations) rejected,
and every value in values.schema.json and commented in values.yaml."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .chart import RELEASE, helm_args
from .conftest import CHART, output, run


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
