"""The chart's PrometheusRule is the one source of the rules: monitoring/rules.yml is its default
rendering, its rendering passes promtool (check and rules_test.yml), and values (thresholds,
`for`, severity, labels, a disabled alert, another selector) drive the alerts."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from .conftest import CHART, KUBE_VERSION, ROOT, missing, output, run
from .prometheus import RULES_TEST, load_rules, yaml

SYNC = ROOT / "scripts" / "sync_chart_files.py"


def _sync(*args: str) -> None:
    result = run([sys.executable, str(SYNC), "--check", *args])
    if result.returncode == 2 and "is not installed" in result.stderr:
        missing("helm or helm-docs")
    assert result.returncode == 0, output(result)


def test_rules_yml_is_the_charts_default_rendering(helm: str) -> None:
    """monitoring/rules.yml is generated from templates/prometheusrule.yaml; edit the template
    and run scripts/sync_chart_files.py."""
    _sync("rules")
    assert not (CHART / "files" / "rules.yml").exists(), "a stale hand-made copy of the rules"


def render_rule_groups(helm: str, tmp_path: Path, values: str, release: str) -> list[Any]:
    extra = tmp_path / "values.yaml"
    extra.write_text(values)
    result = run(
        [
            helm,
            "template",
            release,
            str(CHART),
            "--namespace",
            "delivery",
            "--kube-version",
            KUBE_VERSION,
            "--show-only",
            "templates/prometheusrule.yaml",
            "-f",
            str(extra),
        ]
    )
    assert result.returncode == 0, output(result)
    rule = yaml.safe_load(result.stdout)
    assert rule["kind"] == "PrometheusRule"
    return list(rule["spec"]["groups"])


def write_rule_file(groups: list[Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_promtool_on_the_charts_prometheus_rule(helm: str, promtool: str, tmp_path: Path) -> None:
    """helm template -> spec.groups -> promtool check and the unit tests of rules_test.yml."""
    values = "prometheusRule:\n  enabled: true\nserviceMonitor:\n  enabled: true\n"
    # Release "delivery-receipts-worker": the ServiceMonitor's job, which rules_test.yml uses.
    groups = render_rule_groups(helm, tmp_path, values, "delivery-receipts-worker")
    down = next(
        r for g in groups for r in g["rules"] if r.get("alert") == "DeliveryReceiptsWorkerDown"
    )
    assert 'up{job="delivery-receipts-worker", namespace="delivery"} == 0' in down["expr"]
    # rules_test.yml's series carry no namespace label: match the job only, as rules.yml does.
    down["expr"] = down["expr"].replace(', namespace="delivery"', "")
    assert groups == load_rules()["groups"], "the chart renders other rules than rules.yml"
    rules = write_rule_file(groups, tmp_path / "rendered")
    shutil.copy(RULES_TEST, rules.parent / "rules_test.yml")
    result = run([promtool, "check", "rules", str(rules)])
    assert result.returncode == 0 and "SUCCESS" in result.stdout, output(result)
    result = run([promtool, "test", "rules", "rules_test.yml"], cwd=rules.parent)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, output(result)


OVERRIDES = """\
serviceMonitor:
  enabled: true
prometheusRule:
  enabled: true
  runbookBaseUrl: https://wiki.example.com/delivery/runbooks.md
  additionalRuleLabels:
    team: messaging
    severity: ignored-by-the-alerts-own
  alerts:
    DeliveryReceiptsOutboxBacklog:
      threshold: 100
      for: 1m
      severity: page
      labels:
        team: platform
    DeliveryReceiptsDeliveredRatioLow:
      threshold: 0.5
      channelThresholds:
        sms: 0.95
        rcs: 0.7
        whatsapp: null  # values merge with the defaults: null removes a default channel
    DeliveryReceiptsOutboxStuck:
      enabled: false
    DeliveryReceiptsWorkerDown:
      selector: 'job="receipts", cluster="eu-1"'
      whenAbsent: false
"""

OVERRIDE_TEST = """\
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'delivery_worker_outbox_backlog_rows{namespace="prod", job="w", instance="a"}'
        values: '120x10'
    alert_rule_test:
      - alertname: DeliveryReceiptsOutboxBacklog
        eval_time: 2m
        exp_alerts:
          - exp_labels: {severity: page, team: platform, namespace: prod, job: w}
            exp_annotations:
              runbook_url: https://wiki.example.com/delivery/runbooks.md#deliveryreceiptsoutboxbacklog
              summary: Summary events are piling up in the outbox
              description: >-
                120 summary-changed events wait to be published to the summary topic. Check
                the worker's connection to Kafka and the summary topic.
"""


def test_values_drive_the_alerts(helm: str, promtool: str, tmp_path: Path) -> None:
    groups = render_rule_groups(helm, tmp_path, OVERRIDES, "drw")
    rules = [r for g in groups for r in g["rules"]]
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert "DeliveryReceiptsOutboxStuck" not in alerts, "a disabled alert is rendered"
    backlog = alerts["DeliveryReceiptsOutboxBacklog"]
    assert backlog["expr"].strip().endswith("> 100")
    assert backlog["for"] == "1m"
    assert backlog["labels"] == {"severity": "page", "team": "platform"}
    # additionalRuleLabels on every alert, under the alert's own severity.
    ratio = alerts["DeliveryReceiptsDeliveredRatioLow"]
    assert ratio["labels"] == {"severity": "warning", "team": "messaging"}
    assert "ratio_rate1h < 0.5" in ratio["expr"]
    thresholds = {
        r["labels"]["channel"]: r["expr"]
        for r in rules
        if r.get("record") == "channel:delivery_receipts_delivered_ratio:alert_threshold"
    }
    assert thresholds == {"rcs": "vector(0.7)", "sms": "vector(0.95)"}
    down = alerts["DeliveryReceiptsWorkerDown"]
    assert down["expr"].strip() == 'up{job="receipts", cluster="eu-1"} == 0'
    for name, alert in alerts.items():
        assert alert["annotations"]["runbook_url"] == (
            f"https://wiki.example.com/delivery/runbooks.md#{name.lower()}"
        )
    path = write_rule_file(groups, tmp_path / "overridden")
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0 and "SUCCESS" in result.stdout, output(result)
    (path.parent / "test.yml").write_text(OVERRIDE_TEST)
    result = run([promtool, "test", "rules", "test.yml"], cwd=path.parent)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, output(result)


def test_all_alerts_disabled_leaves_the_recording_rules(helm: str, tmp_path: Path) -> None:
    names = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["alerts"]
    values = "prometheusRule:\n  enabled: true\n  alerts:\n" + "".join(
        f"    {name}:\n      enabled: false\n" for name in names
    )
    groups = render_rule_groups(helm, tmp_path, values, "drw")
    assert [g["name"] for g in groups] == ["delivery-receipts.recording"]


def test_worker_down_selects_the_service_monitors_job(helm: str, tmp_path: Path) -> None:
    values = "prometheusRule:\n  enabled: true\nserviceMonitor:\n  enabled: true\n"
    groups = render_rule_groups(helm, tmp_path, values, "drw")
    down = next(
        r for g in groups for r in g["rules"] if r.get("alert") == "DeliveryReceiptsWorkerDown"
    )
    # The Prometheus Operator names the job after the Service the ServiceMonitor selects.
    selector = 'up{job="drw-delivery-receipts-worker", namespace="delivery"}'
    assert f"{selector} == 0" in down["expr"]
    assert f"absent({selector})" in down["expr"]
