"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.kafka import KafkaBroker
from devstack.postgres import PostgresServer

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def samples() -> Path:
    """The four input forms, one example each (copied from the spec's shared samples)."""
    return SAMPLES


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
