"""Turns one Kafka record (any input form of docs/design.md, "Input forms") into typed events.

Pure: bytes and headers in, events out, or an InvalidRecord naming why. Nothing here
trusts the producer: every value is type-checked and normalised, whatever the form.

- records.py: which form a record is, and its envelope (JSON, form body, CloudEvents);
- receipts.py: the conversation receipt forms, as ReceiptEvents;
- statuses.py: the Messaging status forms, as StatusEvents;
- fields.py: one check per kind of value, with the reasons of refusal;
- fast.py: the receipt forms' fast path for the shape nearly every event has.
"""

from worker.parsing.fields import REASONS, InvalidRecord, parse_timestamp
from worker.parsing.receipts import CLOUDEVENT_TYPE, WEBHOOK_EVENT_TYPE
from worker.parsing.records import ParsedRecord, parse_record
from worker.parsing.statuses import (
    INBOUND_STATUSES,
    MESSAGING_CLOUDEVENT_PREFIX,
    MESSAGING_STATUSES,
)

__all__ = [
    "CLOUDEVENT_TYPE",
    "INBOUND_STATUSES",
    "MESSAGING_CLOUDEVENT_PREFIX",
    "MESSAGING_STATUSES",
    "REASONS",
    "WEBHOOK_EVENT_TYPE",
    "InvalidRecord",
    "ParsedRecord",
    "parse_record",
    "parse_timestamp",
]
