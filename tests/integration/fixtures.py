"""Worker-specific fixtures: fresh topics and a fresh, migrated database for each test."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest_asyncio

from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer
from tests.integration.support import create_topics
from worker.config import Settings
from worker.migrate import apply_migrations

_ids = itertools.count(1)


@pytest_asyncio.fixture
async def worker_settings(
    kafka_broker: KafkaBroker, postgres_server: PostgresServer
) -> AsyncIterator[Settings]:
    """Settings for a worker with its own topics (3 partitions), database and consumer group."""
    n = next(_ids)
    bootstrap = kafka_broker.bootstrap_servers
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=postgres_server.create_database(f"worker_test_{n}"),
        input_topic=f"events-{n}",
        summary_topic=f"summaries-{n}",
        dlq_topic=f"events-{n}.dlq",
        consumer_group=f"group-{n}",
        http_host="127.0.0.1",
        http_port=0,
        batch_max_records=500,
        shutdown_grace_s=10,
    )
    await create_topics(bootstrap, [settings.input_topic], partitions=3)
    await create_topics(bootstrap, [settings.summary_topic, settings.dlq_topic], partitions=1)
    await apply_migrations(settings.database_url)
    yield settings
