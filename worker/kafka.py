"""Kafka client construction from settings: one place for bootstrap, TLS and SASL options."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import TopicPartition

from worker.config import Settings

# Dead letters carry the original record whatever its size, so the producer must accept
# more than MAX_RECORD_BYTES; the DLQ topic's max.message.bytes must allow it too (README).
PRODUCER_MAX_REQUEST_BYTES = 4 * 1024 * 1024


class TopicNotFound(LookupError):
    """The topic does not exist on the cluster (or this client may not see it)."""


def client_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def heartbeat_interval_ms(session_timeout_ms: int) -> int:
    """A third of the session timeout (Kafka's advice), at most aiokafka's default of 3 s."""
    return max(100, min(3000, session_timeout_ms // 3))


def create_consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Only committed records of transactional producers; plain producers are unaffected.
        isolation_level="read_committed",
        max_partition_fetch_bytes=max(1024 * 1024, 2 * settings.max_record_bytes),
        # A replica that stops heartbeating (crashed, paused) loses its partitions after this;
        # rebalances wait at most this long for members to rejoin (aiokafka's default).
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=heartbeat_interval_ms(settings.kafka_session_timeout_ms),
        **client_options(settings),
    )


def create_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        **client_options(settings),
    )


@asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@asynccontextmanager
async def topic_reader(
    settings: Settings, partitions: Sequence[TopicPartition]
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer outside any group, assigned `partitions`: it commits nothing and no member
    of any group sees it. Large fetches, because dead letters may hold records of any size."""
    reader = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=2 * PRODUCER_MAX_REQUEST_BYTES,
        **client_options(settings),
    )
    await reader.start()
    try:
        # Assigned at once: aiokafka 0.14's stop() raises CancelledError for a group-less
        # consumer that was never assigned anything.
        reader.assign(list(partitions))
        yield reader
    finally:
        await reader.stop()


async def topic_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, in partition order; TopicNotFound if it does not exist."""
    # Listing first, because a metadata request naming a missing topic lets a broker with
    # auto.create.topics.enable create it, and an operator's typo must not create a topic.
    if topic not in await admin.list_topics():
        raise TopicNotFound(f"topic {topic!r} does not exist")
    [description] = await admin.describe_topics([topic])
    return sorted(TopicPartition(topic, p["partition"]) for p in description["partitions"])
