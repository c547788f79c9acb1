from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from worker.events import Status
from worker.parsing import InvalidRecord, parse_record

LIMIT = 65536
GOOD = {
    "EventType": "onDeliveryUpdated",
    "AccountSid": "AC74bf20f876ffc474c0251908fcdce4b3",
    "ChatServiceSid": "IS14f68d9dcbd7a085a368932ff2b2d409",
    "ConversationSid": "CHdd311ca871902316d9841aab4ccec38d",
    "MessageSid": "IM79d89a0da0c41aebb8f010b8e9a5b5ab",
    "DeliveryReceiptSid": "DY78d1fa0141312f12fa5a2bcc9b86ad34",
    "ChannelMessageSid": "SM0c251bec1d1bfadde07682d7d40ab83e",
    "ParticipantSid": "MB3c3a30f47c123c50a303f99217331a52",
    "Status": "undelivered",
    "ErrorCode": 30003,
    "DateCreated": "2026-03-01T12:00:00Z",
    "DateUpdated": "2026-03-01T12:00:07Z",
}


def parse(value: bytes | None, headers: list[tuple[str, bytes]] | None = None):  # type: ignore[no-untyped-def]
    return parse_record(value, headers or [], max_bytes=LIMIT)


def webhook(**changes: object) -> bytes:
    doc = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def reason_of(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> str:
    with pytest.raises(InvalidRecord) as caught:
        parse(value, headers)
    return caught.value.reason


# -- the four forms ----------------------------------------------------------------------------


def test_cloudevent_sample(samples: Path) -> None:
    [event] = parse((samples / "cloudevent.json").read_bytes()).events
    assert event.status is Status.READ
    assert event.channel == "whatsapp"
    assert event.error_code is None
    assert event.date_created == datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert event.date_updated == datetime(2026, 3, 1, 12, 0, 42, tzinfo=UTC)
    assert event.key == ("IM79d89a0da0c41aebb8f010b8e9a5b5ab", "MB6d10f35970d13a48f1b763357840fc18")


def test_cloudevent_batch_sample(samples: Path) -> None:
    events = parse((samples / "cloudevents-batch.json").read_bytes()).events
    assert [(e.status, e.channel, e.error_code) for e in events] == [
        (Status.READ, "whatsapp", None),
        (Status.UNDELIVERED, "sms", 30003),
    ]


def test_webhook_json_and_form_agree(samples: Path) -> None:
    [from_json] = parse((samples / "webhook.json").read_bytes()).events
    [from_form] = parse((samples / "webhook-form.txt").read_bytes()).events
    assert from_json == from_form
    assert from_form.error_code == 30003  # typed from the form's string
    assert from_form.date_updated == datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)  # RFC 2822


def test_form_detected_by_header_too(samples: Path) -> None:
    body = (samples / "webhook-form.txt").read_bytes()
    headers = [("Content-Type", b"application/x-www-form-urlencoded; charset=utf-8")]
    assert parse(body, headers).events == parse(body).events


def test_receipt_resource_sample(samples: Path) -> None:
    [event] = parse((samples / "receipt-resource.json").read_bytes()).events
    assert event.receipt_sid == "DY89c3049787a5d33aa7e52a6e87316a58"
    assert event.error_code is None  # 0 means no error
    assert event.status is Status.READ


def test_cloudevent_binary_mode_headers() -> None:
    data = orjson.dumps({k: v for k, v in GOOD.items() if k != "EventType"})
    headers = [
        ("ce_type", b"com.twilio.conversations.delivery.updated"),
        ("ce_specversion", b"1.0"),
    ]
    assert parse(data, headers).events[0].status is Status.UNDELIVERED


# -- value rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [None, ""])
def test_empty_status_is_queued(status: object) -> None:
    assert parse(webhook(Status=status)).events[0].status is Status.QUEUED


