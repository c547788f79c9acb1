#!/usr/bin/env python3
"""Writes the files generated from the Helm chart, or checks that they are up to date.

    python3 scripts/sync_chart_files.py            # write them
    python3 scripts/sync_chart_files.py --check    # exit 1, saying which file is stale

Each file has one source:

- monitoring/rules.yml is helm/delivery-receipts-worker/templates/prometheusrule.yaml rendered
  with the chart's default values: the rules Prometheus loads without the Operator and that
  `promtool test rules monitoring/rules_test.yml` tests. Only DeliveryReceiptsWorkerDown's
  selector is set, to the job name such a Prometheus is told to use.
- helm/delivery-receipts-worker/files/grafana/delivery-receipts.json is a copy of
  monitoring/grafana/delivery-receipts.json (helm packages no files outside the chart).

helm comes from scripts/setup-deploy-tools.sh (found on PATH or in
$DEPLOY_TOOLS_BIN, default ~/.cache/delivery-receipts-worker/bin). tests/deploy runs --check.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "delivery-receipts-worker"
RULES = ROOT / "monitoring" / "rules.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "delivery-receipts.json"
CHART_DASHBOARD = CHART / "files" / "grafana" / "delivery-receipts.json"
CHART_README = CHART / "README.md"
TOOLS_BIN = Path(
    os.environ.get("DEPLOY_TOOLS_BIN", Path.home() / ".cache" / "delivery-receipts-worker" / "bin")
)
KUBE_VERSION = "1.33.0"
# The release name whose full name is the chart name, and the scrape job monitoring/rules.yml
# expects the worker to have.
RELEASE = "delivery-receipts-worker"
RULES_VALUES = f"""\
prometheusRule:
  enabled: true
  alerts:
    DeliveryReceiptsWorkerDown:
      selector: 'job="{RELEASE}"'
"""
RULES_HEADER = """\
# GENERATED from helm/delivery-receipts-worker/templates/prometheusrule.yaml with the chart's
# default values by scripts/sync_chart_files.py: edit the template (or the defaults in the
# chart's values.yaml), then run `python3 scripts/sync_chart_files.py`. tests/deploy fails when
# this file and the template disagree.
#
# Prometheus recording and alerting rules for delivery-receipts-worker. Load them with
# `rule_files: [rules.yml]` in prometheus.yml; name the worker's scrape job
# delivery-receipts-worker (DeliveryReceiptsWorkerDown selects up{job="delivery-receipts-worker"})
# or edit that selector. With the Prometheus Operator, let the Helm chart create them as a
# PrometheusRule (prometheusRule.enabled=true), where values tune thresholds, `for` durations,
# labels and which alerts exist. Tested by `promtool test rules monitoring/rules_test.yml`.
# What to do when an alert fires: docs/runbooks.md (each alert's runbook_url).

"""


class ToolMissing(RuntimeError):
    pass


def tool(name: str) -> str:
    for candidate in (TOOLS_BIN / name, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ToolMissing(f"{name} is not installed: run `bash scripts/setup-deploy-tools.sh`")


def render_rules(chart: Path = CHART, values: str = RULES_VALUES) -> str:
    """The `spec:` of the chart's PrometheusRule as monitoring/rules.yml text."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as extra:
        extra.write(values)
        extra.flush()
        result = subprocess.run(
            [
                tool("helm"),
                "template",
                RELEASE,
                str(chart),
                "--kube-version",
                KUBE_VERSION,
                "--show-only",
                "templates/prometheusrule.yaml",
                "-f",
                extra.name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed:\n{result.stderr}")
    lines = result.stdout.splitlines()
    start = lines.index("spec:") + 1
    body = []
    for line in lines[start:]:
        if line and not line.startswith("  "):
            raise RuntimeError(f"unexpected top-level line after spec: {line!r}")
        body.append(line[2:])
    return RULES_HEADER + "\n".join(body).strip("\n") + "\n"


def render_readme(chart: Path = CHART) -> str:
    """README.md as helm-docs writes it, generated in a copy of the chart."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / chart.name
        shutil.copytree(chart, copy)
        result = subprocess.run(
            [
                tool("helm-docs"),
                "--chart-search-root",
                str(copy),
                "--template-files",
                "README.md.gotmpl",
                "--sort-values-order",
                "file",
                "--log-level",
                "warning",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"helm-docs failed:\n{result.stderr}")
        return (copy / "README.md").read_text()


def targets() -> dict[str, tuple[Path, Callable[[], str]]]:
    return {
        "rules": (RULES, render_rules),
        "dashboard": (CHART_DASHBOARD, DASHBOARD.read_text),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    parser.add_argument(
        "only", nargs="*", metavar="NAME", help=f"of {', '.join(targets())} (default: all)"
    )
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(targets())
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    stale = 0
    for name, (path, generate) in targets().items():
        if args.only and name not in args.only:
            continue
        try:
            wanted = generate()
        except ToolMissing as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        current = path.read_text() if path.exists() else ""
        relative = path.relative_to(ROOT)
        if current == wanted:
            print(f"{relative}: up to date")
            continue
        if args.check:
            stale += 1
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                wanted.splitlines(keepends=True),
                f"{relative} (committed)",
                f"{relative} (generated)",
                n=1,
            )
            sys.stderr.write("".join(list(diff)[:80]))
            print(
                f"{relative} is stale: run `python3 scripts/sync_chart_files.py {name}`",
                file=sys.stderr,
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted)
            print(f"{relative}: written")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
