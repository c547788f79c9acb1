"""Real worker subprocesses for the fault tests, and the exact checks of their end state.

`Fleet` starts `delivery-receipts-worker run` processes (the console script of this venv),
signals them by pid (SIGKILL, SIGTERM, SIGSTOP/SIGCONT) and kills whatever is still running
when the test ends, pass or fail. The checks compare what the workers left in PostgreSQL and
on the topics with the reference reduction of the input (`worker.reduction.coalesce`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from devstack._util import free_port
from tests.integration.support import (
    end_offsets,
    read_topic,
    stored_offsets,
    wait_caught_up,
    wait_for,
    wait_outbox_empty,
)
from worker.config import Settings
from worker.events import ReceiptEvent, Status
from worker.loadgen import Record, disorder, encode_mixed, generate_events
from worker.parsing import InvalidRecord, parse_record
from worker.reduction import coalesce, delivery_object, distinct_history, recount
from worker.store import receipt_from_row
from worker.summaries import EVENT_TYPE

WORKER_BIN = Path(sys.executable).parent / "delivery-receipts-worker"

# Test tuning: a short session timeout so a killed or paused replica loses its partitions in
# seconds (the session broker allows it, see tests/conftest.py), and small batches so there
# are many commit points to crash between.
DEFAULT_WORKER_ENV = {
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "BATCH_MAX_RECORDS": "500",
    "SHUTDOWN_GRACE_S": "10",
    "LOG_LEVEL": "INFO",
}
SESSION_TIMEOUT_S = 3.0

_SETTING_VARS = (
    "kafka_bootstrap_servers",
    "database_url",
    "input_topic",
    "summary_topic",
    "dlq_topic",
    "consumer_group",
    "http_host",
)


def env_int(name: str, default: int) -> int:
    """A size knob of the tests: CI defaults here, `scripts/soak.sh` sets the full sizes."""
    return int(os.environ.get(name, default))


def seed_for(base: int) -> int:
    """A test's stream seed; RELIABILITY_SEED shifts every test's (the soak varies it)."""
    return base + env_int("RELIABILITY_SEED", 0)


# -- processes -----------------------------------------------------------------------------


class Replica:
    """One `delivery-receipts-worker run` process."""

    def __init__(self, name: str, env: Mapping[str, str], log_path: Path, port: int) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self.started_at = time.monotonic()
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(WORKER_BIN), "run"],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def send(self, sig: signal.Signals) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def kill(self) -> int:
        """SIGKILL and reap; returns the exit status (-9)."""
        self.send(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def pause(self) -> None:
        self.send(signal.SIGSTOP)

    def resume(self) -> None:
        self.send(signal.SIGCONT)

    async def wait_exit(self, timeout_s: float) -> int:
        try:
            return await asyncio.to_thread(self.proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout_s}s\n{self.log_tail()}"
            ) from None

    async def http(self, path: str) -> tuple[int, str] | None:
        """(status, body) of GET path on the worker's HTTP port, or None if it does not answer."""
        try:
            timeout = aiohttp.ClientTimeout(total=3)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"http://127.0.0.1:{self.port}{path}") as response,
            ):
                return response.status, await response.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def metrics(self) -> Metrics:
        answer = await self.http("/metrics")
        if answer is None or answer[0] != 200:
            return Metrics({})
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(answer[1]):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return Metrics(samples)

    async def wait_serving(self, timeout_s: float = 60) -> None:
        async def serving() -> bool:
            if not self.alive:
                raise AssertionError(f"{self.name} exited ({self.returncode})\n{self.log_tail()}")
            return await self.http("/healthz") is not None

        await wait_for(serving, timeout_s=timeout_s, what=f"{self.name} to serve HTTP")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return f"--- {self.name} log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Metrics:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str) -> float:
        """Sum over every label combination."""
        return sum(v for (n, _), v in self.samples.items() if n == name)


