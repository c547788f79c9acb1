"""The read API's resources as Twilio shapes them (worker/api/serializers.py): receipts, messages
with their delivery summary, channel stats, history entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from worker.api import serializers


def sid(prefix: str, n: int = 1) -> str:
    return f"{prefix}{n:032x}"


def test_iso8601_is_utc_whole_seconds_z() -> None:
    when = datetime(2024, 3, 1, 12, 0, 5, 999_999, tzinfo=timezone(timedelta(hours=2)))
    assert serializers.iso8601(when) == "2024-03-01T10:00:05Z"
    assert serializers.iso8601_precise(when) == "2024-03-01T10:00:05.999999Z"
    assert serializers.iso8601(None) is None


def _receipt_row(**over: Any) -> dict[str, Any]:
    row = {
        "receipt_sid": sid("DY"),
        "account_sid": sid("AC"),
        "chat_service_sid": None,
        "conversation_sid": sid("CH"),
        "message_sid": sid("IM"),
        "participant_sid": sid("MB"),
        "channel_message_sid": sid("SM"),
        "channel": "sms",
        "status": "delivered",
        "error_code": None,
        "date_created": datetime(2024, 1, 1, tzinfo=UTC),
        "date_updated": datetime(2024, 1, 1, 0, 1, tzinfo=UTC),
    }
    row.update(over)
    return row


def test_receipt_shape() -> None:
    out = serializers.receipt(_receipt_row(), "http://h/r")
    assert out == {
        "account_sid": sid("AC"),
        "chat_service_sid": None,
        "conversation_sid": sid("CH"),
        "message_sid": sid("IM"),
        "sid": sid("DY"),
        "channel_message_sid": sid("SM"),
        "participant_sid": sid("MB"),
        "status": "delivered",
        "error_code": 0,
        "date_created": "2024-01-01T00:00:00Z",
        "date_updated": "2024-01-01T00:01:00Z",
        "url": "http://h/r",
        "channel": "sms",
    }
    assert serializers.receipt(_receipt_row(error_code=30008), "u")["error_code"] == 30008


@pytest.mark.parametrize(
    ("stored", "served"),
    [(s, s) for s in ("sent", "delivered", "read", "failed", "undelivered")] + [("queued", None)],
)
def test_receipt_status_is_twilio_enum_or_null(stored: str, served: str | None) -> None:
    assert serializers.receipt(_receipt_row(status=stored), "u")["status"] == served


def _summary_row(total: int, **counts: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "message_sid": sid("IM"),
        "conversation_sid": sid("CH"),
        "account_sid": sid("AC"),
        "chat_service_sid": sid("IS"),
        "total": total,
        "version": 3,
        "updated_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    for stage in serializers.STAGES:
        n = counts.get(stage, 0)
        row[f"{stage}_count"] = n
        row[stage] = "none" if n == 0 else "all" if n == total else "some"
    return row


def test_message_shape_with_spec_example(design_example_delivery: dict[str, int | str]) -> None:
    row = _summary_row(5, sent=5, delivered=3, read=2)
    out = serializers.message(row, "http://h/m", "http://h/m/Receipts")
    assert out["delivery"] == design_example_delivery
    assert out["delivery_counts"] == {
        "total": 5,
        "sent": 5,
        "delivered": 3,
        "read": 2,
        "failed": 0,
        "undelivered": 0,
    }
    assert out["links"] == {"delivery_receipts": "http://h/m/Receipts"}
    assert out["sid"] == sid("IM") and out["url"] == "http://h/m"
    for unknown in ("body", "author", "media", "attributes", "participant_sid", "content_sid"):
        assert out[unknown] is None
    # Twilio's schema has a non-null integer index; the worker cannot know it (docs/api.md).
    assert out["index"] == 0
    assert out["delivery_version"] == 3


def test_message_without_receipts_has_null_delivery() -> None:
    assert serializers.message(_summary_row(0), "u", "r")["delivery"] is None


def test_channel_stats_ratios() -> None:
    row = {"channel": "sms", "total": 4, "sent": 4, "delivered": 3, "read": 1}
    row |= {"failed": 0, "undelivered": 1}
    out = serializers.channel_stats(row)
    assert (out["delivered_ratio"], out["read_ratio"]) == (0.75, 0.25)
    assert serializers.ratio(1, 0) is None


def test_history_entry() -> None:
    row = {
        "id": 7,
        "message_sid": sid("IM"),
        "participant_sid": sid("MB"),
        "receipt_sid": sid("DY"),
        "channel": "sms",
        "status": "sent",
        "error_code": None,
        "date_updated": datetime(2024, 1, 1, 0, 0, 0, 5, tzinfo=UTC),
        "recorded_at": datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
    }
    out = serializers.history_entry(row, _receipt_row())
    assert out["date_updated"] == "2024-01-01T00:00:00.000005Z"
    assert out["date_recorded"] == "2024-01-01T00:00:01.000000Z"
    assert "id" not in out
    assert out["error_code"] == 0
    # The history is where the queued step shows: it keeps the worker's own status.
    assert serializers.history_entry({**row, "status": "queued"}, _receipt_row())["status"] == (
        "queued"
    )
