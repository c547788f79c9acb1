"""The Helm chart as its tests see it: `helm template` with duplicate keys rejected, and the
manifests' parts the checks look at (pods, containers, env, the worker's and the API's pods)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import CHART, KUBE_VERSION, output, require_module, run

yaml = require_module("yaml", "PyYAML (comes with kubernetes-validate)")
# Every chart test module imports this one: without kubernetes-validate they all skip (or fail
# under CI) together, as the manifests cannot be validated.
kubernetes_validate = require_module("kubernetes_validate", "kubernetes-validate")

NAMESPACE = "delivery"
RELEASE = "drw"
POD_KINDS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}


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


def worker_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = one(docs, "Deployment", f"{RELEASE}-delivery-receipts-worker")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "worker"]
    return pod, container


# The secure-by-default API's variables (issue 12: several accounts from a credentials file,
# explicit open mode, the public URL in links), which the `api` command reads.
API_AUTH_VARIABLES = {"API_CREDENTIALS_FILE", "API_AUTH_DISABLED", "API_PUBLIC_BASE_URL"}


API = f"{RELEASE}-delivery-receipts-worker-api"


def api_pod(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = one(docs, "Deployment", API)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container
