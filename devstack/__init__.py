"""Local Kafka and PostgreSQL servers for development and integration tests, and the harness
the tests and the benchmark share to drive the worker on them.

Nothing here is used by the worker at runtime: it exists so tests, benchmarks and
developers get a real single-node Kafka broker (KRaft, jars from Maven Central, run
on the local JDK) and a throwaway PostgreSQL cluster without Docker (kafka.py,
postgres.py), each run its own topics, database and group on them (runs.py, topics.py),
streams of events to produce (streams.py), the worker as a process (workers.py) and how
far it got (progress.py).
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
