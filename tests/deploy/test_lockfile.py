"""requirements.lock: exact, hashed pins of the runtime dependencies; still in step with
pyproject.toml; and installable into a clean venv together with the project, whose console
script then runs (what the Dockerfile's builder stage does)."""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT, output, run

LOCK = ROOT / "requirements.lock"
# The extras baked into the image besides the base dependencies.
IMAGE_EXTRAS = ("fast",)


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = line.split()[0]
        assert "==" in requirement, f"not pinned exactly: {requirement}"
        assert "--hash=sha256:" in line, f"no hash: {requirement}"
        name, version = requirement.split("==")
        pins[canonicalize_name(name.split("[")[0])] = version
    return pins


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in IMAGE_EXTRAS:
        deps += project["optional-dependencies"][extra]
    return [Requirement(d) for d in deps]


def test_lock_header_says_how_to_regenerate() -> None:
    head = LOCK.read_text().split("\n\n", 1)[0]
    assert "pip-compile" in head and "--generate-hashes" in head
    assert "pyproject.toml" in head


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    pins = locked()
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock: regenerate it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement.name}=={pins[name]} violates {requirement.specifier}: regenerate"
        )
    for dev_only in ("pytest", "ruff", "mypy", "hypothesis"):
        assert dev_only not in pins, f"{dev_only} is a dev tool, not a runtime dependency"


def test_lock_is_up_to_date_with_pyproject(pip_compile: str, tmp_path: Path) -> None:
    """pip-compile keeps existing pins: a diff means pyproject.toml changed since the lock."""
    copy = tmp_path / "requirements.lock"
    shutil.copy(LOCK, copy)
    command = LOCK.read_text().split("#    ", 1)[1].splitlines()[0].split()
    assert command[0] == "PIP_FIND_LINKS=" and command[1].endswith("pip-compile"), command
    options = [a for a in command[2:] if a not in ("requirements.lock", "pyproject.toml")]
    options = [a for a in options if a != "--output-file"]
    result = run(
        [
            pip_compile,
            "--quiet",
            "--no-upgrade",
            *options,
            "--output-file",
            str(copy),
            str(ROOT / "pyproject.toml"),
        ],
        timeout=600,
    )
    assert result.returncode == 0, output(result)
    regenerated = {
        canonicalize_name(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", copy.read_text(), re.MULTILINE)
    }
    assert regenerated == locked(), (
        "requirements.lock is stale: regenerate it with the command at its top"
    )


def test_lock_installs_into_a_clean_venv_and_the_cli_runs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = run([sys.executable, "-m", "venv", str(venv)])
    assert result.returncode == 0, output(result)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    result = run(
        [
            *pip,
            "install",
            "--no-cache-dir",
            "--require-hashes",
            "--only-binary=:all:",
            "--no-deps",
            "-r",
            str(LOCK),
        ],
        timeout=900,
    )
    assert result.returncode == 0, output(result)
    result = run([*pip, "install", "--no-cache-dir", "--no-deps", str(ROOT)], timeout=600)
    assert result.returncode == 0, output(result)
    result = run([*pip, "check"])
    assert result.returncode == 0, f"the lock misses a dependency:\n{output(result)}"
    cli = venv / "bin" / "delivery-receipts-worker"
    assert cli.exists(), "the console script was not installed"
    result = run([str(cli), "--help"], cwd=tmp_path)
    assert result.returncode == 0, output(result)
    for command in ("migrate", "run", "api"):
        assert command in result.stdout, f"`{command}` missing from --help:\n{result.stdout}"
    result = run(
        [str(venv / "bin" / "python"), "-c", "import worker.metrics, uvloop"], cwd=tmp_path
    )
    assert result.returncode == 0, output(result)
