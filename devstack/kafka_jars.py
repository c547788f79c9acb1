"""Fetch Apache Kafka's jars from Maven Central into a local cache.

There is no Kafka tarball or Docker image on these machines, so the broker (devstack/kafka.py)
is assembled from the ``org.apache.kafka:kafka_2.13`` artifact and its runtime dependencies,
resolved by Maven (``dependency:copy-dependencies``) into a cache directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

KAFKA_VERSION = "4.1.2"
SCALA_BINARY_VERSION = "2.13"
# Kafka 4.1.2's own kafka-server POM pulls log4j-api/core 2.25.3; the SLF4J binding must
# match them or log4j refuses to route SLF4J calls.
LOG4J_VERSION = "2.25.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

_MARKER_NAME = ".complete"
_MAVEN_TIMEOUT_S = 1800.0

_ARTIFACTS: tuple[tuple[str, str, str], ...] = (
    ("org.apache.kafka", f"kafka_{SCALA_BINARY_VERSION}", KAFKA_VERSION),
    ("org.apache.logging.log4j", "log4j-api", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
    # SLF4J 1.7 binding: Kafka logs through slf4j-api 1.7.36, and its POM ships no backend.
    ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
)


def _fingerprint() -> str:
    return "\n".join(":".join(coords) for coords in _ARTIFACTS) + "\n"


def default_cache_root() -> Path:
    """Directory under which fetched jar sets are cached (outside the repository)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "delivery-receipts-worker"


def _is_complete(jars_dir: Path) -> bool:
    try:
        return (jars_dir / _MARKER_NAME).read_text() == _fingerprint()
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    # Parallel test runs on one machine would otherwise both run Maven and race on rename.
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _render_pom() -> str:
    deps = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in _ARTIFACTS
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.devstack</groupId>
  <artifactId>kafka-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{DEPENDENCY_PLUGIN_VERSION}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


def ensure_kafka_jars(cache_dir: Path | None = None) -> Path:
    """Return a directory holding every jar needed to run the Kafka broker.

    ``cache_dir`` is the cache root (default: ``~/.cache/delivery-receipts-worker``); the
    jars live in ``<cache_dir>/kafka-<version>/``. A marker file written last makes a
    repeated call a single stat, and the download goes to a temporary sibling that is
    renamed into place, so an interrupted fetch never leaves a half-filled directory
    that looks complete.
    """
    root = cache_dir if cache_dir is not None else default_cache_root()
    target = root / f"kafka-{KAFKA_VERSION}"
    if _is_complete(target):
        return target

    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / f".kafka-{KAFKA_VERSION}.lock"):
        if _is_complete(target):
            return target
        # Staging dirs left by a fetch that was SIGKILLed; the lock proves none is in use.
        for stale in root.glob(f".kafka-{KAFKA_VERSION}-*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        _fetch(root, target)
    return target


def _fetch(root: Path, target: Path) -> None:
    """Resolve the jars with Maven into a staging dir under ``root``, then rename it to target."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("mvn not found on PATH; run scripts/setup.sh or install maven")
    with tempfile.TemporaryDirectory(prefix=f".kafka-{KAFKA_VERSION}-", dir=root) as tmp:
        work = Path(tmp)
        (work / "pom.xml").write_text(_render_pom())
        staging = work / "jars"
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(
            cmd,
            cwd=work,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_MAVEN_TIMEOUT_S,
            check=False,
        )
        kafka_jar = staging / f"kafka_{SCALA_BINARY_VERSION}-{KAFKA_VERSION}.jar"
        if proc.returncode != 0 or not kafka_jar.is_file():
            output = (proc.stdout + proc.stderr).strip().splitlines()[-40:]
            raise RuntimeError(
                f"maven failed to fetch Kafka {KAFKA_VERSION} (exit {proc.returncode}):\n"
                + "\n".join(output)
            )
        (staging / _MARKER_NAME).write_text(_fingerprint())
        if target.exists():
            # Left by an older fingerprint or a pre-marker layout: never trusted.
            shutil.rmtree(target)
        staging.rename(target)
