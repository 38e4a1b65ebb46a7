"""Call records in SQLite (the default: one file under the data folder, no setup).

One aiosqlite connection (its own thread), WAL journal so readers never wait for the writer,
FTS5 over transcript lines (porter stemming). Migrations are numbered steps run in one
transaction each; `schema_version` says where a database is.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiosqlite

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
                started_at REAL, ended_at REAL, prompt TEXT, engine TEXT, end_reason TEXT,
                wrapup TEXT, summary TEXT, audio_path TEXT)""",
            "CREATE INDEX calls_started ON calls (started_at DESC, call_sid DESC)",
            """CREATE TABLE lines (
                call_sid TEXT NOT NULL, n INTEGER NOT NULL, at_s REAL, speaker TEXT, text TEXT,
                utterance_id TEXT, UNIQUE (call_sid, n))""",
            """CREATE TABLE suggestions (
                call_sid TEXT NOT NULL, n INTEGER NOT NULL, at_s REAL, suggestion_id TEXT,
                question TEXT, answer TEXT, sources TEXT, latency_s REAL, UNIQUE (call_sid, n))""",
            """CREATE TABLE events (
                call_sid TEXT NOT NULL, n INTEGER NOT NULL, at_s REAL, kind TEXT, body TEXT,
                UNIQUE (call_sid, n))""",
        ],
    ),
    (
        2,  # search: full text over lines (existing lines indexed), agent and disposition filters
        [
            "ALTER TABLE calls ADD COLUMN disposition TEXT",
            "CREATE INDEX calls_worker ON calls (worker, started_at DESC)",
            """CREATE VIRTUAL TABLE lines_fts USING fts5(
                text, content='lines', content_rowid='rowid', tokenize='porter unicode61')""",
            """CREATE TRIGGER lines_ai AFTER INSERT ON lines BEGIN
                INSERT INTO lines_fts (rowid, text) VALUES (new.rowid, new.text); END""",
            """CREATE TRIGGER lines_ad AFTER DELETE ON lines BEGIN
                INSERT INTO lines_fts (lines_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END""",
            "INSERT INTO lines_fts (lines_fts) VALUES ('rebuild')",
        ],
    ),
    (
        3,  # what a call cost: its summary's `usage`, and the cost on its own for listing and totals
        [
            "ALTER TABLE calls ADD COLUMN usage TEXT",
            "ALTER TABLE calls ADD COLUMN cost_usd REAL",
            "UPDATE calls SET usage = json_extract(summary, '$.usage'), "
            "cost_usd = json_extract(summary, '$.usage.cost_usd') "
            "WHERE json_valid(summary) AND json_type(summary, '$.usage') = 'object'",
        ],
    ),
]
LATEST: Final = MIGRATIONS[-1][0]
_MATCHES_PER_CALL: Final = 3


def fts_query(text: str) -> str:
    """User words → an FTS5 query of quoted terms (all must match); no operator injection."""
    terms = [t.replace('"', '""') for t in text.split() if t.strip()]
    return " ".join(f'"{t}"' for t in terms)



