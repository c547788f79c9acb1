"""The hot path: consume a batch, parse, reduce in memory, one database transaction, publish.

Offsets live in PostgreSQL and move in the same transaction as the state they produced, by
compare-and-set, so a crash, a rebalance or a paused zombie can neither lose an event nor
apply one twice. The Kafka-side commit after it is only for lag tooling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition
from asyncpg.exceptions import DeadlockDetectedError, SerializationError

from worker.batch_commit import commit_batch
from worker.config import Settings
from worker.events import ReceiptEvent, StatusEvent
from worker.faults import CrashPoints
from worker.http import Health
from worker.metric_tallies import count_committed, count_fetched, count_stale
from worker.metrics import WorkerMetrics
from worker.parsing import InvalidRecord, ParsedRecord, parse_record
from worker.partition_ownership import Move, PartitionOwnership
from worker.publisher import OutboxRelay, Publisher
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
    # Copied out of the record for PartitionOwnership: aiokafka's record is untyped.
    partition: int
    offset: int
    dead_lettered: bool = False


@dataclass(slots=True)
class _Batch:
    """Parsed records, with each partition's seek epoch as it was when they were fetched."""

    items: list[_Item]
    epochs: dict[int, int]
    parse_s: float = 0.0


@dataclass(slots=True)
class _Contents:
    """What the records of one transaction hold, gathered from their parse results."""

    events: list[ReceiptEvent] = field(default_factory=list)
    statuses: list[StatusEvent] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[_Item, InvalidRecord]] = field(default_factory=list)

    @classmethod
    def of(cls, items: Iterable[_Item]) -> _Contents:
        contents = cls()
        for item in items:
            if isinstance(item.result, InvalidRecord):
                contents.failures.append((item, item.result))
            else:
                contents.events.extend(item.result.events)
                contents.statuses.extend(item.result.statuses)
                contents.skipped.extend(item.result.skipped)
        return contents


