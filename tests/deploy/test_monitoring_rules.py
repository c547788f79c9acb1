"""monitoring/rules.yml: `promtool check rules` and `promtool test rules` (rules_test.yml), only
metrics the worker exports or the rules record, the rules the spec requires, and unit tests
that exercise every rule."""

from __future__ import annotations

import re

from .conftest import MONITORING, output, run
from .prometheus import (
    RULES,
    RULES_TEST,
    all_rules,
    exported_series_names,
    promql_metric_names,
    yaml,
)


def test_promql_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (channel, le) (rate(a_bucket{job=~"$job", le!="x"}'
        "[$__rate_interval]))) / on (channel) group_left () b:c:rate5m > bool 2 "
        "unless ignoring (x) time() - d offset 5m"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b:c:rate5m", "d"}


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
