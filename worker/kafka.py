"""Kafka client construction from settings: one place for bootstrap, TLS and SASL options."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from worker.config import Settings

# Dead letters carry the original record whatever its size, so the producer must accept
# more than MAX_RECORD_BYTES; the DLQ topic's max.message.bytes must allow it too (README).
PRODUCER_MAX_REQUEST_BYTES = 4 * 1024 * 1024


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
