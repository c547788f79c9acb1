"""Streams of N events for the tests and the benchmark: build them, produce them, feed them.

Built on worker/loadgen.py (realistic lifecycles, every input form, duplicates, disorder):

- `build_stream`: about N events as real users send them (the benchmark's streams and
  `python -m bench.loadgen`): any keying, CloudEvents arrays, Messaging status events, a
  rate of poison records;
- `make_stream`: at least N events plus a few poison records with distinct keys (the fault
  tests', whose checks expect exactly those keys on the DLQ);
- `produce`: every record to a topic, as fast as possible or at a fixed rate;
- `Feeder`: a steady background load, a piece at a time, for faults injected under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaProducer

from devstack.topics import MAX_MESSAGE_BYTES
from worker.config import Settings
from worker.events import ReceiptEvent, StatusEvent
from worker.loadgen import Record, disorder, encode_mixed, generate_events, outcomes_in_place


@dataclass
class Stream:
    """A generated stream: the valid events (in produce order) and the records holding them.

    Without arrays or poison there is one record per event; a CloudEvents array holds
    several, and a poison record (dead-lettered by the worker) holds none.
    """

    events: list[ReceiptEvent]  # every receipt event delivered, duplicates included
    records: list[Record]
    poison_keys: set[bytes] = field(default_factory=set)  # make_stream's poison records
    messages: int = 0
    poison: int = 0
    # Messaging status events standing in for some receipts' outcomes (duplicates included).
    statuses: tuple[StatusEvent, ...] = ()

    @property
    def event_count(self) -> int:
        """Every event the records hold: receipt events and Messaging status events."""
        return len(self.events) + len(self.statuses)

    def chunks(self, n: int) -> list[list[Record]]:
        size = math.ceil(len(self.records) / n)
        return [self.records[i : i + size] for i in range(0, len(self.records), size)]


# -- the benchmark's streams ---------------------------------------------------------------


def _events_up_to(
    target: int,
    *,
    seed: int,
    max_receipts: int,
    max_messages: int | None,
    whatsapp_prefix: str = "WA",
    start: datetime | None = None,
) -> tuple[list[ReceiptEvent], int]:
    """Whole messages' events until about `target` events (before duplication)."""
    out: list[ReceiptEvent] = []
    messages = 0
    last_message = ""
    limit = max_messages if max_messages is not None else target
    generated = generate_events(
        limit, seed=seed, max_receipts=max_receipts, whatsapp_prefix=whatsapp_prefix, start=start
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
    start: datetime | None = None,
) -> Stream:
    """About `events` events (duplicates included), in mixed input forms, out of order.

    With `messages`, exactly that many messages are generated, however many events they make.
    `keying` and `array_rate` are those of `worker.loadgen.encode_mixed`; `poison_rate` is the
    share of records that are bad (each kind the worker dead-letters), inserted at random.
    With `messaging_share`, that share of the receipts' outcomes are Messaging status
    events instead, each in the place of the receipt event it stands for
    (`worker.loadgen.outcomes_in_place`), in every Messaging form; with `scatter_statuses`,
    each at a random place of the whole stream instead (the worst case: about half come
    before their receipt, and none in the batch of its receipt's other events). `start` is
    when the first message is created (`worker.loadgen.generate_events`' default otherwise).
    """
    unique_target = max(1, round(events / (1 + duplicate_rate)))
    base, n_messages = _events_up_to(
        unique_target,
        seed=seed,
        max_receipts=max_receipts,
        max_messages=messages,
        whatsapp_prefix="SM" if messaging_share else "WA",
        start=start,
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
    return Stream(ordered, records, messages=n_messages, poison=poison, statuses=tuple(statuses))


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


# -- the fault tests' streams --------------------------------------------------------------

POISON_VALUES = (
    (b'{"EventType": "onDeliveryUpdated", "MessageSid": ', "malformed"),
    (b"\xff\xfe\x00garbage", "not_utf8"),
    (b"EventType=onDeliveryUpdated&MessageSid=IMnothex", "missing_field"),
)


def make_stream(
    min_events: int,
    *,
    seed: int,
    poison: int = 3,
    keying: str = "message",
    array_rate: float = 0.0,
    hot_messages: int = 0,
) -> Stream:
    """At least `min_events` events (10% duplicated, disordered) in every input form.

    `keying` is how records are keyed (worker.loadgen.KEYINGS), `array_rate` the share of
    events sent in CloudEvents arrays spanning messages, and `hot_messages` the number of
    group messages with 50 participants each. `poison` bad records, each with a key of its
    own (`Stream.poison_keys`), are inserted at random places.
    """
    messages = max(1, min_events // 6)
    while True:
        generated = generate_events(messages, seed=seed, hot_messages=hot_messages)
        events = disorder(list(generated), seed=seed, duplicate_rate=0.1)
        if len(events) >= min_events:
            break
        messages = int(messages * 1.2) + 1
    records = encode_mixed(events, seed=seed, keying=keying, array_rate=array_rate)
    rng = random.Random(seed)
    keys = set()
    for n in range(poison):
        value, _ = POISON_VALUES[n % len(POISON_VALUES)]
        key = b"poison-%d-%d" % (seed, n)
        keys.add(key)
        records.insert(rng.randrange(len(records)), Record(key, value, []))
    return Stream(events, records, keys, messages=messages, poison=poison)


# -- producing -----------------------------------------------------------------------------


def kafka_producer(
    bootstrap: str, *, linger_ms: int = 5, batch_bytes: int | None = None
) -> AIOKafkaProducer:
    """A producer for records up to the broker's 4 MiB; `batch_bytes` for large batches."""
    extra = {} if batch_bytes is None else {"max_batch_size": batch_bytes}
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=linger_ms,
        acks=1,
        max_request_size=MAX_MESSAGE_BYTES,
        **extra,
    )


def _settled(pending: list[asyncio.Future[object]]) -> list[asyncio.Future[object]]:
    """Those still in flight; raises the first delivery error among the others."""
    for future in pending:
        if future.done():
            future.result()
    return [f for f in pending if not f.done()]


async def send_records(
    producer: AIOKafkaProducer,
    topic: str,
    records: Sequence[Record],
    *,
    rate: float = 0.0,
    record_timestamps: bool = True,
    sent_at_header: str | None = None,
    on_sent: Callable[[int, float], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Send `records` (at `rate` records/s if > 0, else as fast as possible) and wait for
    every acknowledgement.

    `record_timestamps` gives each record its own timestamp where it has one (status
    callbacks carry no time: the record's stands in), else the broker's append time;
    `sent_at_header` names a header carrying the epoch time it was sent, for consumers that
    measure latency. `on_sent(index, epoch_time)` is called as each record is handed over,
    `progress(n)` every 50,000 records.
    """
    started = time.monotonic()
    pending: list[asyncio.Future[object]] = []
    for n, record in enumerate(records):
        now = time.time()
        headers = record.headers
        if sent_at_header is not None:
            headers = [*headers, (sent_at_header, repr(now).encode())]
        timestamp_ms = record.timestamp_ms if record_timestamps else None
        pending.append(
            await producer.send(
                topic, record.value, key=record.key, headers=headers, timestamp_ms=timestamp_ms
            )
        )
        if on_sent is not None:
            on_sent(n, now)
        if rate > 0 and n % 16 == 15:
            ahead_s = (n + 1) / rate - (time.monotonic() - started)
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)
        if len(pending) >= 10_000:
            pending = _settled(pending)
        if progress is not None and n % 50_000 == 49_999:
            progress(n + 1)
    await asyncio.gather(*pending)


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    linger_ms: int = 5,
    batch_bytes: int | None = None,
    rate: float = 0.0,
    record_timestamps: bool = True,
    sent_at_header: str | None = None,
    on_sent: Callable[[int, float], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Produce `records` to `topic` (the options of `send_records`); returns the seconds
    from the first send to the last acknowledgement."""
    producer = kafka_producer(bootstrap, linger_ms=linger_ms, batch_bytes=batch_bytes)
    await producer.start()
    try:
        started = time.monotonic()
        await send_records(
            producer,
            topic,
            records,
            rate=rate,
            record_timestamps=record_timestamps,
            sent_at_header=sent_at_header,
            on_sent=on_sent,
            progress=progress,
        )
        return time.monotonic() - started
    finally:
        await producer.stop()


class Feeder:
    """Produces records in the background as a steady load: `piece` records every `interval_s`.

    With `cycle`, it starts over when it reaches the end, so the load lasts as long as the
    test needs, however fast the workers are; repeated records change nothing in the reference
    reduction (it is idempotent). `next_piece()` returns just after a piece went out, so a fault
    injected then lands while the workers have fresh records. `finish()` produces whatever was
    never sent and stops; leaving the block early (a failing test) cancels it.
    """

    def __init__(
        self,
        settings: Settings,
        records: Sequence[Record],
        *,
        piece: int = 300,
        interval_s: float = 0.2,
        cycle: bool = True,
    ) -> None:
        self._settings = settings
        self._records = records
        self._piece = piece
        self._interval_s = interval_s
        self._cycle = cycle
        self._hurry = asyncio.Event()
        self._piece_out = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self.sent = 0  # records sent at least once (a prefix of `records`)
        self.produced = 0  # records sent, repeats included

    async def _send(self, records: Sequence[Record]) -> None:
        assert self._producer is not None
        await send_records(self._producer, self._settings.input_topic, records)
        self.produced += len(records)

    async def _run(self) -> None:
        records, n = self._records, len(self._records)
        position = 0
        while not self._hurry.is_set() and (self._cycle or position < n):
            start = position % n
            piece = records[start : start + self._piece]
            await self._send(piece)
            position += len(piece)
            self.sent = max(self.sent, min(n, position))
            self._piece_out.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), self._interval_s)
        if self.sent < n:
            await self._send(records[self.sent :])
            self.sent = n

    async def next_piece(self) -> None:
        assert self._task is not None
        self._piece_out.clear()
        waiter = asyncio.ensure_future(self._piece_out.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        assert waiter in done, "the feeder ran out before the fault: raise the stream size"

    async def finish(self) -> None:
        assert self._task is not None
        self._hurry.set()
        await self._task

    async def __aenter__(self) -> Feeder:
        self._producer = kafka_producer(self._settings.kafka_bootstrap_servers)
        await self._producer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None and self._producer is not None
        if not self._task.done():
            self._task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            await self._producer.stop()
