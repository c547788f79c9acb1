"""Synthetic receipt streams: realistic lifecycles, every input form, duplicates, disorder.

Used by `worker produce` (to try the worker or size a deployment), by the tests and by bench/.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import TypeVar
from urllib.parse import urlencode

import orjson

from worker.events import ReceiptEvent, Status, StatusEvent
from worker.parsing import CLOUDEVENT_TYPE, MESSAGING_CLOUDEVENT_PREFIX, WEBHOOK_EVENT_TYPE
from worker.sids import CHANNEL_MESSAGE_PREFIXES, implied_channel

FORMS = ("cloudevent", "cloudevent_batch", "webhook_json", "webhook_form", "receipt_json")
# The Messaging status forms (5 and 6 of docs/design.md, "Input forms").
STATUS_FORMS = (
    "callback_form",
    "callback_json",
    "messaging_cloudevent",
    "messaging_cloudevent_batch",
)

# How producers key their records (docs/design.md, "Input forms", keys and partitions):
# nothing in the worker's result may depend on it. "mixed" is half by message, a quarter by
# conversation, a quarter unkeyed, as a fleet of different producers would write to one topic.
KEYINGS = ("message", "conversation", "random", "none", "mixed")

E = TypeVar("E")  # an event of any kind: disorder() shuffles receipts and statuses alike

_EPOCH = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Record:
    """A Kafka record to produce: key, value and headers."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    # The record's own timestamp, for forms whose time is the record's (status callbacks).
    timestamp_ms: int | None = None


def sid(prefix: str, rng: random.Random) -> str:
    return prefix + f"{rng.getrandbits(128):032x}"


def lifecycle(rng: random.Random, channel_prefix: str) -> list[tuple[Status, int | None]]:
    """The statuses one receipt goes through, as Twilio would report them."""
    roll = rng.random()
    if roll < 0.05:
        return [(Status.FAILED, rng.choice([30001, 30007, 63016]))]
    if roll < 0.15:
        return [(Status.SENT, None), (Status.UNDELIVERED, rng.choice([30003, 30005, 30006, 30008]))]
    if roll < 0.25:
        return [(Status.SENT, None)]
    steps: list[tuple[Status, int | None]] = [(Status.SENT, None), (Status.DELIVERED, None)]
    if channel_prefix == "WA" and rng.random() < 0.6:
        steps.append((Status.READ, None))
    return steps


def generate_events(
    messages: int,
    *,
    seed: int = 1,
    max_receipts: int = 5,
    hot_messages: int = 0,
    hot_participants: int = 50,
    whatsapp_prefix: str = "WA",
    start: datetime | None = None,
) -> Iterator[ReceiptEvent]:
    """Events of `messages` messages with 1..max_receipts receipts each, in lifecycle order.

    The first `hot_messages` are group messages with `hot_participants` receipts each, whose
    events all arrive close together: the contention case for concurrent replicas.
    `whatsapp_prefix="SM"` gives WhatsApp channel messages the SM SIDs that Messaging
    status events name (their receipts then carry an explicit `Channel`). Message n is
    created `n` seconds after `start` (2026-03-01 by default).
    """
    first = _EPOCH if start is None else start
    rng = random.Random(seed)
    account = sid("AC", rng)
    service = sid("IS", rng)
    for n in range(messages):
        conversation = sid("CH", rng)
        message = sid("IM", rng)
        created = first + timedelta(seconds=n)
        receipts = hot_participants if n < hot_messages else rng.randint(1, max_receipts)
        for _ in range(receipts):
            prefix = rng.choice(("SM", "WA", "WA", "MM"))
            receipt, participant = sid("DY", rng), sid("MB", rng)
            channel_message = sid(whatsapp_prefix if prefix == "WA" else prefix, rng)
            at = created
            for status, error in lifecycle(rng, prefix):
                at += timedelta(seconds=rng.randint(1, 30), microseconds=rng.randint(0, 999) * 1000)
                yield ReceiptEvent(
                    account_sid=account,
                    chat_service_sid=service,
                    conversation_sid=conversation,
                    message_sid=message,
                    receipt_sid=receipt,
                    channel_message_sid=channel_message,
                    participant_sid=participant,
                    channel="whatsapp" if prefix == "WA" else "sms",
                    status=status,
                    error_code=error,
                    date_created=created,
                    date_updated=at,
                )


