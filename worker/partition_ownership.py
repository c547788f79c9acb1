"""Partition ownership: each owned partition's stored offset and seek epoch, and stale records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

# A partition's offset move in one batch: (stored next offset expected, new next offset).
Move = tuple[int, int]


class Positioned(Protocol):
    """A fetched record's place in the input topic."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=Positioned)


class PartitionOwnership:
    """Positions and seek epochs of this worker's partitions; the caller does the I/O and locking.

    A position is a partition's stored next offset as this worker last read or wrote it;
    holding one is owning the partition. An epoch is bumped whenever the partition is seeked,
    revoked or given up: records fetched before that are not the continuation of the stored
    offset, so a batch fetched ahead of it drops them.
    """

    def __init__(self) -> None:
        self._positions: dict[int, int] = {}
        self._epochs: dict[int, int] = {}

    def owns(self, partition: int) -> bool:
        return partition in self._positions

    # -- changes of ownership ------------------------------------------------------------------

    def adopt(self, partition: int, stored: int) -> None:
        """Own `partition` from its stored offset, where the consumer has just seeked."""
        self._positions[partition] = stored
        self._bump(partition)

    def release(self, partitions: Iterable[int]) -> None:
        """Give partitions up (revoked): nothing fetched for them so far may be applied."""
        for p in partitions:
            self._positions.pop(p, None)
            self._bump(p)

    def release_all(self) -> None:
        """Give every partition up (fenced): the next batch adopts them again from Postgres."""
        self.release(list(self._positions))

    def invalidate(self, partitions: Iterable[int]) -> None:
        """Keep ownership but drop what was fetched so far (a batch abandoned uncommitted),
        so a batch fetched after it cannot commit past it."""
        for p in partitions:
            self._bump(p)

    def _bump(self, partition: int) -> None:
        self._epochs[partition] = self._epochs.get(partition, 0) + 1

    # -- records -------------------------------------------------------------------------------

    def epochs(self, records: Iterable[Positioned]) -> dict[int, int]:
        """The epoch of each records' partition now, to hand to `current` when they are applied."""
        epochs = self._epochs
        return {r.partition: epochs.get(r.partition, 0) for r in records}

    def current(self, records: Sequence[R], fetched: Mapping[int, int]) -> list[R]:
        """The records whose partition has not been seeked or revoked since `fetched` was taken."""
        epochs = self._epochs
        return [r for r in records if epochs.get(r.partition, 0) == fetched[r.partition]]

    def unapplied(self, records: Sequence[R]) -> list[R]:
        """The records of owned partitions at or past the stored offset (not applied yet)."""
        positions = self._positions
        return [
            r for r in records if r.partition in positions and r.offset >= positions[r.partition]
        ]

    def moves(self, records: Iterable[Positioned]) -> dict[int, Move]:
        """Per partition of `records` (all unapplied), the offset move that applying them makes."""
        moves: dict[int, Move] = {}
        for r in records:
            p = r.partition
            moves[p] = (self._positions[p], max(moves.get(p, (0, 0))[1], r.offset + 1))
        return moves

    def advance(self, moves: Mapping[int, Move]) -> None:
        """Record the moves of a committed batch."""
        for p, (_, new) in moves.items():
            self._positions[p] = new

    def lag(self, highwaters: Iterable[tuple[int, int | None]]) -> int:
        """Records behind the high watermarks (partition, highwater or None if not known yet)
        over the owned partitions."""
        lag = 0
        for p, high in highwaters:
            if high is not None and p in self._positions:
                lag += max(0, high - self._positions[p])
        return lag
