"""The outbox relay's batched publishing keeps every message's versions in order.

`Publisher.publish_summaries` groups rows by partition and sends ready-made batches; these
tests publish through a real producer to a real topic and read it back: each key is on
the partition Kafka's default partitioner gives it (murmur2, as `producer.send` would
choose), every row arrives exactly once, and within each partition records are in the
order of their outbox ids, so each message's versions are in order.
"""

from __future__ import annotations

import itertools
import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from devstack.kafka import KafkaBroker
from devstack.topics import create_topics, read_topic
from worker.config import Settings
from worker.kafka import create_producer
from worker.publisher import Publisher
from worker.store import OutboxRow

pytestmark = pytest.mark.integration

_topics = itertools.count(1)


def _rows(messages: int, versions: int, payload_bytes: int, seed: int) -> list[OutboxRow]:
    """Rows in id order: every message's versions 1..n, messages interleaved at random."""
    rng = random.Random(seed)
    sids = [f"IM{rng.getrandbits(128):032x}" for _ in range(messages)]
    pending = {sid: 1 for sid in sids}
    rows: list[OutboxRow] = []
    while pending:
        sid = rng.choice(sorted(pending))
        version = pending[sid]
        payload = (f'{{"message_sid":"{sid}","version":{version}}}').encode()
        rows.append(OutboxRow(len(rows) + 1, sid, version, payload.ljust(payload_bytes)))
        pending[sid] = version + 1
        if version == versions:
            del pending[sid]
    return rows


@pytest.mark.parametrize(
    ("messages", "versions", "payload_bytes"),
    [(300, 5, 300), (20, 3, 40_000), (1, 50, 100)],  # many batches; one per row; one key
)
async def test_batches_keep_each_partition_in_id_order(
    kafka_broker: KafkaBroker, messages: int, versions: int, payload_bytes: int
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"batched-summaries-{next(_topics)}"
    await create_topics(bootstrap, [topic], partitions=4)
    settings = Settings(kafka_bootstrap_servers=bootstrap, summary_topic=topic)
    producer = create_producer(settings)
    await producer.start()
    rows = _rows(messages, versions, payload_bytes, seed=messages)
    try:
        publisher = Publisher(producer, summary_topic=topic, dlq_topic="unused-dlq")
        await publisher.publish_summaries(rows[: len(rows) // 2])
        await publisher.publish_summaries(rows[len(rows) // 2 :])
    finally:
        await producer.stop()

    records = await read_topic(bootstrap, topic)
    assert len(records) == len(rows)  # each row once
    by_payload = {row.payload: row for row in rows}
    per_partition: dict[int, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.value is not None and record.key is not None
        row = by_payload[record.value]
        assert record.key == row.message_sid.encode()
        assert record.headers["summary-version"] == str(row.version).encode()
        assert record.partition == DefaultPartitioner()(record.key, [0, 1, 2, 3], [0, 1, 2, 3])
        per_partition.setdefault(record.partition, []).append(row.id)
    for partition, ids in per_partition.items():
        assert ids == sorted(ids), f"partition {partition} out of id order"
    if messages > 1:
        assert len(per_partition) > 1
