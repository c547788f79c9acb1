"""The monitoring the Helm chart ships: its files in step with monitoring/ (and its README with
helm-docs), the PrometheusRule, the dashboard ConfigMap and the ServiceMonitor."""

from __future__ import annotations

import json
import sys

from .chart import RELEASE, one, render
from .conftest import CHART, MONITORING, ROOT, VALUE_SETS, missing, output, run


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