class Fleet:
    """Starts worker processes and guarantees none outlives the test."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.replicas: list[Replica] = []
        self._count = 0

    def start(self, settings: Settings, **env: str) -> Replica:
        self._count += 1
        name = f"worker-{self._count}"
        port = free_port()
        clean = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("WORKER_CRASH_")
            and k not in {f.upper() for f in _SETTING_VARS}
            and k not in DEFAULT_WORKER_ENV
        }
        full = {
            **clean,
            **{f.upper(): str(getattr(settings, f)) for f in _SETTING_VARS},
            **DEFAULT_WORKER_ENV,
            "HTTP_PORT": str(port),
            **env,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        replica = Replica(name, full, self.directory / f"{name}.log", port)
        self.replicas.append(replica)
        return replica

    @property
    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def logs(self, lines: int = 15) -> str:
        return "\n".join(r.log_tail(lines) for r in self.replicas)

    def stop_all(self) -> None:
        for r in self.replicas:
            if r.alive:
                r.resume()  # a stopped process cannot act on SIGTERM; SIGKILL works anyway
                r.kill()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


# -- input ---------------------------------------------------------------------------------

POISON_VALUES = (
    (b'{"EventType": "onDeliveryUpdated", "MessageSid": ', "malformed"),
    (b"\xff\xfe\x00garbage", "not_utf8"),
    (b"EventType=onDeliveryUpdated&MessageSid=IMnothex", "missing_field"),
)


@dataclass
class Stream:
    """A synthetic input: the events it carries and the records that carry them."""

    events: list[ReceiptEvent]  # every event delivered, duplicates included, in stream order
    records: list[Record]
    poison_keys: set[bytes] = field(default_factory=set)

    def chunks(self, n: int) -> list[list[Record]]:
        size = math.ceil(len(self.records) / n)
        return [self.records[i : i + size] for i in range(0, len(self.records), size)]


def make_stream(
    min_events: int,
    *,
    seed: int,
    poison: int = 3,
    keying: str = "message",
    array_rate: float = 0.0,
    hot_messages: int = 0,
) -> Stream:
    """At least `min_events` events (10% duplicated, disordered) in every input form.

    `keying` is how records are keyed (worker.loadgen.KEYINGS), `array_rate` the share of
    events sent in CloudEvents arrays spanning messages, and `hot_messages` the number of
    group messages with 50 participants each.
    """
    messages = max(1, min_events // 6)
    while True:
        generated = generate_events(messages, seed=seed, hot_messages=hot_messages)
        events = disorder(list(generated), seed=seed, duplicate_rate=0.1)
        if len(events) >= min_events:
            break
        messages = int(messages * 1.2) + 1
    records = encode_mixed(events, seed=seed, keying=keying, array_rate=array_rate)
    rng = random.Random(seed)
    keys = set()
    for n in range(poison):
        value, _ = POISON_VALUES[n % len(POISON_VALUES)]
        key = b"poison-%d-%d" % (seed, n)
        keys.add(key)
        records.insert(rng.randrange(len(records)), Record(key, value, []))
    return Stream(events, records, keys)


# -- checks --------------------------------------------------------------------------------


async def _fetch(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


def _assert_same(actual: Mapping[Any, Any], expected: Mapping[Any, Any], what: str) -> None:
    """Dict equality with a short, readable report instead of a huge diff."""
    if actual == expected:
        return
    missing = expected.keys() - actual.keys()
    extra = actual.keys() - expected.keys()
    differ = [k for k in expected.keys() & actual.keys() if expected[k] != actual[k]]
    examples = [(k, actual[k], expected[k]) for k in differ[:3]]
    raise AssertionError(
        f"{what}: {len(missing)} missing, {len(extra)} unexpected, {len(differ)} different "
        f"(of {len(expected)} expected); e.g. missing {list(missing)[:2]}, "
        f"unexpected {list(extra)[:2]}, different (actual, expected) {examples}"
    )


async def assert_state_is_reduction_of(dsn: str, events: Sequence[ReceiptEvent]) -> int:
    """Receipts, summaries and history in PostgreSQL are exactly those of `events`.

    The summary counts are maintained by deltas, so an event applied twice (or a change
    lost) would show as a count that differs from a recount of the receipt statuses.
    Returns the number of receipts.
    """
    expected = coalesce(events)
    rows = await _fetch(dsn, "SELECT * FROM delivery_receipts")
    _assert_same(
        {(r["message_sid"], r["participant_sid"]): receipt_from_row(r) for r in rows},
        expected,
        "receipts vs the reference reduction",
    )
    statuses: dict[str, list[Status]] = defaultdict(list)
    for state in expected.values():
        statuses[state.message_sid].append(state.status)
    want = {}
    for message, sts in statuses.items():
        c = recount(sts)
        words = delivery_object(c)
        want[message] = (
            (c.total, c.sent, c.delivered, c.read, c.failed, c.undelivered),
            tuple(words[k] for k in ("sent", "delivered", "read", "failed", "undelivered")),
        )
    got = {
        r["message_sid"]: (
            (
                r["total"],
                r["sent_count"],
                r["delivered_count"],
                r["read_count"],
                r["failed_count"],
                r["undelivered_count"],
            ),
            (r["sent"], r["delivered"], r["read"], r["failed"], r["undelivered"]),
        )
        for r in await _fetch(dsn, "SELECT * FROM message_delivery")
    }
    _assert_same(got, want, "message summaries vs a recount")
    [history] = await _fetch(dsn, "SELECT count(*) AS n FROM delivery_receipt_history")
    assert history["n"] == len(distinct_history(events)), (
        f"history rows {history['n']} vs {len(distinct_history(events))} distinct events"
    )
    return len(expected)


async def assert_summary_topic_complete(settings: Settings) -> tuple[int, int]:
    """Every committed summary version reached the summary topic; the latest equals the DB.

    Versions of a message go up by one per committed change (one outbox row each), so the
    versions on the topic must be exactly 1..version for every message; a version published
    twice (at least once) must carry the same bytes. The topic must be safe to compact: the
    last record of every key is its latest version. Returns (events on topic, duplicates).
    """
    published = await read_topic(settings.kafka_bootstrap_servers, settings.summary_topic)
    published.sort(key=lambda r: (r.partition, r.offset))
    seen: dict[str, dict[int, bytes]] = defaultdict(dict)
    last_version: dict[str, int] = {}
    duplicates = 0
    for rec in published:
        body = orjson.loads(rec.value or b"")
        message, version = body["message_sid"], body["version"]
        assert body["type"] == EVENT_TYPE and rec.key == message.encode()
        if version in seen[message]:
            duplicates += 1
            assert seen[message][version] == rec.value, f"{message} v{version} differs"
        seen[message][version] = rec.value or b""
        last_version[message] = version
    rows = {
        r["message_sid"]: r
        for r in await _fetch(settings.database_url, "SELECT * FROM message_delivery")
    }
    assert seen.keys() == rows.keys(), "messages on the summary topic vs in PostgreSQL"
    behind = {
        m: (v, rows[m]["version"]) for m, v in last_version.items() if v != rows[m]["version"]
    }
    assert not behind, (
        f"{len(behind)} keys whose last record is not the latest version (last, latest), "
        f"e.g. {list(behind.items())[:3]}: compaction would keep an old summary"
    )
    for message, row in rows.items():
        versions = seen[message]
        assert set(versions) == set(range(1, row["version"] + 1)), (
            f"{message}: versions on topic {sorted(versions)} vs committed 1..{row['version']}"
        )
        latest = orjson.loads(versions[row["version"]])
        assert latest["counts"] == {
            "total": row["total"],
            "sent": row["sent_count"],
            "delivered": row["delivered_count"],
            "read": row["read_count"],
            "failed": row["failed_count"],
            "undelivered": row["undelivered_count"],
        }
        assert latest["delivery"] == {
            "total": row["total"],
            **{k: row[k] for k in ("sent", "delivered", "read", "failed", "undelivered")},
        }
    return len(published), duplicates


async def assert_dead_letters(settings: Settings, poison_keys: Iterable[bytes]) -> int:
    """Each poison record reached the DLQ (at least once) and nothing else did."""
    dead = await read_topic(settings.kafka_bootstrap_servers, settings.dlq_topic)
    keys = [d.key for d in dead]
    assert set(keys) == set(poison_keys), f"DLQ keys {sorted(set(keys), key=str)}"
    return len(dead)


async def assert_offsets_at_end(settings: Settings) -> dict[int, int]:
    ends = await end_offsets(settings.kafka_bootstrap_servers, settings.input_topic)
    stored = await stored_offsets(
        settings.database_url, settings.consumer_group, settings.input_topic
    )
    assert stored == ends, f"stored offsets {stored} vs end offsets {ends}"
    return ends


async def outbox_rows(dsn: str) -> int:
    [row] = await _fetch(dsn, "SELECT count(*) AS n FROM summary_outbox")
    return int(row["n"])


async def verify_final(
    settings: Settings, stream: Stream, *, timeout_s: float = 180
) -> dict[str, int]:
    """Wait for the workers to finish the stream, then check the end state exactly."""
    await wait_caught_up(settings, timeout_s=timeout_s)
    await wait_outbox_empty(settings.database_url, timeout_s=timeout_s)
    ends = await assert_offsets_at_end(settings)
    receipts = await assert_state_is_reduction_of(settings.database_url, stream.events)
    on_topic, duplicates = await assert_summary_topic_complete(settings)
    dead = await assert_dead_letters(settings, stream.poison_keys)
    assert await outbox_rows(settings.database_url) == 0
    return {
        "records": sum(ends.values()),
        "events": len(stream.events),
        "receipts": receipts,
        "summary_events": on_topic,
        "summary_duplicates": duplicates,
        "dead_letters": dead,
    }


async def assert_state_matches_stored_offsets(settings: Settings) -> int:
    """PostgreSQL holds exactly the effect of the input records below its stored offsets.

    This is the atomicity of a batch: after a crash at any instant, state and offsets were
    committed together or not at all. Returns how many input records that prefix holds.
    """
    stored = await stored_offsets(
        settings.database_url, settings.consumer_group, settings.input_topic
    )
    records = await read_topic(settings.kafka_bootstrap_servers, settings.input_topic)
    events: list[ReceiptEvent] = []
    prefix = 0
    for rec in records:
        if rec.offset >= stored.get(rec.partition, 0):
            continue
        prefix += 1
        try:
            events.extend(parse_record(rec.value, rec.raw_headers, max_bytes=65536).events)
        except InvalidRecord:
            continue
    await assert_state_is_reduction_of(settings.database_url, events)
    return prefix


async def lag(settings: Settings) -> int:
    ends = await end_offsets(settings.kafka_bootstrap_servers, settings.input_topic)
    stored = await stored_offsets(
        settings.database_url, settings.consumer_group, settings.input_topic
    )
    return sum(max(0, end - stored.get(p, 0)) for p, end in ends.items())


class BackgroundSampler:
    """Runs `_run` as a task for the duration of an `async with` block."""

    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class OffsetWatch(BackgroundSampler):
    """Samples the stored offsets in the background: a stale writer would move one backwards.

    Offsets move by compare-and-set, so every partition's stored offset must only ever go up,
    whatever is killed, paused or rebalanced. `regressions` lists any that did not.
    """

    def __init__(self, settings: Settings, interval_s: float = 0.1) -> None:
        self._settings = settings
        self._interval_s = interval_s
        self.samples = 0
        self.regressions: list[tuple[int, int, int]] = []  # (partition, before, after)
        self._conn: asyncpg.Connection | None = None

    async def _run(self) -> None:
        last: dict[int, int] = {}
        try:
            while True:
                rows = await self._read()
                for p, offset in rows:
                    if offset < last.get(p, 0):
                        self.regressions.append((p, last[p], offset))
                    last[p] = max(offset, last.get(p, 0))
                self.samples += bool(rows)
                await asyncio.sleep(self._interval_s)
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()

    async def _read(self) -> list[tuple[int, int]]:
        s = self._settings
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(s.database_url)
            rows = await self._conn.fetch(
                "SELECT partition, next_offset FROM consumer_offsets"
                " WHERE consumer_group = $1 AND topic = $2",
                s.consumer_group,
                s.input_topic,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._conn = None  # PostgreSQL is away on purpose in some tests
            return []
        return [(r["partition"], r["next_offset"]) for r in rows]


class Feeder:
    """Produces records in the background as a steady load: `piece` records every `interval_s`.

    With `cycle`, it starts over when it reaches the end, so the load lasts as long as the
    test needs, however fast the workers are; repeated records change nothing in the reference
    reduction (it is idempotent). `next_piece()` returns just after a piece went out, so a fault
    injected then lands while the workers have fresh records. `finish()` produces whatever was
    never sent and stops; leaving the block early (a failing test) cancels it.
    """

    def __init__(
        self,
        settings: Settings,
        records: Sequence[Record],
        *,
        piece: int = 300,
        interval_s: float = 0.2,
        cycle: bool = True,
    ) -> None:
        self._settings = settings
        self._records = records
        self._piece = piece
        self._interval_s = interval_s
        self._cycle = cycle
        self._hurry = asyncio.Event()
        self._piece_out = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self.sent = 0  # records sent at least once (a prefix of `records`)
        self.produced = 0  # records sent, repeats included

    async def _send(self, records: Sequence[Record]) -> None:
        assert self._producer is not None
        topic = self._settings.input_topic
        acks = [
            await self._producer.send(
                topic, r.value, key=r.key, headers=r.headers, timestamp_ms=r.timestamp_ms
            )
            for r in records
        ]
        await asyncio.gather(*acks)
        self.produced += len(records)

    async def _run(self) -> None:
        records, n = self._records, len(self._records)
        position = 0
        while not self._hurry.is_set() and (self._cycle or position < n):
            start = position % n
            piece = records[start : start + self._piece]
            await self._send(piece)
            position += len(piece)
            self.sent = max(self.sent, min(n, position))
            self._piece_out.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), self._interval_s)
        if self.sent < n:
            await self._send(records[self.sent :])
            self.sent = n

    async def next_piece(self) -> None:
        assert self._task is not None
        self._piece_out.clear()
        waiter = asyncio.ensure_future(self._piece_out.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        assert waiter in done, "the feeder ran out before the fault: raise the stream size"

    async def finish(self) -> None:
        assert self._task is not None
        self._hurry.set()
        await self._task

    async def __aenter__(self) -> Feeder:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            linger_ms=5,
            max_request_size=4 * 1024 * 1024,
        )
        await self._producer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None and self._producer is not None
        if not self._task.done():
            self._task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            await self._producer.stop()