def disorder(
    events: list[E], *, seed: int = 1, duplicate_rate: float = 0.1, window: int = 50
) -> list[E]:
    """Duplicate some events and shuffle within a sliding window, as retried webhooks arrive."""
    rng = random.Random(seed)
    out = [e for e in events for _ in range(2 if rng.random() < duplicate_rate else 1)]
    for i in range(len(out)):
        j = min(len(out) - 1, i + rng.randint(0, window))
        out[i], out[j] = out[j], out[i]
    return out


def _iso(at: datetime, rng: random.Random) -> str:
    """RFC 3339 in the spellings producers use: with or without fractions, Z or an offset."""
    if at.microsecond == 0 and rng.random() < 0.5:
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if rng.random() < 0.2:
        return at.astimezone(timezone(timedelta(hours=-5))).isoformat(timespec="milliseconds")
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pascal(e: ReceiptEvent, rng: random.Random) -> dict[str, object]:
    return pascal_fields(e, lambda at: _iso(at, rng))


def pascal_fields(e: ReceiptEvent, format_date: Callable[[datetime], str]) -> dict[str, object]:
    """The event as Twilio's PascalCase webhook fields, dates spelled by `format_date`."""
    channel = {} if e.channel == implied_channel(e.channel_message_sid) else {"Channel": e.channel}
    return {
        **channel,
        "AccountSid": e.account_sid,
        "ChatServiceSid": e.chat_service_sid,
        "ConversationSid": e.conversation_sid,
        "MessageSid": e.message_sid,
        "DeliveryReceiptSid": e.receipt_sid,
        "ChannelMessageSid": e.channel_message_sid,
        "ParticipantSid": e.participant_sid,
        "Status": e.status.label,
        "ErrorCode": e.error_code,
        "DateCreated": format_date(e.date_created),
        "DateUpdated": format_date(e.date_updated),
    }


def _cloudevent(e: ReceiptEvent, rng: random.Random) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "type": CLOUDEVENT_TYPE,
        "source": f"/v1/Conversations/{e.conversation_sid}",
        "id": sid("EZ", rng),
        "time": _iso(e.date_updated, rng),
        "datacontenttype": "application/json",
        "data": _pascal(e, rng),
    }


def encode(e: ReceiptEvent, form: str, rng: random.Random) -> Record:
    """One event as a Kafka record in the given input form, keyed by message SID."""
    key = e.message_sid.encode()
    if form in ("cloudevent", "cloudevent_batch"):
        body = _cloudevent(e, rng)
        value = orjson.dumps([body] if form == "cloudevent_batch" else body)
        return Record(key, value, [("content-type", b"application/cloudevents+json")])
    if form == "webhook_json":
        value = orjson.dumps({"EventType": WEBHOOK_EVENT_TYPE, **_pascal(e, rng)})
        return Record(key, value, [])
    if form == "webhook_form":
        fields = {"EventType": WEBHOOK_EVENT_TYPE, **_pascal(e, rng)}
        fields["ErrorCode"] = "" if e.error_code is None else str(e.error_code)
        fields["DateCreated"] = format_datetime(e.date_created)
        fields["DateUpdated"] = format_datetime(e.date_updated)
        if e.date_updated.microsecond:
            # RFC 2822 has no fractions; keep this event's exact time in ISO form instead.
            fields["DateUpdated"] = e.date_updated.isoformat()
        if e.date_created.microsecond:
            fields["DateCreated"] = e.date_created.isoformat()
        value = urlencode({k: "" if v is None else v for k, v in fields.items()}).encode()
        return Record(key, value, [("content-type", b"application/x-www-form-urlencoded")])
    if form == "receipt_json":
        value = orjson.dumps(
            {
                "sid": e.receipt_sid,
                "account_sid": e.account_sid,
                "chat_service_sid": e.chat_service_sid,
                "conversation_sid": e.conversation_sid,
                "message_sid": e.message_sid,
                "channel_message_sid": e.channel_message_sid,
                "participant_sid": e.participant_sid,
                "status": e.status.label,
                "error_code": e.error_code or 0,
                **(
                    {}
                    if e.channel == implied_channel(e.channel_message_sid)
                    else {"channel": e.channel}
                ),
                "date_created": _iso(e.date_created, rng),
                "date_updated": _iso(e.date_updated, rng),
            }
        )
        return Record(key, value, [])
    raise ValueError(f"unknown form {form!r}")


def record_key(e: ReceiptEvent, keying: str, rng: random.Random) -> bytes | None:
    """The key a producer using `keying` (one of KEYINGS) would give this event's record."""
    return _key(keying, rng, e.message_sid.encode(), e.conversation_sid.encode())


