"""The worker's parsing fast path in compiled code (native/src/lib.rs)."""

from collections.abc import Iterable, Sequence
from datetime import tzinfo

from worker.events import ReceiptEvent, Status, StatusEvent

Events = tuple[list[ReceiptEvent], list[StatusEvent]]

class FastParser:
    def __init__(
        self,
        event_type: type[ReceiptEvent],
        status_event_type: type[StatusEvent],
        statuses: Sequence[tuple[str, Status]],
        messaging_statuses: Sequence[tuple[str, Status]],
        utc: tzinfo,
    ) -> None: ...
    def json_events(self, value: bytes, timestamp_ms: int | None = None) -> Events | None:
        """A JSON record's (receipt events, status events) if every event in it has the
        common shape, else None; `timestamp_ms` is a status callback's time."""
    def form_events(self, value: bytes, timestamp_ms: int | None = None) -> Events | None:
        """A form body's (receipt events, status events) if it is the receipt webhook or a
        status callback of the common shape, else None."""

def copy_binary(rows: Iterable[tuple[object, ...]], kinds: str) -> bytes:
    """The rows as one binary COPY stream; `kinds` has one letter per column: t text,
    h smallint, i integer, q bigint, z timestamptz (an aware datetime), b bytea."""

def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the default partitioner's), as worker.publisher.murmur2."""
