"""The pure parts of `offsets show/reset`: parsing P:O, planning moves, rendering, bad flags."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.cli import main
from worker.offsets_admin import (
    GroupMember,
    InvalidTarget,
    Move,
    OffsetsReport,
    PartitionOffsets,
    ResetOutcome,
    ToDatetime,
    ToEarliest,
    ToLatest,
    ToOffsets,
    parse_partition_offset,
    plan_reset,
    render_outcome,
    render_report,
    to_offsets,
)

# Partition 0 lost its first 10 records to retention; 1 has no stored row; 2 is empty.
STATE = (
    PartitionOffsets(0, stored=40, log_start=10, log_end=50),
    PartitionOffsets(1, stored=None, log_start=0, log_end=7),
    PartitionOffsets(2, stored=0, log_start=0, log_end=0),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0:0", (0, 0)), ("3:1200", (3, 1200)), (" 11 : 7 ", (11, 7))],
)
def test_partition_offset_parses(text: str, expected: tuple[int, int]) -> None:
    assert parse_partition_offset(text) == expected


@pytest.mark.parametrize(
    "text", ["", "3", "3:", ":5", "a:1", "1:b", "-1:5", "1:-5", "1:2:3", "1.0:2", "²:1"]
)
def test_malformed_partition_offset_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="PARTITION:OFFSET"):
        parse_partition_offset(text)


def test_a_partition_named_twice_is_refused() -> None:
    assert to_offsets([(0, 5), (2, 1)]) == ToOffsets({0: 5, 2: 1})
    with pytest.raises(InvalidTarget, match="--to-offset: partition 0"):
        to_offsets([(0, 5), (0, 6)])


def test_lag_counts_from_where_a_worker_would_resume() -> None:
    assert [p.resumes_at for p in STATE] == [40, 0, 0]
    assert [p.lag for p in STATE] == [10, 7, 0]
    # Stored below the log start: the consumer resets to the log start.
    assert PartitionOffsets(0, stored=3, log_start=10, log_end=12).lag == 2
    # Stored past the end (topic recreated): no negative lag.
    assert PartitionOffsets(0, stored=90, log_start=0, log_end=12).lag == 0


def test_plan_each_mode() -> None:
    assert plan_reset(ToEarliest(), STATE) == [Move(0, 40, 10), Move(1, None, 0), Move(2, 0, 0)]
    assert plan_reset(ToLatest(), STATE) == [Move(0, 40, 50), Move(1, None, 7), Move(2, 0, 0)]
    # No record at or after the time: the end, so nothing is replayed and nothing skipped.
    at = ToDatetime(datetime(2026, 3, 1, tzinfo=UTC))
    assert plan_reset(at, STATE, {0: 25, 1: None, 2: None}) == [
        Move(0, 40, 25),
        Move(1, None, 7),
        Move(2, 0, 0),
    ]
    # Only the named partitions move.
    assert plan_reset(ToOffsets({1: 3, 0: 10}), STATE) == [Move(0, 40, 10), Move(1, None, 3)]


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ({5: 0}, "--to-offset 5:0: the topic has no partition 5 \\(it has 0, 1, 2\\)"),
        ({0: 9}, "--to-offset 0:9: partition 0 holds offsets 10 to 50"),
        ({1: 8}, "--to-offset 1:8: partition 1 holds offsets 0 to 7"),
    ],
)
def test_offsets_outside_the_topic_are_refused(offsets: dict[int, int], message: str) -> None:
    with pytest.raises(InvalidTarget, match=message):
        plan_reset(ToOffsets(offsets), STATE)


def test_rendering() -> None:
    report = OffsetsReport("g", "t", STATE, (GroupMember("m-1", "aiokafka-0.14", "/10.0.0.7"),))
    text = render_report(report)
    assert text.splitlines() == [
        "group g, topic t: 1 live member (aiokafka-0.14@/10.0.0.7)",
        "PARTITION  STORED  LOG-START  LOG-END  LAG",
        "        0      40         10       50   10",
        "        1       -          0        7    7",
        "        2       0          0        0    0",
        "total lag 17",
    ]
    assert report.to_json()["total_lag"] == 17
    outcome = ResetOutcome(
        OffsetsReport("g", "t", STATE, ()),
        ToEarliest(),
        tuple(plan_reset(ToEarliest(), STATE)),
        written=True,
    )
    assert render_outcome(outcome).splitlines() == [
        "reset group g, topic t to the earliest offsets",
        "  partition 0: 40 -> 10",
        "  partition 1:  - -> 0 (no row before)",
        "  partition 2:  0 -> 0 (unchanged)",
    ]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["offsets", "reset", "--to-offset", "0-5"], "--to-offset"),
        (["offsets", "reset", "--to-offset", "0:5", "--to-offset", "x"], "--to-offset"),
        (["offsets", "reset", "--to-datetime", "last tuesday"], "--to-datetime"),
        (["offsets", "reset", "--to-datetime", "2026-13-01"], "--to-datetime"),
        (["offsets", "reset", "--to-earliest", "--to-latest"], "--to-latest"),
        (["offsets", "reset"], "--to-earliest"),
        (["dlq", "list", "--since", "soon"], "--since"),
        (["dlq", "replay", "--since", "2026-03-01T25:00"], "--since"),
        (["dlq", "replay", "--limit", "0"], "--limit"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err
