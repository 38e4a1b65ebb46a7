"""One call's link to the model: connect, buffer, forward, reconnect, roll over.

Why our own supervisor and not the SDK's `on_reconnecting`: the SDK replays its queued
sends into the new connection, which is a *new, unconfigured* server session, so audio
would reach a session without our `session.update`; it also treats the `session_expired`
1001 close as recoverable, hiding the rollover we need to plan. Here every new session is
configured and re-seeded before audio flows, and audio waits in one bounded buffer whose
losses are counted.

Audio is pushed synchronously (`push_audio`, never blocks); one sender loop owns the
active session; a reader task per session turns server events into callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Protocol

from sync_publisher.backoff import backoff_delay

from .model_events import (
    ErrorClass,
    ModelError,
    ModelEvent,
    ResponseDone,
    ResponseStarted,
    SessionClosed,
    SpeechStopped,
)
from .realtime import RealtimeConnectError, RealtimeConnector, RealtimeSession, SessionClosedError, SessionConfig
from .recent import RecentSamples

log = logging.getLogger("relay.model_link")

_ROLLOVER_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class LinkConfig:
    buffer_max_bytes: int
    max_attempts: int = 8
    initial_delay_s: float = 0.25
    max_delay_s: float = 8.0
    session_max_age_s: float = 55 * 60
    # After the age limit, wait this long at most for a turn boundary before switching.
    rollover_grace_s: float = 120.0
    # How long a retired session may keep answering its last turn.
    retire_timeout_s: float = 20.0
    # At call end, how long to wait for an answer already being generated.
    final_response_wait_s: float = 3.0
    # Audio sent just before a connection drops was never acknowledged (appends have no
    # ack) and may be lost: keep this much and re-send it to the next session.
    replay_max_bytes: int = 0
    # Where to record each send delay (newest frame's arrival → its append written); shared.
    send_delays: RecentSamples | None = None
    # A sender that fell behind joins queued fresh chunks into appends of up to this size
    # (0: never). The audio is unchanged; only the number of appends drops.
    merge_max_bytes: int = 0


@dataclass(slots=True)
class LinkCounters:
    forwarded_frames: int = 0
    forwarded_bytes: int = 0
    replayed_bytes: int = 0
    appends: int = 0
    merged_appends: int = 0  # appends that carried several queued batches (the sender caught up)
    dropped_frames: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    rollovers: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, other: LinkCounters) -> None:
        """Fold another link's counters into these (every field, so a new one needs no edit)."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            else:
                setattr(self, f.name, mine + theirs)


class LinkSink(Protocol):
    def on_model_event(self, event: ModelEvent) -> None: ...

    def on_link_state(self, state: str, reason: str) -> None: ...

    def context_for_new_session(self) -> str | None: ...


