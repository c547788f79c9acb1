"""Load generator: a realistic receipt stream into a Kafka topic, optionally at a fixed rate.

Wraps worker/loadgen.py (every input form, ~2 events per receipt, 1..5 receipts per message,
duplicates, disorder). Use it against your own cluster to size a deployment:

    python -m bench.loadgen --bootstrap broker:9092 --topic delivery-events --events 1000000
    python -m bench.loadgen --bootstrap broker:9092 --events 300000 --rate 5000

Each record carries a `bench-produced-at` header (epoch seconds as text) so consumers can
measure end-to-end latency.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from worker.events import ReceiptEvent, StatusEvent
from worker.loadgen import (
    Record,
    disorder,
    encode_mixed,
    generate_events,
    outcomes_in_place,
)

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


@dataclass(frozen=True, slots=True)
class Stream:
    """A generated stream: the valid events (in produce order) and the records holding them.

    Without arrays or poison there is one record per event; a CloudEvents array holds
    several, and a poison record (dead-lettered by the worker) holds none.
    """

    events: list[ReceiptEvent]
    records: list[Record]
    messages: int
    poison: int = 0
    # Messaging status events standing in for some receipts' outcomes (duplicates included).
    statuses: tuple[StatusEvent, ...] = ()

    @property
    def event_count(self) -> int:
        """Every event the records hold: receipt events and Messaging status events."""
        return len(self.events) + len(self.statuses)


def _events_up_to(
    target: int,
    *,
    seed: int,
    max_receipts: int,
    max_messages: int | None,
    whatsapp_prefix: str = "WA",
) -> tuple[list[ReceiptEvent], int]:
    """Whole messages' events until about `target` events (before duplication)."""
    out: list[ReceiptEvent] = []
    messages = 0
    last_message = ""
    limit = max_messages if max_messages is not None else target
    generated = generate_events(
        limit, seed=seed, max_receipts=max_receipts, whatsapp_prefix=whatsapp_prefix
    )
    for event in generated:
        if event.message_sid != last_message:
            if max_messages is None and len(out) >= target:
                break
            last_message = event.message_sid
            messages += 1
        out.append(event)
    return out, messages


def build_stream(
    events: int,
    *,
    seed: int = 1,
    duplicate_rate: float = 0.1,
    max_receipts: int = 5,
    messages: int | None = None,
    keying: str = "message",
    array_rate: float = 0.0,
    poison_rate: float = 0.0,
    messaging_share: float = 0.0,
    scatter_statuses: bool = False,
) -> Stream:
    """About `events` events (duplicates included), in mixed input forms, out of order.

    With `messages`, exactly that many messages are generated, however many events they make.
    `keying` and `array_rate` are those of `worker.loadgen.encode_mixed`; `poison_rate` is the
    share of records that are bad (each kind the worker dead-letters), inserted at random.
    With `messaging_share`, that share of the receipts' outcomes are Messaging status
    events instead, each in the place of the receipt event it stands for
    (`worker.loadgen.outcomes_in_place`), in every Messaging form; with `scatter_statuses`,
    each at a random place of the whole stream instead (the worst case: about half come
    before their receipt, and none in the batch of its receipt's other events).
    """
    unique_target = max(1, round(events / (1 + duplicate_rate)))
    base, n_messages = _events_up_to(
        unique_target,
        seed=seed,
        max_receipts=max_receipts,
        max_messages=messages,
        whatsapp_prefix="SM" if messaging_share else "WA",
    )
    pairs = outcomes_in_place(base, seed=seed, share=messaging_share)
    items: list[ReceiptEvent | StatusEvent] = disorder(
        [e if s is None else s for e, s in pairs], seed=seed, duplicate_rate=duplicate_rate
    )
    if scatter_statuses:
        rng = random.Random(seed + 2)
        scattered = [i for i in items if isinstance(i, StatusEvent)]
        items = [i for i in items if isinstance(i, ReceiptEvent)]
        for status in scattered:
            items.insert(rng.randrange(len(items) + 1), status)
    records = encode_mixed(items, seed=seed, keying=keying, array_rate=array_rate)
    ordered = [i for i in items if isinstance(i, ReceiptEvent)]
    statuses = [i for i in items if isinstance(i, StatusEvent)]
    records, poison = with_poison(records, poison_rate, seed=seed)
    return Stream(ordered, records, n_messages, poison, tuple(statuses))


_POISON: tuple[tuple[bytes, list[tuple[str, bytes]]], ...] = (
    (b'{"specversion":"1.0","type":', []),  # truncated JSON
    (b"\xff\xfe not utf-8", [("content-type", b"application/x-www-form-urlencoded")]),
    (b'{"EventType":"onDeliveryUpdated","MessageSid":"IMnot-a-sid"}', []),
    (b'{"sid":"DY00000000000000000000000000000000","message_sid":"IM1","status":"lost"}', []),
    (b"EventType=onDeliveryUpdated&Status=read", []),  # missing fields
    (b"[1, 2, 3]", [("content-type", b"application/cloudevents-batch+json")]),
)


def with_poison(records: list[Record], rate: float, *, seed: int = 1) -> tuple[list[Record], int]:
    """`records` with about `rate` times len(records) bad records inserted at random places."""
    if rate <= 0:
        return records, 0
    rng = random.Random(seed + 99)
    out: list[Record] = []
    poison = 0
    for record in records:
        if rng.random() < rate:
            value, headers = rng.choice(_POISON)
            out.append(Record(None if rng.random() < 0.5 else b"poison", value, headers))
            poison += 1
        out.append(record)
    return out, poison


def _with_time(record: Record, at: float) -> list[tuple[str, bytes]]:
    return [*record.headers, (PRODUCED_AT_HEADER, repr(at).encode())]


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

    `on_sent(index, epoch_time)` is called as each record is handed to the producer.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        acks=1,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    started = time.monotonic()
    try:
        for n, record in enumerate(records):
            now = time.time()
            await producer.send(
                topic, record.value, key=record.key, headers=_with_time(record, now)
            )
            if on_sent is not None:
                on_sent(n, now)
            if rate > 0 and n % 16 == 15:
                ahead_s = (n + 1) / rate - (time.monotonic() - started)
                if ahead_s > 0:
                    await asyncio.sleep(ahead_s)
            if progress is not None and n % 50_000 == 49_999:
                progress(n + 1)
        await producer.flush()
    finally:
        await producer.stop()
    return time.monotonic() - started


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
