"""The hot path: consume a batch, parse, reduce in memory, one database transaction, publish.

Offsets live in PostgreSQL and move in the same transaction as the state they produced, by
compare-and-set, so a crash, a rebalance or a paused zombie can neither lose an event nor
apply one twice. The Kafka-side commit after it is only for lag tooling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition
from asyncpg.exceptions import DeadlockDetectedError, SerializationError

from worker.batch_commit import BatchCommit, commit_batch
from worker.config import Settings
from worker.events import STAGES_REACHED, ReceiptEvent, Status, StatusEvent
from worker.faults import CrashPoints
from worker.http import Health
from worker.metrics import WorkerMetrics, channel_label, error_code_label
from worker.parsing import InvalidRecord, ParsedRecord, parse_record
from worker.publisher import OutboxRelay, Publisher
from worker.reduction import ReceiptChange
from worker.retry import Backoff, is_transient
from worker.store import ConcurrentWrite, Fenced, Store

log = logging.getLogger(__name__)

# A progress line this often on long runs: enough to see a replay move, not enough to be noise.
PROGRESS_INTERVAL_S = 10.0
# Readiness reason of a failed fetch; the next successful fetch clears it.
_FETCH_FAILED = "kafka fetch: "
# Records parsed between yields to the event loop while the previous batch's transaction runs.
# Small, so each reply of the transaction's statements is handled within half a millisecond
# instead of waiting for a long stretch of parsing: the transaction is the critical path
# (250 records per chunk left the database idle between statements: 20.4-22.6k events/s
# on the mixed stream; 50: 25.2-26.8k, docs/benchmark.md).
_PARSE_CHUNK = 50


@dataclass(slots=True)
class _Item:
    record: ConsumerRecord
    result: ParsedRecord | InvalidRecord
    dead_lettered: bool = False


@dataclass(slots=True)
class _Batch:
    """Parsed records, with each partition's seek epoch as it was when they were fetched."""

    items: list[_Item]
    epochs: dict[int, int]
    parse_s: float = 0.0


@dataclass(slots=True)
class _Totals:
    records: int = 0
    events: int = 0
    dead_letters: int = 0
    last_report: float = field(default_factory=time.monotonic)
    last_records: int = 0


