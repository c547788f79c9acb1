"""Per-run isolation on shared servers: each test or benchmark scenario gets its own topics,
database and consumer group on the one broker and the one PostgreSQL of the session.

A run is described by the worker's own `Settings`, so the same object configures an in-process
worker, a worker process (devstack/workers.py) and the checks (devstack/progress.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from devstack.postgres import PostgresServer
from devstack.topics import create_topics
from worker.config import Settings
from worker.migrate import apply_migrations

# One sequence for every run of this process: names never collide on the shared servers.
_ids = itertools.count(1)


def _database_name(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def new_database(postgres: PostgresServer, prefix: str) -> str:
    """A fresh, empty database `<prefix>_<n>`; returns its DSN."""
    return postgres.create_database(_database_name(f"{prefix}_{next(_ids)}"))


async def new_run(
    bootstrap: str,
    postgres: PostgresServer,
    prefix: str,
    *,
    partitions: int,
    summary_partitions: int = 1,
    create_summary_topic: bool = True,
    database_url: str | None = None,
    migrate: bool = True,
    **settings: Any,
) -> Settings:
    """Settings for a worker with its own topics, database and consumer group.

    Topics `<prefix>-<n>-events` (`partitions`), `-summaries` (`summary_partitions`; left
    uncreated with `create_summary_topic=False`, to play an unavailable output: the broker does
    not auto-create topics) and `-events.dlq` (1), group `<prefix>-<n>`, and a fresh database
    (migrated unless `migrate=False`) unless `database_url` names one to reuse. `settings`
    are further `Settings` fields (`http_port=0`, `batch_max_records=500`…).
    """
    name = f"{prefix}-{next(_ids)}"
    run = Settings(
        kafka_bootstrap_servers=bootstrap,
        database_url=database_url or postgres.create_database(_database_name(name)),
        input_topic=f"{name}-events",
        summary_topic=f"{name}-summaries",
        dlq_topic=f"{name}-events.dlq",
        consumer_group=name,
        http_host="127.0.0.1",
        **settings,
    )
    await create_topics(bootstrap, [run.input_topic], partitions=partitions)
    await create_topics(bootstrap, [run.dlq_topic], partitions=1)
    if create_summary_topic:
        await create_topics(bootstrap, [run.summary_topic], partitions=summary_partitions)
    if migrate:
        await apply_migrations(run.database_url)
    return run


async def sibling_run(
    run: Settings,
    postgres: PostgresServer,
    label: str,
    *,
    own_outputs: bool = False,
    summary_partitions: int = 1,
    migrate: bool = True,
) -> Settings:
    """The same input topic read into a fresh database by a group of its own.

    With `own_outputs`, also its own summary (`summary_partitions`) and DLQ topics, so its
    output can be compared with the first run's.
    """
    name = f"{run.consumer_group}-{label}{next(_ids)}"
    sibling = dataclasses.replace(
        run, database_url=postgres.create_database(_database_name(name)), consumer_group=name
    )
    if own_outputs:
        sibling = dataclasses.replace(
            sibling, summary_topic=f"{name}-summaries", dlq_topic=f"{name}-events.dlq"
        )
        bootstrap = run.kafka_bootstrap_servers
        await create_topics(bootstrap, [sibling.summary_topic], partitions=summary_partitions)
        await create_topics(bootstrap, [sibling.dlq_topic], partitions=1)
    if migrate:
        await apply_migrations(sibling.database_url)
    return sibling


def drop_database(postgres: PostgresServer, dsn: str) -> None:
    """Drop a finished run's database (with its connections), freeing its disk and autovacuum."""
    name = dsn.rsplit("/", 1)[1]
    postgres.psql('DROP DATABASE :"name" WITH (FORCE)', variables={"name": name})
