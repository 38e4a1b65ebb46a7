"""Per-stream Sync publisher: bounded queue, coalescing, rate limit, retries, TTL upkeep.

`StreamPublisher.publish()` is synchronous, never blocks and never raises: the audio path
calls it. A task per stream drains the queue in order under Twilio's limits. At call end
`close()` flushes under a deadline and returns a report in which every message is either
published or counted as dropped with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Protocol

from .backoff import backoff_delay
from .errors import (
    SyncAlreadyExistsError,
    SyncError,
    SyncNotFoundError,
    SyncRejectedError,
    SyncRetryableError,
)
from .limiter import RateLimiter
from .messages import Outgoing, encode, split

log = logging.getLogger("sync_publisher")

_SEQ_MEMORY = 10_000  # streams whose last seq is remembered after their publisher closed


class SyncTransport(Protocol):
    """The one seam to Twilio Sync (or a stand-in). Raises only `sync_publisher.errors`."""

    async def create_stream(self, name: str, ttl: int) -> None: ...

    async def set_stream_ttl(self, name: str, ttl: int) -> None: ...

    async def publish(self, name: str, data: str) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    rate_per_s: float = 30.0
    burst_window_s: float = 10.0
    queue_max: int = 256
    retry_budget_s: float = 30.0
    stream_ttl_s: int = 7200
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    max_message_bytes: int = 4096

    @property
    def hard_cap(self) -> int:
        """Finals may exceed `queue_max` (they are only delayed) up to this bound."""
        return self.queue_max * 4


@dataclass(slots=True)
class PublishCounts:
    """What happened to messages. One class for both views: a stream's report and the
    process-wide totals, so a new counter is one field here and one `count()` call."""

    published: int = 0
    coalesced: int = 0
    retried: int = 0
    split_parts: int = 0
    recreated: int = 0
    ttl_refreshed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_finals: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            f.name: dict(value) if isinstance(value := getattr(self, f.name), Counter) else value for f in fields(self)
        }


# Process-wide counters (read by the metrics endpoint).
PublisherStats = PublishCounts


@dataclass(slots=True)
class StreamReport(PublishCounts):
    """One stream's counters, returned when it closes (the call's summary line)."""

    stream: str = ""


class Channel(Protocol):
    """What a call publishes into: Sync, or the local hub."""

    def publish(self, item: Outgoing) -> None: ...

    async def close(self, deadline_s: float) -> StreamReport: ...


class SeqCounter:
    """A stream's `seq` in one process: 1, 2, 3, … however many publishers draw from it.
    Awaitable, so a shared source (leasing blocks from another process) fits the same slot."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    async def __call__(self) -> int:
        self.value += 1
        return self.value


class SeqCounters:
    """Each stream's `SeqCounter` in one process, remembered for the last `limit` streams
    (after their publishers closed) so a stream's `seq` never restarts at 1."""

    __slots__ = ("_counters", "_limit")

    def __init__(self, limit: int = _SEQ_MEMORY) -> None:
        self._counters: OrderedDict[str, SeqCounter] = OrderedDict()
        self._limit = limit

    def __call__(self, stream: str) -> SeqCounter:
        counter = self._counters.pop(stream, None) or SeqCounter()
        self._counters[stream] = counter
        while len(self._counters) > self._limit:
            self._counters.popitem(last=False)
        return counter


