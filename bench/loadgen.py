"""Load generator: a realistic receipt stream into a Kafka topic, optionally at a fixed rate.

The streams are devstack/streams.py's `build_stream` (on worker/loadgen.py: every input
form, ~2 events per receipt, 1..5 receipts per message, duplicates, disorder). Use it against
your own cluster to size a deployment:

    python -m bench.loadgen --bootstrap broker:9092 --topic delivery-events --events 1000000
    python -m bench.loadgen --bootstrap broker:9092 --events 300000 --rate 5000

Each record carries a `bench-produced-at` header (epoch seconds as text) so consumers can
measure end-to-end latency.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from devstack import streams
from devstack.streams import build_stream
from worker.loadgen import Record

PRODUCED_AT_HEADER = "bench-produced-at"


# The stream real users send (issue 10): keys mixed (half by message, a quarter by
# conversation, a quarter none), a share of the events in CloudEvents arrays spanning
# messages, 20 % duplicates (≈ 2.5 events per receipt) and 0.2 % poison records.
MIXED: dict[str, Any] = {
    "keying": "mixed",
    "array_rate": 0.25,
    "duplicate_rate": 0.2,
    "poison_rate": 0.002,
}


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    rate: float = 0.0,
    linger_ms: int = 20,
    on_sent: Callable[[int, float], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Produce `records` (at `rate` records/s if > 0, else as fast as possible); returns seconds.

    `devstack.streams.produce` as the benchmark produces: 256 KiB batches, each record with
    its send time in the `bench-produced-at` header, its timestamp left to the broker.
    `on_sent(index, epoch_time)` is called as each record is handed to the producer.
    """
    return await streams.produce(
        bootstrap,
        topic,
        records,
        rate=rate,
        linger_ms=linger_ms,
        batch_bytes=256 * 1024,
        record_timestamps=False,
        sent_at_header=PRODUCED_AT_HEADER,
        on_sent=on_sent,
        progress=progress,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description="Produce a realistic synthetic delivery-receipt stream (all input forms, "
        "duplicates, out of order) to a Kafka topic, as fast as possible or at a fixed rate.",
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka host:port")
    parser.add_argument("--topic", default="delivery-events", help="input topic")
    parser.add_argument("--events", type=int, default=100_000, help="events to produce (≈)")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0: as fast as possible")
    parser.add_argument("--seed", type=int, default=1, help="stream seed (changes every SID)")
    parser.add_argument("--duplicate-rate", type=float, default=0.1, help="share duplicated")
    parser.add_argument("--max-receipts", type=int, default=5, help="receipts per message, max")
    parser.add_argument("--linger-ms", type=int, default=20, help="producer linger")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    stream = build_stream(
        args.events,
        seed=args.seed,
        duplicate_rate=args.duplicate_rate,
        max_receipts=args.max_receipts,
    )
    print(
        f"generated {len(stream.records)} records ({stream.messages} messages)"
        f" in {time.monotonic() - t0:.1f}s",
        flush=True,
    )

    def progress(n: int) -> None:
        print(f"produced {n}/{len(stream.records)}", flush=True)

    seconds = asyncio.run(
        produce(
            args.bootstrap,
            args.topic,
            stream.records,
            rate=args.rate,
            linger_ms=args.linger_ms,
            progress=progress,
        )
    )
    print(
        f"produced {len(stream.records)} records in {seconds:.1f}s"
        f" ({len(stream.records) / max(seconds, 1e-9):,.0f} records/s)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
