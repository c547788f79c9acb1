"""Shared helpers of the deploy checks: where the tools are, and how to run them.

The tools (helm, promtool, hadolint, kubernetes-validate, pip-tools) are installed by
scripts/setup-deploy-tools.sh. A missing tool fails the test when the environment variable CI
is set (so CI cannot go green without the checks), and skips it otherwise.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "delivery-receipts-worker"
CI_VALUES = ROOT / "helm" / "ci"
MONITORING = ROOT / "monitoring"
TOOLS_BIN = Path(
    os.environ.get("DEPLOY_TOOLS_BIN", Path.home() / ".cache" / "delivery-receipts-worker" / "bin")
)
SETUP_HINT = "run `bash scripts/setup-deploy-tools.sh`"
# The Kubernetes version the chart is linted and its manifests validated against.
KUBE_VERSION = "1.33.0"
# The chart's value sets: its defaults, and each file of helm/ci/.
VALUE_SETS = {
    "default": None,
    "all-on": CI_VALUES / "all-on-values.yaml",
    "hpa-initcontainer": CI_VALUES / "hpa-initcontainer-values.yaml",
    "keda-prometheus": CI_VALUES / "keda-prometheus-values.yaml",
}


def missing(what: str) -> None:
    """Fail (under CI) or skip (elsewhere) because a tool is not installed."""
    message = f"{what} is not installed: {SETUP_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def find_tool(name: str) -> str | None:
    """The tool from the project venv's bin, PATH, or the setup script's cache, in that order."""
    for directory in (Path(sys.executable).parent, TOOLS_BIN):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        missing(f"{name} (looked in {Path(sys.executable).parent}, PATH and {TOOLS_BIN})")
    assert path is not None
    return path


def require_module(name: str, package: str) -> ModuleType:
    """Import a Python module installed by the setup script, at module level of a test file."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"Python package {package} is not installed: {SETUP_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
        raise  # unreachable: skip raises


def run(
    args: list[str], *, cwd: Path = ROOT, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; the result carries stdout and stderr for assertion messages."""
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return require_tool("hadolint")


@pytest.fixture(scope="session")
def pip_compile() -> str:
    return require_tool("pip-compile")


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, helm: str) -> tuple[str, list[dict[str, Any]]]:
    """`helm template` of the chart with each value set: (its name, the manifests)."""
    from .chart import render  # needs PyYAML, which only the chart's tests require

    return request.param, render(helm, VALUE_SETS[request.param])
