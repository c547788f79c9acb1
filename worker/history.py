"""The history's monthly partitions: created ahead and on demand, dropped by retention.

`delivery_receipt_history` is partitioned by month of each event's own `date_updated`
(migration 003, docs/design.md "History partitions"). The worker keeps it so:

- before a batch's transaction, every month its history events fall in has a partition
  (created on demand, in its own short transaction, by one replica at a time), as long as
  the month is within the window: from the retention horizon (or `BACKFILL_MONTHS` back
  when history is kept forever) to `AHEAD_MONTHS` ahead. Dates outside it (a producer's
  clock years off) go to the default partition; a partition created later takes them over;
- with a retention (`HISTORY_RETENTION_DAYS` > 0), events older than the horizon are not
  recorded (their partition is dropped or about to be), and a maintenance pass (at start,
  then hourly) drops every partition that ends before the horizon, whole;
- the maintenance pass also creates the partitions of the last month to `AHEAD_MONTHS`
  ahead, so the common case never waits for one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, TypeVar

import asyncpg

log = logging.getLogger(__name__)

AHEAD_MONTHS = 2
BACKFILL_MONTHS = 36
MAINTENANCE_INTERVAL_S = 3600.0

Clock = Callable[[], datetime]


class Dated(Protocol):
    """A receipt event or a Messaging status event: what history is partitioned by."""

    @property
    def date_updated(self) -> datetime: ...


D = TypeVar("D", bound=Dated)


def _month(at: date) -> int:
    """Months since year 0: consecutive months are consecutive integers."""
    return at.year * 12 + at.month - 1


def _first_day(month: int) -> date:
    return date(month // 12, month % 12 + 1, 1)


class HistoryPartitions:
    """Which months have a partition (as this process last saw), and the window it keeps."""

    def __init__(self, retention_days: int = 0, clock: Clock | None = None) -> None:
        self.retention_days = retention_days
        self._clock = clock or (lambda: datetime.now(UTC))
        self._known: set[int] = set()
        self._loaded = False

    def horizon(self) -> datetime | None:
        """Events before this are not kept; None when history is kept forever."""
        if not self.retention_days:
            return None
        return self._clock() - timedelta(days=self.retention_days)

    def _window(self) -> tuple[int, int]:
        now = self._clock()
        horizon = self.horizon()
        first = _month(horizon) if horizon is not None else _month(now) - BACKFILL_MONTHS
        return first, _month(now) + AHEAD_MONTHS

    def select(self, events: Sequence[D]) -> tuple[Sequence[D], set[int]]:
        """The events to record in history, and the months that still need a partition
        (`ensure` them before the transaction that writes the events)."""
        horizon = self.horizon()
        if horizon is not None:
            events = [e for e in events if e.date_updated >= horizon]
        months = {_month(e.date_updated) for e in events}
        if self._loaded and months <= self._known:
            return events, set()
        first, last = self._window()
        return events, {m for m in months if first <= m <= last} - self._known

    async def ensure(self, conn: asyncpg.Connection, months: set[int]) -> list[str]:
        """Create the partitions of `months` that are missing; returns the names created."""
        if not self._loaded:
            await self.refresh(conn)
        created: list[str] = []
        for month in sorted(months - self._known):
            async with conn.transaction():
                name = await conn.fetchval(
                    "SELECT delivery_receipt_history_create_partition($1)", _first_day(month)
                )
            if name is not None:
                created.append(name)
                log.info("history partition created", extra={"partition": name})
            self._known.add(month)
        return created

    async def refresh(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch("SELECT delivery_receipt_history_months() AS m")
        self._known = {_month(r["m"]) for r in rows}
        self._loaded = True

    async def maintain(self, conn: asyncpg.Connection) -> tuple[list[str], list[str]]:
        """Partitions from last month to AHEAD_MONTHS ahead; those past the retention
        dropped. Returns (created, dropped)."""
        await self.refresh(conn)
        first, last = self._window()
        start = max(first, _month(self._clock()) - 1)
        created = await self.ensure(conn, set(range(start, last + 1)))
        dropped: list[str] = []
        horizon = self.horizon()
        if horizon is not None:
            async with conn.transaction():
                # A partition's drop waits for the batches writing to the table; bounded,
                # and tried again at the next pass.
                await conn.execute("SET LOCAL lock_timeout = '10s'")
                rows = await conn.fetch(
                    "SELECT delivery_receipt_history_drop_before($1) AS name", horizon
                )
            dropped = [r["name"] for r in rows]
            for name in dropped:
                log.info("history partition dropped (retention)", extra={"partition": name})
            await self.refresh(conn)
        return created, dropped
