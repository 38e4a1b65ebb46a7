"""Call records: write throughput and search latency, SQLite and PostgreSQL side by side.

    .venv/bin/python bench/records_bench.py [--calls 1000] [--lines 100] [--queries 200]

1. Write throughput through the RecordWriter (bounded queue → batched transactions): `--calls`
   complete records (start, lines, a suggestion every 10 lines, insights, end), all submitted at
   once; rows and transcript lines per second until every row is committed.
2. Search latency over the resulting `calls × lines` transcript lines (100k by default): full-text
   queries of one and two words (some rare, some common), p50/p95/max, plus an agent filter.
PostgreSQL is Debian's server started on loopback for the run (tests/fakes/postgres.py).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.records.postgres import PostgresStore  # noqa: E402
from relay.records.sqlite import SqliteStore  # noqa: E402
from relay.records.store import (  # noqa: E402
    CallEnded,
    CallStarted,
    CallStore,
    EventRow,
    LineRow,
    Row,
    SearchQuery,
    SuggestionRow,
)
from relay.records.writer import RecordWriter  # noqa: E402
from tests.fakes.postgres import PostgresServer, find_bin_dir  # noqa: E402

WORDS = tuple(
    [
        "order",
        "delivery",
        "address",
        "refund",
        "password",
        "account",
        "invoice",
        "charge",
        "card",
        "payment",
        "tracking",
        "parcel",
        "return",
        "label",
        "email",
        "jacket",
        "shoes",
        "size",
        "exchange",
        "discount",
        "coupon",
        "subscription",
        "cancel",
        "upgrade",
        "warranty",
        "repair",
        "broken",
        "late",
        "damaged",
        "missing",
        "store",
        "pickup",
        "weekend",
        "manager",
        "supervisor",
    ]
)
FILLER = tuple(
    [
        "the",
        "a",
        "my",
        "your",
        "is",
        "can",
        "how",
        "when",
        "where",
        "what",
        "do",
        "i",
        "we",
        "you",
        "please",
        "thanks",
        "okay",
        "so",
        "and",
        "it",
    ]
)


def call_rows(i: int, lines: int, rng: random.Random) -> list[Row]:
    sid = f"CA{i:032x}"
    rows: list[Row] = [
        CallStarted(sid, f"MZ{i:032x}", 1_700_000_000.0 + i * 60, "default", "openai", None, f"agent{i % 50}")
    ]
    n = 0
    for k in range(lines):
        n += 1
        words = [rng.choice(FILLER) for _ in range(6)] + [rng.choice(WORDS) for _ in range(3)]
        rng.shuffle(words)
        rows.append(LineRow(sid, n, k * 4.0, "customer" if k % 2 == 0 else "agent", " ".join(words), f"item_{k}"))
        if k % 10 == 9:
            n += 1
            rows.append(
                SuggestionRow(sid, n, k * 4.0 + 1, f"resp_{k}", "Q?", "An answer.", ({"id": "x#y", "title": "T"},), 0.7)
            )
            n += 1
            rows.append(EventRow(sid, n, k * 4.0 + 1, "insight", {"kind": "question", "text": "Q?", "answered": True}))
    rows.append(
        CallEnded(
            sid,
            1_700_000_000.0 + i * 60 + lines * 4,
            "stop",
            {"frames_in": lines * 200},
            {"status": "ok", "summary": "s"},
            "resolved",
        )
    )
    return rows


async def write_throughput(store: CallStore, calls: int, lines: int) -> dict[str, float]:
    rng = random.Random(1)
    all_rows = [row for i in range(calls) for row in call_rows(i, lines, rng)]
    writer = RecordWriter(store, queue_max=len(all_rows) + 1, batch_max=500)
    writer.start()
    await store.migrate()
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    for row in all_rows:
        writer.submit(row)
    assert await writer.idle(timeout_s=600)
    elapsed = time.perf_counter() - started
    await writer.close(10)  # also closes the store
    return {
        "rows_per_s": len(all_rows) / elapsed,
        "lines_per_s": calls * lines / elapsed,
        "records_per_s": calls / elapsed,
        "seconds": elapsed,
        "rows": len(all_rows),
    }


async def search_latency(store: CallStore, queries: int) -> dict[str, float]:
    rng = random.Random(2)
    samples = []
    for _ in range(queries):
        text = rng.choice(WORDS) if rng.random() < 0.5 else f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
        started = time.perf_counter()
        await store.search(SearchQuery(text=text, limit=20))
        samples.append(time.perf_counter() - started)
    agent = []
    for i in range(20):
        started = time.perf_counter()
        await store.search(SearchQuery(text=rng.choice(WORDS), agent=f"agent{i}", limit=20))
        agent.append(time.perf_counter() - started)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1000,
        "p95_ms": samples[int(len(samples) * 0.95)] * 1000,
        "max_ms": samples[-1] * 1000,
        "agent_filter_p50_ms": statistics.median(agent) * 1000,
    }


async def main_async(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="relay-records-bench-"))
    engines: list[tuple[str, object]] = [("sqlite", lambda: SqliteStore(str(folder / "bench.db")))]
    server = None
    bin_dir = find_bin_dir()
    if bin_dir is not None:
        server = PostgresServer(bin_dir)
        server.start()
        url = server.create_database("bench")
        engines.append(("postgresql", lambda: PostgresStore(url)))
    else:
        print("PostgreSQL not installed: SQLite only")
    try:
        print(f"{args.calls} calls × {args.lines} lines = {args.calls * args.lines:,} transcript lines")
        for name, make in engines:
            writes = await write_throughput(make(), args.calls, args.lines)  # type: ignore[operator]
            store: CallStore = make()  # type: ignore[operator]
            search = await search_latency(store, args.queries)
            await store.close()
            print(
                f"{name:10} write: {writes['records_per_s']:7.1f} records/s, {writes['lines_per_s']:9.0f} lines/s, "
                f"{writes['rows_per_s']:9.0f} rows/s ({writes['rows']:,} rows in {writes['seconds']:.1f} s)"
            )
            print(
                f"{'':10} search over {args.calls * args.lines:,} lines: p50 {search['p50_ms']:.1f} ms, "
                f"p95 {search['p95_ms']:.1f} ms, max {search['max_ms']:.1f} ms; "
                f"with an agent filter p50 {search['agent_filter_p50_ms']:.1f} ms"
            )
    finally:
        if server is not None:
            server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
