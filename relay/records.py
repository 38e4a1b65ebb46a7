"""Call records for the whole relay: the writer, the per-call recorder the bridge feeds, the
optional audio, and retention.

`CallRecorder` turns what a call produces into rows with a per-call sequence number and
hands them to the `RecordWriter` (bounded queue, batches, retries): the bridge never waits
for the database. Retention deletes records (and their audio files) whose call ended more
than `retention_days` ago, hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from .audio_recorder import AudioRecorder
from .call_store import CallEnded, CallStarted, CallStore, EventRow, LineRow, StoreUnavailable, SuggestionRow
from .errors import ConfigurationError
from .record_writer import RecordWriter
from .store_postgres import PostgresStore
from .store_sqlite import SqliteStore

log = logging.getLogger("relay.records")


def open_store(url: str) -> CallStore:
    """`sqlite:///path/to/relay.db` or `postgresql://user:pass@host:port/db`."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ConfigurationError("RELAY_DATABASE_URL must start with sqlite:/// or postgresql://")


ROWS_PER_INCARNATION = 1_000_000  # (PostgreSQL's n is a 32-bit integer: 2,147 incarnations)


class CallRecorder:
    def __init__(self, records: Records, call_sid: str, started_at: float, incarnation: int = 0) -> None:
        self._records = records
        self.call_sid = call_sid
        self.started_at = started_at
        # Rows are keyed (call_sid, n) and inserted "on conflict do nothing": a later bridge of
        # the same call (assist restarted, or continued on another replica) numbers its rows
        # past the earlier ones' instead of colliding with them and being dropped.
        self._n = incarnation * ROWS_PER_INCARNATION
        self.audio: AudioRecorder | None = None

    def _next(self) -> int:
        self._n += 1
        return self._n

    def started(self, stream_sid: str, prompt: str, engine: str, task_sid: str | None, worker: str | None) -> None:
        self._records.writer.submit(
            CallStarted(self.call_sid, stream_sid, self.started_at, prompt, engine, task_sid, worker)
        )

    def line(self, at_s: float, speaker: str, text: str, utterance_id: str) -> None:
        self._records.writer.submit(LineRow(self.call_sid, self._next(), at_s, speaker, text, utterance_id))

    def suggestion(
        self,
        at_s: float,
        suggestion_id: str,
        question: str,
        answer: str,
        sources: list[dict[str, str]],
        latency_s: float | None,
    ) -> None:
        self._records.writer.submit(
            SuggestionRow(self.call_sid, self._next(), at_s, suggestion_id, question, answer, tuple(sources), latency_s)
        )

    def event(self, at_s: float, kind: str, body: dict[str, Any]) -> None:
        self._records.writer.submit(EventRow(self.call_sid, self._next(), at_s, kind, body))

    async def ended(
        self,
        end_reason: str,
        summary: dict[str, Any],
        wrapup: dict[str, Any] | None,
        disposition: str | None,
        task_sid: str | None,
    ) -> None:
        audio_path = await self.audio.close() if self.audio is not None else None
        self._records.writer.submit(
            CallEnded(self.call_sid, time.time(), end_reason, summary, wrapup, disposition, task_sid, audio_path)
        )


class Records:
    def __init__(
        self,
        store: CallStore,
        *,
        audio_dir: Path | None,
        retention_days: float,
        queue_max: int = 50_000,
    ) -> None:
        self.store = store
        self.writer = RecordWriter(store, queue_max=queue_max)
        self.audio_dir = audio_dir  # None: audio recording is off
        self.retention_days = retention_days
        self._retention_task: asyncio.Task[None] | None = None
        self.expired = 0

    def start(self) -> None:
        self.writer.start()
        if self.retention_days > 0:
            self._retention_task = asyncio.create_task(self._retention_loop(), name="records-retention")

    async def ready(self) -> None:
        """The schema is in place (the writer migrates at startup; a read may come first).
        Raises StoreUnavailable."""
        if self.writer.stats.migrated is None:
            self.writer.stats.migrated = await self.store.migrate()

    def recorder(self, call_sid: str, incarnation: int = 0) -> CallRecorder:
        recorder = CallRecorder(self, call_sid, time.time(), incarnation)
        if self.audio_dir is not None:
            recorder.audio = AudioRecorder(self.audio_path(call_sid, incarnation))
        return recorder

    def audio_path(self, call_sid: str, incarnation: int = 0) -> Path:
        assert self.audio_dir is not None
        return self.audio_dir / (f"{call_sid}.flac" if incarnation == 0 else f"{call_sid}.{incarnation}.flac")

    async def delete(self, call_sid: str) -> bool:
        """Remove one call's record and audio. Raises StoreUnavailable."""
        await self.ready()
        deleted = await self.store.delete(call_sid)
        if deleted is not None:
            self._remove_audio(deleted[1])
        if self.audio_dir is not None:
            self._remove_audio(str(self.audio_path(call_sid)))
        return deleted is not None

    async def expire_now(self, now: float | None = None) -> int:
        cutoff = (now or time.time()) - self.retention_days * 86_400
        expired = await self.store.expire(cutoff)
        for _, audio in expired:
            self._remove_audio(audio)
        if expired:
            self.expired += len(expired)
            log.info("call records expired", extra={"calls": len(expired), "retention_days": self.retention_days})
        return len(expired)

    def _remove_audio(self, path: str | None) -> None:
        if path:
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.expire_now()
            except StoreUnavailable as exc:
                log.warning("retention skipped: database unavailable", extra={"error": str(exc)})
            await asyncio.sleep(3600)

    async def close(self, deadline_s: float) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
        await self.writer.close(deadline_s)