def _key(
    keying: str, rng: random.Random, by_message: bytes, by_conversation: bytes
) -> bytes | None:
    if keying == "mixed":
        roll = rng.random()
        keying = "message" if roll < 0.5 else "conversation" if roll < 0.75 else "none"
    if keying == "message":
        return by_message
    if keying == "conversation":
        return by_conversation
    if keying == "random":
        return b"%032x" % rng.getrandbits(128)
    if keying == "none":
        return None
    raise ValueError(f"unknown keying {keying!r}; expected one of {', '.join(KEYINGS)}")


def encode_mixed(
    items: Sequence[ReceiptEvent | StatusEvent],
    *,
    seed: int = 1,
    keying: str = "message",
    array_rate: float = 0.0,
    max_array: int = 8,
) -> list[Record]:
    """Each event in a form picked at random, so a stream exercises every parser path:
    receipt events in FORMS, Messaging status events in STATUS_FORMS.

    With `array_rate`, that share of the steps takes 2 to `max_array` consecutive events
    (receipt and status events alike) into one CloudEvents array, spanning messages and
    conversations, as a webhook sink posts them; such a record is keyed like its first
    event. A status callback is always a record of its own.
    """
    rng = random.Random(seed)
    records: list[Record] = []
    i = 0
    while i < len(items):
        if array_rate and rng.random() < array_rate:
            group = items[i : i + rng.randint(2, max_array)]
            value = orjson.dumps([_any_cloudevent(item, rng) for item in group])
            record = Record(None, value, [("content-type", b"application/cloudevents-batch+json")])
        else:
            group = items[i : i + 1]
            record = _encode_any(group[0], rng)
        records.append(dataclasses.replace(record, key=_item_key(group[0], keying, rng)))
        i += len(group)
    return records


def _encode_any(item: ReceiptEvent | StatusEvent, rng: random.Random) -> Record:
    if isinstance(item, StatusEvent):
        return encode_status(item, rng.choice(STATUS_FORMS), rng)
    return encode(item, rng.choice(FORMS), rng)


def _any_cloudevent(item: ReceiptEvent | StatusEvent, rng: random.Random) -> dict[str, object]:
    if isinstance(item, StatusEvent):
        return _messaging_cloudevent(item, rng)
    return _cloudevent(item, rng)


def _item_key(item: ReceiptEvent | StatusEvent, keying: str, rng: random.Random) -> bytes | None:
    if isinstance(item, StatusEvent):
        # "message" and "conversation" key by the channel message SID, the only SID it has.
        sid = item.channel_message_sid.encode()
        return _key(keying, rng, sid, sid)
    return record_key(item, keying, rng)


# -- Messaging status events (input forms 5 and 6) --------------------------------------------


def messaging_outcomes(
    events: list[ReceiptEvent], *, seed: int = 1, share: float = 1.0
) -> tuple[list[ReceiptEvent], list[tuple[ReceiptEvent, StatusEvent]]]:
    """Move the outcomes of `share` of the receipts out of the receipt stream.

    Returns the receipt events left and, per status event, the receipt event it stands
    for: their reduction is the state the worker must reach. See `outcomes_in_place`.
    """
    pairs = outcomes_in_place(events, seed=seed, share=share)
    return [e for e, s in pairs if s is None], [(e, s) for e, s in pairs if s is not None]


def outcomes_in_place(
    events: list[ReceiptEvent], *, seed: int = 1, share: float = 1.0
) -> list[tuple[ReceiptEvent, StatusEvent | None]]:
    """Each event with the Messaging status event it becomes (None: it stays as it is).

    For a chosen receipt, the conversation receipt events keep only what says `sent` or
    less, and every later outcome (delivered, read, failed, undelivered) becomes a status
    event of its channel message, in the place of the receipt event it stands for. A
    receipt whose only events are outcomes gets a `sent` one at its creation time, just
    before the first of them.
    """
    rng = random.Random(seed)
    chosen: dict[tuple[str, str], bool] = {}
    for e in events:
        # Messaging reports only SMS/MMS channel messages: a WhatsApp (WA…) receipt keeps its
        # outcomes as receipt events.
        chosen.setdefault(
            e.key,
            rng.random() < share and (e.channel_message_sid or "")[:2] in CHANNEL_MESSAGE_PREFIXES,
        )
    has_receipt_event = {e.key for e in events if not chosen[e.key] or e.status <= Status.SENT}
    pairs: list[tuple[ReceiptEvent, StatusEvent | None]] = []
    for e in events:
        if not chosen[e.key] or e.status <= Status.SENT:
            pairs.append((e, None))
            continue
        if e.key not in has_receipt_event:
            has_receipt_event.add(e.key)
            sent = e._replace(status=Status.SENT, error_code=None, date_updated=e.date_created)
            pairs.append((sent, None))
        status = StatusEvent(
            e.account_sid, e.channel_message_sid or "", e.status, e.error_code, e.date_updated
        )
        pairs.append((e, status))
    return pairs


