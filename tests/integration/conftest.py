"""Session-wide real servers for integration tests: one Kafka broker, one PostgreSQL.

Both are started lazily by the first test that asks for them and stopped when the session
ends. Tests share them, so each test must use its own topic, consumer group and database
names (``uuid`` suffixes or a counter) instead of assuming an empty server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A started single-node KRaft broker; ``restart()``/``kill()`` keep its port and data."""
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A started throwaway PostgreSQL cluster.

    fsync is off because nothing here survives the session, but synchronous_commit stays on:
    with it off, an immediate stop can drop transactions the client saw committed, which
    would make crash tests fail for reasons that are not the worker's.
    """
    with PostgresServer(fsync=False, synchronous_commit=True) as server:
        yield server


# Worker-specific fixtures live beside the generic ones above.
from tests.integration.fixtures import worker_settings  # noqa: E402, F401
