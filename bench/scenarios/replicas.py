"""Scale-out: one topic drained by 1, then 2, then 3… workers in one group, each time into a
fresh database, on the mixed stream (or the classic one with `--replica-stream classic`)."""

from __future__ import annotations

import argparse
from typing import Any

from bench.loadgen import MIXED
from bench.measure import drain, generate_stream, preload
from bench.stack import Stack, drop_database, fresh_database, new_target


async def replicas(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    options = MIXED if args.replica_stream == "mixed" else {}
    stream = generate_stream(args.replica_events, args.seed, **options)
    target = await new_target(stack, "replicas", args.replica_partitions)
    await preload(stack, target, stream, "replicas")
    runs: dict[str, Any] = {}
    for count in args.replica_counts:
        database = await fresh_database(stack, target, f"x{count}")
        runs[str(count)] = await drain(
            stack, database, count, stream.event_count, label=f"replicas x{count}"
        )
        drop_database(stack, database)
    base = runs[str(args.replica_counts[0])]["events_per_s"]
    return {
        "events": stream.event_count,
        "records": len(stream.records),
        "stream": args.replica_stream,
        "partitions": args.replica_partitions,
        "runs": runs,
        "speedup": {n: round(r["events_per_s"] / base, 2) for n, r in runs.items()},
    }
