"""monitoring/: the Prometheus rules (promtool check and unit tests, on monitoring/rules.yml and
on the chart's PrometheusRule, which is their one source, with default and overridden values),
the runbooks of the alerts, the Grafana dashboard's queries against the metrics the worker
really exports, and docs/error-codes.md."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from worker.metrics import KNOWN_ERROR_CODES, WorkerMetrics

from .conftest import (
    CHART,
    KUBE_VERSION,
    MONITORING,
    ROOT,
    missing,
    output,
    require_module,
    run,
)

yaml = require_module("yaml", "PyYAML (comes with kubernetes-validate)")

RULES = MONITORING / "rules.yml"
RULES_TEST = MONITORING / "rules_test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SYNC = ROOT / "scripts" / "sync_chart_files.py"
DASHBOARD = MONITORING / "grafana" / "delivery-receipts.json"

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


def exported_series_names() -> set[str]:
    """Every series name WorkerMetrics() can export, labelled children or not."""
    metrics = WorkerMetrics()
    names: set[str] = set()
    families: list[Metric] = list(metrics.registry.collect())
    for family in families:
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels, keywords, durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def test_promql_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (channel, le) (rate(a_bucket{job=~"$job", le!="x"}'
        "[$__rate_interval]))) / on (channel) group_left () b:c:rate5m > bool 2 "
        "unless ignoring (x) time() - d offset 5m"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b:c:rate5m", "d"}


def load_rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"]]


def test_promtool_check_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in result.stdout, output(result)


def test_promtool_test_rules(promtool: str) -> None:
    result = run([promtool, "test", "rules", str(RULES_TEST)], cwd=MONITORING)
    assert result.returncode == 0, output(result)
    assert "SUCCESS" in result.stdout, output(result)


def test_rules_use_only_exported_or_recorded_metrics() -> None:
    # `up` is Prometheus's own series of every scrape target.
    known = {"up"} | exported_series_names() | {r["record"] for r in all_rules() if "record" in r}
    for rule in all_rules():
        unknown = promql_metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')}: unknown {unknown}"


def test_rules_required_by_the_spec_exist() -> None:
    rules = all_rules()
    records = {r["record"]: r["expr"] for r in rules if "record" in r}
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    delivered = records["channel:delivery_receipts_delivered:ratio_rate5m"]
    # A ratio of sums (correct over replicas), never a sum or average of per-replica ratios.
    assert re.search(
        r"sum by \(channel\) \(rate\(delivery_receipt_stage_reached_total\{stage=\"delivered\"\}"
        r"\[5m\]\)\)\s*/\s*sum by \(channel\) \(rate\(delivery_receipts_created_total\[5m\]\)\)",
        delivered,
    ), delivered
    assert 'stage="read"' in records["channel:delivery_receipts_read:ratio_rate5m"]
    for name, metric in (
        ("DeliveryReceiptsDeliveredRatioLow", "channel:delivery_receipts_delivered:ratio_rate1h"),
        ("DeliveryReceiptsDeadLetters", "delivery_worker_dead_letters_total"),
        ("DeliveryReceiptsConsumerLagGrowing", "job:delivery_worker_consumer_lag_records:sum"),
        ("DeliveryReceiptsWorkerNoProgress", "delivery_worker_last_progress_timestamp_seconds"),
        ("DeliveryReceiptsOutboxBacklog", "job:delivery_worker_outbox_backlog_rows:sum"),
        ("DeliveryReceiptsWorkerDown", 'up{job="delivery-receipts-worker"} == 0'),
    ):
        assert name in alerts, name
        assert metric in alerts[name]["expr"], name
        assert alerts[name].get("for"), f"{name} must hold for a while before firing"
        assert alerts[name]["labels"]["severity"] in ("warning", "critical"), name
        assert alerts[name]["annotations"]["summary"], name
    # The worker's scrape target: down, or not there at all.
    assert (
        'absent(up{job="delivery-receipts-worker"})' in alerts["DeliveryReceiptsWorkerDown"]["expr"]
    )


def test_rule_tests_exercise_every_rule() -> None:
    """Every alert has a unit test where it fires; every recording rule is queried in one."""
    tests = yaml.safe_load(RULES_TEST.read_text())
    assert tests["rule_files"] == ["rules.yml"]
    firing = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    queried = {
        name
        for test in tests["tests"]
        for case in test.get("promql_expr_test", [])
        for name in promql_metric_names(case["expr"])
    }
    for rule in all_rules():
        if "alert" in rule:
            assert rule["alert"] in firing, f"no test makes {rule['alert']} fire"
        else:
            assert rule["record"] in queried, f"no test queries {rule['record']}"


# --- runbooks ---------------------------------------------------------------------------------

RUNBOOK_PARTS = ("Meaning", "Impact", "Diagnosis", "Mitigation")


def runbook_sections() -> dict[str, str]:
    """`## <AlertName>` sections of docs/runbooks.md, by heading."""
    text = RUNBOOKS.read_text()
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_alert_links_to_its_runbook_section() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]
    base = values["runbookBaseUrl"]
    assert base.endswith("docs/runbooks.md"), base
    alerts = [r for r in all_rules() if "alert" in r]
    sections = runbook_sections()
    for alert in alerts:
        name = alert["alert"]
        # GitHub (and GitLab) anchor a "## Name" heading as #name in lower case.
        assert alert["annotations"]["runbook_url"] == f"{base}#{name.lower()}", name
        assert name in sections, f"docs/runbooks.md has no '## {name}' section"
        body = sections[name]
        for part in RUNBOOK_PARTS:
            assert re.search(rf"^\*\*{part}\b", body, re.MULTILINE), f"{name}: no **{part}**"
    assert set(values["alerts"]) == {a["alert"] for a in alerts}, "values and rules disagree"


def test_runbooks_cite_the_tools_they_tell_to_run() -> None:
    text = RUNBOOKS.read_text()
    for command in (
        "delivery-receipts-worker offsets show",
        "delivery-receipts-worker dlq list",
        "delivery-receipts-worker dlq replay --reason",
    ):
        assert command in text, command
    # Every metric a runbook names is one the worker exports or a rule records.
    known = exported_series_names() | {r["record"] for r in all_rules() if "record" in r}
    named = set(re.findall(r"`((?:delivery_|channel:|job:|channel_stage:)[\w:]+)", text))
    named -= {"delivery_receipts", "delivery_receipt_history"}  # tables of the read model
    assert named, "the runbooks name no metric"
    assert named <= known, f"not exported or recorded: {sorted(named - known)}"


# --- the chart's PrometheusRule is the one source of the rules --------------------------------


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


# --- the Grafana dashboard --------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    result = []
    for panel in board["panels"]:
        result.append(panel)
        result.extend(panel.get("panels", []))
    return result


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    queries = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((?:(.+),\s*)?(\w+)\)", query.strip())
        assert match, f"variable {variable['name']}: unexpected query {query}"
        if match.group(1):
            queries.append((f"variable {variable['name']}", match.group(1)))
    return queries


def test_dashboard_queries_use_only_exported_metrics() -> None:
    exported = exported_series_names()
    board = dashboard()
    queries = dashboard_queries(board)
    assert len(queries) > 20
    for where, expr in queries:
        names = promql_metric_names(expr)
        assert names, f"{where}: no metric in {expr}"
        unknown = names - exported
        assert not unknown, f"{where}: {sorted(unknown)} not exported by worker.metrics"


def test_dashboard_shows_what_operators_need() -> None:
    board = dashboard()
    exprs = " ".join(expr for _, expr in dashboard_queries(board))
    for needed in (
        'stage="delivered"',
        'stage="read"',
        "delivery_receipts_created_total",
        "delivery_receipt_time_to_delivered_seconds_bucket",
        "delivery_receipt_time_to_read_seconds_bucket",
        "delivery_receipt_errors_total",
        "error_code",
        "delivery_worker_records_consumed_total",
        "delivery_worker_consumer_lag_records",
        "delivery_worker_dead_letters_total",
        "delivery_worker_outbox_backlog_rows",
        "delivery_worker_last_progress_timestamp_seconds",
        "histogram_quantile",
    ):
        assert needed in exprs, needed


def test_dashboard_is_importable() -> None:
    board = dashboard()
    assert board["uid"] == "delivery-receipts"
    assert "id" not in board or board["id"] is None, "an exported id breaks provisioning"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "channel", "job", "namespace"} <= variables
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__range"}
            assert used <= variables, f"{panel['title']}: undefined {used - variables}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


# --- docs/error-codes.md ----------------------------------------------------------------------


def test_error_codes_documented() -> None:
    text = (ROOT / "docs" / "error-codes.md").read_text()
    documented = set(re.findall(r"^\|\s*`?(\d{5})`?\s*\|", text, flags=re.MULTILINE))
    assert documented == set(KNOWN_ERROR_CODES), (
        f"missing: {sorted(set(KNOWN_ERROR_CODES) - documented)}, "
        f"not in worker.metrics: {sorted(documented - set(KNOWN_ERROR_CODES))}"
    )
    assert '"other"' in text or "`other`" in text


@pytest.mark.parametrize("code", sorted(KNOWN_ERROR_CODES))
def test_error_code_label_is_bounded(code: str) -> None:
    from worker.metrics import error_code_label

    assert error_code_label(int(code)) == code
    assert error_code_label(99999) == "other"