class StreamPublisher:
    def __init__(
        self,
        transport: SyncTransport,
        stream: str,
        call_sid: str,
        config: PublisherConfig,
        stats: PublisherStats,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        next_seq: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self.stream = stream
        self.call_sid = call_sid
        self._transport = transport
        self._config = config
        self._stats = stats
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._queue: deque[Outgoing] = deque()
        self._wakeup = asyncio.Event()
        self._limiter = RateLimiter(config.rate_per_s, config.burst_window_s)
        # Where `seq` comes from: this publisher's own counter, or one shared by every
        # publisher on the stream (so a stream's `seq` never repeats or restarts).
        self._next_seq = next_seq or SeqCounter()
        self._closing = False
        self._recreated = False
        self._stream_ready = False
        self._in_flight: Outgoing | None = None
        self._next_ttl_refresh = 0.0
        self.report = StreamReport(stream=stream)
        self._task = asyncio.create_task(self._run(), name=f"sync-publisher:{stream}")

    # ------------------------------------------------------------------ producer side

    def publish(self, item: Outgoing) -> None:
        """Queue a message. Never blocks, never raises."""
        try:
            self._enqueue(item)
        except Exception:  # a bug here must not reach the audio path
            log.exception("sync publish failed to enqueue", extra={"stream": self.stream})
            self._drop(item, "internal_error")

    def _enqueue(self, item: Outgoing) -> None:
        if self._closing:
            self._drop(item, "closed")
            return
        parts = split(item, self.call_sid, self._config.max_message_bytes)
        if len(parts) > 1:
            self._count("split_parts", len(parts))
        for part in parts:
            self._coalesce(part)
            self._admit(part)
        self._wakeup.set()

    def _coalesce(self, item: Outgoing) -> None:
        """An unsent partial is superseded by any later message of the same utterance."""
        if item.key is None or item.part is not None:
            return
        stale = [q for q in self._queue if q.key == item.key and not q.final and q.part is None]
        for q in stale:
            self._queue.remove(q)
            self._count("coalesced")

    def _admit(self, item: Outgoing) -> None:
        queue, config = self._queue, self._config
        if len(queue) >= config.queue_max:
            victim = next((q for q in queue if not q.final), None)
            if victim is not None:
                queue.remove(victim)
                self._drop(victim, "queue_full")
            elif not item.final:
                self._drop(item, "queue_full")
                return
            elif len(queue) >= config.hard_cap:
                self._drop(item, "hard_cap")
                return
        queue.append(item)

    def _count(self, counter: str, n: int = 1) -> None:
        """Bump one counter in this stream's report and in the process totals."""
        for counts in (self.report, self._stats):
            setattr(counts, counter, getattr(counts, counter) + n)

    def _drop(self, item: Outgoing, reason: str) -> None:
        self.report.dropped[reason] += 1
        self._stats.dropped[reason] += 1
        if item.final:
            self._count("dropped_finals")
            log.warning(
                "sync final message dropped",
                extra={"stream": self.stream, "reason": reason, "kind": item.kind.value},
            )

    # ------------------------------------------------------------------ consumer side

    async def _run(self) -> None:
        await self._ensure_stream()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                timeout = max(0.0, self._next_ttl_refresh - self._clock())
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)
                except TimeoutError:
                    pass
            if self._clock() >= self._next_ttl_refresh:
                await self._refresh_ttl()
            if not self._queue:
                continue
            item = self._queue.popleft()
            seq = await self._next_seq()  # given once, at first send: a retried message keeps it
            self._in_flight = item
            await self._send(item, encode(item.with_seq(self.call_sid, seq)).decode())
            self._in_flight = None

    async def _send(self, item: Outgoing, data: str) -> None:
        first_try = self._clock()
        attempt = 0
        while True:
            wait = self._limiter.delay(self._clock())
            if wait > 0:
                await self._sleep(wait)
            try:
                await self._transport.publish(self.stream, data)
            except SyncRetryableError as exc:
                self._limiter.record(self._clock())
                attempt += 1
                self._count("retried")
                delay = self._backoff(attempt, exc.retry_after)
                if self._clock() + delay - first_try > self._config.retry_budget_s:
                    log.warning(
                        "sync publish gave up after retry budget",
                        extra={"stream": self.stream, "status": exc.status, "code": exc.code, "error": str(exc)},
                    )
                    self._drop(item, "retry_budget")
                    return
                await self._sleep(delay)
            except SyncNotFoundError:
                self._limiter.record(self._clock())
                if self._recreated:
                    self._drop(item, "stream_missing")
                    return
                self._recreated = True
                self._count("recreated")
                log.warning("sync stream vanished; recreating once", extra={"stream": self.stream})
                await self._ensure_stream()
            except SyncRejectedError as exc:
                self._limiter.record(self._clock())
                log.error(
                    "sync publish rejected",
                    extra={"stream": self.stream, "status": exc.status, "code": exc.code},
                )
                self._drop(item, f"rejected_{exc.code or exc.status}")
                return
            except SyncError as exc:
                log.error("sync publish failed", extra={"stream": self.stream, "error": str(exc)})
                self._drop(item, "transport_error")
                return
            else:
                self._limiter.record(self._clock())
                self._count("published")
                return

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        config = self._config
        jittered = backoff_delay(attempt, initial_s=config.backoff_initial_s, max_s=config.backoff_max_s, rng=self._rng)
        return max(jittered, retry_after or 0.0)  # Twilio's Retry-After is a floor

    async def _ensure_stream(self) -> None:
        """Create the stream (or adopt an existing one and extend its TTL)."""
        first_try = self._clock()
        attempt = 0
        while True:
            try:
                try:
                    await self._transport.create_stream(self.stream, self._config.stream_ttl_s)
                except SyncAlreadyExistsError:
                    await self._transport.set_stream_ttl(self.stream, self._config.stream_ttl_s)
            except SyncRetryableError as exc:
                attempt += 1
                delay = self._backoff(attempt, exc.retry_after)
                if self._clock() + delay - first_try > self._config.retry_budget_s:
                    log.error("sync stream could not be created", extra={"stream": self.stream})
                    break
                await self._sleep(delay)
                continue
            except SyncError as exc:
                log.error(
                    "sync stream could not be created",
                    extra={"stream": self.stream, "status": exc.status, "code": exc.code},
                )
                break
            self._stream_ready = True
            break
        self._next_ttl_refresh = self._clock() + self._config.stream_ttl_s / 2

    async def _refresh_ttl(self) -> None:
        # Always reschedule first: a due refresh must never leave the wait timeout at 0.
        self._next_ttl_refresh = self._clock() + self._config.stream_ttl_s / 2
        if not self._stream_ready:
            return
        try:
            await self._transport.set_stream_ttl(self.stream, self._config.stream_ttl_s)
            self._count("ttl_refreshed")
        except SyncError as exc:
            # A missing stream is recreated by the next publish; other errors wait a turn.
            log.warning("sync stream TTL refresh failed", extra={"stream": self.stream, "code": exc.code})

    # ------------------------------------------------------------------ shutdown

    async def close(self, deadline_s: float) -> StreamReport:
        """Flush what is queued within `deadline_s`, then report."""
        self._closing = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=deadline_s)
        except TimeoutError:
            self._task.cancel()
            # Collects the task's own cancellation; a cancellation of close() still propagates.
            await asyncio.gather(self._task, return_exceptions=True)
        except Exception:
            log.exception("sync publisher task failed", extra={"stream": self.stream})
        if self._in_flight is not None:  # cancelled mid-send: its fate is unknown, count it
            self._drop(self._in_flight, "flush_deadline")
            self._in_flight = None
        while self._queue:
            self._drop(self._queue.popleft(), "flush_deadline")
        return self.report


class SyncPublisher:
    """Opens one `StreamPublisher` per call and holds the process-wide stats."""

    def __init__(
        self,
        transport: SyncTransport,
        config: PublisherConfig,
        stream_name_for: Callable[[str], str],
        seq_source: Callable[[str], Callable[[], Awaitable[int]]] | None = None,
    ) -> None:
        self.transport = transport
        self.config = config
        self.stats = PublisherStats()
        self._stream_name_for = stream_name_for
        # A call can get another stream later (assist toggled off and on, a status callback
        # after the call), even while the previous one still flushes. Every publisher on a
        # stream draws from one counter, so `seq` never restarts at 1 (a browser
        # de-duplicating by `seq` would drop the rest). Bounded memory per process; with
        # several relays `seq_source` gives a counter they share.
        self._seq_source: Callable[[str], Callable[[], Awaitable[int]]] = seq_source or SeqCounters()

    def open(self, call_sid: str) -> StreamPublisher:
        stream = self._stream_name_for(call_sid)
        counter = self._seq_source(stream)
        return StreamPublisher(self.transport, stream, call_sid, self.config, self.stats, next_seq=counter)

    async def aclose(self) -> None:
        await self.transport.aclose()
