"""`dlq list` and `dlq replay`: count dead letters by reason, and put them back on the input."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from worker.config import Settings
from worker.kafka import admin_client, create_producer, topic_partitions, topic_reader
from worker.publisher import (
    APPENDED_HEADERS,
    H_FAILED_AT,
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_TOPIC,
)
from worker.text_table import Cell, render_table

Header = tuple[str, bytes]
# Topic, partition and offset of the record that failed, from the dlq.source.* headers.
Source = tuple[str, int, int]

# The reason shown for a record on the DLQ that does not end with the worker's dlq.* block
# (put there by hand, or by another program); such records are never replayed.
UNRECOGNISED = "(unrecognised)"

# A partition that yields nothing for this long before its captured end offset is stuck.
_STALL_S = 30.0
# Replayed records in flight before waiting for the broker's acknowledgements.
_SEND_WINDOW = 1000


class DlqReadError(RuntimeError):
    """The DLQ could not be read up to the end offsets captured at start."""


def split_headers(headers: Sequence[Header]) -> tuple[list[Header], list[Header]] | None:
    """The original record's headers and the worker's dlq.* block, or None without the block.

    Only a trailing block named exactly like the worker's, in its order, is taken off; any
    other header, even one named dlq.something, belonged to the original record and stays.
    """
    n = len(APPENDED_HEADERS)
    if len(headers) < n or tuple(name for name, _ in headers[-n:]) != APPENDED_HEADERS:
        return None
    return list(headers[:-n]), list(headers[-n:])


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the DLQ, with what the worker's headers say about it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    original_headers: tuple[Header, ...] | None  # None: not a dead letter of this worker
    reason: str
    failed_at: datetime
    source: Source | None = None  # None: not a dead letter of this worker, or unreadable

    @classmethod
    def from_record(
        cls,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[Header],
        timestamp_ms: int,
    ) -> DeadLetter:
        split = split_headers(headers)
        appended = dict(split[1]) if split is not None else {}
        reason = appended[H_REASON].decode("utf-8", "replace") if split else UNRECOGNISED
        return cls(
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            original_headers=tuple(split[0]) if split is not None else None,
            reason=reason,
            failed_at=_failed_at(appended.get(H_FAILED_AT), timestamp_ms),
            source=_source(appended),
        )


def _source(appended: dict[str, bytes]) -> Source | None:
    try:
        return (
            appended[H_TOPIC].decode(),
            int(appended[H_PARTITION]),
            int(appended[H_OFFSET]),
        )
    except (KeyError, UnicodeDecodeError, ValueError):
        return None


def _failed_at(header: bytes | None, timestamp_ms: int) -> datetime:
    """The time in dlq.failed.at; the DLQ record's own timestamp if that is missing or bad."""
    if header is not None:
        try:
            parsed = datetime.fromisoformat(header.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command takes: any of `reasons` (all if empty), failed since `since`."""

    reasons: frozenset[str] = frozenset()
    since: datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        return self.since is None or letter.failed_at >= self.since


@dataclass(slots=True)
class ReasonTally:
    reason: str
    count: int  # records on the DLQ
    distinct: int  # source records among them (see Tally)
    first_failed_at: datetime
    last_failed_at: datetime


@dataclass(slots=True)
class Tally:
    """Dead letters counted by reason, with the first and last failure time of each.

    One source record can be on the DLQ more than once: the DLQ is at-least-once (a crash
    between the dead letter and the offset commit sends it again), and an offsets reset
    makes the worker read it, and dead-letter it, again. `distinct` counts them once.
    """

    by_reason: dict[str, ReasonTally] = field(default_factory=dict)
    _sources: set[tuple[str, Source]] = field(default_factory=set)

    def add(self, letter: DeadLetter) -> None:
        new_source = letter.source is None or (letter.reason, letter.source) not in self._sources
        if letter.source is not None:
            self._sources.add((letter.reason, letter.source))
        seen = self.by_reason.get(letter.reason)
        if seen is None:
            self.by_reason[letter.reason] = ReasonTally(
                letter.reason, 1, 1, letter.failed_at, letter.failed_at
            )
            return
        seen.count += 1
        seen.distinct += new_source
        seen.first_failed_at = min(seen.first_failed_at, letter.failed_at)
        seen.last_failed_at = max(seen.last_failed_at, letter.failed_at)

    @property
    def total(self) -> int:
        return sum(t.count for t in self.by_reason.values())

    @property
    def total_distinct(self) -> int:
        return sum(t.distinct for t in self.by_reason.values())

    def rows(self) -> list[ReasonTally]:
        return sorted(self.by_reason.values(), key=lambda t: (-t.count, t.reason))


@dataclass(slots=True)
class ReplayPicker:
    """Which dead letters go back, one at a time: those matching the selection, written by
    this worker (so their original headers are known), each source record once, at most
    `limit` of them."""

    selection: Selection
    limit: int | None = None
    picked: Counter[str] = field(default_factory=Counter)
    unrecognised: int = 0  # matching, but without the worker's dlq.* block
    duplicates: int = 0  # matching, but their source record was picked already
    _sources: set[Source] = field(default_factory=set)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.picked.total() >= self.limit

    def take(self, letter: DeadLetter) -> bool:
        if self.full or not self.selection.matches(letter):
            return False
        if letter.original_headers is None:
            self.unrecognised += 1
            return False
        if letter.source is not None:
            # A bad record replayed twice would come back to the DLQ twice.
            if letter.source in self._sources:
                self.duplicates += 1
                return False
            self._sources.add(letter.source)
        self.picked[letter.reason] += 1
        return True


@dataclass(frozen=True, slots=True)
class DlqListing:
    topic: str
    end_offsets: dict[int, int]
    tally: Tally

    def to_json(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "end_offsets": {str(p): o for p, o in sorted(self.end_offsets.items())},
            "total": self.tally.total,
            "total_distinct": self.tally.total_distinct,
            "reasons": [
                {
                    "reason": t.reason,
                    "count": t.count,
                    "distinct": t.distinct,
                    "first_failed_at": t.first_failed_at.isoformat(),
                    "last_failed_at": t.last_failed_at.isoformat(),
                }
                for t in self.tally.rows()
            ],
        }


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    source: str
    target: str
    end_offsets: dict[int, int]
    dry_run: bool
    replayed: dict[str, int]
    unrecognised: int
    duplicates: int


def _ends_text(ends: dict[int, int]) -> str:
    return ", ".join(f"{p}:{o}" for p, o in sorted(ends.items())) or "none"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def render_listing(listing: DlqListing) -> str:
    rows: list[list[Cell]] = [
        [
            t.reason,
            t.count,
            t.distinct,
            t.first_failed_at.isoformat(timespec="milliseconds"),
            t.last_failed_at.isoformat(timespec="milliseconds"),
        ]
        for t in listing.tally.rows()
    ]
    headers = ["REASON", "COUNT", "DISTINCT", "FIRST FAILED AT", "LAST FAILED AT"]
    return "\n".join(
        [
            f"dead letters on {listing.topic} up to end offsets {_ends_text(listing.end_offsets)}",
            render_table(headers, rows),
            f"total {listing.tally.total} ({listing.tally.total_distinct} distinct source records)",
        ]
    )


def render_replay(outcome: ReplayOutcome) -> str:
    letters = _count(sum(outcome.replayed.values()), "dead letter")
    if outcome.dry_run:
        head = f"dry run, nothing sent: would replay {letters}"
    else:
        head = f"replayed {letters} (acknowledged by the broker)"
    lines = [
        f"{head} from {outcome.source} to {outcome.target}"
        f" (read up to end offsets {_ends_text(outcome.end_offsets)})",
        render_table(["REASON", "COUNT"], sorted(outcome.replayed.items())),
    ]
    if outcome.duplicates:
        lines.append(
            f"skipped {_count(outcome.duplicates, 'duplicate')}"
            " (a source record dead-lettered more than once goes back once)"
        )
    if outcome.unrecognised:
        lines.append(
            f"skipped {_count(outcome.unrecognised, 'record')} without the worker's dlq.* headers"
            " (their original headers cannot be told apart)"
        )
    return "\n".join(lines)


# -- I/O -----------------------------------------------------------------------------------------


class DeadLetterScan:
    """The DLQ up to the end offsets captured when the scan opened, partition by partition.

    Bounded so that a command ends even while the worker keeps adding to the DLQ (a replayed
    record that is still bad comes back to it, after those offsets).
    """

    def __init__(
        self, topic: str, reader: AIOKafkaConsumer, starts: dict[int, int], ends: dict[int, int]
    ) -> None:
        self.topic = topic
        self.end_offsets = ends
        self._reader = reader
        self._starts = starts

    async def letters(self) -> AsyncGenerator[DeadLetter, None]:
        # One partition after another, each in offset order, so --limit takes a stable set.
        for partition, end in sorted(self.end_offsets.items()):
            if self._starts[partition] >= end:
                continue
            tp = TopicPartition(self.topic, partition)
            self._reader.assign([tp])
            self._reader.seek(tp, self._starts[partition])
            async with aclosing(_read_to(self._reader, tp, end)) as records:
                async for record in records:
                    yield DeadLetter.from_record(
                        record.partition,
                        record.offset,
                        record.key,
                        record.value,
                        list(record.headers or ()),
                        record.timestamp,
                    )


async def _read_to(
    reader: AIOKafkaConsumer, tp: TopicPartition, end: int
) -> AsyncGenerator[ConsumerRecord, None]:
    last_progress = time.monotonic()
    while await reader.position(tp) < end:
        batch = await reader.getmany(tp, timeout_ms=1000, max_records=500)
        records = batch.get(tp, [])
        if records:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > _STALL_S:
            raise DlqReadError(
                f"could not read {tp.topic} partition {tp.partition} up to offset {end}"
                f" (stuck at {await reader.position(tp)} for {_STALL_S:.0f} s)"
            )
        for record in records:
            # Records appended after the scan opened are not part of it.
            if record.offset < end:
                yield record


@asynccontextmanager
async def open_dead_letters(settings: Settings) -> AsyncIterator[DeadLetterScan]:
    async with admin_client(settings) as admin:
        partitions = await topic_partitions(admin, settings.dlq_topic)
    async with topic_reader(settings, partitions) as reader:
        starts = await reader.beginning_offsets(partitions)
        ends = await reader.end_offsets(partitions)
        yield DeadLetterScan(
            settings.dlq_topic,
            reader,
            {tp.partition: int(starts[tp]) for tp in partitions},
            {tp.partition: int(ends[tp]) for tp in partitions},
        )


async def list_dead_letters(settings: Settings, selection: Selection) -> DlqListing:
    tally = Tally()
    async with open_dead_letters(settings) as scan:
        async with aclosing(scan.letters()) as letters:
            async for letter in letters:
                if selection.matches(letter):
                    tally.add(letter)
        return DlqListing(scan.topic, scan.end_offsets, tally)


async def replay_dead_letters(
    settings: Settings, selection: Selection, *, limit: int | None = None, dry_run: bool = False
) -> ReplayOutcome:
    """Produce the dead letters the picker takes to the input topic as they first arrived
    (key, value, original headers), and wait until the broker acknowledged every one.

    Their partition is the producer's choice by key, as it was for the original record;
    nothing in the result depends on partitions. A dry run reads and counts, sending nothing.
    """
    producer = None if dry_run else create_producer(settings)
    if producer is not None:
        await producer.start()
    picker = ReplayPicker(selection, limit)
    try:
        async with open_dead_letters(settings) as scan:
            pending: list[asyncio.Future[object]] = []
            async with aclosing(scan.letters()) as letters:
                async for letter in letters:
                    if picker.full:
                        break
                    if not picker.take(letter) or producer is None:
                        continue
                    pending.append(
                        await producer.send(
                            settings.input_topic,
                            value=letter.value,
                            key=letter.key,
                            headers=list(letter.original_headers or ()),
                        )
                    )
                    if len(pending) >= _SEND_WINDOW:
                        await _acknowledged(pending)
            await _acknowledged(pending)
    finally:
        if producer is not None:
            await producer.stop()
    return ReplayOutcome(
        scan.topic,
        settings.input_topic,
        scan.end_offsets,
        dry_run,
        dict(picker.picked),
        picker.unrecognised,
        picker.duplicates,
    )


async def _acknowledged(pending: list[asyncio.Future[object]]) -> None:
    """Wait for the broker's acknowledgement of every send in flight (raising the first error)."""
    await asyncio.gather(*pending)
    pending.clear()
