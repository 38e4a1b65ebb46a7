"""The call-record stores, one suite run against SQLite and against a real PostgreSQL server:
migrations (from empty and from the previous schema), writes that are safe to retry,
full-text search with filters and pagination, deletion and retention, and the writer riding
out a database outage without losing what it acknowledged."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.records import postgres as store_postgres
from relay.records import sqlite as store_sqlite
from relay.records.postgres import PostgresStore
from relay.records.sqlite import SqliteStore
from relay.records.store import (
    CallEnded,
    CallStarted,
    CallStore,
    EventRow,
    LineRow,
    Row,
    SearchQuery,
    StoreUnavailable,
    SuggestionRow,
)
from relay.records.writer import RecordWriter
from tests.conftest import wait_until
from tests.fakes.postgres import PostgresServer

_databases = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_store(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> CallStore:
    if engine == "sqlite":
        return SqliteStore(str(tmp_path / "relay.db"))
    server: PostgresServer = request.getfixturevalue("postgres")
    return PostgresStore(server.create_database(f"records_{next(_databases)}"))


@pytest.fixture
async def store(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[CallStore]:
    s = make_store(engine, tmp_path, request)
    yield s
    await s.close()


def call_rows(call_sid: str, started_at: float, lines: list[tuple[str, str]], worker: str = "alice") -> list[Row]:
    rows: list[Row] = [CallStarted(call_sid, "MZ" + call_sid[2:], started_at, "default", "openai", None, worker)]
    n = 0
    for i, (speaker, text) in enumerate(lines):
        n += 1
        rows.append(LineRow(call_sid, n, i * 3.0, speaker, text, f"item_{i}"))
    n += 1
    rows.append(
        SuggestionRow(call_sid, n, 4.0, "resp_1", "Refund?", "Five to seven days.", ({"id": "r#1", "title": "R"},), 0.8)
    )
    n += 1
    rows.append(EventRow(call_sid, n, 4.5, "insight", {"kind": "question", "text": "Refund?", "answered": True}))
    n += 1
    rows.append(EventRow(call_sid, n, 0.0, "status", {"state": "started", "reason": "assist listening"}))
    rows.append(
        CallEnded(
            call_sid,
            started_at + 60,
            "stop",
            {"frames_in": 3000},
            {"status": "ok", "summary": f"Summary of {call_sid}", "disposition": "resolved"},
            "resolved",
            "WT" + "1" * 32,
        )
    )
    return rows


def sid(i: int) -> str:
    return f"CA{i:032x}"


async def test_migrating_an_empty_database_reaches_the_latest_schema_and_is_idempotent(store: CallStore) -> None:
    latest = store_sqlite.LATEST if store.engine == "sqlite" else store_postgres.LATEST
    assert await store.migrate() == latest
    assert await store.migrate() == latest


async def test_a_database_of_the_previous_schema_is_upgraded_and_its_lines_become_searchable(
    store: CallStore,
) -> None:
    assert isinstance(store, SqliteStore | PostgresStore)
    assert await store.migrate(target=1) == 1
    # Written by a relay of the previous version: no disposition column, no search index.
    old = [
        r for r in call_rows(sid(1), 1000.0, [("customer", "I want my refund back")]) if not isinstance(r, CallEnded)
    ]
    await store.write(old)
    assert await store.migrate() == (store_sqlite.LATEST if store.engine == "sqlite" else store_postgres.LATEST)
    page = await store.search(SearchQuery(text="refund"))
    assert [c["call_sid"] for c in page.calls] == [sid(1)]
    await store.write(call_rows(sid(2), 2000.0, [("customer", "hello")]))
    record = await store.get(sid(2))
    assert record is not None and record["disposition"] == "resolved"


async def test_a_call_reads_back_whole_and_a_retried_batch_writes_nothing_twice(store: CallStore) -> None:
    await store.migrate()
    rows = call_rows(sid(3), 5000.0, [("customer", "Where is my order?"), ("agent", "It ships today.")])
    await store.write(rows)
    await store.write(rows)  # the same batch again (its first commit's answer was lost)
    record = await store.get(sid(3))
    assert record is not None
    assert [(line["speaker"], line["text"]) for line in record["transcript"]] == [
        ("customer", "Where is my order?"),
        ("agent", "It ships today."),
    ]
    assert record["transcript"][1]["at_s"] == 3.0
    [suggestion] = record["suggestions"]
    assert suggestion["sources"] == [{"id": "r#1", "title": "R"}] and suggestion["latency_s"] == 0.8
    assert record["insights"] == [{"at_s": 4.5, "kind": "question", "text": "Refund?", "answered": True}]
    assert record["statuses"][0]["state"] == "started"
    assert record["wrapup"]["summary"] == f"Summary of {sid(3)}" and record["counters"] == {"frames_in": 3000}
    assert record["task_sid"] == "WT" + "1" * 32 and record["worker"] == "alice" and record["has_audio"] is False
    assert await store.get(sid(99)) is None


async def test_search_by_words_agent_and_time_newest_first_with_pagination(store: CallStore) -> None:
    await store.migrate()
    for i in range(7):
        said = [("customer", "How long does a refund take?" if i % 2 == 0 else "Where is my parcel?")]
        await store.write(call_rows(sid(10 + i), 10_000.0 + i * 100, said, worker="alice" if i < 4 else "bob"))

    refunds = await store.search(SearchQuery(text="refunds"))  # stemmed: "refunds" finds "refund"
    assert [c["call_sid"] for c in refunds.calls] == [sid(16), sid(14), sid(12), sid(10)]
    assert refunds.calls[0]["matches"][0]["text"] == "How long does a refund take?"
    assert refunds.calls[0]["summary"] == f"Summary of {sid(16)}"

    bob = await store.search(SearchQuery(agent="bob"))
    assert [c["call_sid"] for c in bob.calls] == [sid(16), sid(15), sid(14)]
    window = await store.search(SearchQuery(since=10_200.0, until=10_400.0))
    assert [c["call_sid"] for c in window.calls] == [sid(13), sid(12)]

    seen, cursor = [], None
    while True:
        page = await store.search(SearchQuery(limit=3, cursor=cursor))
        seen += [c["call_sid"] for c in page.calls]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [sid(10 + i) for i in reversed(range(7))]
    # Search words are data, never query syntax.
    tricky = SearchQuery(text='refund" OR "x NEAR(')
    assert (await store.search(tricky)).calls == []


async def test_delete_and_retention_remove_only_what_they_should(store: CallStore) -> None:
    await store.migrate()
    await store.write(call_rows(sid(20), 1_000.0, [("customer", "old call")]))
    await store.write(call_rows(sid(21), 9_000_000.0, [("customer", "new call")]))
    await store.write(call_rows(sid(22), 9_000_100.0, [("customer", "another")]))
    assert await store.delete(sid(22)) == (sid(22), None)  # it was there, with no audio
    assert await store.delete(sid(22)) is None  # and is gone
    assert await store.get(sid(22)) is None
    expired = await store.expire(ended_before=100_000.0)
    assert [call for call, _ in expired] == [sid(20)]
    assert await store.get(sid(20)) is None and await store.get(sid(21)) is not None
    assert (await store.search(SearchQuery(text="old"))).calls == []


async def test_the_writer_rides_out_an_outage_and_loses_nothing_it_acknowledged(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = make_store(engine, tmp_path, request)
    writer = RecordWriter(store, batch_max=50, backoff_initial_s=0.05, backoff_max_s=0.2, seed=1)
    writer.start()
    call = sid(30)
    writer.submit(CallStarted(call, "MZ1", 1.0, "default", "openai"))
    for n in range(1, 101):
        writer.submit(LineRow(call, n, n * 1.0, "customer", f"line {n}", f"item_{n}"))
    assert await writer.idle()
    written_before = writer.stats.written

    async with database_down(engine, store, request):
        for n in range(101, 201):  # the call goes on while the database is away
            writer.submit(LineRow(call, n, n * 1.0, "customer", f"line {n}", f"item_{n}"))
        await wait_until(lambda: writer.stats.retries >= 1, timeout_s=10)  # SQLite waits its busy timeout first
        assert writer.pending == 100

    assert await writer.idle(timeout_s=20)
    record = await store.get(call)
    assert record is not None and [line["text"] for line in record["transcript"]] == [
        f"line {n}" for n in range(1, 201)
    ]
    assert writer.stats.written == written_before + 100 and writer.stats.dropped == {}
    await writer.close(5)


class database_down:
    """SQLite: another process holds the write lock. PostgreSQL: the server is stopped."""

    def __init__(self, engine: str, store: CallStore, request: pytest.FixtureRequest) -> None:
        self._engine, self._store, self._request = engine, store, request
        self._lock: sqlite3.Connection | None = None

    async def __aenter__(self) -> None:
        if self._engine == "sqlite":
            assert isinstance(self._store, SqliteStore)
            self._lock = sqlite3.connect(self._store.path, isolation_level=None)
            self._lock.execute("BEGIN EXCLUSIVE")
        else:
            server: PostgresServer = self._request.getfixturevalue("postgres")
            await asyncio.to_thread(server.stop)

    async def __aexit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
        else:
            server: PostgresServer = self._request.getfixturevalue("postgres")
            await asyncio.to_thread(server.start_again)


async def test_an_unreachable_database_is_reported_as_unavailable(engine: str, tmp_path: Path) -> None:
    store: CallStore = (
        SqliteStore(str(tmp_path / "no-such-dir" / "x" / "relay.db"))
        if engine == "sqlite"
        else PostgresStore("postgresql://relay@127.0.0.1:1/none", timeout_s=1)
    )
    if engine == "sqlite":
        (tmp_path / "no-such-dir").write_text("a file where a folder should be")
    with pytest.raises((StoreUnavailable, OSError)):
        await store.migrate()
    await store.close()