class DeliveryConsumer:
    """Runs the consumer loop for one worker process."""

    def __init__(
        self,
        settings: Settings,
        kafka: AIOKafkaConsumer,
        store: Store,
        publisher: Publisher,
        relay: OutboxRelay,
        metrics: WorkerMetrics,
        health: Health,
        crash_points: CrashPoints | None = None,
    ) -> None:
        self._settings = settings
        self._crash = crash_points or CrashPoints()
        self._kafka = kafka
        self._store = store
        self._publisher = publisher
        self._relay = relay
        self._metrics = metrics
        self._health = health
        # Stored next offset of each partition this worker owns, as it last read or wrote it.
        self._positions: dict[int, int] = {}
        # Bumped whenever a partition is seeked or revoked: records fetched before that are
        # not the continuation of the stored offset, so a batch fetched ahead drops them.
        self._epochs: dict[int, int] = {}
        # Held while a batch is applied, so a rebalance waits for it instead of racing it.
        self._batch_lock = asyncio.Lock()
        self._totals = _Totals()

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _OffsetsInPostgres(self)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff()
        # Pipelined: while one batch's transaction runs, the next batch is fetched and parsed,
        # so Python work overlaps the database's. Batches still commit one at a time, in order.
        in_flight: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                try:
                    fetched = await self._kafka.getmany(
                        timeout_ms=self._settings.batch_timeout_ms,
                        max_records=self._settings.batch_max_records,
                    )
                except KafkaError as exc:
                    self._health.set_ready(False, f"{_FETCH_FAILED}{type(exc).__name__}")
                    log.warning("fetch failed; will retry", extra={"error": repr(exc)})
                    await backoff.sleep()
                    continue
                backoff.reset()
                if self._health.reason.startswith(_FETCH_FAILED):
                    # Fetching works again; a quiet topic may bring no batch to say so, and
                    # /readyz still probes both dependencies while ready.
                    self._health.set_ready(True)
                self._health.progress()
                records = [r for batch in fetched.values() for r in batch]
                if records:
                    batch = await self._prepare(records)
                    if in_flight is not None:
                        await in_flight  # re-raises what stopped it
                    in_flight = asyncio.create_task(self._process(batch, stop))
                elif in_flight is not None and in_flight.done():
                    await in_flight
                    in_flight = None
                self._report_progress()
            if in_flight is not None:
                await in_flight
        finally:
            if in_flight is not None and not in_flight.done():
                # Cancelled (grace period over): cancelling the batch rolls its transaction back.
                in_flight.cancel()
                await asyncio.wait([in_flight])

    # -- one batch ---------------------------------------------------------------------------

    async def _prepare(self, records: Sequence[ConsumerRecord]) -> _Batch:
        """Parse a fetched batch (pure), yielding now and then so the batch in flight moves."""
        started = time.perf_counter()
        epochs = self._epochs
        batch = _Batch([], {r.partition: epochs.get(r.partition, 0) for r in records})
        self._metrics.records_consumed.inc(len(records))
        self._metrics.batch_size.observe(len(records))
        max_bytes = self._settings.max_record_bytes
        for start in range(0, len(records), _PARSE_CHUNK):
            if start:
                await asyncio.sleep(0)
            batch.items.extend(
                _Item(r, _parse(r, max_bytes)) for r in records[start : start + _PARSE_CHUNK]
            )
        batch.parse_s = time.perf_counter() - started
        return batch

    async def _process(self, batch: _Batch, stop: asyncio.Event) -> None:
        started = time.perf_counter() - batch.parse_s  # batch duration: parse + transaction
        items = batch.items
        backoff = Backoff()
        while True:
            try:
                async with self._batch_lock:
                    # Partitions not adopted yet (their assignment hook has not run, or could
                    # not reach Postgres) are adopted now. Adopting, a revocation or a fenced batch
                    # seeks, so records in hand fetched before it are dropped (they are
                    # fetched again from the stored offset).
                    await self._adopt_missing_partitions()
                    epochs = self._epochs
                    kept = [
                        i
                        for i in items
                        if epochs.get(i.record.partition, 0) == batch.epochs[i.record.partition]
                    ]
                    if len(kept) < len(items):
                        self._metrics.stale_records.inc(len(items) - len(kept))
                        items = kept
                    moves = await self._apply(items)
                self._health.set_ready(True)
                break
            except Fenced as exc:
                self._metrics.fenced.inc()
                log.warning("batch fenced; re-reading offsets", extra={"error": str(exc)})
                # The next batch adopts these partitions again, reading the stored offsets
                # under the batch lock with the usual retries (see _adopt_missing_partitions).
                self._forget_positions()
                return
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, ConcurrentWrite)):
                    raise
                where = _retry_reason(exc)
                self._metrics.batch_retries.labels(reason=where).inc()
                self._health.set_ready(False, f"{where}: {type(exc).__name__}")
                if stop.is_set():
                    # Nothing of this batch is committed, so the next owner simply redoes it;
                    # a batch fetched after it must not commit past it either.
                    for p in {i.record.partition for i in items}:
                        self._epochs[p] = self._epochs.get(p, 0) + 1
                    log.warning("stopping; batch abandoned uncommitted", extra={"error": repr(exc)})
                    return
                log.warning("batch failed; will retry", extra={"error": repr(exc)})
                await backoff.sleep()
        self._metrics.batch_duration.observe(time.perf_counter() - started)
        if moves:
            # Outside the batch lock: a commit can wait on a rebalance, which waits on the lock.
            self._crash.reached("before_kafka_commit")
            await self._commit_to_kafka(moves)
            self._crash.reached("after_kafka_commit")

    async def _apply(self, items: Sequence[_Item]) -> dict[int, tuple[int, int]]:
        """Apply the records this worker still owns; returns the offset moves it committed."""
        owned = [
            i
            for i in items
            if i.record.partition in self._positions
            and i.record.offset >= self._positions[i.record.partition]
        ]
        if len(owned) < len(items):
            self._metrics.stale_records.inc(len(items) - len(owned))
        if not owned:
            return {}
        moves: dict[int, tuple[int, int]] = {}
        for item in owned:
            p = item.record.partition
            moves[p] = (self._positions[p], max(moves.get(p, (0, 0))[1], item.record.offset + 1))

        events: list[ReceiptEvent] = []
        statuses: list[StatusEvent] = []
        skipped: list[str] = []
        failures: list[tuple[_Item, InvalidRecord]] = []
        for item in owned:
            if isinstance(item.result, InvalidRecord):
                failures.append((item, item.result))
            else:
                events.extend(item.result.events)
                statuses.extend(item.result.statuses)
                skipped.extend(item.result.skipped)

        # Dead letters are acknowledged before the offsets move past them, so none is lost;
        # a crash in between sends one again (the DLQ is at-least-once).
        to_send = [(item, error) for item, error in failures if not item.dead_lettered]
        if to_send:
            await self._publisher.dead_letter([(item.record, error) for item, error in to_send])
            for item, _ in to_send:
                item.dead_lettered = True

        committed = await commit_batch(
            self._store,
            group=self._settings.consumer_group,
            topic=self._settings.input_topic,
            moves=moves,
            events=events,
            statuses=statuses,
            crash=self._crash,
        )
        self._crash.reached("after_db_commit")

        for p, (_, new) in moves.items():
            self._positions[p] = new
        self._relay.wake()
        self._count(len(owned), events, skipped, [e for _, e in failures], committed)
        return moves

    def _count(
        self,
        records: int,
        events: Sequence[ReceiptEvent],
        skipped: Iterable[str],
        failures: Sequence[InvalidRecord],
        committed: BatchCommit,
    ) -> None:
        m = self._metrics
        m.events_applied.inc(len(events))
        m.summaries_changed.inc(len(committed.summaries))
        for outcome, n in (
            ("applied", committed.statuses_applied),
            ("pending", committed.statuses_pending),
            ("foreign", committed.statuses_foreign),
        ):
            if n:
                m.status_events.labels(outcome=outcome).inc(n)
        for reason in skipped:
            m.events_skipped.labels(reason=reason).inc()
        for error in failures:
            m.dead_letters.labels(reason=error.reason).inc()
        _count_transitions(m, committed.changes)
        self._totals.records += records
        self._totals.events += len(events)
        self._totals.dead_letters += len(failures)

    async def _commit_to_kafka(self, moves: Mapping[int, tuple[int, int]]) -> None:
        offsets = {
            TopicPartition(self._settings.input_topic, p): new for p, (_, new) in moves.items()
        }
        try:
            await self._kafka.commit(offsets)
        except KafkaError as exc:
            # Postgres holds the real offsets; this copy only feeds lag tools, so a failed
            # commit (typically mid-rebalance) costs nothing but a stale lag reading.
            log.info("kafka offset commit skipped", extra={"error": repr(exc)})

    # -- offsets and assignment --------------------------------------------------------------

    async def partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        try:
            async with self._batch_lock:
                await self._adopt([tp for tp in assigned if tp.partition not in self._positions])
        except Exception as exc:
            if not is_transient(exc):
                raise
            # The loop adopts these partitions before its next batch (_adopt_missing_partitions).
            log.warning("could not read stored offsets at assignment", extra={"error": repr(exc)})

    async def partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Waiting for the batch in flight keeps the next owner from redoing it needlessly.
        async with self._batch_lock:
            for tp in revoked:
                self._positions.pop(tp.partition, None)
                self._epochs[tp.partition] = self._epochs.get(tp.partition, 0) + 1

    async def _adopt(self, partitions: Iterable[TopicPartition]) -> set[int]:
        """Take ownership of partitions: read (or record) their offsets in Postgres, seek there.

        With nothing stored yet a partition starts at its beginning: the merge is idempotent,
        so replaying what an earlier deployment already applied changes nothing.
        """
        tps = [tp for tp in partitions if tp.topic == self._settings.input_topic]
        if not tps:
            return set()
        beginnings = await self._kafka.beginning_offsets(tps)
        stored = await self._store.claim_offsets(
            self._settings.consumer_group,
            self._settings.input_topic,
            {tp.partition: beginnings[tp] for tp in tps},
        )
        for tp in tps:
            self._kafka.seek(tp, stored[tp.partition])
            self._positions[tp.partition] = stored[tp.partition]
            self._epochs[tp.partition] = self._epochs.get(tp.partition, 0) + 1
        log.info("partitions adopted", extra={"offsets": {str(p): o for p, o in stored.items()}})
        return {tp.partition for tp in tps}

    async def _adopt_missing_partitions(self) -> set[int]:
        missing = [tp for tp in self._kafka.assignment() if tp.partition not in self._positions]
        return await self._adopt(missing) if missing else set()

    def _forget_positions(self) -> None:
        for p in list(self._positions):
            del self._positions[p]
            self._epochs[p] = self._epochs.get(p, 0) + 1

    # -- reporting ---------------------------------------------------------------------------

    def _report_progress(self) -> None:
        lag = 0
        for tp in self._kafka.assignment():
            high = self._kafka.highwater(tp)
            if high is not None and tp.partition in self._positions:
                lag += max(0, high - self._positions[tp.partition])
        self._metrics.consumer_lag.set(lag)
        now = time.monotonic()
        totals = self._totals
        elapsed = now - totals.last_report
        if elapsed < PROGRESS_INTERVAL_S or totals.records == totals.last_records:
            return
        log.info(
            "progress",
            extra={
                "records": totals.records,
                "events_applied": totals.events,
                "dead_letters": totals.dead_letters,
                "records_per_s": round((totals.records - totals.last_records) / elapsed, 1),
                "lag": lag,
            },
        )
        totals.last_report = now
        totals.last_records = totals.records


