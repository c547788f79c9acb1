"""Topics on the local broker: create them, find their partitions and end offsets, read them back.

Used by the tests (tests/integration, tests/reliability) and the benchmark (bench/) to give each
run its own topics (devstack/runs.py) and to check what the worker wrote to them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

# The broker accepts records up to 4 MiB (devstack/kafka.py); so do the topics made here.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    """Create `names`, each with `partitions` partitions (replication 1, 4 MiB records)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    n, partitions, 1, topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)}
                )
                for n in names
            ]
        )
    finally:
        await admin.close()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        # Unlike the consumer's cache lookup, this waits for the topic's metadata.
        partitions = await producer.partitions_for(topic)
    finally:
        await producer.stop()
    assert partitions, f"topic {topic} has no partitions"
    return sorted(partitions)


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> its end offset (the offset the next record will get)."""
    tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        # aiokafka 0.14's stop() raises CancelledError for a group-less consumer whose
        # background task never ran; assigning first gives it something to wait on.
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


@dataclass
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    raw_headers: list[tuple[str, bytes]]


async def read_topic(bootstrap: str, topic: str) -> list[TopicRecord]:
    """Every record of `topic` from the beginning up to its current end."""
    ends = await end_offsets(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[TopicRecord] = []
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp.partition] > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, recs in batch.items():
                for r in recs:
                    headers = list(r.headers or ())
                    out.append(
                        TopicRecord(r.partition, r.offset, r.key, r.value, dict(headers), headers)
                    )
                    if r.offset + 1 >= ends[tp.partition]:
                        remaining.discard(tp)
        assert not remaining, f"could not read {topic} to its end"
    finally:
        await consumer.stop()
    return out