@dataclass(slots=True)
class _Totals:
    """Running totals for the progress log line."""

    records: int = 0
    events: int = 0
    dead_letters: int = 0
    last_report: float = field(default_factory=time.monotonic)
    last_records: int = 0

    def add(self, records: int, events: int, dead_letters: int) -> None:
        self.records += records
        self.events += events
        self.dead_letters += dead_letters


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
        self._owned = PartitionOwnership()
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
                records = await self._fetch(backoff)
                if records is None:
                    continue
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

    async def _fetch(self, backoff: Backoff) -> list[ConsumerRecord] | None:
        """The next records (perhaps none), or None once a failed fetch has been waited out."""
        try:
            fetched = await self._kafka.getmany(
                timeout_ms=self._settings.batch_timeout_ms,
                max_records=self._settings.batch_max_records,
            )
        except KafkaError as exc:
            self._health.set_ready(False, f"{_FETCH_FAILED}{type(exc).__name__}")
            log.warning("fetch failed; will retry", extra={"error": repr(exc)})
            await backoff.sleep()
            return None
        backoff.reset()
        if self._health.reason.startswith(_FETCH_FAILED):
            # Fetching works again; a quiet topic may bring no batch to say so, and
            # /readyz still probes both dependencies while ready.
            self._health.set_ready(True)
        self._health.progress()
        return [r for batch in fetched.values() for r in batch]

    async def _prepare(self, records: Sequence[ConsumerRecord]) -> _Batch:
        """Parse a fetched batch (pure), yielding now and then so the batch in flight moves."""
        started = time.perf_counter()
        batch = _Batch([], self._owned.epochs(records))
        count_fetched(self._metrics, len(records))
        max_bytes = self._settings.max_record_bytes
        for start in range(0, len(records), _PARSE_CHUNK):
            if start:
                await asyncio.sleep(0)
            batch.items.extend(
                _Item(r, _parse(r, max_bytes), r.partition, r.offset)
                for r in records[start : start + _PARSE_CHUNK]
            )
        batch.parse_s = time.perf_counter() - started
        return batch

    async def _process(self, batch: _Batch, stop: asyncio.Event) -> None:
        started = time.perf_counter() - batch.parse_s  # batch duration: parse + transaction
        moves = await self._apply_with_retries(batch, stop)
        if moves is None:
            return
        self._metrics.batch_duration.observe(time.perf_counter() - started)
        if moves:
            # Outside the batch lock: a commit can wait on a rebalance, which waits on the lock.
            self._crash.reached("before_kafka_commit")
            await self._commit_to_kafka(moves)
            self._crash.reached("after_kafka_commit")

    async def _apply_with_retries(
        self, batch: _Batch, stop: asyncio.Event
    ) -> dict[int, Move] | None:
        """The offset moves the batch committed, or None if it was fenced or given up on stop."""
        items = batch.items
        backoff = Backoff()
        while True:
            try:
                async with self._batch_lock:
                    # Partitions not adopted yet (their assignment hook has not run, or could
                    # not reach Postgres) are adopted now. Adopting, a revocation or a fenced batch
                    # seeks, so records in hand fetched before it are dropped (they are
                    # fetched again from the stored offset).
                    await self._adopt(self._kafka.assignment())
                    # Dropped records stay dropped, so a retry does not count them again:
                    # a partition given up and owned again has a new epoch, and a stored
                    # position only moves forward while the partition is owned.
                    kept = self._owned.unapplied(self._owned.current(items, batch.epochs))
                    count_stale(self._metrics, len(items) - len(kept))
                    items = kept
                    moves = await self._apply(items)
                self._health.set_ready(True)
                return moves
            except Fenced as exc:
                self._metrics.fenced.inc()
                log.warning("batch fenced; re-reading offsets", extra={"error": str(exc)})
                # The next batch adopts these partitions again, reading the stored offsets
                # under the batch lock with the usual retries.
                self._owned.release_all()
                return None
            except Exception as exc:
                if not (is_transient(exc) or isinstance(exc, ConcurrentWrite)):
                    raise
                where = _retry_reason(exc)
                self._metrics.batch_retries.labels(reason=where).inc()
                self._health.set_ready(False, f"{where}: {type(exc).__name__}")
                if stop.is_set():
                    # Nothing of this batch is committed, so the next owner simply redoes it;
                    # a batch fetched after it must not commit past it either.
                    self._owned.invalidate({i.partition for i in items})
                    log.warning("stopping; batch abandoned uncommitted", extra={"error": repr(exc)})
                    return None
                log.warning("batch failed; will retry", extra={"error": repr(exc)})
                await backoff.sleep()

    async def _apply(self, items: Sequence[_Item]) -> dict[int, Move]:
        """Apply records this worker owns and has not applied; returns the offset moves."""
        if not items:
            return {}
        moves = self._owned.moves(items)
        contents = _Contents.of(items)
        await self._dead_letter(contents.failures)
        committed = await commit_batch(
            self._store,
            group=self._settings.consumer_group,
            topic=self._settings.input_topic,
            moves=moves,
            events=contents.events,
            statuses=contents.statuses,
            crash=self._crash,
        )
        self._crash.reached("after_db_commit")

        self._owned.advance(moves)
        self._relay.wake()
        count_committed(
            self._metrics,
            committed,
            events=len(contents.events),
            skipped=contents.skipped,
            dead_letters=[error.reason for _, error in contents.failures],
        )
        self._totals.add(len(items), len(contents.events), len(contents.failures))
        return moves

    async def _dead_letter(self, failures: Sequence[tuple[_Item, InvalidRecord]]) -> None:
        # Dead letters are acknowledged before the offsets move past them, so none is lost;
        # a crash in between sends one again (the DLQ is at-least-once). A retried batch
        # does not send its dead letters twice.
        to_send = [(item, error) for item, error in failures if not item.dead_lettered]
        if to_send:
            await self._publisher.dead_letter([(item.record, error) for item, error in to_send])
            for item, _ in to_send:
                item.dead_lettered = True

    async def _commit_to_kafka(self, moves: Mapping[int, Move]) -> None:
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
                await self._adopt(assigned)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # The loop adopts these partitions before its next batch (_apply_with_retries).
            log.warning("could not read stored offsets at assignment", extra={"error": repr(exc)})

    async def partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Waiting for the batch in flight keeps the next owner from redoing it needlessly.
        async with self._batch_lock:
            self._owned.release(tp.partition for tp in revoked)

    async def _adopt(self, partitions: Iterable[TopicPartition]) -> None:
        """Own the input partitions not owned yet: read (or record) their offsets in Postgres,
        seek there.

        With nothing stored yet a partition starts at its beginning: the merge is idempotent,
        so replaying what an earlier deployment already applied changes nothing.
        """
        tps = [
            tp
            for tp in partitions
            if tp.topic == self._settings.input_topic and not self._owned.owns(tp.partition)
        ]
        if not tps:
            return
        beginnings = await self._kafka.beginning_offsets(tps)
        stored = await self._store.claim_offsets(
            self._settings.consumer_group,
            self._settings.input_topic,
            {tp.partition: beginnings[tp] for tp in tps},
        )
        for tp in tps:
            self._kafka.seek(tp, stored[tp.partition])
            self._owned.adopt(tp.partition, stored[tp.partition])
        log.info("partitions adopted", extra={"offsets": {str(p): o for p, o in stored.items()}})

    # -- reporting ---------------------------------------------------------------------------

    def _report_progress(self) -> None:
        kafka = self._kafka
        lag = self._owned.lag((tp.partition, kafka.highwater(tp)) for tp in kafka.assignment())
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


class _OffsetsInPostgres(ConsumerRebalanceListener):  # type: ignore[misc]
    """Rebalance hooks, delegated to the consumer that owns the positions."""

    def __init__(self, owner: DeliveryConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._owner.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._owner.partitions_assigned(assigned)