@pytest.mark.parametrize("code", [None, "", 0, "0", ...])
def test_no_error_code_variants(code: object) -> None:
    assert parse(webhook(ErrorCode=code)).events[0].error_code is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T12:00:07Z", datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)),
        ("2026-03-01T12:00:07.250Z", datetime(2026, 3, 1, 12, 0, 7, 250000, tzinfo=UTC)),
        ("2026-03-01T14:00:07+02:00", datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)),
        ("2026-03-01T12:00:07.123456+00:00", datetime(2026, 3, 1, 12, 0, 7, 123456, tzinfo=UTC)),
        ("2026-03-01T12:00:07", datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)),
        ("Sun, 01 Mar 2026 12:00:07 +0000", datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)),
        ("Sun, 01 Mar 2026 07:00:07 -0500", datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)),
    ],
)
def test_date_forms(text: str, expected: datetime) -> None:
    assert parse(webhook(DateUpdated=text)).events[0].date_updated == expected


@pytest.mark.parametrize(
    ("fields", "channel"),
    [
        ({"ChannelMessageSid": "WAa2b4d98ebd9dd1d460fd71e9a7293711"}, "whatsapp"),
        ({"ChannelMessageSid": "MMa2b4d98ebd9dd1d460fd71e9a7293711"}, "sms"),
        ({"ChannelMessageSid": None}, "unknown"),
        ({"ChannelMessageSid": "XYa2b4d98ebd9dd1d460fd71e9a7293711"}, "unknown"),
        ({"Channel": "WhatsApp"}, "whatsapp"),
    ],
)
def test_channel(fields: dict[str, object], channel: str) -> None:
    assert parse(webhook(**fields)).events[0].channel == channel


def test_chat_channel_is_skipped_not_dead_lettered() -> None:
    result = parse(webhook(Channel="chat"))
    assert result.events == [] and result.skipped == ["chat_channel"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"Status": "bounced"}, "unknown_status"),
        ({"MessageSid": ...}, "missing_field"),
        ({"ParticipantSid": "MB123"}, "invalid_sid"),
        ({"DateCreated": "yesterday"}, "invalid_date"),
    ],
)
def test_a_bad_chat_event_is_a_dead_letter_not_a_skip(
    fields: dict[str, object], reason: str
) -> None:
    assert reason_of(webhook(Channel="chat", **fields)) == reason


@pytest.mark.parametrize("missing", [None, "", ...])
def test_no_date_updated_means_not_updated_since_created(missing: object) -> None:
    [event] = parse(webhook(DateUpdated=missing)).events
    assert event.date_updated == event.date_created == datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_receipt_resource_with_null_date_updated(samples: Path) -> None:
    doc = orjson.loads((samples / "receipt-resource.json").read_bytes())
    doc["date_updated"] = None
    [event] = parse(orjson.dumps(doc)).events
    assert event.date_updated == event.date_created


def test_form_body_with_empty_date_updated() -> None:
    body = (
        b"EventType=onDeliveryUpdated&AccountSid=AC74bf20f876ffc474c0251908fcdce4b3"
        b"&ConversationSid=CHdd311ca871902316d9841aab4ccec38d"
        b"&MessageSid=IM79d89a0da0c41aebb8f010b8e9a5b5ab"
        b"&DeliveryReceiptSid=DY78d1fa0141312f12fa5a2bcc9b86ad34"
        b"&ParticipantSid=MB3c3a30f47c123c50a303f99217331a52&Status=sent&ErrorCode="
        b"&DateCreated=2026-03-01T12%3A00%3A00Z&DateUpdated="
    )
    [event] = parse(body).events
    assert event.date_updated == event.date_created and event.status is Status.SENT


@pytest.mark.parametrize(
    ("channel_message_sid", "stored", "channel"),
    [
        ("sm0C251BEC1D1BFADDE07682D7D40AB83E", "SM0c251bec1d1bfadde07682d7d40ab83e", "sms"),
        ("Wa0c251bec1d1bfadde07682d7d40ab83e", "WA0c251bec1d1bfadde07682d7d40ab83e", "whatsapp"),
        ("XY0c251bec1d1bfadde07682d7d40ab83e", "XY0c251bec1d1bfadde07682d7d40ab83e", "unknown"),
    ],
)
def test_channel_message_sid_takes_any_two_letter_prefix(
    channel_message_sid: str, stored: str, channel: str
) -> None:
    [event] = parse(webhook(ChannelMessageSid=channel_message_sid)).events
    assert (event.channel_message_sid, event.channel) == (stored, channel)


def test_upper_case_hex_in_every_sid_is_stored_lower_case() -> None:
    upper = {k: v[:2] + v[2:].upper() for k, v in GOOD.items() if k.endswith("Sid")}
    [event] = parse(webhook(**upper)).events
    [reference] = parse(webhook()).events
    assert event == reference


