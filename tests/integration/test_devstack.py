"""Smoke tests of the dev stack itself: the broker and PostgreSQL the other tests rely on."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
# Generous because the first group join also creates __consumer_offsets.
TIMEOUT_S = 60


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 * MIB, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    """Read ``count`` records from the start of ``topic`` through a fresh consumer group."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=_unique("devstack-smoke"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * MIB,
        fetch_max_bytes=8 * MIB,
    )
    await consumer.start()
    try:
        got: list[tuple[bytes, bytes]] = []
        async with asyncio.timeout(TIMEOUT_S):
            while len(got) < count:
                msg = await consumer.getone()
                assert msg.key is not None and msg.value is not None
                got.append((msg.key, msg.value))
        # Exercises the group coordinator (offsets topic settings), which the worker needs.
        await consumer.commit()
        return got
    finally:
        await consumer.stop()


async def test_kafka_produce_and_consume(kafka_broker: KafkaBroker) -> None:
    topic = _unique("devstack-smoke")
    await _create_topic(kafka_broker.bootstrap_servers, topic)
    records = [(b"small", b"hello"), (b"big", os.urandom(MIB))]
    await _produce(kafka_broker.bootstrap_servers, topic, records)
    assert await _consume(kafka_broker.bootstrap_servers, topic, len(records)) == records


async def test_kafka_restart_keeps_data(kafka_broker: KafkaBroker) -> None:
    topic = _unique("devstack-restart")
    bootstrap = kafka_broker.bootstrap_servers
    await _create_topic(bootstrap, topic)
    await _produce(bootstrap, topic, [(b"k", b"before-restart")])

    # Blocking (JVM shutdown + startup), so keep the shared event loop responsive.
    await asyncio.to_thread(kafka_broker.restart)

    assert kafka_broker.bootstrap_servers == bootstrap
    await _produce(bootstrap, topic, [(b"k", b"after-restart")])
    assert await _consume(bootstrap, topic, 2) == [
        (b"k", b"before-restart"),
        (b"k", b"after-restart"),
    ]


async def test_postgres_select_one(postgres_server: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_postgres_create_database_and_restart(postgres_server: PostgresServer) -> None:
    name = _unique("devstack_smoke")
    dsn = postgres_server.create_database(name)
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT current_database()") == name
        await conn.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')")
    finally:
        await conn.close()

    await asyncio.to_thread(postgres_server.restart)

    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT v FROM t") == "kept"
    finally:
        await conn.close()
