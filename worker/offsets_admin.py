"""`offsets show` and `offsets reset`: the input offsets the worker stores in PostgreSQL."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code

from worker.config import Settings
from worker.kafka import admin_client, topic_partitions, topic_reader
from worker.retry import Backoff
from worker.store import Store
from worker.text_table import render_table

# Kafka's GROUP_ID_NOT_FOUND: newer brokers answer it for a group that never existed, which
# is a group without members as far as a reset is concerned.
_GROUP_ID_NOT_FOUND = 69
# How long to wait for the group coordinator to become available before giving up.
_COORDINATOR_WAIT_S = 30.0
# ASCII digits only: str.isdigit() would also take "²", which int() then rejects.
_PARTITION_OFFSET = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*", re.ASCII)


class InvalidTarget(ValueError):
    """The requested offsets do not fit the topic (no such partition, outside the log)."""


class ResetRefused(RuntimeError):
    """Workers of the group are running; they would keep going from the offsets they hold."""


# -- what a reset moves to ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToEarliest:
    """Every partition to its log start: replay all the topic still holds."""


@dataclass(frozen=True, slots=True)
class ToLatest:
    """Every partition to its end: skip everything not yet consumed."""


@dataclass(frozen=True, slots=True)
class ToDatetime:
    """Every partition to its first record with a timestamp at or after `when`."""

    when: datetime


@dataclass(frozen=True, slots=True)
class ToOffsets:
    """Named partitions to named offsets; the others keep theirs."""

    offsets: Mapping[int, int]


ResetTarget = ToEarliest | ToLatest | ToDatetime | ToOffsets


def parse_partition_offset(text: str) -> tuple[int, int]:
    """`P:O` (partition and offset, both non-negative integers) as a pair; ValueError if not."""
    match = _PARTITION_OFFSET.fullmatch(text)
    if match is None:
        raise ValueError(f"expected PARTITION:OFFSET (two non-negative integers), got {text!r}")
    return int(match[1]), int(match[2])


def to_offsets(pairs: Iterable[tuple[int, int]]) -> ToOffsets:
    """The target of repeated `--to-offset P:O`; a partition named twice is an error."""
    offsets: dict[int, int] = {}
    for partition, offset in pairs:
        if partition in offsets:
            raise InvalidTarget(f"--to-offset: partition {partition} is given more than once")
        offsets[partition] = offset
    return ToOffsets(offsets)


def describe_target(target: ResetTarget) -> str:
    if isinstance(target, ToEarliest):
        return "the earliest offsets"
    if isinstance(target, ToLatest):
        return "the latest offsets"
    if isinstance(target, ToDatetime):
        return f"the first records at or after {target.when.isoformat()}"
    return "offsets " + ", ".join(f"{p}:{o}" for p, o in sorted(target.offsets.items()))


# -- the state of a partition, and plans ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    partition: int
    stored: int | None  # the next offset stored in PostgreSQL; None: no row yet
    log_start: int
    log_end: int

    @property
    def resumes_at(self) -> int:
        """Where a worker adopting this partition would start reading."""
        # Nothing stored: the worker starts at the log start. Stored below it (retention
        # deleted those records): the consumer's auto_offset_reset takes it to the log start.
        if self.stored is None:
            return self.log_start
        return max(self.stored, self.log_start)

    @property
    def lag(self) -> int:
        return max(0, self.log_end - self.resumes_at)


@dataclass(frozen=True, slots=True)
class GroupMember:
    member_id: str
    client_id: str
    host: str


@dataclass(frozen=True, slots=True)
class OffsetsReport:
    group: str
    topic: str
    partitions: tuple[PartitionOffsets, ...]
    members: tuple[GroupMember, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def to_json(self) -> dict[str, object]:
        return {
            "group": self.group,
            "topic": self.topic,
            "live_members": len(self.members),
            "partitions": [
                {
                    "partition": p.partition,
                    "stored_offset": p.stored,
                    "log_start_offset": p.log_start,
                    "log_end_offset": p.log_end,
                    "lag": p.lag,
                }
                for p in self.partitions
            ],
            "total_lag": self.total_lag,
        }


@dataclass(frozen=True, slots=True)
class Move:
    partition: int
    old: int | None
    new: int


def plan_reset(
    target: ResetTarget,
    partitions: Sequence[PartitionOffsets],
    found_by_time: Mapping[int, int | None] | None = None,
) -> list[Move]:
    """The move of every partition the target names, checked against the topic's log.

    `found_by_time` is Kafka's answer to offsets_for_times for a ToDatetime target: the first
    offset at or after the time, None where the partition has no such record (it moves to
    the end, so nothing older is replayed and nothing newer is skipped).
    """
    by_partition = {p.partition: p for p in partitions}
    if isinstance(target, ToOffsets):
        moves = []
        for partition, offset in sorted(target.offsets.items()):
            state = by_partition.get(partition)
            if state is None:
                raise InvalidTarget(
                    f"--to-offset {partition}:{offset}: the topic has no partition {partition}"
                    f" (it has {', '.join(str(p) for p in sorted(by_partition))})"
                )
            if not state.log_start <= offset <= state.log_end:
                raise InvalidTarget(
                    f"--to-offset {partition}:{offset}: partition {partition} holds offsets"
                    f" {state.log_start} to {state.log_end} (its end)"
                )
            moves.append(Move(partition, state.stored, offset))
        return moves
    moves = []
    for state in sorted(partitions, key=lambda p: p.partition):
        if isinstance(target, ToEarliest):
            new = state.log_start
        elif isinstance(target, ToLatest):
            new = state.log_end
        else:
            found = (found_by_time or {}).get(state.partition)
            new = state.log_end if found is None else found
        moves.append(Move(state.partition, state.stored, new))
    return moves


@dataclass(frozen=True, slots=True)
class ResetOutcome:
    report: OffsetsReport  # before the reset
    target: ResetTarget
    moves: tuple[Move, ...]
    written: bool
    forced_past: tuple[GroupMember, ...] = field(default=())


# -- rendering -----------------------------------------------------------------------------------


def _members_line(members: Sequence[GroupMember]) -> str:
    if not members:
        return "no live members"
    listed = ", ".join(f"{m.client_id}@{m.host}" for m in members)
    return f"{len(members)} live member{'s' if len(members) != 1 else ''} ({listed})"


def render_report(report: OffsetsReport) -> str:
    rows = [[p.partition, p.stored, p.log_start, p.log_end, p.lag] for p in report.partitions]
    return "\n".join(
        [
            f"group {report.group}, topic {report.topic}: {_members_line(report.members)}",
            render_table(["PARTITION", "STORED", "LOG-START", "LOG-END", "LAG"], rows),
            f"total lag {report.total_lag}",
        ]
    )


def render_outcome(outcome: ResetOutcome) -> str:
    report = outcome.report
    verb = "reset" if outcome.written else "dry run, nothing written: would reset"
    lines = [
        f"{verb} group {report.group}, topic {report.topic} to {describe_target(outcome.target)}"
    ]
    if outcome.forced_past:
        lines.append(f"forced past {_members_line(outcome.forced_past)}")
    elif report.members and not outcome.written:
        lines.append(
            f"note: the group has {_members_line(report.members)}; "
            "a reset would be refused without --force"
        )
    width = max((len(str(m.old)) for m in outcome.moves if m.old is not None), default=1)
    for m in outcome.moves:
        old = "-" if m.old is None else str(m.old)
        note = " (no row before)" if m.old is None else " (unchanged)" if m.old == m.new else ""
        lines.append(f"  partition {m.partition}: {old.rjust(width)} -> {m.new}{note}")
    return "\n".join(lines)


# -- I/O -----------------------------------------------------------------------------------------


async def live_members(admin: AIOKafkaAdminClient, group: str) -> tuple[GroupMember, ...]:
    """The members the group coordinator currently counts, from DescribeGroups."""
    backoff = Backoff(initial_s=0.2, max_s=2.0)
    deadline = time.monotonic() + _COORDINATOR_WAIT_S
    while True:
        try:
            return await _describe_members(admin, group)
        except KafkaError as exc:
            # A fresh cluster has no coordinator until its offsets topic exists (the first
            # FindCoordinator creates it), and a moving coordinator answers "not me" a while.
            if not exc.retriable or time.monotonic() > deadline:
                raise
            await backoff.sleep()


async def _describe_members(admin: AIOKafkaAdminClient, group: str) -> tuple[GroupMember, ...]:
    members: list[GroupMember] = []
    for response in await admin.describe_consumer_groups([group]):
        for described in response.to_object()["groups"]:
            code = described["error_code"]
            if code == _GROUP_ID_NOT_FOUND:
                continue
            if code:
                raise for_code(code)(f"could not describe consumer group {group!r}")
            members.extend(
                GroupMember(m["member_id"], m["client_id"], m["client_host"])
                for m in described["members"]
            )
    return tuple(members)


async def _read(
    settings: Settings, store: Store, when: datetime | None = None
) -> tuple[OffsetsReport, dict[int, int | None]]:
    """The report, and for a time the first offset at or after it in each partition."""
    group, topic = settings.consumer_group, settings.input_topic
    async with admin_client(settings) as admin:
        partitions = await topic_partitions(admin, topic)
        members = await live_members(admin, group)
    async with topic_reader(settings, partitions) as reader:
        starts = await reader.beginning_offsets(partitions)
        ends = await reader.end_offsets(partitions)
        found: dict[int, int | None] = {}
        if when is not None:
            at_ms = max(0, int(when.timestamp() * 1000))
            answers = await reader.offsets_for_times({tp: at_ms for tp in partitions})
            found = {
                tp.partition: (None if answer is None else int(answer.offset))
                for tp, answer in answers.items()
            }
    stored = await store.stored_offsets(group, topic)
    report = OffsetsReport(
        group,
        topic,
        tuple(
            PartitionOffsets(tp.partition, stored.get(tp.partition), starts[tp], ends[tp])
            for tp in partitions
        ),
        members,
    )
    return report, found


async def show_offsets(settings: Settings) -> OffsetsReport:
    store = await Store.connect(settings.database_url, max_size=1)
    try:
        report, _ = await _read(settings, store)
    finally:
        await store.close()
    return report


async def reset_offsets(
    settings: Settings, target: ResetTarget, *, force: bool = False, dry_run: bool = False
) -> ResetOutcome:
    """Plan the reset, refuse it if the group has live members (unless forced), write it.

    The worker's offsets live in `consumer_offsets`, committed with the state they produced,
    so Kafka's own tools can neither see nor move them. Live members would go on from the
    offsets they hold in memory, hence the refusal. A forced reset is still safe: a running
    worker's next compare-and-set fails, and it re-reads the offsets written here (when its
    next batch arrives). A dry run plans and reports, refusing nothing and writing nothing.
    """
    store = await Store.connect(settings.database_url, max_size=1)
    try:
        when = target.when if isinstance(target, ToDatetime) else None
        report, found = await _read(settings, store, when)
        moves = plan_reset(target, report.partitions, found)
        if dry_run:
            return ResetOutcome(report, target, tuple(moves), written=False)
        if report.members and not force:
            raise ResetRefused(
                f"consumer group {report.group} has {_members_line(report.members)}: a running"
                " worker keeps consuming from the offsets it holds. Stop the workers (scale to"
                " 0) and retry, or pass --force"
            )
        before = await store.set_offsets(
            report.group, report.topic, {m.partition: m.new for m in moves}
        )
    finally:
        await store.close()
    # The old values are the ones the write replaced, which a forced reset may find moved.
    written = tuple(Move(m.partition, before[m.partition], m.new) for m in moves)
    return ResetOutcome(report, target, written, written=True, forced_past=report.members)