def plain_sms_statuses(
    count: int, *, seed: int = 1, account_sid: str | None = None
) -> list[StatusEvent]:
    """Status events of SMS sent outside Conversations: no receipt will ever come for them."""
    rng = random.Random(seed)
    account = account_sid or sid("AC", rng)
    return [
        StatusEvent(
            account,
            sid("SM", rng),
            rng.choice((Status.SENT, Status.DELIVERED, Status.UNDELIVERED)),
            None,
            _EPOCH + timedelta(seconds=n, milliseconds=rng.randint(0, 999)),
        )
        for n in range(count)
    ]


def _messaging_data(s: StatusEvent, rng: random.Random) -> dict[str, object]:
    """Event Streams' Messaging.MessageStatus data (v7 shape: dateUpdated and timestamp)."""
    at = _iso(s.date_updated, rng)
    return {
        "messageSid": s.channel_message_sid,
        "accountSid": s.account_sid,
        "messageStatus": s.status.label.upper(),
        "errorCode": s.error_code,
        "eventName": MESSAGING_CLOUDEVENT_PREFIX + s.status.label,
        "apiVersion": "2010-04-01",
        "from": "+14155550100",
        "to": "+14155550123",
        "timestamp": at,
        "dateUpdated": at,
    }


def _messaging_cloudevent(s: StatusEvent, rng: random.Random) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "type": MESSAGING_CLOUDEVENT_PREFIX + s.status.label,
        "source": f"/2010-04-01/Accounts/{s.account_sid}/Messages/{s.channel_message_sid}.json",
        "id": sid("EZ", rng),
        "dataschema": "https://events-schemas.twilio.com/Messaging.MessageStatus/7",
        "datacontenttype": "application/json",
        "time": _iso(s.date_updated, rng),
        "data": _messaging_data(s, rng),
    }


def encode_status(s: StatusEvent, form: str, rng: random.Random) -> Record:
    """One status event as a Kafka record in a Messaging form (STATUS_FORMS), keyed by its
    channel message SID; callbacks carry their time as the record's timestamp."""
    key = s.channel_message_sid.encode()
    if form in ("messaging_cloudevent", "messaging_cloudevent_batch"):
        body = _messaging_cloudevent(s, rng)
        value = orjson.dumps([body] if form == "messaging_cloudevent_batch" else body)
        return Record(key, value, [("content-type", b"application/cloudevents+json")])
    fields: dict[str, object] = {
        "MessageSid": s.channel_message_sid,
        "SmsSid": s.channel_message_sid,
        "AccountSid": s.account_sid,
        "MessageStatus": s.status.label,
        "SmsStatus": s.status.label,
        "From": "+14155550100",
        "To": "+14155550123",
        "ApiVersion": "2010-04-01",
    }
    if s.error_code is not None:
        fields["ErrorCode"] = str(s.error_code)
    timestamp_ms = round(s.date_updated.timestamp() * 1000)
    if form == "callback_json":
        return Record(key, orjson.dumps(fields), [], timestamp_ms)
    if form == "callback_form":
        headers = [("content-type", b"application/x-www-form-urlencoded")]
        return Record(key, urlencode(fields).encode(), headers, timestamp_ms)
    raise ValueError(f"unknown status form {form!r}")


def synthetic_stream(
    messages: int,
    *,
    seed: int = 1,
    duplicate_rate: float = 0.1,
    messaging_share: float = 0.0,
    plain_sms: int = 0,
) -> list[Record]:
    """The stream `worker produce` sends: receipts in every form, duplicated and disordered;
    with `messaging_share`, that share of the receipts' outcomes as Messaging status events,
    and `plain_sms` status events of SMS outside Conversations."""
    events = list(
        generate_events(messages, seed=seed, whatsapp_prefix="SM" if messaging_share else "WA")
    )
    pairs = outcomes_in_place(events, seed=seed, share=messaging_share)
    items: list[ReceiptEvent | StatusEvent] = [e if s is None else s for e, s in pairs]
    rng = random.Random(seed)
    account = events[0].account_sid if events else None
    for status in plain_sms_statuses(plain_sms, seed=seed + 7919, account_sid=account):
        items.insert(rng.randrange(len(items) + 1), status)
    return encode_mixed(disorder(items, seed=seed, duplicate_rate=duplicate_rate), seed=seed)
