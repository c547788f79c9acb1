"""The Grafana dashboard (monitoring/grafana/): its queries (panels and variables) use only
exported or recorded metrics, it shows what operators need, and it imports as it is."""

from __future__ import annotations

import json
import re
from typing import Any

from .conftest import MONITORING
from .prometheus import exported_series_names, promql_metric_names

DASHBOARD = MONITORING / "grafana" / "delivery-receipts.json"


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
