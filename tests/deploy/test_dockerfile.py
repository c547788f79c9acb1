"""The Dockerfile: multi-stage, a non-root final stage running the console script, no build
tools in the image, a build context that holds what the COPY lines need; and hadolint. Supply
chain: a base pinned by digest, a hash-checked and pinned build backend, no pip, setuptools or
wheel in the runtime image, and OCI labels from build arguments."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field

from .conftest import ROOT, output, run

DOCKERFILE = ROOT / "Dockerfile"
BUILD_LOCK = ROOT / "requirements-build.lock"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PACKAGING_TOOLS = ("pip", "setuptools", "wheel")
OCI_LABELS = {
    "org.opencontainers.image.source": "SOURCE",
    "org.opencontainers.image.revision": "REVISION",
    "org.opencontainers.image.version": "VERSION",
    "org.opencontainers.image.created": "CREATED",
}
BUILD_TOOLS = (
    "gcc",
    "g++",
    "build-essential",
    "make",
    "clang",
    "libpq-dev",
    "python3-dev",
    "cargo",
    "rustc",
)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse() -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and stages, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
    return args, stages


def resolve(image: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)


def test_multi_stage_with_slim_python_base() -> None:
    args, stages = parse()
    assert len(stages) >= 2, "expected a builder stage and a final stage"
    final = stages[-1]
    assert resolve(final.base, args).startswith("python:3.11-slim"), final.base
    assert stages[0].name, "the builder stage needs a name for COPY --from"


def test_every_base_image_is_pinned_by_digest() -> None:
    args, stages = parse()
    for stage in stages:
        base = resolve(stage.base, args)
        if base in {s.name for s in stages}:
            continue  # FROM an earlier stage
        assert DIGEST.search(base), f"FROM {base}: pin the base image by @sha256 digest"
    text = DOCKERFILE.read_text()
    # The pin says where it came from and how to move it.
    assert "imagetools inspect" in text and "Where it came from" in text


def test_runtime_venv_and_image_have_no_packaging_tools() -> None:
    """No pip, setuptools or wheel in the final image: the venv is created without pip and
    filled from outside, and the base image's copies are uninstalled."""
    _, stages = parse()
    builder_runs = [r for s in stages[:-1] for r in s.all("RUN")]
    assert any(re.search(r"-m venv --without-pip /opt/venv\b", r) for r in builder_runs)
    assert not any(re.search(r"/opt/venv/bin/(pip|python -m pip)\b", r) for r in builder_runs), (
        "pip must not run from inside /opt/venv (it would have to be installed there)"
    )
    final = stages[-1]
    runs = " ".join(final.all("RUN"))
    uninstall = re.search(r"pip uninstall (?:--\S+ )*([\w\s-]+?)(?:&&|$)", runs)
    assert uninstall, "the final stage must uninstall the base image's pip"
    assert set(PACKAGING_TOOLS) <= set(uninstall.group(1).split()), uninstall.group(0)
    assert "ensurepip/_bundled" in runs, "ensurepip's bundled pip/setuptools wheels stay behind"
    assert not re.search(r"pip3? install", runs), "nothing is installed in the final stage"
    for copy in final.all("COPY"):
        assert "/opt/build" not in copy, "the build venv (pip, setuptools) must stay in the builder"


def _build_requires() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"])


def test_build_backend_is_pinned_and_hash_checked() -> None:
    requires = _build_requires()
    assert requires, "pyproject.toml [build-system] requires nothing"
    for requirement in requires:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", requirement), (
            f"build requirement {requirement!r} must be pinned exactly (name==X.Y.Z)"
        )
    text = re.sub(r"\\\n", " ", BUILD_LOCK.read_text())
    locked = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert "--hash=sha256:" in line, f"no hash in requirements-build.lock: {line}"
            locked[line.split()[0].split("==")[0].lower()] = line.split()[0]
    for requirement in requires:
        name = requirement.split("==")[0].lower()
        assert locked.get(name) == requirement, (
            f"requirements-build.lock pins {locked.get(name)}, pyproject.toml {requirement}: "
            "regenerate it with the command at its top"
        )
    _, stages = parse()
    builder_runs = " ".join(r for s in stages[:-1] for r in s.all("RUN"))
    assert re.search(r"--require-hashes [^&]*-r requirements-build.lock", builder_runs)
    assert "--no-build-isolation" in builder_runs, (
        "build isolation would download the backend again, unchecked"
    )


