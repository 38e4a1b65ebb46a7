"""One call's link to the model: connect, buffer, forward, reconnect, roll over.

Why our own supervisor and not the SDK's `on_reconnecting`: the SDK replays its queued
sends into the new connection, which is a *new, unconfigured* server session, so audio
would reach a session without our `session.update`; it also treats the `session_expired`
1001 close as recoverable, hiding the rollover we need to plan. Here every new session is
configured and re-seeded before audio flows, and audio waits in one bounded buffer whose
losses are counted.

Audio is pushed synchronously (`push_audio`, never blocks); one sender loop owns the
active session; a reader task per session turns server events into callbacks. What a
response or a transcription billed follows its event as a `ResponseUsage` /
`TranscriptionUsage` (the bridge counts it). `stop_responses()` turns the call into
transcripts only (the per-call budget): the answering session is swapped for a
transcription-only one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Protocol

from relay.audio.buffer import AudioBuffer
from relay.model.events import (
    ErrorClass,
    Malformed,
    ModelError,
    ModelEvent,
    ResponseDone,
    ResponseStarted,
    ResponseUsage,
    SessionClosed,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    TranscriptCompleted,
    TranscriptFailed,
    TranscriptionUsage,
)
from relay.model.knowledge_tool import ToolAnswer
from relay.model.link_policy import (
    ConnectPolicy,
    ConnectRules,
    Decision,
    Effect,
    Notify,
    OpenSpare,
    ReplayRecent,
    RolloverPolicy,
    RolloverRules,
    Step,
    Stop,
    SwapSessions,
    Wait,
    default_backoff,
)
from relay.model.session import (
    RealtimeConnectError,
    RealtimeConnector,
    RealtimeSession,
    SessionClosedError,
    SessionConfig,
)
from relay.recent import RecentSamples

log = logging.getLogger("relay.model.link")


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
    tool_calls: int = 0  # knowledge searches the model made
    tool_errors: int = 0  # of those, refused with an error (bad arguments, too many, …)
    context_sent: int = 0  # lines added to the live session (the agent's words)
    context_dropped: int = 0  # lines not added: no live session at the time
    turns_ended_at_close: int = 0  # the call ended mid-utterance: that turn was committed and answered
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

    def on_tool_call(self, call: ToolCall, calls_this_turn: int) -> ToolAnswer: ...


class _SessionWatch:
    """What the shell tracks per session: is it alive, is work for the last turn pending."""

    def __init__(self, session: RealtimeSession, opened_at: float, *, expects_responses: bool) -> None:
        self.session = session
        self.opened_at = opened_at
        self.expects_responses = expects_responses
        self.closed = asyncio.Event()
        self.active_responses: set[str] = set()
        # A turn has ended (speech_stopped) but its response has not started yet.
        self.awaiting_response = False
        # Turns whose transcription has not arrived yet (item ids).
        self.pending_transcripts: set[str] = set()
        # A turn the customer is in the middle of (speech_started, no speech_stopped yet).
        self.speech_open: str | None = None
        self.tool_calls_this_turn = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.close_reason = ""

    def update_idle(self) -> None:
        if self.active_responses or self.awaiting_response or self.pending_transcripts:
            self.idle.clear()
        else:
            self.idle.set()


class ModelLink:
    """The I/O shell: performs what `link_policy` decides and feeds it what happened."""

    def __init__(
        self,
        connector: RealtimeConnector,
        session_config: SessionConfig,
        config: LinkConfig,
        sink: LinkSink,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._connector = connector
        self._session_config = session_config
        self._config = config
        self._sink = sink
        self._clock = clock
        self._sleep = sleep
        rules = ConnectRules(config.max_attempts, config.initial_delay_s, config.max_delay_s)
        self._policy = ConnectPolicy(rules, default_backoff(rules, rng or random.Random()))
        self._rollover = RolloverPolicy(RolloverRules(config.session_max_age_s, config.rollover_grace_s))
        self.counters = LinkCounters()
        self._buffer = AudioBuffer(config.buffer_max_bytes)
        self._recent: deque[bytes] = deque()  # the replay window: sent, not yet known to be heard
        self._recent_bytes = 0
        self._wake = asyncio.Event()
        self._closing_event = asyncio.Event()
        self._closing = False
        self._sessions_opened = 0
        self._retiring: set[asyncio.Task[None]] = set()
        # Per-session tasks (event readers, context sends): finish() gives them a moment, then cancels.
        self._session_tasks: set[asyncio.Task[None]] = set()
        self._current: _SessionWatch | None = None
        self._task: asyncio.Task[None] | None = None
        self._switch_pending = False  # stop_responses() asked for a transcription-only session

    # ------------------------------------------------------------------ audio in

    def push_audio(self, chunk: bytes, frames: int) -> None:
        """Queue converted audio for the model. Never blocks, never raises."""
        if self._policy.failed is not None or self._closing:
            self.counters.dropped_frames["assist_unavailable" if self._policy.failed else "after_close"] += frames
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
        return self._policy.failed

    @property
    def responding(self) -> bool:
        """Sessions of this link answer turns (False: transcription only)."""
        return not self._session_config.transcription_only

    def stop_responses(self) -> bool:
        """From now on the call is only transcribed: no more responses, so no more suggestions
        and no more tokens billed for them. The session cannot be told so after it opened (the
        session seam has no `session.update`), so, like a rollover, a transcription-only session
        is opened and takes the audio; the turn in progress on the old one is committed without
        an answer (its transcript is kept) and the old one retires. False if already so."""
        if self._session_config.transcription_only:
            return False
        self._session_config = dataclasses.replace(
            self._session_config, transcription_only=True, instructions="", tools=()
        )
        self._switch_pending = True
        self._wake.set()
        return True

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="model-link")

    async def finish(self, deadline_s: float) -> None:
        """Send what is buffered, let a running answer finish, close every session."""
        self._closing = True
        self._policy.call_ending()
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
        if self._session_tasks:
            await asyncio.wait(list(self._session_tasks), timeout=1.0)
        for task in list(self._session_tasks):
            task.cancel()
        await asyncio.gather(*self._session_tasks, return_exceptions=True)

    async def _run(self) -> None:
        policy = self._policy
        step = policy.begin()
        while not isinstance(step, Stop):
            if isinstance(step, Wait):
                if step.seconds > 0:
                    await self._pause(step.seconds)
                step = policy.wait_over(has_audio=len(self._buffer) > 0)
                continue
            try:
                watch = await self._open()
            except RealtimeConnectError as exc:
                self.counters.connect_failures += 1
                self.counters.errors[f"connect:{exc}"[:80]] += 1
                log.warning("model connect failed", extra={"error": str(exc), "attempt": policy.attempt + 1})
                step = self._apply(policy.connect_failed(str(exc), fatal=exc.fatal))
                continue
            if self._sessions_opened > 1:
                self.counters.reconnects += 1
            self._perform(policy.connected())
            if await self._serve(watch) == "closing":
                return
            step = self._apply(policy.session_lost(lived_s=self._clock() - watch.opened_at))

    def _apply(self, decision: Decision) -> Step:
        self._perform(decision.effects)
        return decision.step

    def _perform(self, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            if isinstance(effect, Notify):
                self._sink.on_link_state(effect.state, effect.reason)
            elif isinstance(effect, ReplayRecent):
                self._replay_recent()
            else:
                self._give_up(effect.reason)

    async def _open(self) -> _SessionWatch:
        session = await self._connector.open(self._session_config)
        self.counters.connects += 1
        # A call's first session has nothing to catch up on, unless the call started
        # elsewhere (seeded by its bridge); every later one gets the recent lines.
        context = None if self._session_config.transcription_only else self._sink.context_for_new_session()
        if context:
            try:
                await session.add_context(context)
            except SessionClosedError as exc:
                await session.close()
                raise RealtimeConnectError("session closed while seeding context") from exc
        self._sessions_opened += 1
        watch = _SessionWatch(session, self._clock(), expects_responses=not self._session_config.transcription_only)
        reader = asyncio.create_task(self._read(watch), name="model-reader")
        self._session_tasks.add(reader)
        reader.add_done_callback(self._session_tasks.discard)
        return watch

    async def _serve(self, watch: _SessionWatch) -> str:
        """Forward audio to `watch` (switching sessions on rollover) until it dies."""
        self._current = watch
        self._rollover.session_started(watch.opened_at)
        spare: asyncio.Task[_SessionWatch] | None = None
        try:
            while True:
                if watch.closed.is_set():
                    return "lost"
                if self._switch_pending and not self._closing:
                    self._switch_pending = False
                    switched = await self._switch(watch, spare)
                    spare = None
                    if switched is None:
                        return "lost"
                    watch = switched
                watch, spare = self._roll_over(watch, spare)
                item = self._buffer.pop(self._config.merge_max_bytes)
                if item is None:
                    if self._closing:
                        await self._end_open_turn(watch)
                        await self._await_idle(watch, self._config.final_response_wait_s)
                        return "closing"
                    self._wake.clear()
                    # One event serves every wake-up: audio pushed, a session closing (the
                    # reader sets it on exit), the call ending, a spare session ready.
                    await self._wake.wait()
                    continue
                chunk, frames, pushed_at = item
                try:
                    await watch.session.send_audio(chunk)
                except SessionClosedError:
                    # Nothing lost: resend on the next session (as one chunk if it was merged).
                    self._buffer.push_front(chunk, frames, pushed_at[0])
                    watch.closed.set()
                    return "lost"
                self._count_sent(chunk, frames, pushed_at)
        finally:
            if spare is not None and not spare.done():
                spare.cancel()
            elif spare is not None and not spare.cancelled() and spare.exception() is None:
                await spare.result().session.close()

    def _count_sent(self, chunk: bytes, frames: int, pushed_at: tuple[float, ...]) -> None:
        counters = self.counters
        if frames:
            counters.forwarded_frames += frames
            counters.forwarded_bytes += len(chunk)
            if len(pushed_at) > 1:
                counters.merged_appends += 1
            delays = self._config.send_delays
            if delays is not None:
                now = self._clock()
                for at in pushed_at:
                    delays.add(now - at)
        else:
            counters.replayed_bytes += len(chunk)
        counters.appends += 1
        self._remember(chunk)

    def _roll_over(
        self, watch: _SessionWatch, spare: asyncio.Task[_SessionWatch] | None
    ) -> tuple[_SessionWatch, asyncio.Task[_SessionWatch] | None]:
        step = self._rollover.next(self._clock(), closing=self._closing)
        if isinstance(step, OpenSpare):
            spare = asyncio.create_task(self._open(), name="model-rollover")
            spare.add_done_callback(self._spare_done)
            return watch, spare
        if not isinstance(step, SwapSessions):
            return watch, spare
        assert spare is not None and spare.done()
        new = spare.result()
        self._forget_recent()  # a planned switch: the old session keeps what it was sent
        self.counters.rollovers += 1
        log.info("model session rolled over", extra={"at_turn_boundary": step.at_turn_boundary})
        retire = asyncio.create_task(self._retire(watch), name="model-retire")
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        self._current = new
        self._rollover.session_started(new.opened_at)
        return new, None

    async def _switch(self, watch: _SessionWatch, spare: asyncio.Task[_SessionWatch] | None) -> _SessionWatch | None:
        """Swap `watch` for a session opened with the current config (`stop_responses`).
        None when it cannot be opened: `watch` is closed, and the reconnect opens the new kind."""
        if spare is not None:  # a rollover's spare has the old config
            if not spare.done():
                spare.cancel()
                await asyncio.gather(spare, return_exceptions=True)
            elif not spare.cancelled() and spare.exception() is None:
                await spare.result().session.close()
        try:
            new = await self._open()
        except RealtimeConnectError as exc:
            self.counters.connect_failures += 1
            log.warning("could not open the transcription-only session", extra={"error": str(exc)})
            await watch.session.close()
            return None
        await self._end_open_turn(watch, respond=False)
        self._forget_recent()  # the old session keeps what it was sent
        log.info("model session switched", extra={"responding": not self._session_config.transcription_only})
        retire = asyncio.create_task(self._retire(watch), name="model-retire")
        self._retiring.add(retire)
        retire.add_done_callback(self._retiring.discard)
        self._current = new
        self._rollover.session_started(new.opened_at)
        return new

    def _spare_done(self, task: asyncio.Task[_SessionWatch]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            # The current session still works: the policy tries again after a pause.
            self.counters.connect_failures += 1
            self._rollover.spare_failed(self._clock())
        else:
            self._rollover.spare_opened()
        self._wake.set()

    async def _retire(self, watch: _SessionWatch) -> None:
        """Let the old session answer (and transcribe) the turn that just ended, then close it."""
        try:
            await self._await_idle(watch, self._config.retire_timeout_s)
        finally:
            await watch.session.close()

    async def _end_open_turn(self, watch: _SessionWatch, *, respond: bool | None = None) -> None:
        """The call (or the session, on a switch) ends mid-utterance: have the model take what
        was said as the last turn, so its transcript (and answer) are not lost with the session."""
        item = watch.speech_open
        if item is None or watch.closed.is_set():
            return
        watch.speech_open = None
        answer = watch.expects_responses if respond is None else respond
        try:
            await watch.session.end_turn(respond=answer)
        except SessionClosedError:
            return
        self.counters.turns_ended_at_close += 1
        watch.pending_transcripts.add(item)
        watch.awaiting_response = answer
        watch.update_idle()

    async def _await_idle(self, watch: _SessionWatch, timeout: float) -> None:
        if watch.closed.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch.idle.wait(), timeout=timeout)

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
                elif isinstance(event, SpeechStarted):
                    watch.speech_open = event.item_id
                elif isinstance(event, SpeechStopped):
                    watch.speech_open = None
                    watch.awaiting_response = watch.expects_responses
                    watch.pending_transcripts.add(event.item_id)
                    watch.tool_calls_this_turn = 0
                    if watch is self._current:
                        self._rollover.turn_ended()
                elif isinstance(event, ToolCall):
                    await self._answer_tool_call(watch, event)
                elif isinstance(event, TranscriptCompleted | TranscriptFailed):
                    watch.pending_transcripts.discard(event.item_id)
                elif isinstance(event, Malformed):
                    self.counters.errors["malformed_event"] += 1
                    seen = self.counters.errors["malformed_event"]
                    if seen in (1, 10, 100) or seen % 1000 == 0:  # a server gone wrong must not flood the log
                        log.warning(
                            "malformed model event ignored",
                            extra={"event_type": event.event_type, "field": event.field, "seen": seen},
                        )
                elif isinstance(event, ModelError):
                    self.counters.errors[event.code or event.error_type or "unknown"] += 1
                    if event.classification is ErrorClass.FATAL:
                        self._perform(self._policy.model_error(f"model error: {event.code}").effects)
                    elif event.classification is ErrorClass.RETRYABLE and event.code != "session_expired":
                        # The server may keep the socket open; start over on a fresh session.
                        await watch.session.close()
                watch.update_idle()
                for handed in (event, *self._usage_of(event)):
                    try:
                        self._sink.on_model_event(handed)
                    except Exception:
                        log.exception("bridge failed to handle a model event")
        finally:
            watch.idle.set()
            watch.closed.set()
            self._wake.set()

    def _usage_of(self, event: ModelEvent) -> tuple[ModelEvent, ...]:
        """What a billed event billed, as its own typed event (read by the bridge's count)."""
        if isinstance(event, ResponseDone) and event.usage is not None:
            return (ResponseUsage(event.response_id, event.usage),)
        if isinstance(event, TranscriptCompleted) and event.usage is not None:
            return (TranscriptionUsage(event.item_id, self._session_config.transcription_model, event.usage),)
        return ()

    def add_context_soon(self, text: str) -> None:
        """Add a line to the current session's conversation (the agent's words) without
        blocking the caller. With no live session the line is not sent: the re-seed of the
        next session carries the recent lines."""
        watch = self._current
        # A transcription-only session has no conversation to add to (the budget was passed).
        if watch is None or watch.closed.is_set() or self._closing or self._session_config.transcription_only:
            self.counters.context_dropped += 1
            return
        task = asyncio.create_task(self._send_context(watch, text), name="model-context")
        self._session_tasks.add(task)
        task.add_done_callback(self._session_tasks.discard)

    async def _send_context(self, watch: _SessionWatch, text: str) -> None:
        try:
            await watch.session.add_context(text)
            self.counters.context_sent += 1
        except SessionClosedError:
            self.counters.context_dropped += 1

    async def _answer_tool_call(self, watch: _SessionWatch, call: ToolCall) -> None:
        watch.tool_calls_this_turn += 1
        answer = self._sink.on_tool_call(call, watch.tool_calls_this_turn)
        self.counters.tool_calls += 1
        if not answer.ok:
            self.counters.tool_errors += 1
        watch.awaiting_response = True  # the answer comes in the response this asks for
        try:
            await watch.session.send_tool_result(call.call_id, answer.output, more_tools=answer.more_tools)
        except SessionClosedError:
            watch.awaiting_response = False  # the session is going: the reader sees it close

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

    def _give_up(self, reason: str) -> None:
        dropped = self._buffer.drain_frames()
        if dropped:
            self.counters.dropped_frames["assist_unavailable"] += dropped
        log.error("assist unavailable for this call", extra={"reason": reason})
        self._sink.on_link_state("degraded", reason)
        self._closing = True
        self._closing_event.set()
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        """Back off. Wakes early when the call ends with nothing left to deliver; audio
        arriving must not cut it short."""
        if self._closing:
            await self._sleep(seconds)
            return
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        closing = asyncio.ensure_future(self._closing_event.wait())
        try:
            await asyncio.wait((sleeper, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            closing.cancel()
