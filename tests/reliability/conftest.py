"""Fixtures of tests/reliability/: fresh runs and worker processes.

``kafka_broker``, ``postgres_server`` (one of each per session) and ``worker_settings``
(3 input partitions, in-process worker settings) come from tests/conftest.py.

The slow fault tests run the worker as real subprocesses (``delivery-receipts-worker run``)
and use ``fleet`` (devstack/workers.py, with the tuning of tests/reliability/harness.py) to
start, signal and always stop them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer
from devstack.runs import new_run
from devstack.workers import Fleet
from tests.reliability.harness import DEFAULT_WORKER_ENV, SettingsFactory
from worker.config import Settings


@pytest.fixture
def fresh_settings(kafka_broker: KafkaBroker, postgres_server: PostgresServer) -> SettingsFactory:
    """Make settings with their own topics, migrated database and consumer group.

    ``make(partitions=4, create_summary_topic=True)``; the summary topic (2 partitions) can be
    left uncreated to play an unavailable output (the broker does not auto-create topics).
    """

    async def make(*, partitions: int = 4, create_summary_topic: bool = True) -> Settings:
        return await new_run(
            kafka_broker.bootstrap_servers,
            postgres_server,
            "rel",
            partitions=partitions,
            summary_partitions=2,
            create_summary_topic=create_summary_topic,
        )

    return make


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Worker subprocesses; every one still running is killed when the test ends, pass or fail."""
    with Fleet(tmp_path / "workers", DEFAULT_WORKER_ENV) as f:
        yield f
