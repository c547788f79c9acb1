"""What the monitoring checks read: monitoring/'s rule files, the metric names a PromQL
expression selects, and every series name the worker exports (worker/metrics.py)."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client.metrics_core import Metric

from worker.metrics import WorkerMetrics

from .conftest import MONITORING, require_module

yaml = require_module("yaml", "PyYAML (comes with kubernetes-validate)")

RULES = MONITORING / "rules.yml"
RULES_TEST = MONITORING / "rules_test.yml"

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


def load_rules() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"]]
