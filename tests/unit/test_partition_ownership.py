"""Partition ownership: positions, epochs and the stale-record filters, with no I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.partition_ownership import PartitionOwnership


class Rec(NamedTuple):
    partition: int
    offset: int


def owning(**stored: int) -> PartitionOwnership:
    """Ownership of partitions named p0, p1... at their stored offsets."""
    owned = PartitionOwnership()
    for name, offset in stored.items():
        owned.adopt(int(name[1:]), offset)
    return owned


def test_adopting_owns_a_partition_and_revoking_gives_it_up() -> None:
    owned = owning(p0=5)
    assert owned.owns(0)
    assert not owned.owns(1)
    owned.release([0, 1])  # a revoked partition never owned is no error
    assert not owned.owns(0)
    assert not owned.owns(1)


def test_records_of_an_unchanged_partition_stay_current() -> None:
    owned = owning(p0=0, p1=0)
    records = [Rec(0, 0), Rec(1, 0), Rec(0, 1)]
    fetched = owned.epochs(records)
    assert fetched == {0: 1, 1: 1}
    assert owned.current(records, fetched) == records


def test_a_partition_never_seen_has_epoch_zero() -> None:
    owned = PartitionOwnership()
    records = [Rec(3, 7)]
    assert owned.epochs(records) == {3: 0}
    assert owned.current(records, {3: 0}) == records


CHANGES: dict[str, Callable[[PartitionOwnership], None]] = {
    "adopted again (seeked to the stored offset)": lambda o: o.adopt(0, 10),
    "revoked": lambda o: o.release([0]),
    "a batch of it abandoned uncommitted": lambda o: o.invalidate([0]),
    "fenced": lambda o: o.release_all(),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_records_fetched_before_a_seek_or_revocation_are_dropped(change: str) -> None:
    owned = owning(p0=0, p1=0)
    records = [Rec(0, 0), Rec(1, 0)]
    fetched = owned.epochs(records)
    CHANGES[change](owned)
    kept = owned.current(records, fetched)
    assert Rec(0, 0) not in kept
    assert (Rec(1, 0) in kept) is owned.owns(1)


def test_invalidating_keeps_ownership_and_position() -> None:
    owned = owning(p0=4)
    owned.invalidate({0})
    assert owned.owns(0)
    assert owned.unapplied([Rec(0, 3), Rec(0, 4)]) == [Rec(0, 4)]


def test_unapplied_keeps_owned_records_at_or_past_the_stored_offset() -> None:
    owned = owning(p0=5, p1=0)
    records = [Rec(0, 4), Rec(0, 5), Rec(1, 0), Rec(2, 9), Rec(0, 6)]
    assert owned.unapplied(records) == [Rec(0, 5), Rec(1, 0), Rec(0, 6)]


def test_moves_go_from_the_stored_offset_past_the_last_record() -> None:
    owned = owning(p0=5, p1=0)
    moves = owned.moves([Rec(0, 7), Rec(1, 0), Rec(0, 5)])
    assert moves == {0: (5, 8), 1: (0, 1)}
    owned.advance(moves)
    assert owned.unapplied([Rec(0, 7), Rec(0, 8), Rec(1, 0), Rec(1, 1)]) == [Rec(0, 8), Rec(1, 1)]
    assert owned.moves([Rec(0, 8)]) == {0: (8, 9)}


def test_release_all_forgets_every_position() -> None:
    owned = owning(p0=1, p1=2)
    owned.release_all()
    assert not owned.owns(0)
    assert not owned.owns(1)
    assert owned.unapplied([Rec(0, 5), Rec(1, 5)]) == []


def test_lag_counts_owned_partitions_with_a_known_high_watermark() -> None:
    owned = owning(p0=5, p1=10)
    # p1 is past its high watermark (a stale reading): no negative lag; p2 is not owned.
    assert owned.lag([(0, 8), (1, 9), (2, 100)]) == 3
    assert owned.lag([(0, None), (1, 12)]) == 2
    assert owned.lag([]) == 0


@given(
    st.dictionaries(st.integers(0, 5), st.integers(0, 100), min_size=1),
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 200))),
)
def test_moves_of_unapplied_records(stored: dict[int, int], raw: list[tuple[int, int]]) -> None:
    owned = PartitionOwnership()
    for p, offset in stored.items():
        owned.adopt(p, offset)
    records = [Rec(p, o) for p, o in raw]
    unapplied = owned.unapplied(records)
    assert all(r.partition in stored and r.offset >= stored[r.partition] for r in unapplied)
    assert len(records) - len(unapplied) == sum(
        1 for r in records if r.partition not in stored or r.offset < stored[r.partition]
    )
    moves = owned.moves(unapplied)
    assert set(moves) == {r.partition for r in unapplied}
    for p, (before, after) in moves.items():
        assert before == stored[p]
        assert after == max(r.offset for r in unapplied if r.partition == p) + 1
    owned.advance(moves)
    assert owned.unapplied(unapplied) == []
