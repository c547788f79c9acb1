"""The worker's parsing fast path in compiled code (native/src/lib.rs)."""

from collections.abc import Iterable, Sequence
from datetime import tzinfo

from worker.events import ReceiptEvent, Status

class FastParser:
    def __init__(
        self,
        event_type: type[ReceiptEvent],
        statuses: Sequence[tuple[str, Status]],
        utc: tzinfo,
    ) -> None: ...
    def json_events(self, value: bytes) -> list[ReceiptEvent] | None:
        """A JSON record's events if it is a receipt form (webhook, CloudEvent or an array of
        them, REST resource) and every event has the common shape, else None."""
    def form_events(self, value: bytes) -> list[ReceiptEvent] | None:
        """A form body's event if it is the receipt webhook with the common shape, else None."""

def copy_binary(rows: Iterable[tuple[object, ...]], kinds: str) -> bytes:
    """The rows as one binary COPY stream; `kinds` has one letter per column: t text,
    h smallint, i integer, q bigint, z timestamptz (an aware datetime), b bytea."""

def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the default partitioner's), as worker.publisher.murmur2."""
