"""Run a single-node Kafka broker (KRaft: combined broker and controller) on the local JDK.

The jars come from Maven Central (devstack/kafka_jars.py); the lifecycle (private directory,
start/stop/kill/close, context manager, atexit net) is devstack/server.py's.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from devstack._util import free_port, tail
from devstack.kafka_jars import KAFKA_VERSION, LOG4J_VERSION, ensure_kafka_jars
from devstack.server import LocalServer

# Re-exported: devstack.kafka was their home before devstack/kafka_jars.py.
__all__ = ["KAFKA_VERSION", "LOG4J_VERSION", "KafkaBroker", "ensure_kafka_jars"]

_READY_LINE = "Kafka Server started"


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


class KafkaBroker(LocalServer):
    """A single-node Kafka broker (combined broker+controller) in a private temp dir.

    Ports are chosen once, at construction, so ``restart()`` and ``start()`` after
    ``stop()`` or ``kill()`` bring back the same broker with the same data at the same
    address, which is what crash and reconnect tests need.
    """

    kind: ClassVar[str] = "Kafka"
    dir_prefix: ClassVar[str] = "devstack-kafka-"

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
        super().__init__(port=port)
        self._controller_port = controller_port if controller_port is not None else free_port()
        self._jars_dir = jars_dir
        self._heap_max = heap_max
        self._start_timeout_s = start_timeout_s
        self._extra_properties = dict(extra_properties or {})
        # Extra StorageTool arguments, e.g. ("--add-scram", "SCRAM-SHA-256=[name=u,password=p]").
        self._format_args = tuple(format_args)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- public properties -------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self._port}"

    @property
    def controller_port(self) -> int:
        return self._controller_port

    @property
    def data_dir(self) -> Path:
        return self.private_dir

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
        data_dir = self._make_dir()
        if not (data_dir / "kraft-logs" / "meta.properties").exists():
            self._write_config(data_dir)
            self._format(java, jars, data_dir)

        log_offset = _size(self.log_path)
        out_path = data_dir / "kafka.out"
        out_offset = _size(out_path)
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
        self._wait_ready(log_offset, out_path, out_offset)

    def stop(self, timeout_s: float = 20) -> None:
        """Shut down gracefully (SIGTERM); SIGKILL if it is still alive after the timeout."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the broker, simulating a crash; ``start()`` recovers from its logs."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self._proc = None

    def restart(self, timeout_s: float = 20) -> None:
        """Stop and start again on the same ports with the same data."""
        self.stop(timeout_s=timeout_s)
        self.start()

    # -- internals ---------------------------------------------------------------------

    def _stop_before_delete(self) -> None:
        self.stop()

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
                f"{proc.stdout}\n{proc.stderr}\n{self.log_tail()}"
            )

    def _wait_ready(self, log_offset: int, out_path: Path, out_offset: int) -> None:
        proc = self._proc
        assert proc is not None

        def exited() -> int | None:
            code = proc.poll()
            if code is not None:
                self._proc = None
            return code

        self._wait_until(
            lambda: self._log_contains_ready(log_offset),
            exited,
            self._start_timeout_s,
            lambda: self._failure_context(log_offset, out_path, out_offset),
        )

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
            self.log_tail(start=log_offset),
            f"--- {out_path} (tail) ---",
            tail(out_path, start=out_offset),
        ]
        return "\n".join(sections)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _size(path: Path) -> int:
    """Where appended output will start: the file's size, 0 before it exists."""
    return path.stat().st_size if path.exists() else 0
