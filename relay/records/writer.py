"""Writes call records without ever being in a call's way.

`submit()` is synchronous and never blocks: rows go into a bounded queue. One task takes up
to `batch_max` rows at a time and writes them in one transaction. When the database is
slow or down, the batch stays at the head of the queue and is retried with backoff (the
queue keeps taking rows meanwhile, up to its bound); rows that find it full are dropped,
counted and logged with their call SID. Nothing is reported written before its transaction
committed, so a restart loses only rows that were never acknowledged (and a graceful stop
flushes them first, within a deadline).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from relay.records.store import CallStore, Row, StoreUnavailable
from sync_publisher.backoff import backoff_delay

log = logging.getLogger("relay.records.service")


@dataclass(slots=True)
class WriterStats:
    written: int = 0  # rows committed
    batches: int = 0
    retries: int = 0  # failed batch attempts (each retried)
    dropped: Counter[str] = field(default_factory=Counter)  # queue_full, shutdown, rejected
    write_seconds: float = 0.0
    last_error: str | None = None
    migrated: int | None = None  # the schema version reached


class RecordWriter:
    def __init__(
        self,
        store: CallStore,
        *,
        queue_max: int = 50_000,
        batch_max: int = 500,
        linger_s: float = 0.05,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self._queue: deque[Row] = deque()
        self._queue_max = queue_max
        self._batch_max = batch_max
        self._linger_s = linger_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._rng = random.Random(seed)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._drop_logged: set[str] = set()
        self.stats = WriterStats()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="record-writer")

    def submit(self, row: Row) -> bool:
        if self._closing or len(self._queue) >= self._queue_max:
            reason = "shutdown" if self._closing else "queue_full"
            self.stats.dropped[reason] += 1
            if row.call_sid not in self._drop_logged:  # once per call, not per row
                if len(self._drop_logged) >= 10_000:  # a long outage must not grow this forever
                    self._drop_logged.clear()
                self._drop_logged.add(row.call_sid)
                log.warning("call record rows dropped", extra={"call_sid": row.call_sid, "reason": reason})
            return False
        self._queue.append(row)
        if len(self._queue) >= self._batch_max or not self._wake.is_set():
            self._wake.set()
        return True

    async def idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every submitted row is written (tests, benchmarks)."""
        end = time.monotonic() + timeout_s
        while self._queue and time.monotonic() < end:  # noqa: ASYNC110 - the writer task drains it
            await asyncio.sleep(0.01)
        return not self._queue

    async def _ensure_schema(self) -> None:
        attempt = 0
        while self.stats.migrated is None:
            try:
                self.stats.migrated = await self.store.migrate()
                log.info("call records ready", extra={"engine": self.store.engine, "schema": self.stats.migrated})
            except StoreUnavailable as exc:
                attempt += 1
                self._failed(str(exc), attempt)
                await self._sleep(attempt)

    async def _run(self) -> None:
        await self._ensure_schema()
        attempt = 0
        while True:
            if not self._queue:
                self._wake.clear()
                if self._closing:
                    return
                await self._wake.wait()
                await asyncio.sleep(self._linger_s)  # let a burst gather into one batch
            batch = [self._queue[i] for i in range(min(self._batch_max, len(self._queue)))]
            started = time.perf_counter()
            try:
                await self.store.write(batch)
            except StoreUnavailable as exc:
                attempt += 1
                self._failed(str(exc), attempt, batch)
                if self._closing and attempt >= 3:
                    return
                await self._sleep(attempt)
                continue
            except Exception as exc:  # a row the database refuses: do not retry it forever
                log.exception("call record batch refused", extra={"rows": len(batch)})
                self.stats.dropped["rejected"] += len(batch)
                self.stats.last_error = type(exc).__name__
                for _ in batch:
                    self._queue.popleft()
                continue
            if attempt:
                log.info("call records writing again", extra={"after_attempts": attempt, "pending": len(self._queue)})
            attempt = 0
            for _ in batch:
                self._queue.popleft()
            self.stats.written += len(batch)
            self.stats.batches += 1
            self.stats.write_seconds += time.perf_counter() - started

    def _failed(self, error: str, attempt: int, batch: list[Row] | None = None) -> None:
        self.stats.retries += 1
        self.stats.last_error = error
        if attempt == 1 or attempt % 10 == 0:
            calls = sorted({r.call_sid for r in batch})[:5] if batch else []
            log.warning(
                "call records not written; retrying",
                extra={"error": error, "attempt": attempt, "pending": len(self._queue), "call_sids": calls},
            )

    async def _sleep(self, attempt: int) -> None:
        await asyncio.sleep(backoff_delay(attempt, initial_s=self._backoff[0], max_s=self._backoff[1], rng=self._rng))

    async def close(self, deadline_s: float) -> None:
        """Flush what is queued within the deadline; what is left is counted and logged."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=deadline_s)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._queue:
            calls = sorted({r.call_sid for r in self._queue})
            self.stats.dropped["shutdown"] += len(self._queue)
            log.error(
                "call records not written at shutdown",
                extra={"rows": len(self._queue), "call_sids": calls[:20], "error": self.stats.last_error},
            )
            self._queue.clear()
        await self.store.close()
