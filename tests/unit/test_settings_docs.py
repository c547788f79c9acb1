"""Every place that documents a setting agrees with its one declaration in worker/config.py:
the README's configuration table, the CLI's --help, and the Helm chart's env and values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from worker.cli import main
from worker.config import SETTINGS, Setting

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "delivery-receipts-worker"
DECLARED = {s.env: s for s in SETTINGS}
# A variable name as the docs write it: upper case words joined by underscores.
VARIABLE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def readme_settings() -> dict[str, str]:
    """variable -> its default in the README's configuration table ('' for none)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| variable | default | meaning |") + 2
    table: dict[str, str] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        names_cell, default_cell, _ = (c.strip() for c in line.strip("|").split("|", 2))
        names = re.findall(r"`([A-Z0-9_]+)`", names_cell)
        # `A` / `B` rows give one default per name, or none for both.
        defaults = default_cell.split(" / ") if default_cell else [""] * len(names)
        assert names and len(defaults) == len(names), f"README row not understood: {line}"
        for name, default in zip(names, defaults, strict=True):
            assert name not in table, f"{name} twice in the README's table"
            table[name] = _cell_value(default)
    return table


def _cell_value(cell: str) -> str:
    if cell.strip() == "(required)":
        return cell.strip()
    code = re.match(r"\s*`([^`]*)`", cell)
    assert code or not cell.strip(), f"README default not in backticks: {cell!r}"
    return code.group(1) if code else ""


def test_readme_table_lists_exactly_the_declared_settings_and_defaults() -> None:
    documented = readme_settings()
    assert set(documented) == set(DECLARED), (
        f"missing from README: {sorted(set(DECLARED) - set(documented))}; "
        f"not settings: {sorted(set(documented) - set(DECLARED))}"
    )
    for name, default in documented.items():
        setting = DECLARED[name]
        expected = "(required)" if setting.required else setting.shown_default()
        assert default == expected, f"README default of {name}"


def test_help_lists_every_setting_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    epilog = capsys.readouterr().out.split("configuration (environment variables", 1)[1]
    entries = re.split(r"\n  (?=[A-Z])", epilog)[1:]
    by_name = {entry.split()[0]: " ".join(entry.split()[1:]) for entry in entries}
    assert list(by_name) == [s.env for s in SETTINGS]
    for setting in SETTINGS:
        text = by_name[setting.env]
        assert text.startswith(" ".join(setting.spec.help.split())), setting.env
        if setting.shown_default():
            assert f"[{setting.shown_default()}" in text, setting.env
        assert ("(required)" in text) == setting.required, setting.env
        assert ("(secret)" in text) == setting.secret, setting.env


def chart_env_names() -> dict[str, set[str]]:
    """template file -> the variables it sets (`- name: X` under env, in any branch)."""
    names: dict[str, set[str]] = {}
    for path in sorted((CHART / "templates").iterdir()):
        found = set(re.findall(r"^\s*- name: ([A-Z][A-Z0-9_]+)\s*$", path.read_text(), re.M))
        if found:
            names[path.name] = found
    return names


def test_chart_sets_only_declared_settings() -> None:
    names = chart_env_names()
    # The worker's, the API's and the shared env (drw.commonEnv) are all there.
    assert {"deployment.yaml", "api.yaml", "_helpers.tpl"} <= set(names)
    for template, found in names.items():
        unknown = found - set(DECLARED)
        assert not unknown, f"{template} sets variables the worker does not read: {unknown}"


def values_descriptions() -> list[tuple[str, object]]:
    """(`# --` description, the value it describes) of every documented chart value."""
    described: list[tuple[str, object]] = []
    comment: list[str] | None = None
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# -- "):
            comment = [stripped[5:]]
        elif stripped.startswith("#") and comment is not None:
            comment.append(stripped.lstrip("# "))
        elif comment is not None and ":" in stripped:
            value = yaml.safe_load(stripped.split(":", 1)[1]) if stripped else None
            described.append((" ".join(comment), value))
            comment = None
    return described


def test_chart_values_document_declared_settings_with_their_defaults() -> None:
    choices = {choice for s in SETTINGS for choice in s.spec.choices}
    named: set[str] = set()
    for description, value in values_descriptions():
        variables = set(VARIABLE.findall(description)) - choices
        unknown = variables - set(DECLARED)
        assert not unknown, f"values.yaml documents unknown variables {unknown}: {description}"
        named |= variables
        # "# -- NAME: ..." (or "NAME." / "NAME=") describes the value of that very variable.
        first = VARIABLE.match(description)
        if first and first.group(0) in DECLARED:
            setting = DECLARED[first.group(0)]
            assert _chart_value(value) == setting.shown_default(), (
                f"values.yaml default of {setting.env}: {value!r}"
            )
    # The settings an operator tunes per deployment are all in the chart's values.
    assert {"HTTP_PORT", "BATCH_MAX_RECORDS", "SHUTDOWN_GRACE_S", "LOG_LEVEL"} <= named


def _chart_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_declaration_is_complete(setting: Setting) -> None:
    assert setting.kind in (str, int, float, bool)
    assert setting.spec.help and "\n" not in setting.spec.help
    assert (setting.spec.low is None) == (setting.spec.high is None)
    if setting.spec.low is not None:
        assert setting.kind in (int, float) and setting.spec.low <= setting.default
    if setting.spec.choices:
        assert setting.kind is str
        assert setting.default is None or setting.default in setting.spec.choices
