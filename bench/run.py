"""Benchmark runner: starts Kafka + PostgreSQL (devstack), runs the real worker, measures it.

    python -m bench.run --scenario all --json bench-results.json
    python -m bench.run --scenario throughput --events 300000

Scenarios (each on its own topics and database, all in one broker and one PostgreSQL):

- throughput: preload a topic, time a bare aiokafka consumer reading it, then time the worker
  (a `delivery-receipts-worker run` subprocess) draining it into an empty database, outbox
  included. Events/s, the bare rate and their ratio.
- latency: the worker caught up; produce at a fixed rate and time each message from the
  produce of its last summary-changing event to the summary event showing its final counts.
- rss: drain a large stream (default 2M events over 500k messages); worker VmRSS at the end.
- replay: drain a 1M-event topic from the start into an empty database (start-up included).
- replicas: the same topic drained by one worker, then by two in one group (6 partitions).

Everything started here is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.loadgen import Stream, build_stream, produce
from devstack._util import free_port
from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer
from worker.events import ReceiptEvent, Status
from worker.reduction import Counts, recount

SCENARIOS = ("throughput", "latency", "rss", "replay", "replicas")
_WORKER = Path(sys.executable).with_name("delivery-receipts-worker")
_POLL_S = 0.5
_PROGRESS_S = 5.0


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB; (0, 0) if it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in values:
                values[name] = int(rest.split()[0])
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes (and their reaped children), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / _TICK


def children_of(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


# -- the stack ---------------------------------------------------------------------------------


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
            "all": _machine_busy_seconds(),
        }


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (every process, this one included)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / _TICK


@contextlib.contextmanager
def started_stack(args: argparse.Namespace) -> Iterator[Stack]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    say(f"starting Kafka and PostgreSQL (logs and worker output in {workdir})")
    pg_settings = {
        # Sized for a long replay on a small machine; see docs/benchmark.md.
        "shared_buffers": "512MB",
        "max_wal_size": "4GB",
        "checkpoint_timeout": "15min",
        "wal_buffers": "16MB",
    }
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


async def new_target(stack: Stack, name: str, partitions: int) -> Target:
    n = stack.next_id()
    t = Target(
        input_topic=f"{name}-{n}-events",
        summary_topic=f"{name}-{n}-summaries",
        dlq_topic=f"{name}-{n}-events.dlq",
        group=f"{name}-{n}",
        dsn=stack.postgres.create_database(f"bench_{name}_{n}"),
    )
    await create_topic(stack.bootstrap, t.input_topic, partitions)
    await create_topic(stack.bootstrap, t.summary_topic, partitions)
    await create_topic(stack.bootstrap, t.dlq_topic, 1)
    return t


def fresh_database(stack: Stack, target: Target, label: str) -> Target:
    n = stack.next_id()
    return Target(
        target.input_topic,
        f"{target.summary_topic}",
        target.dlq_topic,
        f"{target.group}-{label}{n}",
        stack.postgres.create_database(f"bench_{label}_{n}"),
    )


# -- the worker as a real process ------------------------------------------------------------


class WorkerProcess:
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
            [str(_WORKER), "migrate"], env=self.env, check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(_WORKER), "run"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        if self.py_spy:
            # Collapsed stacks (one line per stack with its sample count): grep-able.
            self.profiler = subprocess.Popen(
                [
                    self.py_spy,
                    "record",
                    "--pid",
                    str(self.proc.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "50",
                    "--output",
                    str(self.profile_path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
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


# -- measurements ----------------------------------------------------------------------------


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    for _ in range(100):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no metadata for {topic}")


async def bare_consumer_rate(bootstrap: str, topic: str) -> dict[str, float]:
    """A plain aiokafka consumer reading the whole topic: the ceiling for any consumer here."""
    ends = await end_offsets(bootstrap, topic)
    total = sum(ends.values())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.monotonic()
        seen = 0
        positions = dict.fromkeys(ends, 0)
        while any(positions[p] < ends[p] for p in ends):
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for tp, records in batch.items():
                seen += len(records)
                if records:
                    positions[tp.partition] = records[-1].offset + 1
        seconds = time.monotonic() - started
    finally:
        await consumer.stop()
    return {"records": seen, "seconds": seconds, "records_per_s": total / max(seconds, 1e-9)}


async def _stored_total(conn: asyncpg.Connection, target: Target, starts: dict[int, int]) -> int:
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = $1"
        " AND topic = $2",
        target.group,
        target.input_topic,
    )
    return sum(r["next_offset"] - starts.get(r["partition"], 0) for r in rows)


async def _connect(dsn: str) -> asyncpg.Connection:
    for _ in range(100):
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            return await asyncpg.connect(dsn)
        await asyncio.sleep(0.1)
    return await asyncpg.connect(dsn)


async def drain(
    stack: Stack, target: Target, replicas: int, events: int, *, label: str
) -> dict[str, Any]:
    """Start `replicas` workers on a preloaded topic; time them to caught-up and outbox empty."""
    ends = await end_offsets(stack.bootstrap, target.input_topic)
    total = sum(ends.values())
    say(f"{label}: {replicas} worker(s) draining {total} records; load {loadavg()}")
    conn = await _connect(target.dsn)
    rss_samples: list[int] = []
    try:
        with running_workers(stack, target, replicas) as workers:
            t_start = time.monotonic()
            cpu_start: dict[str, float] = {}
            t_first: float | None = None
            done_first = 0
            last_print = t_start
            while True:
                await asyncio.sleep(_POLL_S)
                for w in workers:
                    w.check_alive()
                now = time.monotonic()
                try:
                    done = await _stored_total(conn, target, {})
                except asyncpg.UndefinedTableError:
                    done = 0  # not migrated yet
                if done > 0 and t_first is None:
                    t_first, done_first = now, done
                    cpu_start = stack.cpu(workers)
                rss_samples.append(sum(rss_kib(w.pid)[0] for w in workers))
                if now - last_print >= _PROGRESS_S:
                    elapsed = now - t_start
                    say(
                        f"{label}: {done}/{total} records ({done / max(elapsed, 1e-9):,.0f}/s"
                        f" overall), worker RSS {rss_samples[-1] / 1024:.0f} MiB,"
                        f" load {loadavg()}"
                    )
                    last_print = now
                if done >= total:
                    break
            t_caught_up = time.monotonic()
            while await conn.fetchval("SELECT count(*) FROM summary_outbox") > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            t_outbox = time.monotonic()
            cpu_end = stack.cpu(workers)
            rss = [rss_kib(w.pid) for w in workers]
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM delivery_receipts) AS receipts,"
                " (SELECT count(*) FROM message_delivery_counts) AS messages,"
                " (SELECT count(*) FROM delivery_receipt_history) AS history"
            )
    finally:
        await conn.close()
    assert t_first is not None
    steady_s = max(t_outbox - t_first, 1e-9)
    return {
        "replicas": replicas,
        "records": total,
        "events": events,
        "seconds_total": round(t_outbox - t_start, 2),
        "seconds_to_caught_up": round(t_caught_up - t_start, 2),
        "seconds_steady": round(steady_s, 2),
        # From the first committed batch on (start-up excluded), unless it all fit in one poll.
        "events_per_s": round(
            events * (total - done_first) / total / steady_s
            if total > done_first
            else events / max(t_outbox - t_start, 1e-9),
            1,
        ),
        "events_per_s_incl_startup": round(events / (t_outbox - t_start), 1),
        # Share of one core each used during the steady part; "all" is the whole machine.
        "cpu_cores_used": {
            k: round((cpu_end[k] - cpu_start.get(k, 0.0)) / steady_s, 2) for k in cpu_end
        },
        # CPU time per event of each part: independent of what else the machine runs.
        "cpu_us_per_event": {
            k: round((cpu_end[k] - cpu_start.get(k, 0.0)) * 1e6 / max(1, total - done_first), 1)
            for k in cpu_end
        },
        "worker_rss_mib": [round(r / 1024, 1) for r, _ in rss],
        "worker_peak_rss_mib": [round(h / 1024, 1) for _, h in rss],
        "rows": dict(counts) if counts is not None else {},
        "load_after": loadavg(),
    }


async def preload(stack: Stack, target: Target, stream: Stream, label: str) -> dict[str, Any]:
    say(f"{label}: producing {len(stream.records)} records; load {loadavg()}")
    seconds = await produce(
        stack.bootstrap,
        target.input_topic,
        stream.records,
        progress=lambda n: say(f"{label}: produced {n}/{len(stream.records)}"),
    )
    return {
        "records": len(stream.records),
        "seconds": round(seconds, 2),
        "records_per_s": round(len(stream.records) / seconds, 1),
    }


def make_stream(
    events: int, seed: int, *, messages: int | None = None, max_receipts: int = 5
) -> Stream:
    t0 = time.monotonic()
    stream = build_stream(events, seed=seed, messages=messages, max_receipts=max_receipts)
    say(
        f"generated {len(stream.records)} events over {stream.messages} messages"
        f" in {time.monotonic() - t0:.1f}s"
    )
    return stream


# -- scenarios ---------------------------------------------------------------------------------


async def scenario_drain(
    stack: Stack,
    name: str,
    args: argparse.Namespace,
    events: int,
    *,
    messages: int | None = None,
    max_receipts: int = 5,
    with_bare: bool = True,
) -> dict[str, Any]:
    stream = make_stream(events, args.seed, messages=messages, max_receipts=max_receipts)
    target = await new_target(stack, name, args.partitions)
    produced = await preload(stack, target, stream, name)
    result: dict[str, Any] = {
        "events": len(stream.records),
        "messages": stream.messages,
        "partitions": args.partitions,
        "produce": produced,
    }
    if with_bare:
        bare = await bare_consumer_rate(stack.bootstrap, target.input_topic)
        say(f"{name}: bare aiokafka consumer {bare['records_per_s']:,.0f} records/s")
        result["bare_consumer_records_per_s"] = round(bare["records_per_s"], 1)
    worker = await drain(stack, target, 1, len(stream.records), label=name)
    result["worker"] = worker
    result["events_per_s"] = worker["events_per_s"]
    if with_bare:
        result["ratio_to_bare"] = round(
            worker["events_per_s"] / result["bare_consumer_records_per_s"], 3
        )
    return result


async def scenario_replicas(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    stream = make_stream(args.replica_events, args.seed)
    target = await new_target(stack, "replicas", 6)
    await preload(stack, target, stream, "replicas")
    one = await drain(
        stack, fresh_database(stack, target, "one"), 1, len(stream.records), label="replicas x1"
    )
    two = await drain(
        stack, fresh_database(stack, target, "two"), 2, len(stream.records), label="replicas x2"
    )
    return {
        "events": len(stream.records),
        "partitions": 6,
        "one": one,
        "two": two,
        "speedup": round(two["events_per_s"] / one["events_per_s"], 2),
    }


def last_changes(events: Sequence[ReceiptEvent]) -> tuple[dict[str, int], dict[str, Counts]]:
    """Per message: index of its last summary-changing event in produce order, final counts."""
    statuses: dict[str, dict[str, Status]] = {}
    last: dict[str, int] = {}
    final: dict[str, Counts] = {}
    for i, e in enumerate(events):
        receipts = statuses.setdefault(e.message_sid, {})
        before = receipts.get(e.participant_sid)
        if before is None or e.status > before:
            receipts[e.participant_sid] = e.status
            counts = recount(receipts.values())
            if counts != final.get(e.message_sid):
                final[e.message_sid] = counts
                last[e.message_sid] = i
    return last, final


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def scenario_latency(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    rate, seconds = args.latency_rate, args.latency_seconds
    stream = make_stream(int(rate * seconds), args.seed + 7)
    last, final = last_changes(stream.events)
    sent_at = [0.0] * len(stream.records)
    received: dict[str, float] = {}
    target = await new_target(stack, "latency", args.partitions)
    with running_workers(stack, target, 1) as workers:
        conn = await _connect(target.dsn)
        try:
            # Ready when it has adopted every partition (rows in consumer_offsets).
            while True:
                workers[0].check_alive()
                with contextlib.suppress(asyncpg.UndefinedTableError):
                    n = await conn.fetchval(
                        "SELECT count(*) FROM consumer_offsets WHERE consumer_group = $1",
                        target.group,
                    )
                    if n >= args.partitions:
                        break
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(target.summary_topic, p)
                for p in await _partitions(consumer, target.summary_topic)
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            stop = asyncio.Event()

            async def read_summaries() -> None:
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=50, max_records=5000)
                    now = time.time()
                    for records in batch.values():
                        for r in records:
                            doc = orjson.loads(r.value or b"{}")
                            m = doc["message_sid"]
                            c = doc["counts"]
                            if m not in received and final.get(m) == Counts(
                                c["total"],
                                c["sent"],
                                c["delivered"],
                                c["read"],
                                c["failed"],
                                c["undelivered"],
                            ):
                                received[m] = now

            reader = asyncio.create_task(read_summaries())
            say(
                f"latency: producing {len(stream.records)} events at {rate:,.0f}/s;"
                f" load {loadavg()}"
            )

            def on_sent(i: int, at: float) -> None:
                sent_at[i] = at

            async def sample_rss() -> list[int]:
                samples: list[int] = []
                while not stop.is_set():
                    samples.append(rss_kib(workers[0].pid)[0])
                    await asyncio.sleep(1)
                return samples

            rss_task = asyncio.create_task(sample_rss())
            produced_s = await produce(
                stack.bootstrap,
                target.input_topic,
                stream.records,
                rate=rate,
                linger_ms=args.latency_linger_ms,
                on_sent=on_sent,
                progress=lambda n: say(
                    f"latency: produced {n}, matched {len(received)}, load {loadavg()}"
                ),
            )
            deadline = time.monotonic() + 60
            while len(received) < len(last) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            stop.set()
            await reader
            rss_samples = await rss_task
        finally:
            await consumer.stop()
    latencies_ms = [(received[m] - sent_at[i]) * 1000 for m, i in last.items() if m in received]
    return {
        "offered_events_per_s": rate,
        "achieved_events_per_s": round(len(stream.records) / produced_s, 1),
        "events": len(stream.records),
        "messages": len(last),
        "matched": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 50), 1),
        "p90_ms": round(percentile(latencies_ms, 90), 1),
        "p99_ms": round(percentile(latencies_ms, 99), 1),
        "max_ms": round(max(latencies_ms, default=float("nan")), 1),
        "mean_ms": round(statistics.fmean(latencies_ms), 1) if latencies_ms else None,
        "worker_rss_mib_max": round(max(rss_samples, default=0) / 1024, 1),
        "producer_linger_ms": args.latency_linger_ms,
    }


# -- command line ------------------------------------------------------------------------------


def parse_env(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--worker-env wants NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the worker against a local Kafka + PostgreSQL it starts itself.",
    )
    p.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    p.add_argument("--events", type=int, default=300_000, help="throughput: events")
    p.add_argument("--partitions", type=int, default=6, help="input topic partitions")
    p.add_argument("--latency-rate", type=float, default=5000, help="latency: offered events/s")
    p.add_argument("--latency-seconds", type=float, default=30, help="latency: duration")
    p.add_argument("--latency-linger-ms", type=int, default=5, help="latency: producer linger")
    p.add_argument("--rss-events", type=int, default=2_000_000, help="rss: events")
    p.add_argument("--rss-messages", type=int, default=500_000, help="rss: messages")
    p.add_argument("--replay-events", type=int, default=1_000_000, help="replay: events")
    p.add_argument("--replica-events", type=int, default=300_000, help="replicas: events")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra worker environment, e.g. BATCH_MAX_RECORDS=5000 (repeatable)",
    )
    p.add_argument("--pg-no-fsync", action="store_true", help="run PostgreSQL with fsync off")
    p.add_argument(
        "--py-spy",
        default=None,
        metavar="PATH",
        help="py-spy binary: profile each worker (collapsed stacks beside the worker logs)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    return p


async def run_scenarios(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    results: dict[str, Any] = {}
    for name in chosen:
        say(f"=== {name} === load {loadavg()}")
        if name == "throughput":
            results[name] = await scenario_drain(stack, "throughput", args, args.events)
        elif name == "replay":
            results[name] = await scenario_drain(
                stack, "replay", args, args.replay_events, with_bare=False
            )
        elif name == "rss":
            # 2M events over 500k messages is 4 events a message: up to 3 receipts each.
            results[name] = await scenario_drain(
                stack,
                "rss",
                args,
                args.rss_events,
                messages=args.rss_messages,
                max_receipts=3,
                with_bare=False,
            )
        elif name == "latency":
            results[name] = await scenario_latency(stack, args)
        elif name == "replicas":
            results[name] = await scenario_replicas(stack, args)
        results[name]["load_after"] = loadavg()
        say(f"{name}: {json.dumps(summary_line(name, results[name]))}")
    return results


def summary_line(name: str, r: dict[str, Any]) -> dict[str, Any]:
    if name == "throughput":
        keys = ("events", "events_per_s", "bare_consumer_records_per_s", "ratio_to_bare")
        return {
            **{k: r.get(k) for k in keys},
            "cpu_cores_used": r["worker"]["cpu_cores_used"],
            "cpu_us_per_event": r["worker"]["cpu_us_per_event"],
        }
    if name in ("replay", "rss"):
        w = r["worker"]
        return {
            "events": r["events"],
            "messages": r["messages"],
            "events_per_s": w["events_per_s"],
            "cpu_us_per_event": w["cpu_us_per_event"],
            "events_per_s_incl_startup": w["events_per_s_incl_startup"],
            "worker_rss_mib": w["worker_rss_mib"],
            "worker_peak_rss_mib": w["worker_peak_rss_mib"],
        }
    if name == "latency":
        keys = (  # type: ignore[assignment]
            "offered_events_per_s",
            "achieved_events_per_s",
            "matched",
            "messages",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
        )
        return {k: r.get(k) for k in keys}
    if name == "replicas":
        return {
            "one_events_per_s": r["one"]["events_per_s"],
            "two_events_per_s": r["two"]["events_per_s"],
            "speedup": r["speedup"],
        }
    return r


def _runner() -> Any:
    """uvloop when installed, as the worker's CLI does, so the bare consumer is like for like."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.worker_env = parse_env(args.worker_env)
    started = time.monotonic()
    header = {
        "command": "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": loadavg(),
        "worker_env": args.worker_env,
        "pg_fsync": not args.pg_no_fsync,
    }
    say(f"parameters: {json.dumps(header)}")
    with started_stack(args) as stack:
        results = _runner()(run_scenarios(stack, args))
    report = {**header, "seconds": round(time.monotonic() - started, 1), "results": results}
    print("\n=== results ===", flush=True)
    for name, r in results.items():
        print(f"{name:>10}: {json.dumps(summary_line(name, r))}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
