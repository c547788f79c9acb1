"""The compiled fast paths (native/, a Rust extension), where installed; None where not.

`FAST_PARSER` reads records whose events (receipts, Messaging statuses) all have the common
shape; `copy_binary` encodes the batch's rows for binary COPY; `murmur2` is Kafka's
partitioning hash, for the outbox relay. All three are optional: without them the worker
gives the same results from its Python code, with about twice the CPU per event
(docs/benchmark.md, "Compiled fast paths"). The tests run both ways.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC

from worker.events import ReceiptEvent, Status, StatusEvent
from worker.parsing.statuses import MESSAGING_STATUSES

try:
    import receipts_native
except ImportError:  # not built here: the Python paths do the same work
    FAST_PARSER: receipts_native.FastParser | None = None
    copy_binary: Callable[[Iterable[tuple[object, ...]], str], bytes] | None = None
    murmur2: Callable[[bytes], int] | None = None
else:
    FAST_PARSER = receipts_native.FastParser(
        ReceiptEvent,
        StatusEvent,
        [("", Status.QUEUED), *((s.label, s) for s in Status)],
        list(MESSAGING_STATUSES.items()),
        UTC,
    )
    copy_binary = receipts_native.copy_binary
    murmur2 = receipts_native.murmur2


def describe() -> str:
    """What the start-up log says about this process's parsing, COPY and hashing."""
    if FAST_PARSER is None:
        return "pure Python (receipts_native is not installed)"
    return "compiled (receipts_native)"