class AudioBuffer:
    """Bounded FIFO of (chunk, frames, pushed_at). Beyond the bound, the oldest audio goes first."""

    __slots__ = ("_bytes", "_chunks", "_max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self._chunks: deque[tuple[bytes, int, float]] = deque()
        self._bytes = 0
        self._max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def push(self, chunk: bytes, frames: int, pushed_at: float = 0.0) -> int:
        """Append; returns how many frames were evicted to stay within the bound."""
        self._chunks.append((chunk, frames, pushed_at))
        self._bytes += len(chunk)
        evicted = 0
        while self._bytes > self._max_bytes and len(self._chunks) > 1:
            old, old_frames, _ = self._chunks.popleft()
            self._bytes -= len(old)
            evicted += old_frames
        return evicted

    def push_front(self, chunk: bytes, frames: int, pushed_at: float = 0.0) -> None:
        self._chunks.appendleft((chunk, frames, pushed_at))
        self._bytes += len(chunk)

    def pop(self, merge_up_to: int = 0) -> tuple[bytes, int, tuple[float, ...]] | None:
        """The oldest chunk, with the push times of what it holds.

        With `merge_up_to`, fresh chunks queued behind it are joined to it up to that many
        bytes: a sender that fell behind catches up with fewer, larger appends (each append
        has a fixed cost), and the audio is byte-for-byte the same. Replayed chunks (0 frames,
        counted once already) are never joined to fresh ones.
        """
        chunks = self._chunks
        if not chunks:
            return None
        chunk, frames, pushed_at = chunks.popleft()
        self._bytes -= len(chunk)
        if not (merge_up_to and frames and chunks and chunks[0][1]):
            return chunk, frames, (pushed_at,)
        parts, times, size = [chunk], [pushed_at], len(chunk)
        while chunks and chunks[0][1] and size + len(chunks[0][0]) <= merge_up_to:
            more, more_frames, more_at = chunks.popleft()
            self._bytes -= len(more)
            parts.append(more)
            times.append(more_at)
            frames += more_frames
            size += len(more)
        return b"".join(parts), frames, tuple(times)

    def drain_frames(self) -> int:
        frames = sum(item[1] for item in self._chunks)
        self._chunks.clear()
        self._bytes = 0
        return frames


class _SessionWatch:
    """Per-session state the sender loop needs: is it alive, is an answer on its way."""

    def __init__(self, session: RealtimeSession, opened_at: float) -> None:
        self.session = session
        self.opened_at = opened_at
        self.closed = asyncio.Event()
        self.turn_boundary = asyncio.Event()
        self.active_responses: set[str] = set()
        # A turn has ended (speech_stopped) but its response has not started yet.
        self.awaiting_response = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.close_reason = ""


class ModelLink:
    def __init__(
        self,
        connector: RealtimeConnector,
        session_config: SessionConfig,
        config: LinkConfig,
        sink: LinkSink,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._connector = connector
        self._session_config = session_config
        self._config = config
        self._sink = sink
        self._clock = clock
        self._rng = rng or random.Random()
        self.counters = LinkCounters()
        self._buffer = AudioBuffer(config.buffer_max_bytes)
        self._recent: deque[bytes] = deque()  # the replay window: sent, not yet known to be heard
        self._recent_bytes = 0
        self._wake = asyncio.Event()
        self._closing_event = asyncio.Event()
        self._closing = False
        self._failed: str | None = None
        self._degraded = False
        self._sessions_opened = 0
        self._retiring: set[asyncio.Task[None]] = set()
        self._readers: set[asyncio.Task[None]] = set()
        self._current: _SessionWatch | None = None
        self._rollover_retry_at = 0.0
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ audio in

    def push_audio(self, chunk: bytes, frames: int) -> None:
        """Queue converted audio for the model. Never blocks, never raises."""
        if self._failed is not None or self._closing:
            self.counters.dropped_frames["assist_unavailable" if self._failed else "after_close"] += frames
            return
        evicted = self._buffer.push(chunk, frames, self._clock())
        if evicted:
            self.counters.dropped_frames["buffer_overflow"] += evicted
        self._wake.set()

    @property
    def buffered_bytes(self) -> int:
        return self._buffer.size_bytes

    @property
    def failed(self) -> str | None:
        return self._failed

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="model-link")

    async def finish(self, deadline_s: float) -> None:
        """Send what is buffered, let a running answer finish, close every session."""
        self._closing = True
        self._closing_event.set()
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=deadline_s)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            except Exception:
                log.exception("model link failed")
        leftover = self._buffer.drain_frames()
        if leftover:
            self.counters.dropped_frames["unsent_at_call_end"] += leftover
        # A session retired by rollover may still be answering the turn it heard.
        if self._retiring:
            await asyncio.wait(list(self._retiring), timeout=max(0.0, deadline - loop.time()))
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._current is not None:
            await self._current.session.close()
        # Let readers deliver what the closing session still said, then stop them.
        if self._readers:
            await asyncio.wait(list(self._readers), timeout=1.0)
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def _run(self) -> None:
        attempt = 0
        # After the call ends, keep going while audio is buffered: `finish()` bounds this
        # with the flush deadline, and the customer's last question deserves an answer.
        while (not self._closing or len(self._buffer)) and self._failed is None:
            try:
                watch = await self._open()
            except RealtimeConnectError as exc:
                self.counters.connect_failures += 1
                self.counters.errors[f"connect:{exc}"[:80]] += 1
                log.warning("model connect failed", extra={"error": str(exc), "attempt": attempt + 1})
                if exc.fatal:
                    self._fail(f"model rejected the session: {exc}")
                    return
                attempt += 1
                if attempt > self._config.max_attempts:
                    self._fail("model unreachable after retries")
                    return
                self._set_degraded(f"model_unavailable: {exc}"[:200])
                await self._pause(self._backoff(attempt))
                continue
            outcome = await self._serve(watch)
            if outcome == "closing":
                return
            self._set_degraded("model_connection_lost")
            self._replay_recent()
            # A session that dies young counts as a failed attempt, so a server that
            # accepts and drops at once is not hammered.
            if self._clock() - watch.opened_at < 5.0:
                attempt += 1
                if attempt > self._config.max_attempts:
                    self._fail("model sessions keep failing")
                    return
                await self._pause(self._backoff(attempt))
            else:
                attempt = 0

    async def _open(self) -> _SessionWatch:
        session = await self._connector.open(self._session_config)
        self.counters.connects += 1
        if self._sessions_opened:
            context = self._sink.context_for_new_session()
            if context:
                try:
                    await session.add_context(context)
                except SessionClosedError:
                    await session.close()
                    raise RealtimeConnectError("session closed while seeding context") from None
        self._sessions_opened += 1
        watch = _SessionWatch(session, self._clock())
        reader = asyncio.create_task(self._read(watch), name="model-reader")
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        return watch

    async def _serve(self, watch: _SessionWatch) -> str:
        """Forward audio to `watch` (switching sessions on rollover) until it dies."""
        if self._sessions_opened > 1:
            self.counters.reconnects += 1
        if self._degraded:
            self._degraded = False
            self._sink.on_link_state("recovered", "model session restored")
        self._current = watch
        next_session: asyncio.Task[_SessionWatch] | None = None
        try:
            while True:
                if watch.closed.is_set():
                    return "lost"
                next_session, watch = await self._maybe_roll_over(watch, next_session)
                item = self._buffer.pop(self._config.merge_max_bytes)
                if item is None:
                    if self._closing:
                        await self._await_idle(watch, self._config.final_response_wait_s)
                        return "closing"
                    self._wake.clear()
                    await self._wait_for_audio()
                    continue
                chunk, frames, pushed_at = item
                try:
                    await watch.session.send_audio(chunk)
                except SessionClosedError:
                    # Nothing lost: resend on the next session (as one chunk if it was merged).
                    self._buffer.push_front(chunk, frames, pushed_at[0])
                    watch.closed.set()
                    return "lost"
                if frames:
                    self.counters.forwarded_frames += frames
                    self.counters.forwarded_bytes += len(chunk)
                    if len(pushed_at) > 1:
                        self.counters.merged_appends += 1
                    delays = self._config.send_delays
                    if delays is not None:
                        now = self._clock()
                        for at in pushed_at:
                            delays.add(now - at)
                else:
                    self.counters.replayed_bytes += len(chunk)
                self.counters.appends += 1
                self._remember(chunk)
        finally:
            if next_session is not None and not next_session.done():
                next_session.cancel()
            elif next_session is not None and not next_session.cancelled() and next_session.exception() is None:
                spare = next_session.result()
                await spare.session.close()

    async def _wait_for_audio(self) -> None:
        # One event serves every wake-up: audio pushed, a session closing (the reader sets
        # it on exit), the call ending, a rollover session becoming ready. Cheaper than
        # waiting on several futures with a timeout ten times a second per call.
        await self._wake.wait()

    async def _maybe_roll_over(
        self, watch: _SessionWatch, pending: asyncio.Task[_SessionWatch] | None
    ) -> tuple[asyncio.Task[_SessionWatch] | None, _SessionWatch]:
        age = self._clock() - watch.opened_at
        if age < self._config.session_max_age_s or self._closing:
            return pending, watch
        if pending is None:
            if self._clock() < self._rollover_retry_at:
                return None, watch
            watch.turn_boundary.clear()  # only a boundary after this point counts
            task = asyncio.create_task(self._open(), name="model-rollover")
            task.add_done_callback(lambda _: self._wake.set())
            return task, watch
        if not pending.done():
            return pending, watch
        if pending.exception() is not None:
            # The current session still works: try again after a pause, not on every append.
            self.counters.connect_failures += 1
            self._rollover_retry_at = self._clock() + _ROLLOVER_RETRY_S
            return None, watch
        overdue = age >= self._config.session_max_age_s + self._config.rollover_grace_s
        if not (watch.turn_boundary.is_set() or overdue):
            return pending, watch
        new = pending.result()
        self._forget_recent()  # a planned switch: the old session keeps what it was sent
        self.counters.rollovers += 1
        log.info("model session rolled over", extra={"at_turn_boundary": not overdue})
        retire = asyncio.create_task(self._retire(watch), name="model-retire")
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        self._current = new
        return None, new

    async def _retire(self, watch: _SessionWatch) -> None:
        """Let the old session answer the turn that just ended, then close it."""
        try:
            await asyncio.sleep(0.2)  # the turn's response is created right after the boundary
            await self._await_idle(watch, self._config.retire_timeout_s)
        finally:
            await watch.session.close()

    async def _await_idle(self, watch: _SessionWatch, timeout: float) -> None:
        if watch.closed.is_set():
            return
        try:
            await asyncio.wait_for(watch.idle.wait(), timeout=timeout)
        except TimeoutError:
            pass

    async def _read(self, watch: _SessionWatch) -> None:
        try:
            async for event in watch.session.events():
                if isinstance(event, SessionClosed):
                    watch.close_reason = event.reason
                    if not self._closing:
                        self.counters.errors[f"closed:{event.close_code}"] += 1
                    break
                if isinstance(event, ResponseStarted):
                    watch.active_responses.add(event.response_id)
                    watch.awaiting_response = False
                elif isinstance(event, ResponseDone):
                    watch.active_responses.discard(event.response_id)
                elif isinstance(event, SpeechStopped):
                    watch.turn_boundary.set()
                    watch.awaiting_response = True
                elif isinstance(event, ModelError):
                    self.counters.errors[event.code or event.error_type or "unknown"] += 1
                    if event.classification is ErrorClass.FATAL:
                        self._fail(f"model error: {event.code}")
                    elif event.classification is ErrorClass.RETRYABLE and event.code != "session_expired":
                        # The server may keep the socket open; start over on a fresh session.
                        await watch.session.close()
                if watch.active_responses or watch.awaiting_response:
                    watch.idle.clear()
                else:
                    watch.idle.set()
                try:
                    self._sink.on_model_event(event)
                except Exception:
                    log.exception("bridge failed to handle a model event")
        finally:
            watch.idle.set()
            watch.closed.set()
            self._wake.set()

    # ------------------------------------------------------------------ helpers

    def _remember(self, chunk: bytes) -> None:
        limit = self._config.replay_max_bytes
        if limit <= 0:
            return
        self._recent.append(chunk)
        self._recent_bytes += len(chunk)
        while self._recent_bytes > limit and len(self._recent) > 1:
            self._recent_bytes -= len(self._recent.popleft())

    def _replay_recent(self) -> None:
        """Queue the replay window ahead of new audio (frames 0: already counted as forwarded)."""
        for chunk in reversed(self._recent):
            self._buffer.push_front(chunk, 0)
        self._forget_recent()

    def _forget_recent(self) -> None:
        self._recent.clear()
        self._recent_bytes = 0

    def _fail(self, reason: str) -> None:
        if self._failed is not None:
            return
        self._failed = reason
        dropped = self._buffer.drain_frames()
        if dropped:
            self.counters.dropped_frames["assist_unavailable"] += dropped
        log.error("assist unavailable for this call", extra={"reason": reason})
        self._sink.on_link_state("degraded", reason)
        self._closing = True
        self._closing_event.set()
        self._wake.set()

    def _set_degraded(self, reason: str) -> None:
        if not self._degraded and self._failed is None:
            self._degraded = True
            self._sink.on_link_state("degraded", reason)

    def _backoff(self, attempt: int) -> float:
        config = self._config
        return backoff_delay(attempt, initial_s=config.initial_delay_s, max_s=config.max_delay_s, rng=self._rng)

    async def _pause(self, seconds: float) -> None:
        """Back off. Wakes early when the call ends with nothing left to deliver; audio
        arriving must not cut it short."""
        if self._closing:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self._closing_event.wait(), timeout=seconds)
        except TimeoutError:
            pass
