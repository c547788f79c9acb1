"""`worker.native.copy_binary` writes PostgreSQL's binary COPY format, value for value.

Decoded here by a reader written from the format's documentation (COPY, "Binary Format");
tests/integration/test_copy_binary_postgres.py checks the same rows through PostgreSQL itself.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker import native
from worker.events import Status

pytestmark = pytest.mark.skipif(
    native.copy_binary is None, reason="receipts_native is not built (bash scripts/setup.sh)"
)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def read_copy(data: bytes, kinds: str) -> list[tuple[object, ...]]:
    assert data[:11] == b"PGCOPY\n\xff\r\n\x00"
    assert struct.unpack(">ii", data[11:19]) == (0, 0)
    pos, rows = 19, []
    while True:
        (count,) = struct.unpack_from(">h", data, pos)
        pos += 2
        if count == -1:
            assert pos == len(data)
            return rows
        assert count == len(kinds)
        row: list[object] = []
        for kind in kinds:
            (size,) = struct.unpack_from(">i", data, pos)
            pos += 4
            if size == -1:
                row.append(None)
                continue
            raw = data[pos : pos + size]
            pos += size
            if kind == "t":
                row.append(raw.decode())
            elif kind == "b":
                row.append(raw)
            elif kind == "z":
                row.append(PG_EPOCH + timedelta(microseconds=struct.unpack(">q", raw)[0]))
            else:
                assert size == {"h": 2, "i": 4, "q": 8}[kind]
                row.append(int.from_bytes(raw, "big", signed=True))
        rows.append(tuple(row))


def test_every_kind_round_trips() -> None:
    assert native.copy_binary is not None
    plus_five = timezone(timedelta(hours=5, minutes=30))
    rows = [
        ("IMabc", Status.READ, 2**31 - 1, -(2**63), datetime(2026, 3, 1, 12, 7, 0, 12, UTC), b"{}"),
        (None, None, None, None, None, None),
        ("caf\u00e9 \U0001f600", -1, 0, 2**63 - 1, datetime(1, 1, 1, tzinfo=UTC), b""),
        ("", 32767, -(2**31), 0, datetime(9999, 12, 31, 23, 59, 59, 999999, UTC), b"\x00\xff"),
        ("x", 0, 1, 1, datetime(2026, 3, 1, 5, 30, tzinfo=plus_five), b"p"),
    ]  # fmt: skip
    decoded = read_copy(native.copy_binary(rows, "thiqzb"), "thiqzb")
    assert decoded == [tuple(v for v in row) for row in rows]
    assert decoded[4][4] == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    assert read_copy(native.copy_binary(iter([]), "tt"), "tt") == []


@pytest.mark.parametrize(
    ("rows", "kinds", "error"),
    [
        ([("a",)], "tt", ValueError),  # a row shorter than the columns
        ([(1,)], "t", TypeError),
        ([("a",)], "i", TypeError),
        ([(2**15,)], "h", OverflowError),
        ([(datetime(2026, 1, 1),)], "z", TypeError),  # naive: no time zone to store
        ([("\ud800",)], "t", UnicodeEncodeError),
        ([["a"]], "t", TypeError),  # rows are tuples
        ([("a",)], "x", ValueError),
    ],
)
def test_refuses_what_the_columns_cannot_hold(
    rows: list[tuple[object, ...]], kinds: str, error: type[Exception]
) -> None:
    assert native.copy_binary is not None
    with pytest.raises(error):
        native.copy_binary(rows, kinds)
