"""Call records for the whole relay: the writer, the per-call recorder the bridge feeds, the
optional audio, and retention.

`CallRecorder` turns what a call produces into rows with a per-call sequence number and
hands them to the `RecordWriter` (bounded queue, batches, retries): the bridge never waits
for the database. Retention deletes records (and their audio files) whose call ended more
than `retention_days` ago, hourly.

A call's audio is one file per bridge: `{id}.flac`, then `{id}.{n}.flac` for a call continued
(another replica, a restarted stream), n being the bridge's incarnation. Call ids are what
the media endpoint accepts (`[A-Za-z0-9_-.:]{1,64}`); in file names `.` and `:` are written
`%2E` and `%3A`, so a name's stem never holds a dot: the part number is unambiguous, and no
id makes a hidden file or a path outside the folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from relay.errors import ConfigurationError
from relay.records.postgres import PostgresStore
from relay.records.recorder import AudioRecorder
from relay.records.sqlite import SqliteStore
from relay.records.store import CallEnded, CallStarted, CallStore, EventRow, LineRow, StoreUnavailable, SuggestionRow
from relay.records.writer import RecordWriter

log = logging.getLogger("relay.records.service")


def open_store(url: str) -> CallStore:
    """`sqlite:///path/to/relay.db` or `postgresql://user:pass@host:port/db`."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ConfigurationError("RELAY_DATABASE_URL must start with sqlite:/// or postgresql://")


# The ids the media endpoint accepts (relay/twilio/media.py), so every recorded call is addressable.
CALL_ID_RE: Final = re.compile(r"^[A-Za-z0-9_\-.:]{1,64}$")
_ESCAPES: Final = str.maketrans({".": "%2E", ":": "%3A"})
_PART_RE: Final = re.compile(r"^(?P<stem>[A-Za-z0-9_\-%]+)(?:\.(?P<part>[0-9]{1,9}))?\.flac$")


def audio_stem(call_id: str) -> str:
    """A call id as a file name's stem: no dot, no colon (`CA…` SIDs unchanged)."""
    if not CALL_ID_RE.match(call_id):
        raise ValueError("not a call id the media endpoint accepts")
    return call_id.translate(_ESCAPES)


def audio_parts_in(folder: Path, stems: Iterable[str]) -> dict[str, list[tuple[int, Path]]]:
    """Blocking: each stem's audio files in `folder`, `(part, path)` by part number. One pass
    over the folder, however many calls are asked about (retention asks for many)."""
    wanted: dict[str, list[tuple[int, Path]]] = {stem: [] for stem in stems}
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return wanted
    for entry in entries:
        match = _PART_RE.match(entry.name)
        if match is None or match["stem"] not in wanted:
            continue
        wanted[match["stem"]].append((int(match["part"] or 0), Path(entry.path)))
    for parts in wanted.values():
        parts.sort()
    return wanted


PART_PROBE_GAP: Final = 8  # parts are numbered by bridge; one that recorded nothing leaves a gap


def probe_audio_parts(folder: Path, stem: str) -> list[tuple[int, Path]]:
    """Blocking: one call's audio files, `(part, path)` in order, found by name rather than
    by listing a folder that holds every retained call (each range request of a player asks)."""
    found: list[tuple[int, Path]] = []
    misses, part = 0, 0
    while misses < PART_PROBE_GAP:
        path = folder / (f"{stem}.flac" if part == 0 else f"{stem}.{part}.flac")
        if path.is_file():
            found.append((part, path))
            misses = 0
        else:
            misses += 1
        part += 1
    return found


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
        if self.audio is not None and self.audio.discontinuities:
            summary = {**summary, "audio_discontinuities": self.audio.discontinuities}
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
        self.retention_period_s = 3600.0
        self.retention_failures = 0  # passes that failed (the next period tries again)
        self.audio_delete_failures = 0  # audio files retention or DELETE could not remove (logged)
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
        stem = audio_stem(call_sid)
        return self.audio_dir / (f"{stem}.flac" if incarnation == 0 else f"{stem}.{incarnation}.flac")

    async def audio_parts(self, call_sid: str) -> list[tuple[int, Path]]:
        """Every audio file of one call, `(part, path)` in part order (empty: none, or off)."""
        if self.audio_dir is None:
            return []
        return await asyncio.to_thread(probe_audio_parts, self.audio_dir, audio_stem(call_sid))

    async def delete(self, call_sid: str) -> bool:
        """Remove one call's record and every part of its audio; False when there was neither.
        Raises StoreUnavailable."""
        await self.ready()
        deleted = await self.store.delete(call_sid)
        removed = await self._remove_all_audio([(call_sid, deleted[1] if deleted is not None else None)])
        return deleted is not None or removed > 0

    async def expire_now(self, now: float | None = None) -> int:
        cutoff = (now or time.time()) - self.retention_days * 86_400
        expired = await self.store.expire(cutoff)
        await self._remove_all_audio(expired)
        if expired:
            self.expired += len(expired)
            log.info("call records expired", extra={"calls": len(expired), "retention_days": self.retention_days})
        return len(expired)

    async def _remove_all_audio(self, calls: list[tuple[str, str | None]]) -> int:
        """Remove each call's stored audio path and every part found in the audio folder
        (parts of a call continued elsewhere, or of a bridge that never wrote its end row)."""
        return await asyncio.to_thread(self._remove_all_audio_blocking, calls)

    def _remove_all_audio_blocking(self, calls: list[tuple[str, str | None]]) -> int:
        paths = {Path(stored) for _, stored in calls if stored}
        if self.audio_dir is not None and calls:
            stems = [audio_stem(sid) for sid, _ in calls if CALL_ID_RE.match(sid)]
            for parts in audio_parts_in(self.audio_dir, stems).values():
                paths.update(path for _, path in parts)
        removed = 0
        for path in paths:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:  # one file that cannot go must not keep the others
                self.audio_delete_failures += 1
                log.warning("call audio not deleted", extra={"file": path.name, "error": type(exc).__name__})
        return removed

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.expire_now()
            except StoreUnavailable as exc:
                self.retention_failures += 1
                log.warning("retention skipped: database unavailable", extra={"error": str(exc)})
            except Exception as exc:  # one bad pass (a file, a row) must not end retention for good
                self.retention_failures += 1
                log.exception("retention pass failed; retrying next period", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.retention_period_s)

    async def close(self, deadline_s: float) -> None:
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
        await self.writer.close(deadline_s)
