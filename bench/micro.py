"""Micro-benchmark of the worker's pure CPU work per event, without Kafka or PostgreSQL.

    python -m bench.micro                 # parse + reduce the mixed stream, µs per event
    python -m bench.micro --messages 5000 --rounds 5

Times `parse_record` over every record of the mixed stream (bench.loadgen.MIXED), with the
compiled fast path (worker.native, if built) and with the Python parser alone, then the
batch reduction (`coalesce`, `distinct_history`, `apply_batch` against an empty store) in
batches of 5,000 records, as the consumer does. The collector's thresholds are the worker's
(worker/service.py). Best of `--rounds`; for comparing levers on one machine, not a
substitute for `python -m bench.run`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from bench.loadgen import MIXED
from devstack.streams import build_stream
from worker import native
from worker.events import ReceiptEvent
from worker.parsing import InvalidRecord, ParsedRecord, parse_record
from worker.reduction import apply_batch, coalesce, distinct_history
from worker.service import tune_gc


def _best(rounds: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    stream = build_stream(args.messages * 8, seed=args.seed, messages=args.messages, **MIXED)
    records = [(r.value, r.headers) for r in stream.records]
    n = len(stream.events)

    def parse_all() -> list[ParsedRecord | InvalidRecord]:
        out: list[ParsedRecord | InvalidRecord] = []
        for value, headers in records:
            try:
                out.append(parse_record(value, headers, max_bytes=65536))
            except InvalidRecord as exc:
                out.append(exc)
        return out

    parsed = parse_all()
    events: list[ReceiptEvent] = [
        e for p in parsed if isinstance(p, ParsedRecord) for e in p.events
    ]
    assert len(events) == n, (len(events), n)
    batches = [events[i : i + 10_000] for i in range(0, n, 10_000)]

    def reduce_all() -> None:
        for batch in batches:
            states = coalesce(batch)
            distinct_history(batch)
            apply_batch({}, states)

    tune_gc()
    print(f"{n} events in {len(records)} records ({stream.poison} poison)")
    if native.FAST_PARSER is not None:
        print(
            f"parse (compiled fast path): {_best(args.rounds, parse_all) * 1e6 / n:6.2f} µs/event"
        )
    compiled, native.FAST_PARSER = native.FAST_PARSER, None
    try:
        print(
            f"parse (Python parser):      {_best(args.rounds, parse_all) * 1e6 / n:6.2f} µs/event"
        )
    finally:
        native.FAST_PARSER = compiled
    print(f"reduce:                     {_best(args.rounds, reduce_all) * 1e6 / n:6.2f} µs/event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
