"""Fixtures of tests/reliability/: the shared servers (tests/conftest.py) plus fresh names.

Shared by the fault tests (test_faults*.py) and the hostile-input tests (test_hostile*.py):
add fixtures here by small edits. ``kafka_broker`` and ``postgres_server`` come from
tests/conftest.py (one broker and one PostgreSQL per session); ``worker_settings`` is the
integration tests' fixture (3 input partitions, in-process worker settings).

The slow fault tests run the worker as real subprocesses (``delivery-receipts-worker run``)
and use ``fleet`` (tests/reliability/harness.py) to start, signal and always stop them.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer
from tests.integration.fixtures import worker_settings  # noqa: F401  (for tests here too)
from tests.integration.support import create_topics
from tests.reliability.harness import Fleet
from worker.config import Settings
from worker.migrate import apply_migrations

_ids = itertools.count(1)

SettingsFactory = Callable[..., Awaitable[Settings]]


@pytest_asyncio.fixture
async def fresh_settings(
    kafka_broker: KafkaBroker, postgres_server: PostgresServer
) -> AsyncIterator[SettingsFactory]:
    """Make settings with their own topics, migrated database and consumer group.

    ``make(partitions=4, create_summary_topic=True)``; the summary topic can be left
    uncreated to play an unavailable output (the broker does not auto-create topics).
    """

    async def make(*, partitions: int = 4, create_summary_topic: bool = True) -> Settings:
        n = f"{next(_ids)}_{uuid.uuid4().hex[:8]}"
        bootstrap = kafka_broker.bootstrap_servers
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            database_url=postgres_server.create_database(f"reliability_{n}"),
            input_topic=f"rel-events-{n}",
            summary_topic=f"rel-summaries-{n}",
            dlq_topic=f"rel-events-{n}.dlq",
            consumer_group=f"rel-group-{n}",
            http_host="127.0.0.1",
        )
        await create_topics(bootstrap, [settings.input_topic], partitions=partitions)
        await create_topics(bootstrap, [settings.dlq_topic], partitions=1)
        if create_summary_topic:
            await create_topics(bootstrap, [settings.summary_topic], partitions=2)
        await apply_migrations(settings.database_url)
        return settings

    yield make


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Worker subprocesses; every one still running is killed when the test ends, pass or fail."""
    with Fleet(tmp_path / "workers") as f:
        yield f
