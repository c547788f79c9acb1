"""Summary-changed events: the message summary as committed, encoded for the summary topic.

The shape is described by schemas/summary-changed.schema.json; readers drop duplicates by
(message_sid, version) and keep the highest version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from worker.reduction import Counts, delivery_object

EVENT_TYPE = "com.example.delivery-receipts.summary.changed"
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Summary:
    """A message's summary row as committed, with its new version."""

    message_sid: str
    conversation_sid: str
    account_sid: str
    chat_service_sid: str | None
    counts: Counts
    version: int
    updated_at: datetime


def encode_summary_event(summary: Summary) -> bytes:
    return orjson.dumps(
        {
            "type": EVENT_TYPE,
            "schema_version": SCHEMA_VERSION,
            "message_sid": summary.message_sid,
            "conversation_sid": summary.conversation_sid,
            "account_sid": summary.account_sid,
            "chat_service_sid": summary.chat_service_sid,
            "version": summary.version,
            "delivery": delivery_object(summary.counts),
            "counts": summary.counts.as_dict(),
            "updated_at": summary.updated_at,
        }
    )