def _period_clauses(query: SearchQuery, params: list[Any], table: str = "") -> list[str]:
    """The agent and period filters a search and the totals share (`table`: a join's alias)."""
    clauses: list[str] = []
    for clause, value in (
        (f"{table}worker = ?", query.agent or None),
        (f"{table}started_at >= ?", query.since),
        (f"{table}started_at < ?", query.until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return clauses

class SqliteStore:
    engine = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # One connection has one transaction at a time: writes, deletes and migrations take turns.
        self._transaction = asyncio.Lock()

    async def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            try:
                db = await aiosqlite.connect(self.path, timeout=2.0)
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
                await db.execute("PRAGMA busy_timeout=2000")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"sqlite: {exc}") from exc
            db.row_factory = aiosqlite.Row
            self._db = db
        return self._db

    async def schema_version(self) -> int:
        db = await self._conn()
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        async with db.execute("SELECT max(version) FROM schema_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    async def migrate(self, target: int = LATEST) -> int:
        async with self._transaction:
            db = await self._conn()
            try:
                current = await self.schema_version()
                await db.commit()
                for version, statements in MIGRATIONS:
                    if current < version <= target:
                        await db.execute("BEGIN IMMEDIATE")
                        async with db.execute("SELECT max(version) FROM schema_version") as cursor:
                            row = await cursor.fetchone()
                        if row and row[0] is not None and int(row[0]) >= version:  # done by another process
                            await db.commit()
                            current = int(row[0])
                            continue
                        for statement in statements:
                            await db.execute(statement)
                        await db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                        await db.commit()
                        current = version
            except sqlite3.Error as exc:
                await _rollback(db)
                raise StoreUnavailable(f"sqlite: {exc}") from exc
            return current

    async def write(self, rows: Sequence[Row]) -> None:
        async with self._transaction:
            db = await self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE")
                for row in rows:  # the calls' own rows, in order (a start and its end may share a batch)
                    if isinstance(row, CallStarted | CallEnded):
                        await self._write_one(db, row)
                # Lines, suggestions, events: one executemany each (one hop to the database thread).
                await db.executemany(
                    "INSERT INTO lines (call_sid, n, at_s, speaker, text, utterance_id) VALUES (?,?,?,?,?,?) "
                    "ON CONFLICT DO NOTHING",
                    [
                        (r.call_sid, r.n, r.at_s, r.speaker, r.text, r.utterance_id)
                        for r in rows
                        if isinstance(r, LineRow)
                    ],
                )
                await db.executemany(
                    "INSERT INTO suggestions (call_sid, n, at_s, suggestion_id, question, answer, sources, latency_s) "
                    "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    [
                        (
                            r.call_sid,
                            r.n,
                            r.at_s,
                            r.suggestion_id,
                            r.question,
                            r.answer,
                            json.dumps(list(r.sources)),
                            r.latency_s,
                        )
                        for r in rows
                        if isinstance(r, SuggestionRow)
                    ],
                )
                await db.executemany(
                    "INSERT INTO events (call_sid, n, at_s, kind, body) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                    [(r.call_sid, r.n, r.at_s, r.kind, json.dumps(r.body)) for r in rows if isinstance(r, EventRow)],
                )
                await db.commit()
            except sqlite3.Error as exc:
                await _rollback(db)
                raise StoreUnavailable(f"sqlite: {exc}") from exc

    async def _write_one(self, db: aiosqlite.Connection, row: CallStarted | CallEnded) -> None:
        if isinstance(row, CallStarted):
            await db.execute(
                "INSERT INTO calls (call_sid, stream_sid, task_sid, worker, started_at, prompt, engine) "
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT (call_sid) DO UPDATE SET stream_sid = excluded.stream_sid, "
                "task_sid = coalesce(excluded.task_sid, calls.task_sid), "
                "worker = coalesce(excluded.worker, calls.worker)",
                (row.call_sid, row.stream_sid, row.task_sid, row.worker, row.started_at, row.prompt, row.engine),
            )
        elif isinstance(row, CallEnded):
            usage, cost_usd = stored_usage(row.summary)
            async with db.execute("SELECT usage FROM calls WHERE call_sid = ?", (row.call_sid,)) as cursor:
                found = await cursor.fetchone()
            if found is not None and found[0]:  # an earlier bridge of this call billed too
                usage, cost_usd = merge_usage(json.loads(found[0]), usage)
            await db.execute(
                "INSERT INTO calls (call_sid, ended_at, end_reason, summary, wrapup, disposition, task_sid, "
                "audio_path, usage, cost_usd) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (call_sid) DO UPDATE SET "
                "ended_at = excluded.ended_at, "
                "end_reason = excluded.end_reason, summary = excluded.summary, "
                # An agent's edit (PUT /calls/{CallSid}/wrapup) saved before this row is kept.
                "wrapup = CASE WHEN json_extract(calls.wrapup, '$.edited_at') IS NULL "
                "THEN excluded.wrapup ELSE calls.wrapup END, "
                "disposition = CASE WHEN json_extract(calls.wrapup, '$.edited_at') IS NULL "
                "THEN excluded.disposition ELSE calls.disposition END, "
                "task_sid = coalesce(excluded.task_sid, calls.task_sid), "
                "audio_path = coalesce(excluded.audio_path, calls.audio_path), "
                "usage = excluded.usage, cost_usd = excluded.cost_usd",
                (
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
                ),
            )

    async def search(self, query: SearchQuery) -> SearchPage:
        db = await self._conn()
        match = fts_query(query.text) if query.text else ""
        where: list[str] = ["1=1"]
        params: list[Any] = []
        if match:
            where.append(
                "c.call_sid IN (SELECT l.call_sid FROM lines_fts JOIN lines l ON l.rowid = lines_fts.rowid "
                "WHERE lines_fts MATCH ?)"
            )
            params.append(match)
        where += _period_clauses(query, params, "c.")
        if query.cursor:
            started, sid = decode_cursor(query.cursor)
            where.append("(c.started_at < ? OR (c.started_at = ? AND c.call_sid < ?))")
            params.extend([started, started, sid])
        sql = (
            "SELECT c.call_sid, c.stream_sid, c.task_sid, c.worker, c.started_at, c.ended_at, c.prompt, c.engine, "
            "c.end_reason, c.disposition, c.cost_usd, json_extract(c.wrapup, '$.summary') AS summary "
            "FROM calls c WHERE " + " AND ".join(where) + " ORDER BY c.started_at DESC, c.call_sid DESC LIMIT ?"
        )
        try:
            async with db.execute(sql, (*params, query.limit + 1)) as cursor:
                page = page_of([dict(r) for r in await cursor.fetchall()], query.limit)
            if match and page.calls:
                sids = [c["call_sid"] for c in page.calls]
                marks = ",".join("?" * len(sids))
                async with db.execute(
                    "SELECT call_sid, at_s, speaker, text FROM ("
                    " SELECT l.call_sid, l.at_s, l.speaker, l.text,"
                    " row_number() OVER (PARTITION BY l.call_sid ORDER BY l.n) AS k"
                    " FROM lines_fts JOIN lines l ON l.rowid = lines_fts.rowid"
                    f" WHERE lines_fts MATCH ? AND l.call_sid IN ({marks})) WHERE k <= {_MATCHES_PER_CALL}",
                    (match, *sids),
                ) as cursor:
                    attach_matches(page, [dict(r) for r in await cursor.fetchall()])
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        return page

    async def totals(self, query: SearchQuery) -> dict[str, Any]:
        """What the calls that started in the query's period (and took the agent) cost: calls,
        calls with a cost (a model without a price, or a call before costs were kept, has
        none), USD, tokens by kind, transcription seconds."""
        db = await self._conn()
        params: list[Any] = []
        where = ["1=1", *_period_clauses(query, params)]
        sums = ", ".join(f"sum(json_extract(usage, '$.{k}'))" for k in (*KINDS, "transcription_s"))
        sql = f"SELECT count(*), count(cost_usd), sum(cost_usd), {sums} FROM calls WHERE " + " AND ".join(where)
        try:
            async with db.execute(sql, params) as cursor:
                row = await cursor.fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        assert row is not None
        return usage_totals(list(row))

    async def get(self, call_sid: str) -> dict[str, Any] | None:
        db = await self._conn()
        try:
            async with db.execute("SELECT * FROM calls WHERE call_sid = ?", (call_sid,)) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return None
            async with db.execute(
                "SELECT at_s, speaker, text, utterance_id FROM lines WHERE call_sid = ? ORDER BY n", (call_sid,)
            ) as cursor:
                lines = [dict(r) for r in await cursor.fetchall()]
            async with db.execute(
                "SELECT at_s, suggestion_id, question, answer, sources, latency_s FROM suggestions "
                "WHERE call_sid = ? ORDER BY n",
                (call_sid,),
            ) as cursor:
                suggestions = [dict(r) for r in await cursor.fetchall()]
            async with db.execute(
                "SELECT at_s, kind, body FROM events WHERE call_sid = ? ORDER BY n", (call_sid,)
            ) as cursor:
                events = [dict(r) for r in await cursor.fetchall()]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite: {exc}") from exc
        return assemble_record(dict(row), lines, suggestions, events)

    async def save_wrapup(self, call_sid: str, wrapup: dict[str, Any], disposition: str) -> bool:
        """The agent's edited wrap-up replaces the call's (relay/web/wrapup_api.py); False when
        there is no such call."""
        async with self._transaction:
            db = await self._conn()
            try:
                cursor = await db.execute(
                    "UPDATE calls SET wrapup = ?, disposition = ? WHERE call_sid = ?",
                    (json.dumps(wrapup), disposition, call_sid),
                )
                await db.commit()
            except sqlite3.Error as exc:
                await _rollback(db)
                raise StoreUnavailable(f"sqlite: {exc}") from exc
            return cursor.rowcount > 0

    async def delete(self, call_sid: str) -> tuple[str, str | None] | None:
        """Delete one call: `(call_sid, audio path)` if it was there, else None."""
        deleted = await self._delete_where("call_sid = ?", (call_sid,))
        return deleted[0] if deleted else None

    async def expire(self, ended_before: float) -> list[tuple[str, str | None]]:
        return await self._delete_where("coalesce(ended_at, started_at) < ?", (ended_before,))

    async def _delete_where(self, condition: str, params: tuple[Any, ...]) -> list[tuple[str, str | None]]:
        async with self._transaction:
            db = await self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE")
                async with db.execute(f"SELECT call_sid, audio_path FROM calls WHERE {condition}", params) as cursor:
                    doomed = [(r[0], r[1]) for r in await cursor.fetchall()]
                for table in ("lines", "suggestions", "events", "calls"):
                    await db.executemany(f"DELETE FROM {table} WHERE call_sid = ?", [(sid,) for sid, _ in doomed])
                await db.commit()
            except sqlite3.Error as exc:
                await _rollback(db)
                raise StoreUnavailable(f"sqlite: {exc}") from exc
            return doomed

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None


async def _rollback(db: aiosqlite.Connection) -> None:
    try:
        await db.rollback()
    except sqlite3.Error:
        pass
