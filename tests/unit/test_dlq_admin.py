"""The pure parts of `dlq list/replay`: which headers go back, reasons, times, filters."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from aiokafka.structs import ConsumerRecord

from worker.dlq_admin import (
    UNRECOGNISED,
    DeadLetter,
    DlqListing,
    ReplayOutcome,
    ReplayPicker,
    Selection,
    Tally,
    render_listing,
    render_replay,
    split_headers,
)
from worker.parsing import InvalidRecord
from worker.publisher import APPENDED_HEADERS, dead_letter_headers

FAILED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ORIGINAL = [("content-type", b"application/json"), ("dlq.note", b"mine"), ("trace", b"\xff\x00")]


def _dead_letter_headers(
    original: list[tuple[str, bytes]], reason: str = "malformed"
) -> list[tuple[str, bytes]]:
    record = ConsumerRecord(
        topic="events",
        partition=2,
        offset=41,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=b"v",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=1,
        headers=tuple(original),
    )
    return dead_letter_headers(record, InvalidRecord(reason, "bad"), now=FAILED_AT)


def test_the_worker_appends_exactly_the_block_replay_strips() -> None:
    headers = _dead_letter_headers(ORIGINAL)
    assert tuple(name for name, _ in headers[len(ORIGINAL) :]) == APPENDED_HEADERS
    split = split_headers(headers)
    assert split is not None
    original, appended = split
    # Every original header, in order, bytes as they were, even one named dlq.*.
    assert original == ORIGINAL
    assert dict(appended)["dlq.source.offset"] == b"41"


def test_original_headers_that_look_like_ours_are_kept() -> None:
    # A record dead-lettered, copied back by hand with its dlq.* headers, dead-lettered again:
    # only the last block is the worker's latest; the earlier one belongs to the record now.
    twice = _dead_letter_headers(_dead_letter_headers(ORIGINAL))
    split = split_headers(twice)
    assert split is not None
    assert split[0] == _dead_letter_headers(ORIGINAL)


def test_records_without_the_block_are_not_ours() -> None:
    headers = _dead_letter_headers(ORIGINAL)
    assert split_headers(ORIGINAL) is None
    assert split_headers([]) is None
    assert split_headers(headers[:-1]) is None  # block cut short
    assert split_headers([*headers, ("late", b"x")]) is None  # block not at the end
    swapped = [*headers[:-2], headers[-1], headers[-2]]
    assert split_headers(swapped) is None  # not the worker's order


def test_dead_letter_reason_and_time() -> None:
    letter = DeadLetter.from_record(0, 9, b"k", b"v", _dead_letter_headers(ORIGINAL), 0)
    assert (letter.reason, letter.failed_at, letter.original_headers, letter.source) == (
        "malformed",
        FAILED_AT,
        tuple(ORIGINAL),
        ("events", 2, 41),
    )
    # Not ours: listed as unrecognised, timed by the DLQ record, never replayed.
    stranger = DeadLetter.from_record(0, 10, None, b"v", [("dlq.reason", b"x")], 1_767_225_600_000)
    assert stranger.reason == UNRECOGNISED and stranger.original_headers is None
    assert stranger.failed_at == datetime(2026, 1, 1, tzinfo=UTC)
    # An unparseable dlq.failed.at falls back to the record timestamp too.
    bad_time = [*_dead_letter_headers(ORIGINAL)[:-1], ("dlq.failed.at", b"yesterday")]
    assert DeadLetter.from_record(0, 11, None, None, bad_time, 0).failed_at == datetime(
        1970, 1, 1, tzinfo=UTC
    )


def _letter(reason: str, minutes: int, source: int | None = None) -> DeadLetter:
    return DeadLetter(
        0,
        minutes,
        None,
        b"",
        (),
        reason,
        FAILED_AT + timedelta(minutes=minutes),
        None if source is None else ("events", 0, source),
    )


def test_selection_and_tally() -> None:
    # The same source record (offset 7) dead-lettered twice counts once as distinct.
    letters = [
        _letter("malformed", 5, source=7),
        _letter("not_utf8", 1, source=8),
        _letter("malformed", 3, source=7),
    ]
    assert [x.offset for x in letters if Selection().matches(x)] == [5, 1, 3]
    assert [x.offset for x in letters if Selection(frozenset({"malformed"})).matches(x)] == [5, 3]
    since = Selection(since=FAILED_AT + timedelta(minutes=3))
    assert [x.offset for x in letters if since.matches(x)] == [5, 3]
    tally = Tally()
    for letter in letters:
        tally.add(letter)
    assert (tally.total, tally.total_distinct) == (3, 2)
    assert [
        (t.reason, t.count, t.distinct, t.first_failed_at.minute, t.last_failed_at.minute)
        for t in tally.rows()
    ] == [("malformed", 2, 1, 3, 5), ("not_utf8", 1, 1, 1, 1)]
    lines = render_listing(DlqListing("events.dlq", {0: 3}, tally)).splitlines()
    assert lines[0] == "dead letters on events.dlq up to end offsets 0:3"
    assert lines[1].split() == [
        "REASON",
        "COUNT",
        "DISTINCT",
        "FIRST",
        "FAILED",
        "AT",
        "LAST",
        "FAILED",
        "AT",
    ]
    assert lines[2].split()[:3] == ["malformed", "2", "1"]
    assert lines[-1] == "total 3 (2 distinct source records)"


def test_replay_picks_matching_letters_of_this_worker_once_each_up_to_the_limit() -> None:
    ours = [
        _letter("malformed", 1, source=1),
        _letter("malformed", 2, source=1),  # the same source record again
        _letter("not_utf8", 3, source=2),
        _letter("malformed", 4, source=3),
        _letter("malformed", 5, source=4),
    ]
    # Not written by the worker: its original headers are unknown.
    stranger = dataclasses.replace(_letter("malformed", 6), original_headers=None)

    picker = ReplayPicker(Selection(frozenset({"malformed"})))
    assert [x.offset for x in [*ours, stranger] if picker.take(x)] == [1, 4, 5]
    assert (dict(picker.picked), picker.duplicates, picker.unrecognised) == ({"malformed": 3}, 1, 1)

    limited = ReplayPicker(Selection(), limit=2)
    assert [x.offset for x in ours if limited.take(x)] == [1, 3]
    assert limited.full and dict(limited.picked) == {"malformed": 1, "not_utf8": 1}


def test_replay_report() -> None:
    outcome = ReplayOutcome("events.dlq", "events", {0: 9}, False, {"not_utf8": 1}, 2, 1)
    assert render_replay(outcome).splitlines() == [
        "replayed 1 dead letter (acknowledged by the broker) from events.dlq to events"
        " (read up to end offsets 0:9)",
        "REASON    COUNT",
        "not_utf8      1",
        "skipped 1 duplicate (a source record dead-lettered more than once goes back once)",
        "skipped 2 records without the worker's dlq.* headers"
        " (their original headers cannot be told apart)",
    ]
