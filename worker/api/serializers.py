"""Turns database rows into the JSON resources Twilio's Conversations v1 API returns.

Pure functions: a row mapping and the absolute URLs in, a JSON-ready dict out. The Twilio
resources carry every field Twilio's OpenAPI document (twilio-oai, twilio_conversations_v1)
defines for them, with values its schemas accept; docs/api.md explains each choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from worker.events import STAGES, Status

# Twilio's delivery-status enum; the worker's `queued` (not yet sent) is not in it.
TWILIO_STATUSES = frozenset(s.label for s in Status if s is not Status.QUEUED)
# The index of a message in its conversation is unknown to the worker; Twilio's schema has
# it as a non-null integer defaulting to 0.
UNKNOWN_INDEX = 0


def twilio_status(status: str) -> str | None:
    """The status as Twilio serves it: null while the receipt is still queued."""
    return status if status in TWILIO_STATUSES else None


def twilio_error_code(error_code: int | None) -> int:
    """Twilio's ``error_code`` is an integer, 0 when there is no error (stored as NULL)."""
    return error_code if error_code is not None else 0


def iso8601(value: datetime | None) -> str | None:
    """Twilio's timestamp format: UTC, whole seconds, ``Z`` (``2016-03-24T20:37:57Z``)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso8601_precise(value: datetime | None) -> str | None:
    """UTC with microseconds, for the extensions whose order depends on sub-second times."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def receipt(row: Mapping[str, Any], url: str) -> dict[str, Any]:
    """A Receipt resource, as Twilio serves it on both the unscoped and the service path."""
    return {
        "account_sid": row["account_sid"],
        "chat_service_sid": row["chat_service_sid"],
        "conversation_sid": row["conversation_sid"],
        "message_sid": row["message_sid"],
        "sid": row["receipt_sid"],
        "channel_message_sid": row["channel_message_sid"],
        "participant_sid": row["participant_sid"],
        "status": twilio_status(row["status"]),
        "error_code": twilio_error_code(row["error_code"]),
        "date_created": iso8601(row["date_created"]),
        "date_updated": iso8601(row["date_updated"]),
        "url": url,
        # Not in Twilio's resource; the worker derives it and the stats are grouped by it.
        "channel": row["channel"],
    }


def history_entry(row: Mapping[str, Any], receipt_row: Mapping[str, Any]) -> dict[str, Any]:
    """One applied status change of a receipt (this API's extension; Twilio keeps none).

    The status is the worker's own, ``queued`` included: the history is where that step shows.
    ``error_code`` follows Twilio's convention (0 for none) like the receipt it belongs to.
    """
    return {
        "account_sid": receipt_row["account_sid"],
        "conversation_sid": receipt_row["conversation_sid"],
        "message_sid": row["message_sid"],
        "receipt_sid": row["receipt_sid"],
        "participant_sid": row["participant_sid"],
        "channel": row["channel"],
        "status": row["status"],
        "error_code": twilio_error_code(row["error_code"]),
        "date_updated": iso8601_precise(row["date_updated"]),
        "date_recorded": iso8601_precise(row["recorded_at"]),
    }


def delivery(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """Twilio's ``delivery`` object; null when the message has no non-chat receipts, as Twilio."""
    if row["total"] == 0:
        return None
    return {"total": row["total"], **{stage: row[stage] for stage in STAGES}}


def delivery_counts(row: Mapping[str, Any]) -> dict[str, int]:
    """The counts behind the all/some/none words (docs/design.md, "Summary counts", keeps and
    exposes them)."""
    return {"total": row["total"], **{stage: row[f"{stage}_count"] for stage in STAGES}}


def message(row: Mapping[str, Any], url: str, receipts_url: str) -> dict[str, Any]:
    """A Message resource; what only Twilio knows (body, author, ...) is null, ``index`` 0."""
    return {
        "account_sid": row["account_sid"],
        "chat_service_sid": row["chat_service_sid"],
        "conversation_sid": row["conversation_sid"],
        "sid": row["message_sid"],
        "index": UNKNOWN_INDEX,
        "author": None,
        "body": None,
        "media": None,
        "attributes": None,
        "participant_sid": None,
        "date_created": None,
        "date_updated": None,
        "content_sid": None,
        "url": url,
        "delivery": delivery(row),
        "links": {"delivery_receipts": receipts_url},
        # Extensions, named so they cannot clash with a future Twilio field.
        "delivery_counts": delivery_counts(row),
        "delivery_version": row["version"],
        "delivery_updated_at": iso8601(row["updated_at"]),
    }


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def channel_stats(row: Mapping[str, Any]) -> dict[str, Any]:
    """Counts and ratios of one channel; ratios are over every receipt created in the window."""
    total: int = row["total"]
    return {
        "channel": row["channel"],
        "total": total,
        **{stage: row[stage] for stage in STAGES},
        "delivered_ratio": ratio(row["delivered"], total),
        "read_ratio": ratio(row["read"], total),
    }


def delivery_stats(
    rows: list[Mapping[str, Any]], window: str, start: datetime, end: datetime, url: str
) -> dict[str, Any]:
    return {
        "window": window,
        "start": iso8601_precise(start),
        "end": iso8601_precise(end),
        "channels": [channel_stats(r) for r in rows],
        "url": url,
    }
