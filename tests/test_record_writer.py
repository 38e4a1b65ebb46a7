"""The record writer's bounds: a full queue drops (and counts) rows instead of growing, and a
stop flushes what it can within its deadline and counts the rest. The store here is an
in-process stand-in that can be "down"; the real databases are in test_call_store.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from relay.records.store import LineRow, Row, SearchPage, SearchQuery, StoreUnavailable
from relay.records.writer import RecordWriter


class MemoryStore:
    engine = "memory"

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.down = False
        self.closed = False

    async def migrate(self) -> int:
        return 2

    async def write(self, rows: Sequence[Row]) -> None:
        if self.down:
            raise StoreUnavailable("memory: down")
        self.rows.extend(rows)

    async def search(self, query: SearchQuery) -> SearchPage:
        return SearchPage()

    async def get(self, call_sid: str) -> dict[str, Any] | None:
        return None

    async def delete(self, call_sid: str) -> str | None:
        return None

    async def expire(self, ended_before: float) -> list[tuple[str, str | None]]:
        return []

    async def close(self) -> None:
        self.closed = True


def line(call: str, n: int) -> LineRow:
    return LineRow(call, n, float(n), "customer", f"line {n}", f"item_{n}")


async def test_a_full_queue_drops_and_counts_rows_and_keeps_what_it_holds() -> None:
    store = MemoryStore()
    store.down = True
    writer = RecordWriter(store, queue_max=10, backoff_initial_s=0.01, backoff_max_s=0.02, seed=1)
    writer.start()
    accepted = [writer.submit(line("CA1", n)) for n in range(1, 16)]
    assert accepted == [True] * 10 + [False] * 5
    assert writer.stats.dropped == {"queue_full": 5} and writer.pending == 10
    store.down = False
    assert await writer.idle(timeout_s=5)
    assert [r.n for r in store.rows if isinstance(r, LineRow)] == list(range(1, 11))  # in order, none twice
    await writer.close(1)
    assert store.closed


async def test_a_stop_while_the_database_is_down_counts_what_was_not_written() -> None:
    store = MemoryStore()
    store.down = True
    writer = RecordWriter(store, backoff_initial_s=0.01, backoff_max_s=0.02, seed=1)
    writer.start()
    for n in range(1, 4):
        writer.submit(line("CA2", n))
    await asyncio.sleep(0.05)
    await writer.close(0.2)
    assert writer.stats.dropped == {"shutdown": 3} and writer.pending == 0
    assert not writer.submit(line("CA2", 4))  # nothing is taken after the stop
    assert writer.stats.dropped == {"shutdown": 4}
