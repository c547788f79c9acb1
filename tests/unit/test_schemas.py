"""The JSON Schemas in schemas/ describe what the worker really reads and writes."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from worker.loadgen import encode, encode_status, generate_events, messaging_outcomes
from worker.parsing import InvalidRecord
from worker.publisher import dead_letter_headers
from worker.reduction import Counts
from worker.summaries import Summary, encode_summary_event

SCHEMAS = Path(__file__).parents[2] / "schemas"
BASE = "https://schemas.example.com/delivery-receipts-worker/"


def validator(name: str) -> Draft202012Validator:
    resources = []
    for path in SCHEMAS.glob("*.schema.json"):
        doc = orjson.loads(path.read_bytes())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    registry: Registry = Registry().with_resources(resources)
    schema = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())


@pytest.mark.parametrize(
    ("sample", "schema"),
    [
        ("cloudevent.json", "cloudevent"),
        ("cloudevents-batch.json", "cloudevent-batch"),
        ("webhook.json", "webhook"),
        ("receipt-resource.json", "receipt-resource"),
        ("status-callback.json", "messaging-status-callback"),
        ("messaging-cloudevent.json", "messaging-cloudevent"),
        ("messaging-cloudevents-batch.json", "cloudevent-batch"),
    ],
)
def test_samples_match_their_schema(samples: Path, sample: str, schema: str) -> None:
    validator(schema).validate(orjson.loads((samples / sample).read_bytes()))


def test_form_body_fields_match_the_webhook_schema(samples: Path) -> None:
    fields = dict(parse_qsl((samples / "webhook-form.txt").read_text()))
    validator("webhook").validate(fields)


def test_status_callback_form_body_matches_its_schema(samples: Path) -> None:
    fields = dict(parse_qsl((samples / "status-callback-form.txt").read_text()))
    validator("messaging-status-callback").validate(fields)


@pytest.mark.parametrize(
    ("form", "schema"),
    [
        ("callback_json", "messaging-status-callback"),
        ("messaging_cloudevent", "messaging-cloudevent"),
        ("messaging_cloudevent_batch", "cloudevent-batch"),
    ],
)
def test_generated_status_records_match_their_schema(form: str, schema: str) -> None:
    rng = random.Random(3)
    check = validator(schema)
    events = list(generate_events(20, seed=5, whatsapp_prefix="SM"))
    _, moved = messaging_outcomes(events, seed=5)
    assert moved
    for _, status in moved:
        check.validate(orjson.loads(encode_status(status, form, rng).value))
    form_fields = dict(parse_qsl(encode_status(moved[0][1], "callback_form", rng).value.decode()))
    validator("messaging-status-callback").validate(form_fields)


@pytest.mark.parametrize(
    ("form", "schema"),
    [
        ("cloudevent", "cloudevent"),
        ("cloudevent_batch", "cloudevent-batch"),
        ("webhook_json", "webhook"),
        ("receipt_json", "receipt-resource"),
    ],
)
def test_generated_records_match_their_schema(form: str, schema: str) -> None:
    rng = random.Random(3)
    check = validator(schema)
    for event in list(generate_events(20, seed=5)):
        check.validate(orjson.loads(encode(event, form, rng).value))


def test_summary_event_matches_its_schema(design_example_delivery: dict[str, int | str]) -> None:
    summary = Summary(
        message_sid="IM" + "1" * 32,
        conversation_sid="CH" + "2" * 32,
        account_sid="AC" + "3" * 32,
        chat_service_sid=None,
        counts=Counts(total=5, sent=5, delivered=3, read=1),
        version=4,
        updated_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
    )
    body = orjson.loads(encode_summary_event(summary))
    validator("summary-changed").validate(body)
    assert body["delivery"] == design_example_delivery


def test_dead_letter_headers_match_their_schema() -> None:
    record = ConsumerRecord(
        topic="delivery-events",
        partition=2,
        offset=41,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"{",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=1,
        headers=[("trace", b"\x00\x01")],
    )
    headers = dead_letter_headers(record, InvalidRecord("malformed", "invalid JSON"))
    assert headers[0] == ("trace", b"\x00\x01")  # the original headers first, untouched
    added = {k: v.decode() for k, v in headers[1:]}
    validator("dead-letter-headers").validate(added)
    assert added["dlq.source.offset"] == "41"