def test_other_event_types_are_skipped() -> None:
    assert parse(webhook(EventType="onMessageAdded")).skipped == ["other_event_type"]
    ce = orjson.dumps({"specversion": "1.0", "type": "com.twilio.other", "data": {}})
    assert parse(ce).skipped == ["other_event_type"]
    assert parse(b"EventType=onMessageAdded&Body=hi").skipped == ["other_event_type"]


def test_unknown_fields_are_ignored() -> None:
    assert parse(webhook(Extra="x", Nested={"a": [1]})).events


def test_sid_hex_case_is_normalised() -> None:
    event = parse(webhook(MessageSid="IM79D89A0DA0C41AEBB8F010B8E9A5B5AB")).events[0]
    assert event.message_sid == "IM79d89a0da0c41aebb8f010b8e9a5b5ab"


# -- bad input: each kind gets its reason ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty_value"),
        (b"", "empty_value"),
        (b"{" + b" " * LIMIT + b"}", "too_large"),
        (b'{"EventType": "onDeliveryUpdated", \xff}', "not_utf8"),
        (b"EventType=onDeliveryUpdated&Status=\xff", "not_utf8"),
        (b'{"EventType": "onDeliveryUpdated",', "malformed"),
        (b"[" * 5000 + b"]" * 5000, "malformed"),
        (b"a=1&a=2&EventType=onDeliveryUpdated", "malformed"),
        (b"no equals sign here", "malformed"),
        (b"42", "malformed"),  # not JSON-looking, so parsed as a form body
        (b'{"hello": "world"}', "unknown_form"),
        (b"[1, 2]", "unknown_form"),
        (b"Status=read", "unknown_form"),
        (webhook(MessageSid=...), "missing_field"),
        (webhook(DateCreated=None), "missing_field"),
        (webhook(MessageSid=12), "wrong_type"),
        (webhook(Status=["read"]), "wrong_type"),
        (webhook(ErrorCode=True), "wrong_type"),
        (webhook(ErrorCode=1.5), "wrong_type"),
        (webhook(ErrorCode={"code": 1}), "wrong_type"),
        (webhook(MessageSid="IM123"), "invalid_sid"),
        (webhook(MessageSid="CH79d89a0da0c41aebb8f010b8e9a5b5ab"), "invalid_sid"),
        (webhook(ParticipantSid="MB79d89a0da0c41aebb8f010b8e9a5b5a\u0000"), "invalid_sid"),
        (webhook(ChannelMessageSid="s10c251bec1d1bfadde07682d7d40ab83e"), "invalid_sid"),
        (webhook(Status="bounced"), "unknown_status"),
        (webhook(DateUpdated="yesterday"), "invalid_date"),
        (webhook(DateUpdated="2026-13-01T00:00:00Z"), "invalid_date"),
        (webhook(DateUpdated="2026-03-01T25:00:00Z"), "invalid_date"),
        (webhook(DateCreated="0000-01-01T00:00:00Z"), "invalid_date"),
        (webhook(ErrorCode="30003x"), "invalid_error_code"),
        (webhook(ErrorCode=-1), "invalid_error_code"),
        (webhook(ErrorCode=2**40), "invalid_error_code"),
        (webhook(Channel="SMS!!"), "invalid_channel"),
    ],
)
def test_bad_input_reason(value: bytes | None, reason: str) -> None:
    assert reason_of(value) == reason


@pytest.mark.parametrize("value", [b"42", b'"just a string"', b"null", b"true"])
def test_json_scalars_are_not_a_form(value: bytes) -> None:
    assert reason_of(value, [("content-type", b"application/json")]) == "unknown_form"


def test_a_bad_item_spoils_its_whole_batch(samples: Path) -> None:
    batch = orjson.loads((samples / "cloudevents-batch.json").read_bytes())
    batch[1]["data"]["Status"] = "nope"
    with pytest.raises(InvalidRecord, match="batch item 1") as caught:
        parse(orjson.dumps(batch))
    assert caught.value.reason == "unknown_status"


def test_error_message_names_the_field() -> None:
    with pytest.raises(InvalidRecord, match="ParticipantSid: expected MB"):
        parse(webhook(ParticipantSid="IM79d89a0da0c41aebb8f010b8e9a5b5ab"))
