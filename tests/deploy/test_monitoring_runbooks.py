"""docs/runbooks.md: every alert links to its section (Meaning, Impact, Diagnosis, Mitigation),
and every metric the runbooks name exists."""

from __future__ import annotations

import re

from .conftest import CHART, ROOT
from .prometheus import all_rules, exported_series_names, yaml

RUNBOOKS = ROOT / "docs" / "runbooks.md"


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
