"""The history insert alone, before and after migration 009, as its month's partition grows.

    python -m bench.history_index                      # 0 and 3M rows already in the month
    python -m bench.history_index --rows 0 1000000 3000000 --rounds 5

For each schema (the migrations up to 008, then up to 009) and each number of rows already
stored in the current month's partition, a fresh database on a durable PostgreSQL of its own:
the rows are added by SQL (random SIDs, dated over the days before), vacuumed and analysed,
then `--batches` batches of the load generator's events go in through the worker's own
statement (`BatchTransaction.write_history`: COPY into the batch table, INSERT … ON CONFLICT
DO NOTHING), one transaction each. Prints wall µs per history row (commit included) per
round, their median and spread. Measures one statement; `python -m bench.run --scenario
growth` measures the whole worker.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from bench.stack import PG_TUNED
from bench.util import loadavg, say
from devstack.postgres import PostgresServer
from devstack.runs import drop_database
from worker.batch_tx import TEMP_TABLES, BatchTransaction
from worker.loadgen import generate_events
from worker.migrate import apply_migrations
from worker.reduction import distinct_history

# Migration 009 re-keyed the history's unique index and added the hash index.
SCHEMAS = {"before 009": 8, "009": 9}
# The measured events are dated from here; the stored rows over the days before, same month.
_START = datetime(2026, 3, 20, tzinfo=UTC)

_PRELOAD = """
INSERT INTO delivery_receipt_history
    (message_sid, participant_sid, receipt_sid, channel, status, date_updated)
SELECT 'IM' || md5('m' || (i / 8)), 'MB' || md5('p' || (i / 2)), 'DY' || md5('r' || (i / 2)),
       'sms', (ARRAY['sent', 'delivered', 'read'])[1 + i % 3],
       $2::timestamptz - make_interval(secs => i * 0.5)
  FROM generate_series(1, $1::bigint) AS i
"""


async def measure(dsn: str, stored: int, batches: int, messages_per_batch: int) -> float:
    """µs per history row of `batches` batches, after `stored` rows were added."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "SELECT delivery_receipt_history_create_partition($1::date)", _START.date()
        )
        if stored:
            await conn.execute(_PRELOAD, stored, _START)
        await conn.execute("VACUUM ANALYZE delivery_receipt_history")
        await conn.execute("CHECKPOINT")
        await conn.execute(TEMP_TABLES)
        events = list(generate_events(batches * messages_per_batch, seed=stored + 1, start=_START))
        # Whole messages per batch, as the consumer's batches mostly are.
        per_batch = len(events) // batches
        rows = 0
        elapsed = 0.0
        for b in range(batches):
            history = distinct_history(events[b * per_batch : (b + 1) * per_batch])
            started = time.perf_counter()
            async with conn.transaction():
                await BatchTransaction(conn).write_history(history)
            elapsed += time.perf_counter() - started
            rows += len(history)
        return elapsed * 1e6 / rows
    finally:
        await conn.close()


async def run(args: argparse.Namespace, postgres: PostgresServer) -> None:
    say(f"history insert, µs per row; load {loadavg()}")
    for stored in args.rows:
        for name, version in SCHEMAS.items():
            figures = []
            for r in range(args.rounds):
                database = f"history_index_{version}_{stored}_{r}"
                dsn = postgres.create_database(database)
                await apply_migrations(dsn, up_to=version)
                figures.append(await measure(dsn, stored, args.batches, args.messages))
                drop_database(postgres, dsn)
            spread = f"{min(figures):.2f}-{max(figures):.2f}"
            rounds = " ".join(f"{f:.2f}" for f in figures)
            say(
                f"{name:>10}, {stored:>9,} rows stored: median {statistics.median(figures):.2f}"
                f" µs/row (spread {spread}; rounds {rounds})"
            )
    say(f"load {loadavg()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.history_index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        default=[0, 3_000_000],
        help="rows already in the month's partition, one measurement each",
    )
    parser.add_argument("--rounds", type=int, default=3, help="fresh databases per measurement")
    parser.add_argument("--batches", type=int, default=20, help="transactions measured")
    parser.add_argument("--messages", type=int, default=1000, help="messages per batch")
    parser.add_argument("--pg-settings", choices=("tuned", "default"), default="default")
    args = parser.parse_args(argv)
    settings = PG_TUNED if args.pg_settings == "tuned" else {}
    with PostgresServer(fsync=True, synchronous_commit=True, extra_settings=settings) as pg:
        asyncio.run(run(args, pg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
