"""monitoring/: the Prometheus rules (promtool check and unit tests), the Grafana dashboard's
queries against the metrics the worker really exports, and docs/error-codes.md."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from worker.metrics import KNOWN_ERROR_CODES, WorkerMetrics

from .conftest import MONITORING, ROOT, output, require_module, run

yaml = require_module("yaml", "PyYAML (comes with kubernetes-validate)")

RULES = MONITORING / "rules.yml"
RULES_TEST = MONITORING / "rules_test.yml"
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
    known = exported_series_names() | {r["record"] for r in all_rules() if "record" in r}
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
    ):
        assert name in alerts, name
        assert metric in alerts[name]["expr"], name
        assert alerts[name].get("for"), f"{name} must hold for a while before firing"
        assert alerts[name]["labels"]["severity"] in ("warning", "critical"), name
        assert alerts[name]["annotations"]["summary"], name


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
