"""Commands to try the worker against a Kafka cluster: `create-topics`, `produce`, `tail`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Sequence

from worker.commands import event_loop_runner
from worker.config import Settings

log = logging.getLogger("worker")


def create_topics(settings: Settings, partitions: int, replication: int) -> None:
    event_loop_runner()(_create_topics(settings, partitions, replication))


def produce(settings: Settings, args: argparse.Namespace) -> None:
    """The files given with --file, each as one record; without any, a synthetic stream."""
    if args.files:
        event_loop_runner()(_produce_files(settings, args.files))
    else:
        event_loop_runner()(_produce(settings, args))


def tail(settings: Settings, limit: int, timeout_s: float) -> None:
    event_loop_runner()(_tail(settings, limit, timeout_s))


async def _create_topics(settings: Settings, partitions: int, replication: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from worker.kafka import PRODUCER_MAX_REQUEST_BYTES, client_options

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        for name in (settings.input_topic, settings.summary_topic, settings.dlq_topic):
            configs = {"max.message.bytes": str(PRODUCER_MAX_REQUEST_BYTES)}
            try:
                await admin.create_topics(
                    [NewTopic(name, partitions, replication, topic_configs=configs)]
                )
                log.info("topic created", extra={"topic": name, "partitions": partitions})
            except TopicAlreadyExistsError:
                log.info("topic exists", extra={"topic": name})
    finally:
        await admin.close()


async def _produce(settings: Settings, args: argparse.Namespace) -> None:
    from worker.kafka import create_producer
    from worker.loadgen import synthetic_stream

    records = synthetic_stream(
        args.messages,
        seed=args.seed,
        duplicate_rate=args.duplicate_rate,
        messaging_share=args.messaging_share,
        plain_sms=args.plain_sms,
    )
    messages, rate = args.messages, args.rate
    producer = create_producer(settings)
    await producer.start()
    started = time.monotonic()
    try:
        for n, record in enumerate(records, 1):
            await producer.send(
                settings.input_topic,
                record.value,
                key=record.key,
                headers=record.headers,
                timestamp_ms=record.timestamp_ms,
            )
            if rate > 0:
                ahead_s = n / rate - (time.monotonic() - started)
                if ahead_s > 0:
                    await asyncio.sleep(ahead_s)
            if n % 10000 == 0:
                log.info("producing", extra={"records": n, "of": len(records)})
        await producer.flush()
    finally:
        await producer.stop()
    log.info(
        "produced",
        extra={"records": len(records), "messages": messages, "topic": settings.input_topic},
    )


async def _produce_files(settings: Settings, paths: Sequence[str]) -> None:
    from pathlib import Path

    from worker.kafka import create_producer

    payloads = [(path, Path(path).read_bytes()) for path in paths]  # noqa: ASYNC240 (tiny, once)
    producer = create_producer(settings)
    await producer.start()
    try:
        for path, payload in payloads:
            await producer.send_and_wait(settings.input_topic, payload)
            log.info("produced file", extra={"path": path, "topic": settings.input_topic})
    finally:
        await producer.stop()


async def _tail(settings: Settings, limit: int, timeout_s: float) -> None:
    from aiokafka import AIOKafkaConsumer

    from worker.kafka import client_options

    consumer = AIOKafkaConsumer(
        settings.summary_topic, auto_offset_reset="earliest", **client_options(settings)
    )
    await consumer.start()
    printed = 0
    try:
        while printed < limit:
            batch = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=limit)
            if not batch:
                break
            for record in (r for records in batch.values() for r in records):
                if printed < limit:
                    print((record.value or b"").decode(), flush=True)
                    printed += 1
    finally:
        await consumer.stop()
