"""What a call cost, as the call records keep it, against SQLite and a real PostgreSQL: the
migration adds the cost to a database of the previous schema (its calls' costs read from
their summaries), a call's record carries its usage, listings its cost, and a period's
totals add them up."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.records.postgres import PostgresStore
from relay.records.sqlite import SqliteStore
from relay.records.store import CallEnded, CallStarted, CallStore, SearchQuery
from relay.usage import KINDS, merge_usage, stored_usage, usage_totals
from tests.fakes.postgres import PostgresServer

_databases = itertools.count(1)


def usage(cost: float | None, audio_in: int = 1000) -> dict[str, Any]:
    tokens = dict.fromkeys(KINDS, 10)
    tokens["audio_in"] = audio_in
    return {"model": "gpt-realtime-1.5", **tokens, "transcription_s": 12.5, "cost_usd": cost}


def sid(i: int) -> str:
    return f"CA{i:032x}"


def call(i: int, started_at: float, summary: dict[str, Any], worker: str = "alice") -> list[CallStarted | CallEnded]:
    return [
        CallStarted(sid(i), f"MZ{i:032x}", started_at, "default", "openai", None, worker),
        CallEnded(sid(i), started_at + 60, "stop", summary),
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStore | PostgresStore]:
    s: SqliteStore | PostgresStore
    if request.param == "sqlite":
        s = SqliteStore(str(tmp_path / "relay.db"))
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        s = PostgresStore(server.create_database(f"usage_{next(_databases)}"))
    yield s
    await s.close()


async def _insert_previous_schema(store: CallStore, call_sid: str, summary: dict[str, Any]) -> None:
    """A call ended by a relay of the previous version: its summary only, no cost columns."""
    body = json.dumps(summary)
    if isinstance(store, SqliteStore):
        db = await store._conn()
        await db.execute(
            "INSERT INTO calls (call_sid, started_at, ended_at, summary) VALUES (?,?,?,?)",
            (call_sid, 100.0, 160.0, body),
        )
        await db.commit()
    else:
        assert isinstance(store, PostgresStore)

        async def run(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO calls (call_sid, started_at, ended_at, summary) VALUES ($1,$2,$3,$4::jsonb)",
                call_sid,
                100.0,
                160.0,
                body,
            )

        await store._run(run)


async def test_the_migration_keeps_the_cost_of_calls_already_recorded(store: SqliteStore | PostgresStore) -> None:
    assert await store.migrate(target=2) == 2
    await _insert_previous_schema(store, sid(1), {"frames_in": 5, "usage": usage(0.25)})
    await _insert_previous_schema(store, sid(2), {"frames_in": 5})  # kept before usage was counted
    await _insert_previous_schema(store, sid(3), {"usage": usage(None)})  # a model without a price
    assert await store.migrate() == 3

    record = await store.get(sid(1))
    assert record is not None and record["cost_usd"] == 0.25
    assert json.loads(record["usage"]) == usage(0.25)
    for other in (sid(2), sid(3)):
        found = await store.get(other)
        assert found is not None and found["cost_usd"] is None
    totals = await store.totals(SearchQuery())
    assert totals["calls"] == 3 and totals["calls_priced"] == 1 and totals["cost_usd"] == 0.25
    assert totals["tokens"]["audio_in"] == 2000  # both usages, priced or not


async def test_listings_show_each_calls_cost_and_totals_add_up_a_period(store: SqliteStore | PostgresStore) -> None:
    await store.migrate()
    await store.write(call(1, 1000.0, {"usage": usage(0.5, audio_in=100)}))
    await store.write(call(2, 2000.0, {"usage": usage(0.125, audio_in=200)}, worker="bob"))
    await store.write(call(3, 3000.0, {"usage": usage(0.25, audio_in=400)}))
    await store.write(call(4, 4000.0, {"frames_in": 1}))  # no usage at all

    page = await store.search(SearchQuery())
    assert [(c["call_sid"], c["cost_usd"]) for c in page.calls] == [
        (sid(4), None),
        (sid(3), 0.25),
        (sid(2), 0.125),
        (sid(1), 0.5),
    ]
    everything = await store.totals(SearchQuery())
    assert everything == {
        "calls": 4,
        "calls_priced": 3,
        "cost_usd": 0.875,
        "tokens": {**dict.fromkeys(KINDS, 30), "audio_in": 700},
        "transcription_s": 37.5,
    }
    period = await store.totals(SearchQuery(since=1500.0, until=3500.0))
    assert (period["calls"], period["cost_usd"], period["tokens"]["audio_in"]) == (2, 0.375, 600)
    alice = await store.totals(SearchQuery(agent="alice", until=3500.0))
    assert (alice["calls"], alice["cost_usd"]) == (2, 0.75)
    nothing = await store.totals(SearchQuery(since=9000.0))
    assert nothing["calls"] == 0 and nothing["cost_usd"] == 0.0 and nothing["tokens"]["audio_in"] == 0


def test_a_summary_says_what_it_can_and_no_more() -> None:
    assert stored_usage({"usage": usage(0.5)}) == (usage(0.5), 0.5)
    assert stored_usage({"usage": usage(None)}) == (usage(None), None)
    assert stored_usage({"usage": {"cost_usd": True}})[1] is None
    assert stored_usage({"usage": {"cost_usd": float("nan")}})[1] is None
    assert stored_usage({"usage": "lots"}) == (None, None)
    assert stored_usage({}) == (None, None)
    with pytest.raises(ValueError, match="aggregate row"):
        usage_totals([1, 1, 0.5])


async def test_a_call_served_by_two_bridges_keeps_the_sum_of_what_each_billed(
    store: SqliteStore | PostgresStore,
) -> None:
    # A restarted stream or a call continued on another replica: each bridge writes its end row.
    await store.migrate()
    await store.write(call(1, 1000.0, {"usage": usage(0.5, audio_in=100)}))
    await store.write(call(1, 1100.0, {"usage": usage(0.25, audio_in=300)}))
    record = await store.get(sid(1))
    assert record is not None and record["cost_usd"] == 0.75
    kept = json.loads(record["usage"])  # a JSON column, as text
    assert kept["audio_in"] == 400 and kept["text_out"] == 20 and kept["transcription_s"] == 25.0
    # One part without a price: the sum is not known.
    await store.write(call(2, 2000.0, {"usage": usage(0.5)}))
    await store.write(call(2, 2100.0, {"usage": usage(None)}))
    unpriced = await store.get(sid(2))
    assert unpriced is not None and unpriced["cost_usd"] is None and json.loads(unpriced["usage"])["audio_in"] == 2000


def test_merging_usage_adds_every_kind_and_knows_a_cost_only_when_every_part_does() -> None:
    merged, cost = merge_usage(usage(0.5, audio_in=100), usage(0.25, audio_in=300))
    assert cost == 0.75 and merged is not None and merged["audio_in"] == 400 and merged["cost_usd"] == 0.75
    assert merge_usage(None, usage(0.25))[1] == 0.25 and merge_usage(usage(0.25), None)[1] == 0.25
    assert merge_usage(usage(None), usage(0.25))[1] is None
    assert merge_usage(None, None) == (None, None)
    hostile = merge_usage({"audio_in": "lots", "cost_usd": float("nan")}, usage(0.25, audio_in=7))
    assert hostile[0] is not None and hostile[0]["audio_in"] == 7 and hostile[1] is None
