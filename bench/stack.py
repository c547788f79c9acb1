"""The benchmark's Kafka + PostgreSQL, each scenario's run and its worker processes.

A scenario's run (own topics, database and group) is devstack/runs.py's, its workers a
devstack/workers.py `Fleet`; what is the benchmark's own is here: the tuned PostgreSQL, the
extra worker environment of `--worker-env`, CPU accounting and py-spy profiles.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.util import children_of, cpu_seconds, machine_busy_seconds, say
from devstack import runs
from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer
from devstack.workers import Fleet, WorkerProcess, worker_command
from worker.config import Settings

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
    pg_settings = {**(PG_TUNED if args.pg_settings == "tuned" else {}), **args.pg_set}
    with (
        PostgresServer(
            fsync=not args.pg_no_fsync, synchronous_commit=True, extra_settings=pg_settings
        ) as postgres,
        KafkaBroker(heap_max="1g") as kafka,
    ):
        env = {k: str(v) for k, v in (args.worker_env or {}).items()}
        yield Stack(kafka, postgres, workdir, env, args.py_spy)
    say("Kafka and PostgreSQL stopped")


async def new_target(stack: Stack, name: str, partitions: int, dsn: str | None = None) -> Settings:
    """Fresh topics and group; a fresh database unless `dsn` names one to reuse.

    Not migrated: the first worker migrates it (`running_workers`), as in a deployment.
    """
    return await runs.new_run(
        stack.bootstrap,
        stack.postgres,
        name,
        partitions=partitions,
        summary_partitions=partitions,
        database_url=dsn,
        migrate=False,
    )


async def fresh_database(stack: Stack, target: Settings, label: str) -> Settings:
    """The same topics read into a fresh database by a group of its own."""
    return await runs.sibling_run(target, stack.postgres, label, migrate=False)


def drop_database(stack: Stack, target: Settings) -> None:
    """Drop a finished scenario's database: its autovacuum would otherwise run during the
    next scenarios and count as their PostgreSQL CPU."""
    runs.drop_database(stack.postgres, target.database_url)


async def migrate(stack: Stack, target: Settings) -> None:
    """`delivery-receipts-worker migrate` on the target's database."""
    done = await worker_command(target, "migrate", timeout_s=600, **stack.worker_env)
    if done.code != 0:
        raise RuntimeError(f"migrate exited with {done.code}:\n{done.err[-3000:]}")


class Profiler:
    """py-spy recording one worker: collapsed stacks (one line per stack with its sample
    count, grep-able) beside the worker's log."""

    def __init__(self, py_spy: str, worker: WorkerProcess) -> None:
        self.path = worker.log_path.with_suffix(".pyspy.txt")
        self.name = worker.log_path.stem
        command = [py_spy, "record", "--pid", str(worker.pid), "--format", "raw"]
        command += ["--rate", "50", "--output", str(self.path)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        say(f"profile of {self.name}: {self.path}")


@contextlib.asynccontextmanager
async def running_workers(
    stack: Stack, target: Settings, count: int
) -> AsyncIterator[list[WorkerProcess]]:
    """`count` workers of one group on the target (migrated first), stopped by SIGTERM after."""
    await migrate(stack, target)
    env = {"LOG_LEVEL": "INFO", **stack.worker_env}
    with Fleet(stack.workdir, env, stop_grace_s=40) as fleet:
        group = target.consumer_group
        workers = [fleet.start(target, name=f"{group}-w{i}") for i in range(count)]
        profilers = [Profiler(stack.py_spy, w) for w in workers] if stack.py_spy else []
        try:
            yield workers
        finally:
            for profiler in profilers:
                profiler.stop()
