"""requirements.lock: exact, hashed pins of the runtime dependencies; still in step with
pyproject.toml; and installable into a clean venv together with the project, whose console
script then runs (what the Dockerfile's builder stage does). requirements-build.lock: the same
for the build backend of pyproject.toml's [build-system]."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT, output, run

LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
# The extras baked into the image besides the base dependencies.
IMAGE_EXTRAS = ("fast",)


def locked(lock: Path = LOCK) -> dict[str, str]:
    pins: dict[str, str] = {}
    text = re.sub(r"\\\n", " ", lock.read_text())
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


def _recompile(
    pip_compile: str, lock: Path, copy: Path, project: Path = ROOT / "pyproject.toml"
) -> dict[str, str]:
    """Rerun the command written at the top of `lock` into `copy`, keeping existing pins."""
    shutil.copy(lock, copy)
    command = lock.read_text().split("#    ", 1)[1].splitlines()[0].split()
    assert command[0] == "PIP_FIND_LINKS=" and command[1].endswith("pip-compile"), command
    paths = (str(lock.relative_to(ROOT)), str(project.relative_to(ROOT)))
    assert command[-1] == paths[1] and command[-2] == paths[0], command
    options = [a for a in command[2:-2] if a != "--output-file"]
    result = run(
        [
            pip_compile,
            "--quiet",
            "--no-upgrade",
            *options,
            "--output-file",
            str(copy),
            str(project),
        ],
        timeout=600,
    )
    assert result.returncode == 0, output(result)
    return {
        canonicalize_name(m.group(1)): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", copy.read_text(), re.MULTILINE)
    }


def test_lock_is_up_to_date_with_pyproject(pip_compile: str, tmp_path: Path) -> None:
    """pip-compile keeps existing pins: a diff means pyproject.toml changed since the lock."""
    regenerated = _recompile(pip_compile, LOCK, tmp_path / "requirements.lock")
    assert regenerated == locked(), (
        "requirements.lock is stale: regenerate it with the command at its top"
    )


@pytest.mark.parametrize("project", ["", "native"])  # the worker's, the compiled module's
def test_build_lock_is_up_to_date_with_build_system(
    pip_compile: str, tmp_path: Path, project: str
) -> None:
    lock = ROOT / project / "requirements-build.lock"
    assert "--only-build-deps" in lock.read_text().split("\n\n", 1)[0]
    regenerated = _recompile(
        pip_compile, lock, tmp_path / "requirements-build.lock", ROOT / project / "pyproject.toml"
    )
    assert regenerated == locked(lock), (
        f"{lock.relative_to(ROOT)} is stale: regenerate it with the command at its top"
    )


def _with_cargo() -> str:
    """PATH with a cargo on it, as scripts/setup.sh finds one (rustup's if not on PATH)."""
    path = os.environ.get("PATH", "")
    cargo = (
        os.environ.get("CARGO") or shutil.which("cargo") or str(Path.home() / ".cargo/bin/cargo")
    )
    return f"{Path(cargo).parent}{os.pathsep}{path}"


def test_lock_installs_into_a_clean_venv_and_the_cli_runs(tmp_path: Path) -> None:
    """The Dockerfile's builder, step by step: the hashed build backend into a build venv, the
    hashed lock into a venv without pip, the wheel built without isolation and installed."""
    build, venv, wheels = tmp_path / "build", tmp_path / "venv", tmp_path / "wheels"
    result = run([sys.executable, "-m", "venv", str(build)])
    assert result.returncode == 0, output(result)
    result = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert result.returncode == 0, output(result)
    pip = [str(build / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    into_venv = [*pip, "--python", str(venv / "bin" / "python")]
    hashed = ["--no-cache-dir", "--require-hashes", "--only-binary=:all:", "--no-deps"]
    native_lock = ROOT / "native" / "requirements-build.lock"
    result = run(
        [*pip, "install", *hashed, "-r", str(BUILD_LOCK), "-r", str(native_lock)], timeout=600
    )
    assert result.returncode == 0, output(result)
    result = run([*into_venv, "install", *hashed, "-r", str(LOCK)], timeout=900)
    assert result.returncode == 0, output(result)
    result = run(
        [*pip, "wheel", "--no-build-isolation", "--no-deps", "--wheel-dir", str(wheels), str(ROOT)],
        timeout=600,
    )
    assert result.returncode == 0, output(result)
    # The compiled fast paths, as the builder builds them: crates as Cargo.lock pins them.
    result = run(
        [*pip, "wheel", "--no-build-isolation", "--no-deps", "--wheel-dir", str(wheels),
         str(ROOT / "native")],
        timeout=900,
        # maturin's backend runs the `maturin` of the build venv, found on PATH.
        env={**os.environ, "MATURIN_PEP517_ARGS": "--locked",
             "PATH": f"{build / 'bin'}{os.pathsep}{_with_cargo()}"},
    )  # fmt: skip
    assert result.returncode == 0, output(result)
    built = sorted(str(w) for w in wheels.glob("*.whl"))
    assert len(built) == 2, built
    result = run([*into_venv, "install", "--no-deps", "--no-index", *built], timeout=600)
    assert result.returncode == 0, output(result)
    result = run([*into_venv, "check"])
    assert result.returncode == 0, f"the lock misses a dependency:\n{output(result)}"
    installed = {p.name.split("-")[0].lower() for p in venv.glob("lib/python*/site-packages/*")}
    assert not installed & {"pip", "setuptools", "wheel"}, "packaging tools in the runtime venv"
    cli = venv / "bin" / "delivery-receipts-worker"
    assert cli.exists(), "the console script was not installed"
    result = run([str(cli), "--help"], cwd=tmp_path)
    assert result.returncode == 0, output(result)
    for command in ("migrate", "run", "api"):
        assert command in result.stdout, f"`{command}` missing from --help:\n{result.stdout}"
    check = "import worker.metrics, uvloop, worker.native as n; assert n.FAST_PARSER is not None"
    result = run([str(venv / "bin" / "python"), "-c", check], cwd=tmp_path)
    assert result.returncode == 0, output(result)
