"""Local Kafka and PostgreSQL servers for development and integration tests.

Nothing here is used by the worker at runtime: it exists so tests, benchmarks and
developers get a real single-node Kafka broker (KRaft, jars from Maven Central, run
on the local JDK) and a throwaway PostgreSQL cluster without Docker.
"""

from devstack.kafka import KafkaBroker
from devstack.kafka_jars import KAFKA_VERSION, LOG4J_VERSION, ensure_kafka_jars
from devstack.postgres import PostgresServer

__all__ = [
    "KAFKA_VERSION",
    "LOG4J_VERSION",
    "KafkaBroker",
    "PostgresServer",
    "ensure_kafka_jars",
]
