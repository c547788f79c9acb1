"""Messaging status events (input forms 5 and 6 of docs/design.md): the callback (form or JSON)
and Event Streams' type."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest

from worker.events import Status, StatusEvent
from worker.parsing import InvalidRecord, ParsedRecord, parse_record

LIMIT = 65536
ACCOUNT = "AC74bf20f876ffc474c0251908fcdce4b3"
SMS = "SM0c251bec1d1bfadde07682d7d40ab83e"
RECORD_TS_MS = 1_772_366_407_123  # 2026-03-01T12:00:07.123Z
FORM = [("content-type", b"application/x-www-form-urlencoded")]


def parse(
    value: bytes, headers: list[tuple[str, bytes]] | None = None, ts: int | None = RECORD_TS_MS
) -> ParsedRecord:
    return parse_record(value, headers or [], max_bytes=LIMIT, timestamp_ms=ts)


def callback(**changes: object) -> bytes:
    fields = {"MessageSid": SMS, "AccountSid": ACCOUNT, "MessageStatus": "delivered", **changes}
    return urlencode({k: v for k, v in fields.items() if v is not ...}).encode()


def messaging_ce(status: str = "DELIVERED", **data: object) -> dict[str, object]:
    body = {
        "messageSid": SMS,
        "accountSid": ACCOUNT,
        "messageStatus": status,
        "timestamp": "2026-03-01T12:00:09Z",
        **data,
    }
    return {
        "specversion": "1.0",
        "type": f"com.twilio.messaging.message.{status.lower()}",
        "data": {k: v for k, v in body.items() if v is not ...},
    }


def test_callback_form_sample_takes_the_record_timestamp(samples: Path) -> None:
    result = parse((samples / "status-callback-form.txt").read_bytes(), FORM)
    assert result.events == [] and result.statuses == [
        StatusEvent(
            ACCOUNT,
            SMS,
            Status.UNDELIVERED,
            30003,
            datetime(2026, 3, 1, 12, 0, 7, 123000, tzinfo=UTC),
        )
    ]


def test_callback_json_sample(samples: Path) -> None:
    [status] = parse((samples / "status-callback.json").read_bytes()).statuses
    assert (status.status, status.error_code) == (Status.DELIVERED, None)


def test_messaging_cloudevent_sample_prefers_date_updated(samples: Path) -> None:
    [status] = parse((samples / "messaging-cloudevent.json").read_bytes()).statuses
    assert status.date_updated == datetime(2026, 3, 1, 12, 0, 9, 118000, tzinfo=UTC)
    assert status.status is Status.DELIVERED


def test_messaging_cloudevents_batch_sample(samples: Path) -> None:
    statuses = parse((samples / "messaging-cloudevents-batch.json").read_bytes()).statuses
    assert [(s.status, s.error_code, s.channel_message_sid[:2]) for s in statuses] == [
        (Status.SENT, None, "SM"),
        (Status.FAILED, 30008, "MM"),
    ]


def test_an_array_may_mix_receipt_and_messaging_events(samples: Path) -> None:
    receipts = orjson.loads((samples / "cloudevents-batch.json").read_bytes())
    mixed = orjson.dumps([*receipts, messaging_ce()])
    result = parse(mixed)
    assert len(result.events) == len(receipts) and len(result.statuses) == 1


@pytest.mark.parametrize(
    ("given", "status"),
    [
        ("accepted", Status.QUEUED),
        ("scheduled", Status.QUEUED),
        ("queued", Status.QUEUED),
        ("sending", Status.QUEUED),
        ("sent", Status.SENT),
        ("delivered", Status.DELIVERED),
        ("read", Status.READ),
        ("failed", Status.FAILED),
        ("undelivered", Status.UNDELIVERED),
        ("canceled", Status.FAILED),
        ("partially_delivered", Status.SENT),
    ],
)
def test_status_mapping(given: str, status: Status) -> None:
    assert parse(callback(MessageStatus=given), FORM).statuses[0].status is status
    ce = orjson.dumps(messaging_ce(given.upper()))
    assert parse(ce).statuses[0].status is status


@pytest.mark.parametrize("inbound", ["received", "receiving"])
def test_inbound_statuses_are_skipped(inbound: str) -> None:
    result = parse(callback(MessageStatus=inbound), FORM)
    assert result.statuses == [] and result.skipped == ["inbound_status"]


def test_sms_status_alone_is_enough() -> None:
    [status] = parse(callback(MessageStatus=..., SmsStatus="sent"), FORM).statuses
    assert status.status is Status.SENT


def test_the_type_names_the_status_when_data_does_not() -> None:
    [status] = parse(orjson.dumps(messaging_ce("READ", messageStatus=...))).statuses
    assert status.status is Status.READ


def test_error_code_as_a_string_in_event_streams_data() -> None:
    [status] = parse(orjson.dumps(messaging_ce("UNDELIVERED", errorCode="30005"))).statuses
    assert status.error_code == 30005


@pytest.mark.parametrize(
    ("value", "headers", "ts", "reason"),
    [
        (callback(MessageStatus="exploded"), FORM, RECORD_TS_MS, "unknown_status"),
        (
            callback(MessageSid="IM0c251bec1d1bfadde07682d7d40ab83e"),
            FORM,
            RECORD_TS_MS,
            "invalid_sid",
        ),
        (callback(MessageSid="SM123"), FORM, RECORD_TS_MS, "invalid_sid"),
        (callback(AccountSid=...), FORM, RECORD_TS_MS, "missing_field"),
        (callback(ErrorCode="x"), FORM, RECORD_TS_MS, "invalid_error_code"),
        (callback(), FORM, None, "missing_field"),
        (callback(MessageStatus="received", AccountSid="AC1"), FORM, RECORD_TS_MS, "invalid_sid"),
        (orjson.dumps(messaging_ce(timestamp=...)), [], RECORD_TS_MS, "missing_field"),
        (orjson.dumps(messaging_ce(timestamp="soon")), [], RECORD_TS_MS, "invalid_date"),
        (orjson.dumps(messaging_ce("BOUNCED")), [], RECORD_TS_MS, "unknown_status"),
        (orjson.dumps(messaging_ce(messageSid=...)), [], RECORD_TS_MS, "missing_field"),
    ],
)
def test_bad_status_events_are_dead_letters(
    value: bytes, headers: list[tuple[str, bytes]], ts: int | None, reason: str
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse(value, headers, ts)
    assert caught.value.reason == reason
