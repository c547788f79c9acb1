"""Integration-test fixtures.

The session-wide Kafka broker and PostgreSQL (`kafka_broker`, `postgres_server`) live in
tests/conftest.py, so tests/reliability/ shares the same servers in one run.
"""

from __future__ import annotations

# Worker-specific fixtures.
from tests.integration.fixtures import worker_settings  # noqa: F401