def _retry_reason(exc: BaseException) -> str:
    """The `reason` label of a batch retry: which dependency failed, or a lock conflict."""
    if isinstance(exc, KafkaError):
        return "kafka"
    if isinstance(exc, ConcurrentWrite | DeadlockDetectedError | SerializationError):
        return "conflict"
    return "postgres"


def _parse(record: ConsumerRecord, max_bytes: int) -> ParsedRecord | InvalidRecord:
    try:
        return parse_record(
            record.value, record.headers or (), max_bytes=max_bytes, timestamp_ms=record.timestamp
        )
    except InvalidRecord as exc:
        return exc


def _count_transitions(m: WorkerMetrics, changes: Iterable[ReceiptChange]) -> None:
    """Per-channel receipt metrics of a batch: tallied first, then one inc per label set."""
    created: Counter[str] = Counter()
    reached_by: Counter[tuple[str, str]] = Counter()
    errors: Counter[tuple[str, str]] = Counter()
    to_delivered: defaultdict[str, list[float]] = defaultdict(list)
    to_read: defaultdict[str, list[float]] = defaultdict(list)
    labels: dict[str, str] = {}
    for change in changes:
        after = change.after
        before_status = None if change.before is None else change.before.status
        channel = labels.get(after.channel)
        if channel is None:
            channel = labels[after.channel] = channel_label(after.channel)
        if change.before is None:
            created[channel] += 1
        if before_status == after.status:
            continue
        reached = STAGES_REACHED[after.status] - (
            STAGES_REACHED[before_status] if before_status is not None else frozenset()
        )
        for stage in reached:
            reached_by[(channel, stage)] += 1
        if after.status in (Status.FAILED, Status.UNDELIVERED):
            errors[(channel, error_code_label(after.error_code))] += 1
        delay_s = max(0.0, (after.date_updated - after.date_created).total_seconds())
        if after.status is Status.DELIVERED and "delivered" in reached:
            to_delivered[channel].append(delay_s)
        elif after.status is Status.READ and "read" in reached:
            to_read[channel].append(delay_s)
    for channel, n in created.items():
        m.receipts_created.labels(channel=channel).inc(n)
    for (channel, stage), n in reached_by.items():
        m.stage_reached.labels(channel=channel, stage=stage).inc(n)
    for (channel, code), n in errors.items():
        m.receipt_errors.labels(channel=channel, error_code=code).inc(n)
    for histogram, observed in ((m.time_to_delivered, to_delivered), (m.time_to_read, to_read)):
        for channel, delays in observed.items():
            child = histogram.labels(channel=channel)
            for delay_s in delays:
                child.observe(delay_s)


class _OffsetsInPostgres(ConsumerRebalanceListener):  # type: ignore[misc]
    """Rebalance hooks, delegated to the consumer that owns the positions."""

    def __init__(self, owner: DeliveryConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._owner.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._owner.partitions_assigned(assigned)