def test_oci_labels_come_from_build_args() -> None:
    _, stages = parse()
    final = stages[-1]
    declared = {a.split("=", 1)[0] for a in final.all("ARG")}
    labels = " ".join(final.all("LABEL"))
    for label, arg in OCI_LABELS.items():
        assert re.search(rf'{re.escape(label)}="\$\{{{arg}\}}"', labels), f"{label} from ${arg}"
        assert arg in declared, f"ARG {arg} must be declared in the final stage"
    default_version = next(a.split("=", 1)[1] for a in final.all("ARG") if a.startswith("VERSION="))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert default_version == project["version"], "ARG VERSION's default is pyproject's version"


def test_builder_installs_the_hashed_lock_and_the_wheel() -> None:
    _, stages = parse()
    builder_runs = " ".join(" ".join(s.all("RUN")) for s in stages[:-1])
    assert "--require-hashes" in builder_runs
    assert "requirements.lock" in builder_runs
    assert "--no-deps" in builder_runs


def test_final_stage_copies_only_the_venv_and_runs_as_non_root() -> None:
    _, stages = parse()
    final = stages[-1]
    copies = final.all("COPY") + final.all("ADD")
    assert copies, "the final stage must copy the venv from the builder"
    for copy in copies:
        assert copy.startswith("--from=builder "), f"final stage copies sources: {copy}"
    users = final.all("USER")
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert user.isdigit() and int(user) >= 1000, "use a fixed numeric UID (runAsNonRoot checks it)"


def test_exec_form_entrypoint_and_cmd() -> None:
    _, stages = parse()
    final = stages[-1]
    entrypoint = json.loads(final.all("ENTRYPOINT")[-1])
    assert entrypoint in (
        ["delivery-receipts-worker"],
        ["tini", "--", "delivery-receipts-worker"],
        ["/usr/bin/tini", "--", "delivery-receipts-worker"],
    ), entrypoint
    assert json.loads(final.all("CMD")[-1]) == ["run"]


def test_no_build_tools_in_final_stage() -> None:
    _, stages = parse()
    final = stages[-1]
    for command in final.all("RUN"):
        words = set(shlex.split(command.replace(";", " ").replace("&&", " ")))
        found = words & set(BUILD_TOOLS)
        assert not found, f"build tools in the final stage: {found}"


def test_healthcheck_documents_the_probes() -> None:
    text = DOCKERFILE.read_text()
    assert "HEALTHCHECK" in text
    assert "/healthz" in text and "/readyz" in text


def _dockerignore_allows(path: str) -> bool:
    """Docker's .dockerignore semantics for plain patterns: the last matching rule wins."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", ""))
            for p in prefixes
        ):
            allowed = negate
    return allowed


def test_build_context_has_what_copy_needs() -> None:
    _, stages = parse()
    for stage in stages:
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            sources = [w for w in shlex.split(copy) if not w.startswith("--")][:-1]
            for source in sources:
                path = source.rstrip("/")
                assert (ROOT / path).exists(), f"COPY {source}: no such file in the repository"
                assert _dockerignore_allows(path), f"COPY {source}: excluded by .dockerignore"
    assert _dockerignore_allows("requirements-build.lock")
    for secret_like in (".venv/bin/python", ".git/config", "tests/conftest.py"):
        assert not _dockerignore_allows(secret_like), f"{secret_like} would enter the context"


def test_hadolint(hadolint: str) -> None:
    result = run([hadolint, "--failure-threshold", "warning", str(DOCKERFILE)])
    assert result.returncode == 0, output(result)
