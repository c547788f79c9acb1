"""The read API in the Helm chart: its Deployment with a credentials file or in open mode,
credentials from extraEnvFrom, its Ingress and its HPA."""

from __future__ import annotations

from .chart import API, API_AUTH_VARIABLES, api_pod, env_of, find, one, render
from .conftest import VALUE_SETS


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
