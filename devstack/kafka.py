"""Fetch Apache Kafka's jars from Maven Central and run a single-node KRaft broker.

There is no Kafka tarball or Docker image on these machines, so the broker is assembled
from the ``org.apache.kafka:kafka_2.13`` artifact and its runtime dependencies, resolved
by Maven into a cache directory, and launched with the local JDK.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from devstack._util import free_port, tail

KAFKA_VERSION = "4.1.2"
SCALA_BINARY_VERSION = "2.13"
# Kafka 4.1.2's own kafka-server POM pulls log4j-api/core 2.25.3; the SLF4J binding must
# match them or log4j refuses to route SLF4J calls.
LOG4J_VERSION = "2.25.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

_MARKER_NAME = ".complete"
_READY_LINE = "Kafka Server started"
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
    return target


def _new_cluster_id() -> str:
    # Same shape as Kafka's Uuid.toString(): 22 chars of URL-safe base64. A leading '-'
    # would be parsed as an option by StorageTool, which is why Kafka avoids it too.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java not found; install a JDK (scripts/setup.sh does)")
    return java


class KafkaBroker:
    """A single-node Kafka broker (combined broker+controller) in a private temp dir.

    Ports are chosen once, at construction, so ``restart()`` and ``start()`` after
    ``stop()`` or ``kill()`` bring back the same broker with the same data at the same
    address, which is what crash and reconnect tests need.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        jars_dir: Path | None = None,
        heap_max: str = "768m",
        start_timeout_s: float = 90.0,
        extra_properties: Mapping[str, str] | None = None,
        format_args: Sequence[str] = (),
    ) -> None:
        self._port = port if port is not None else free_port()
        self._controller_port = controller_port if controller_port is not None else free_port()
        self._jars_dir = jars_dir
        self._heap_max = heap_max
        self._start_timeout_s = start_timeout_s
        self._extra_properties = dict(extra_properties or {})
        # Extra StorageTool arguments, e.g. ("--add-scram", "SCRAM-SHA-256=[name=u,password=p]").
        self._format_args = tuple(format_args)
        self._data_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False

    # -- public properties -------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def controller_port(self) -> int:
        return self._controller_port

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("broker was never started")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running and self._proc is not None else None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the broker and block until it serves clients."""
        if self.is_running:
            return
        jars = self._jars_dir if self._jars_dir is not None else ensure_kafka_jars()
        java = _find_java()
        data_dir = self._ensure_data_dir()
        if not (data_dir / "kraft-logs" / "meta.properties").exists():
            self._write_config(data_dir)
            self._format(java, jars, data_dir)

        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        out_path = data_dir / "kafka.out"
        out_offset = out_path.stat().st_size if out_path.exists() else 0
        with out_path.open("ab") as out:
            # Own session/process group: a Ctrl-C aimed at the parent must not reach the
            # JVM, and stop()/kill() can signal the whole group.
            self._proc = subprocess.Popen(
                [*self._java_cmd(java, jars, data_dir), "kafka.Kafka", "server.properties"],
                cwd=data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._register_atexit()
        self._wait_ready(log_offset, out_path, out_offset)

    def stop(self, timeout_s: float = 20) -> None:
        """Shut down gracefully (SIGTERM); SIGKILL if it is still alive after the timeout."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the broker, simulating a crash; ``start()`` recovers from its logs."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()
        self._proc = None

    def restart(self, timeout_s: float = 20) -> None:
        """Stop and start again on the same ports with the same data."""
        self.stop(timeout_s=timeout_s)
        self.start()

    def close(self) -> None:
        """Stop the broker and delete its data directory."""
        try:
            self.stop()
        finally:
            if self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
                self._data_dir = None
            if self._atexit_registered:
                atexit.unregister(self._emergency_cleanup)
                self._atexit_registered = False

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _ensure_data_dir(self) -> Path:
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="devstack-kafka-"))
        return self._data_dir

    def _register_atexit(self) -> None:
        # An interpreter exiting without close() (crashed test session, uncaught error in
        # `up`) must not leave an orphaned JVM holding ports and 768 MiB of heap.
        if not self._atexit_registered:
            atexit.register(self._emergency_cleanup)
            self._atexit_registered = True

    def _emergency_cleanup(self) -> None:
        self.kill()
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def _java_cmd(self, java: str, jars: Path, data_dir: Path) -> list[str]:
        return [
            java,
            "-Xms256m",
            f"-Xmx{self._heap_max}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={data_dir}",
            "-cp",
            f"{jars}/*",
        ]

    def _properties(self, data_dir: Path) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self._controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self._port},CONTROLLER://127.0.0.1:{self._controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self._port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data_dir / "kraft-logs"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Tests send 1 MiB records; leave headroom for batching and headers.
            "message.max.bytes": str(4 * 1024 * 1024),
            "replica.fetch.max.bytes": str(4 * 1024 * 1024),
            # Two cores: the defaults (3 network, 8 io threads) only add contention.
            "num.network.threads": "2",
            "num.io.threads": "4",
            # The cleaner's default 128 MiB dedupe buffer is a sixth of the heap for
            # compacting a handful of tiny __consumer_offsets segments.
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            # After a SIGKILL the controller refuses the restarted broker's registration
            # (DUPLICATE_BROKER_REGISTRATION) until the dead incarnation's session expires;
            # the 9 s default made every crash-test restart take ~12 s.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        }
        props.update(self._extra_properties)
        return props

    def _write_config(self, data_dir: Path) -> None:
        lines = [f"{k}={v}" for k, v in self._properties(data_dir).items()]
        (data_dir / "server.properties").write_text("\n".join(lines) + "\n")
        log4j = f"""status = warn
name = devstack-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {data_dir / "server.log"}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""
        (data_dir / "log4j2.properties").write_text(log4j)

    def _format(self, java: str, jars: Path, data_dir: Path) -> None:
        # controller.quorum.voters makes this a static quorum, which is formatted without
        # --standalone (that flag is for dynamic quorums and conflicts with voters).
        proc = subprocess.run(
            [
                *self._java_cmd(java, jars, data_dir),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _new_cluster_id(),
                "-c",
                "server.properties",
                *self._format_args,
            ],
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"kafka storage format failed (exit {proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}\n{tail(self.log_path)}"
            )

    def _wait_ready(self, log_offset: int, out_path: Path, out_offset: int) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        proc = self._proc
        assert proc is not None
        while True:
            if self._log_contains_ready(log_offset):
                return
            if proc.poll() is not None:
                self._proc = None
                raise RuntimeError(
                    f"Kafka exited with code {proc.returncode} during startup\n"
                    + self._failure_context(log_offset, out_path, out_offset)
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"Kafka not ready after {self._start_timeout_s:.0f}s\n"
                    + self._failure_context(log_offset, out_path, out_offset)
                )
            time.sleep(0.1)

    def _log_contains_ready(self, offset: int) -> bool:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return _READY_LINE.encode() in fh.read()
        except FileNotFoundError:
            return False

    def _failure_context(self, log_offset: int, out_path: Path, out_offset: int) -> str:
        # The root cause is usually the first ERROR, followed by a long shutdown sequence
        # that pushes it out of any reasonable tail.
        everything = tail(self.log_path, lines=100_000, start=log_offset).splitlines()
        errors = [line for line in everything if " ERROR " in line or " FATAL " in line][:10]
        sections = [
            "--- first errors ---",
            *errors,
            f"--- {self.log_path} (tail) ---",
            tail(self.log_path, start=log_offset),
            f"--- {out_path} (tail) ---",
            tail(out_path, start=out_offset),
        ]
        return "\n".join(sections)
