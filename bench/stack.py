"""The benchmark's Kafka + PostgreSQL, each scenario's topics and database, and worker processes."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.util import children_of, cpu_seconds, machine_busy_seconds, say
from devstack._util import free_port
from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer

_WORKER = Path(sys.executable).with_name("delivery-receipts-worker")

# `--pg-settings tuned`: sized for a long replay on a small machine (docs/benchmark.md).
# `--pg-settings default`: PostgreSQL's own defaults (shared_buffers 128MB, max_wal_size 1GB).
PG_TUNED = {
    "shared_buffers": "512MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_buffers": "16MB",
}


@dataclass
class Stack:
    kafka: KafkaBroker
    postgres: PostgresServer
    workdir: Path
    worker_env: dict[str, str]
    py_spy: str | None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def next_id(self) -> int:
        return next(self._ids)

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap_servers

    def cpu(self, workers: Sequence[WorkerProcess]) -> dict[str, float]:
        """CPU seconds used so far by the worker(s), PostgreSQL and the Kafka broker."""
        pg = self.postgres.pid
        return {
            "worker": cpu_seconds([w.pid for w in workers]),
            "postgres": cpu_seconds(children_of(pg)) if pg else 0.0,
            "kafka": cpu_seconds([self.kafka.pid]) if self.kafka.pid else 0.0,
            "all": machine_busy_seconds(),
        }


@contextlib.contextmanager
def started_stack(args: argparse.Namespace) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    say(f"starting Kafka and PostgreSQL (logs and worker output in {workdir})")
    pg_settings = PG_TUNED if args.pg_settings == "tuned" else {}
    with (
        PostgresServer(
            fsync=not args.pg_no_fsync, synchronous_commit=True, extra_settings=pg_settings
        ) as postgres,
        KafkaBroker(heap_max="1g") as kafka,
    ):
        env = {k: str(v) for k, v in (args.worker_env or {}).items()}
        yield Stack(kafka, postgres, workdir, env, args.py_spy)
    say("Kafka and PostgreSQL stopped")


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs={"max.message.bytes": str(4 << 20)})]
        )
    finally:
        await admin.close()


@dataclass
class Target:
    """One scenario's topics, database and consumer group."""

    input_topic: str
    summary_topic: str
    dlq_topic: str
    group: str
    dsn: str


async def new_target(stack: Stack, name: str, partitions: int, dsn: str | None = None) -> Target:
    """Fresh topics and group; a fresh database unless `dsn` names one to reuse."""
    n = stack.next_id()
    t = Target(
        input_topic=f"{name}-{n}-events",
        summary_topic=f"{name}-{n}-summaries",
        dlq_topic=f"{name}-{n}-events.dlq",
        group=f"{name}-{n}",
        dsn=dsn or stack.postgres.create_database(f"bench_{name}_{n}"),
    )
    await create_topic(stack.bootstrap, t.input_topic, partitions)
    await create_topic(stack.bootstrap, t.summary_topic, partitions)
    await create_topic(stack.bootstrap, t.dlq_topic, 1)
    return t


def fresh_database(stack: Stack, target: Target, label: str) -> Target:
    n = stack.next_id()
    return Target(
        target.input_topic,
        target.summary_topic,
        target.dlq_topic,
        f"{target.group}-{label}{n}",
        stack.postgres.create_database(f"bench_{label}_{n}"),
    )


def drop_database(stack: Stack, target: Target) -> None:
    """Drop a finished scenario's database: its autovacuum would otherwise run during the
    next scenarios and count as their PostgreSQL CPU."""
    name = target.dsn.rsplit("/", 1)[1]
    stack.postgres.psql('DROP DATABASE :"name" WITH (FORCE)', variables={"name": name})


class WorkerProcess:
    """`delivery-receipts-worker run` as a subprocess, configured by environment."""

    def __init__(self, stack: Stack, target: Target, name: str) -> None:
        self.log_path = stack.workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
            "DATABASE_URL": target.dsn,
            "INPUT_TOPIC": target.input_topic,
            "SUMMARY_TOPIC": target.summary_topic,
            "DLQ_TOPIC": target.dlq_topic,
            "CONSUMER_GROUP": target.group,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(free_port()),
            "LOG_LEVEL": "INFO",
            **stack.worker_env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.py_spy = stack.py_spy
        self.profile_path = stack.workdir / f"{name}.pyspy.txt"
        self.profiler: subprocess.Popen[bytes] | None = None

    def migrate(self) -> None:
        subprocess.run(
            [str(_WORKER), "migrate"], env=self.env, check=True, capture_output=True, timeout=600
        )

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(_WORKER), "run"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        if self.py_spy:
            # Collapsed stacks (one line per stack with its sample count): grep-able.
            command = [self.py_spy, "record", "--pid", str(self.proc.pid), "--format", "raw"]
            command += ["--rate", "50", "--output", str(self.profile_path)]
            self.profiler = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.profiler is not None and self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
                self.profiler.wait()
            say(f"profile of {self.log_path.stem}: {self.profile_path}")
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running_workers(stack: Stack, target: Target, count: int) -> Iterator[list[WorkerProcess]]:
    workers = [WorkerProcess(stack, target, f"{target.group}-w{i}") for i in range(count)]
    workers[0].migrate()
    try:
        for w in workers:
            w.start()
        yield workers
    finally:
        for w in workers:
            w.stop()
