"""Call records in PostgreSQL (`RELAY_DATABASE_URL=postgresql://…`): several relays share one
history.

asyncpg, a small pool opened lazily (a database that is down at startup only delays the
writes), full-text search with a generated `tsvector` column and a GIN index. Migrations
run under an advisory lock, so relays starting together migrate once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from relay.records.store import (
    CallEnded,
    CallStarted,
    EventRow,
    LineRow,
    Row,
    SearchPage,
    SearchQuery,
    StoreUnavailable,
    SuggestionRow,
    assemble_record,
    attach_matches,
    decode_cursor,
    page_of,
)
from relay.usage import KINDS, merge_usage, stored_usage, usage_totals

MIGRATIONS: Final[list[tuple[int, list[str]]]] = [
    (
        1,
        [
            """CREATE TABLE calls (
                call_sid TEXT PRIMARY KEY, stream_sid TEXT, task_sid TEXT, worker TEXT,
                started_at DOUBLE PRECISION, ended_at DOUBLE PRECISION, prompt TEXT, engine TEXT,
                end_reason TEXT, wrapup JSONB, summary JSONB, audio_path TEXT)""",
            "CREATE INDEX calls_started ON calls (started_at DESC, call_sid DESC)",
            """CREATE TABLE lines (
                call_sid TEXT NOT NULL, n INTEGER NOT NULL, at_s DOUBLE PRECISION, speaker TEXT,
                text TEXT, utterance_id TEXT, UNIQUE (call_sid, n))""",
            """CREATE TABLE suggestions (
                call_sid TEXT NOT NULL, n INTEGER NOT NULL, at_s DOUBLE PRECISION, suggestion_id TEXT,
                question TEXT, answer TEXT, sources JSONB, latency_s DOUBLE PRECISION, UNIQUE (call_sid, n))""",
            """CREATE TABLE events (
                call_sid TEXT NOT NULL, n INTEGER NOT NULL, at_s DOUBLE PRECISION, kind TEXT, body JSONB,
                UNIQUE (call_sid, n))""",
        ],
    ),
    (
        2,  # search: full text over lines (existing lines indexed), agent and disposition filters
        [
            "ALTER TABLE calls ADD COLUMN disposition TEXT",
            "CREATE INDEX calls_worker ON calls (worker, started_at DESC)",
            "ALTER TABLE lines ADD COLUMN tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
            "CREATE INDEX lines_tsv ON lines USING gin (tsv)",
        ],
    ),
    (
        3,  # what a call cost: its summary's `usage`, and the cost on its own for listing and totals
        [
            "ALTER TABLE calls ADD COLUMN usage JSONB",
            "ALTER TABLE calls ADD COLUMN cost_usd DOUBLE PRECISION",
            "UPDATE calls SET usage = summary->'usage', "
            "cost_usd = CASE WHEN jsonb_typeof(summary->'usage'->'cost_usd') = 'number' "
            "THEN (summary->'usage'->>'cost_usd')::double precision END "
            "WHERE jsonb_typeof(summary->'usage') = 'object'",
        ],
    ),
]
LATEST: Final = MIGRATIONS[-1][0]
_MIGRATION_LOCK: Final = 0x7E1A7  # advisory lock id: one migrating relay at a time
_MATCHES_PER_CALL: Final = 3
_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)



def _period_clauses(query: SearchQuery, params: list[Any], table: str = "") -> list[str]:
    """The agent and period filters a search and the totals share (`table`: a join's alias);
    each value is appended to `params` and named by its position."""
    clauses: list[str] = []
    for column, op, value in (
        ("worker", "=", query.agent or None),
        ("started_at", ">=", query.since),
        ("started_at", "<", query.until),
    ):
        if value is not None:
            params.append(value)
            clauses.append(f"{table}{column} {op} ${len(params)}")
    return clauses

class PostgresStore:
    engine = "postgresql"

    def __init__(self, url: str, *, pool_max: int = 4, timeout_s: float = 5.0) -> None:
        self._url = url
        self._pool_max = pool_max
        self._timeout = timeout_s
        self._pool: asyncpg.Pool | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self._url, min_size=0, max_size=self._pool_max, timeout=self._timeout, command_timeout=30
                )
            except (*_UNAVAILABLE, TimeoutError) as exc:
                raise StoreUnavailable(f"postgresql: {type(exc).__name__}: {exc}") from exc
        return self._pool

    async def _run(self, work: Any) -> Any:
        pool = await self._get_pool()
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                return await work(conn)
        except (*_UNAVAILABLE, TimeoutError, asyncpg.exceptions.AdminShutdownError) as exc:
            raise StoreUnavailable(f"postgresql: {type(exc).__name__}: {exc}") from exc

    async def schema_version(self) -> int:
        async def read(conn: asyncpg.Connection) -> int:
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            value = await conn.fetchval("SELECT max(version) FROM schema_version")
            return int(value or 0)

        result: int = await self._run(read)
        return result

    async def migrate(self, target: int = LATEST) -> int:
        async def run(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
                for version, statements in MIGRATIONS:
                    if current < version <= target:
                        for statement in statements:
                            await conn.execute(statement)
                        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
                        current = version
                return current

        result: int = await self._run(run)
        return result

    async def write(self, rows: Sequence[Row]) -> None:
        lines = [(r.call_sid, r.n, r.at_s, r.speaker, r.text, r.utterance_id) for r in rows if isinstance(r, LineRow)]
        suggestions = [
            (r.call_sid, r.n, r.at_s, r.suggestion_id, r.question, r.answer, json.dumps(list(r.sources)), r.latency_s)
            for r in rows
            if isinstance(r, SuggestionRow)
        ]
        events = [(r.call_sid, r.n, r.at_s, r.kind, json.dumps(r.body)) for r in rows if isinstance(r, EventRow)]

        async def run(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                for row in rows:  # calls first, in order (a start and its end may share a batch)
                    if isinstance(row, CallStarted):
                        await conn.execute(
                            "INSERT INTO calls (call_sid, stream_sid, task_sid, worker, started_at, prompt, engine) "
                            "VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (call_sid) DO UPDATE SET "
                            "stream_sid = excluded.stream_sid, task_sid = coalesce(excluded.task_sid, calls.task_sid), "
                            "worker = coalesce(excluded.worker, calls.worker)",
                            row.call_sid,
                            row.stream_sid,
                            row.task_sid,
                            row.worker,
                            row.started_at,
                            row.prompt,
                            row.engine,
                        )
                    elif isinstance(row, CallEnded):
                        usage, cost_usd = stored_usage(row.summary)
                        earlier = await conn.fetchval(
                            "SELECT usage FROM calls WHERE call_sid = $1 FOR UPDATE", row.call_sid
                        )
                        if earlier:  # an earlier bridge of this call billed too
                            usage, cost_usd = merge_usage(json.loads(earlier), usage)
                        await conn.execute(
                            "INSERT INTO calls (call_sid, ended_at, end_reason, summary, wrapup, disposition, "
                            "task_sid, audio_path, usage, cost_usd) "
                            "VALUES ($1,$2,$3,$4::jsonb,$5::jsonb,$6,$7,$8,$9::jsonb,$10) "
                            "ON CONFLICT (call_sid) DO UPDATE "
                            "SET ended_at = excluded.ended_at, end_reason = excluded.end_reason, "
                            "summary = excluded.summary, "
                            # An agent's edit (PUT /calls/{CallSid}/wrapup) saved before this row is kept.
                            "wrapup = CASE WHEN calls.wrapup ? 'edited_at' THEN calls.wrapup "
                            "ELSE excluded.wrapup END, "
                            "disposition = CASE WHEN calls.wrapup ? 'edited_at' THEN calls.disposition "
                            "ELSE excluded.disposition END, "
                            "task_sid = coalesce(excluded.task_sid, calls.task_sid), "
                            "audio_path = coalesce(excluded.audio_path, calls.audio_path), "
                            "usage = excluded.usage, cost_usd = excluded.cost_usd",
                            row.call_sid,
                            row.ended_at,
                            row.end_reason,
                            json.dumps(row.summary),
                            json.dumps(row.wrapup) if row.wrapup is not None else None,
                            row.disposition,
                            row.task_sid,
                            row.audio_path,
                            json.dumps(usage) if usage is not None else None,
                            cost_usd,
                        )
                if lines:
                    await conn.executemany(
                        "INSERT INTO lines (call_sid, n, at_s, speaker, text, utterance_id) VALUES ($1,$2,$3,$4,$5,$6) "
                        "ON CONFLICT DO NOTHING",
                        lines,
                    )
                if suggestions:
                    await conn.executemany(
                        "INSERT INTO suggestions (call_sid, n, at_s, suggestion_id, question, answer, sources, "
                        "latency_s) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8) ON CONFLICT DO NOTHING",
                        suggestions,
                    )
                if events:
                    await conn.executemany(
                        "INSERT INTO events (call_sid, n, at_s, kind, body) VALUES ($1,$2,$3,$4,$5::jsonb) "
                        "ON CONFLICT DO NOTHING",
                        events,
                    )

        await self._run(run)

    async def search(self, query: SearchQuery) -> SearchPage:
        where: list[str] = ["TRUE"]
        params: list[Any] = []

        def arg(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if query.text and query.text.strip():
            where.append(
                "c.call_sid IN (SELECT l.call_sid FROM lines l "
                f"WHERE l.tsv @@ websearch_to_tsquery('english', {arg(query.text)}))"
            )
        where += _period_clauses(query, params, "c.")
        if query.cursor:
            started, sid = decode_cursor(query.cursor)
            a, b = arg(started), arg(sid)
            where.append(f"(c.started_at < {a} OR (c.started_at = {a} AND c.call_sid < {b}))")
        sql = (
            "SELECT c.call_sid, c.stream_sid, c.task_sid, c.worker, c.started_at, c.ended_at, c.prompt, c.engine, "
            "c.end_reason, c.disposition, c.cost_usd, c.wrapup->>'summary' AS summary FROM calls c WHERE "
            + " AND ".join(where)
            + f" ORDER BY c.started_at DESC, c.call_sid DESC LIMIT {arg(query.limit + 1)}"
        )

        async def run(conn: asyncpg.Connection) -> SearchPage:
            page = page_of([dict(r) for r in await conn.fetch(sql, *params)], query.limit)
            if query.text and query.text.strip() and page.calls:
                matches = await conn.fetch(
                    "SELECT call_sid, at_s, speaker, text FROM ("
                    " SELECT l.call_sid, l.at_s, l.speaker, l.text,"
                    " row_number() OVER (PARTITION BY l.call_sid ORDER BY l.n) AS k FROM lines l"
                    " WHERE l.call_sid = ANY($1::text[]) AND l.tsv @@ websearch_to_tsquery('english', $2)) m"
                    f" WHERE k <= {_MATCHES_PER_CALL}",
                    [c["call_sid"] for c in page.calls],
                    query.text,
                )
                attach_matches(page, matches)
            return page

        page: SearchPage = await self._run(run)
        return page

    async def totals(self, query: SearchQuery) -> dict[str, Any]:
        """What the calls that started in the query's period (and took the agent) cost; see
        `SqliteStore.totals`."""
        params: list[Any] = []
        where = ["TRUE", *_period_clauses(query, params)]
        sums = ", ".join(f"sum((usage->>'{k}')::double precision)" for k in (*KINDS, "transcription_s"))
        sql = f"SELECT count(*), count(cost_usd), sum(cost_usd), {sums} FROM calls WHERE " + " AND ".join(where)

        async def run(conn: asyncpg.Connection) -> dict[str, Any]:
            row = await conn.fetchrow(sql, *params)
            return usage_totals(list(row))

        result: dict[str, Any] = await self._run(run)
        return result

    async def get(self, call_sid: str) -> dict[str, Any] | None:
        async def run(conn: asyncpg.Connection) -> dict[str, Any] | None:
            row = await conn.fetchrow("SELECT * FROM calls WHERE call_sid = $1", call_sid)
            if row is None:
                return None
            lines = await conn.fetch(
                "SELECT at_s, speaker, text, utterance_id FROM lines WHERE call_sid = $1 ORDER BY n", call_sid
            )
            suggestions = await conn.fetch(
                "SELECT at_s, suggestion_id, question, answer, sources, latency_s FROM suggestions "
                "WHERE call_sid = $1 ORDER BY n",
                call_sid,
            )
            events = await conn.fetch("SELECT at_s, kind, body FROM events WHERE call_sid = $1 ORDER BY n", call_sid)
            return assemble_record(dict(row), lines, suggestions, events)

        result: dict[str, Any] | None = await self._run(run)
        return result

    async def save_wrapup(self, call_sid: str, wrapup: dict[str, Any], disposition: str) -> bool:
        """The agent's edited wrap-up replaces the call's (relay/web/wrapup_api.py); False when
        there is no such call."""

        async def run(conn: asyncpg.Connection) -> bool:
            status = await conn.execute(
                "UPDATE calls SET wrapup = $1::jsonb, disposition = $2 WHERE call_sid = $3",
                json.dumps(wrapup),
                disposition,
                call_sid,
            )
            return bool(status != "UPDATE 0")

        result: bool = await self._run(run)
        return result

    async def delete(self, call_sid: str) -> tuple[str, str | None] | None:
        """Delete one call: `(call_sid, audio path)` if it was there, else None."""
        deleted = await self._delete_where("call_sid = $1", (call_sid,))
        return deleted[0] if deleted else None

    async def expire(self, ended_before: float) -> list[tuple[str, str | None]]:
        return await self._delete_where("coalesce(ended_at, started_at) < $1", (ended_before,))

    async def _delete_where(self, condition: str, params: tuple[Any, ...]) -> list[tuple[str, str | None]]:
        async def run(conn: asyncpg.Connection) -> list[tuple[str, str | None]]:
            async with conn.transaction():
                doomed = [
                    (r["call_sid"], r["audio_path"])
                    for r in await conn.fetch(f"SELECT call_sid, audio_path FROM calls WHERE {condition}", *params)
                ]
                sids = [sid for sid, _ in doomed]
                for table in ("lines", "suggestions", "events", "calls"):
                    await conn.execute(f"DELETE FROM {table} WHERE call_sid = ANY($1::text[])", sids)
                return doomed

        result: list[tuple[str, str | None]] = await self._run(run)
        return result

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
