"""Fixtures shared by every test layer: the session's servers, the samples, a run's settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer
from devstack.runs import new_run
from worker.config import Settings

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def samples() -> Path:
    """The four input forms, one example each (copied from the spec's shared samples)."""
    return SAMPLES


@pytest.fixture
def design_example_delivery() -> dict[str, int | str]:
    """The `delivery` object of docs/design.md's "Summary counts" example: 5 receipts, all
    sent, 3 delivered, 2 read."""
    return {
        "total": 5,
        "sent": "all",
        "delivered": "some",
        "read": "some",
        "failed": "none",
        "undelivered": "none",
    }


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A started single-node KRaft broker; ``restart()``/``kill()`` keep its port and data."""
    # A lower minimum session timeout than the broker default (6 s) lets crash and rebalance
    # tests (tests/reliability/) use KAFKA_SESSION_TIMEOUT_MS of a few seconds.
    with KafkaBroker(extra_properties={"group.min.session.timeout.ms": "1000"}) as broker:
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


@pytest_asyncio.fixture
async def worker_settings(kafka_broker: KafkaBroker, postgres_server: PostgresServer) -> Settings:
    """Settings for a worker with its own topics (3 input partitions), migrated database and
    consumer group (devstack/runs.py), for the worker in the test's event loop."""
    return await new_run(
        kafka_broker.bootstrap_servers,
        postgres_server,
        "worker-test",
        partitions=3,
        http_port=0,
        batch_max_records=500,
        shutdown_grace_s=10,
    )
