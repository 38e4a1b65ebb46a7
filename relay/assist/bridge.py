"""CallBridge: one call's lifecycle, from the first `start` to the summary line.

The WebSocket handler (the only reader of Twilio's socket) calls `on_media()` for every
audio frame. The bridge splits tracks (each with its own transcoder state), batches the
customer's audio into appends of `append_batch_ms`, and pushes them to the `ModelLink`.
Model events come back through `on_model_event()` and become Sync messages on the call's
`Channel`. Every frame received is either forwarded or counted as dropped with a reason:
`frames_in == forwarded + sum(dropped)` holds in the summary.

With `both_tracks`, the agent's track gets its own transcoder, batch and a second,
transcription-only model session (when `transcribe_agent` is on), so both speakers appear
in the live transcript while only the customer's turns are answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from relay.assist.privacy import HOLD_MAX_S, HOLD_MIN_S, SPAN_BEFORE_S, CallPrivacy, PrivacyConfig, redaction_config
from relay.assist.suggestions import parse_model_answer
from relay.audio.dsp import Transcoder, make_transcoder
from relay.knowledge.prompts import PromptLibrary
from relay.knowledge.retrieval import DEFAULT_MIN_SCORE, Retriever
from relay.model.events import (
    ModelError,
    ModelEvent,
    ResponseDone,
    ResponseStarted,
    ResponseTextDone,
    ResponseUsage,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    TranscriptCompleted,
    TranscriptDelta,
    TranscriptFailed,
    TranscriptionUsage,
)
from relay.model.knowledge_tool import SEARCH_TOOL, ToolAnswer, answer_tool_call
from relay.model.link import LinkConfig, LinkCounters, ModelLink
from relay.model.session import RealtimeConnector, SessionConfig
from relay.recent import RecentSamples
from relay.records.service import CallRecorder
from relay.settings import Settings
from relay.twilio.media import Media, Start
from relay.usage import CallUsage, PriceTable, Truncation, prices_at
from relay.wrapup.call_record import CallRecord, GivenSuggestion, Line
from relay.wrapup.insights import Insight, InsightTracker, is_question, sentences
from relay.wrapup.schema import WrapUpRequest, WrapUpResult, redact_result
from relay.wrapup.service import TaskRef, WrapUpService
from sync_publisher import Channel, StreamReport, messages

log = logging.getLogger("relay.assist.bridge")

ASSISTED_TRACK = "inbound"  # the customer: Twilio's inbound track is the caller's audio
# The agent's words added to the customer's session: at most this many lines per call, each
# cut to this length (a long call must not grow the model's context without bound).
MAX_AGENT_LINES = 200
MAX_AGENT_LINE_CHARS = 500
# A passage the agent's words covered is not suggested again for this long.
COVERED_FOR_S = 300.0
AGENT_TRACK = "outbound"
TAKEN_OVER = "taken_over"  # end reason: a newer stream for the call runs on another replica
_ULAW_BYTES_PER_MS = 8
# Chunks a track pushed and the link has not consumed yet, remembered one by one: 100 with the
# default 10 s buffer and 100 ms batches; past this bound the newest entry stretches instead.
_POSITIONS_MAX = 1024
# The recorder holds back what the model has not heard (less SPAN_BEFORE_S) up to the audio
# buffer's bound and this margin (a batch not yet flushed, a merged append in flight).
_UNHEARD_MARGIN_S = 2.0
# A line of the call's shared context that is no transcript: when the call's pause ends (Unix
# time; 0: resumed), so a bridge continuing the call on another replica starts paused.
PAUSE_MARK = "\x00paused until "


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    audio_format: str
    append_batch_ms: int
    link: LinkConfig
    flush_deadline_s: float = 5.0
    log_transcripts: bool = False
    context_turns: int = 12
    privacy: PrivacyConfig = dataclasses.field(default_factory=PrivacyConfig)


class _TrackPipe:
    """One track's audio path: its own transcoder state, batch, and model link; and where in
    the call's audio the model is (what it has been given so far)."""

    __slots__ = (
        "base_s",
        "batch",
        "frames",
        "heard_s",
        "last_ts",
        "link",
        "positions",
        "pushed_frames",
        "skipped",
        "tail",
        "transcoder",
    )

    def __init__(self, link: ModelLink, transcoder: Transcoder) -> None:
        self.link = link
        self.transcoder = transcoder
        self.batch = bytearray()
        self.frames = 0
        # Where the newest frame ends, kept cheap per frame and computed in `end_s()`: the
        # position this stream counts from, its newest timestamp (ms; -1: none yet), and the
        # bytes received from there (the newest frame's; every frame's without timestamps).
        self.base_s = 0.0
        self.last_ts = -1
        self.tail = 0
        self.skipped = 0  # paused bytes since the last flush: the model skips them
        self.pushed_frames = 0
        # (frames pushed up to here, audio position at the end of that chunk), oldest first;
        # entries leave as the link consumes them (checked at every flush), and there are at
        # most _POSITIONS_MAX whatever the link does.
        self.positions: deque[tuple[int, float]] = deque()
        self.heard_s = 0.0

    def add(self, media: Media) -> None:
        """Per frame: an append and two assignments."""
        payload = media.payload
        self.batch += payload
        self.frames += 1
        ts = media.timestamp_ms
        if ts is None:
            self.tail += len(payload)  # no timestamps (minimal clients): the audio's own length
        else:
            self.last_ts = ts
            self.tail = len(payload)

    def skip(self, media: Media) -> None:
        """A paused frame: the model does not get it, but the call's audio goes on."""
        ts = media.timestamp_ms
        if ts is None:
            self.tail += len(media.payload)
        else:
            self.last_ts = ts
            self.tail = len(media.payload)
        self.skipped += len(media.payload)

    def end_s(self) -> float:
        """The audio position (s) of the end of the newest frame received."""
        at = self.base_s + self.tail / (_ULAW_BYTES_PER_MS * 1000)
        return at + self.last_ts / 1000 if self.last_ts >= 0 else at

    def restart(self) -> None:
        """A new stream: its timestamps start again; its audio follows this one's."""
        self.base_s = self.end_s()
        self.last_ts = -1
        self.tail = 0

    def flush(self, *, final: bool = False) -> None:
        audio = self.transcoder.process(bytes(self.batch)) if self.batch else b""
        if final:
            audio += self.transcoder.flush()
        frames = self.frames
        self.batch.clear()
        self.frames = 0
        if frames or self.skipped:
            # Skipped (paused) audio adds a position without frames: once the link has
            # consumed what came before it, the model is past it too.
            self.skipped = 0
            self.pushed_frames += frames
            positions = self.positions
            if len(positions) >= _POSITIONS_MAX:
                # The newest entry stretches to cover this chunk: `heard()` lags, never leads.
                positions[-1] = (self.pushed_frames, self.end_s())
            else:
                positions.append((self.pushed_frames, self.end_s()))
        if audio or frames:
            self.link.push_audio(audio, frames)
        self.heard()  # drop what the link consumed already, model events or not

    def heard(self) -> float:
        """The audio position (s) up to which the model has been given this track: the link
        consumes its queue in order (each frame sent or dropped, both counted), so the count
        of frames it consumed points at a chunk boundary. Independent of how fast the audio
        arrived, unlike the newest frame received."""
        counters = self.link.counters
        consumed = counters.forwarded_frames + counters.dropped_frames.total()
        positions = self.positions
        while positions and positions[0][0] <= consumed:
            self.heard_s = positions.popleft()[1]
        return round(self.heard_s, 3)


class _AgentSink:
    """The agent's transcription session reports through the bridge as speaker `agent`."""

    def __init__(self, bridge: CallBridge) -> None:
        self._bridge = bridge

    def on_model_event(self, event: ModelEvent) -> None:
        self._bridge.on_transcription_event(event, "agent")

    def on_link_state(self, state: str, reason: str) -> None:
        self._bridge.on_link_state(state, f"agent transcription: {reason}")

    def context_for_new_session(self) -> str | None:
        return None

    def on_tool_call(self, call: ToolCall, calls_this_turn: int) -> ToolAnswer:
        return answer_tool_call(call, None, calls_this_turn=calls_this_turn, min_score=1.0)  # declares no tools


class CallBridge:
    def __init__(
        self,
        start: Start,
        *,
        connector: RealtimeConnector,
        session_config: SessionConfig,
        channel: Channel,
        config: BridgeConfig,
        prompt_name: str,
        agent_session_config: SessionConfig | None = None,
        retriever: Retriever | None = None,
        retrieval_min_score: float = DEFAULT_MIN_SCORE,
        wrapup: WrapUpService | None = None,
        task: TaskRef | None = None,
        recorder: CallRecorder | None = None,
        engine: str = "",
        seed_context: Sequence[str] = (),
        on_context: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        prices: PriceTable | None = None,
        model: str = "unknown",
        max_cost_usd: float | None = None,
    ) -> None:
        self.call_sid = start.call_sid
        # What the call's model sessions billed (DESIGN §6a); past `max_cost_usd`, transcripts only.
        self.usage = CallUsage(model)
        self.prices = prices if prices is not None else prices_at(None)
        self._max_cost_usd = max_cost_usd
        self.budget_exceeded = False
        self.stream_sid = start.stream_sid
        self.tracks = start.tracks
        self.prompt_name = prompt_name
        # The knowledge in force when the call started (a reload applies to the next call).
        self._retriever = retriever
        self._retrieval_min_score = retrieval_min_score
        self._config = config
        self._channel = channel
        # Durations and the covered-passage horizon only; any origin (a fresh machine's
        # monotonic clock starts near zero), so "never" is None, not a number.
        self._clock = clock
        self._started_at = clock()
        self._batch_bytes = max(1, config.append_batch_ms * _ULAW_BYTES_PER_MS)
        self.frames_in = 0
        self.dropped: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.suggestions = 0
        self.suggestions_empty = 0
        self.suggestions_suppressed = 0
        self._agent_lines_sent = 0
        self._covered: dict[str, float] = {}  # passage id → clock() when the agent's words covered it
        self.transcripts = 0
        self.partials = 0
        self.suggestion_latencies: list[float] = []
        self._partial_text: dict[tuple[str, str], str] = {}
        # The call's recent lines: re-seed a new model session (rollover, reconnect, and a
        # bridge continuing the call after another one: `seed_context`); `on_context` shares
        # each line beyond this process.
        self._recent: deque[str] = deque(
            (line for line in seed_context if not line.startswith(PAUSE_MARK)), maxlen=config.context_turns
        )
        self._on_context = on_context
        self._last_speech_stopped: float | None = None  # clock()
        self._turn_ended_at: float | None = None  # audio position of the newest customer turn's end
        # response id → where the turn it answers ended (a response starts when its turn ends)
        self._response_turn: dict[str, float | None] = {}
        self._last_question = ""
        self._last_question_utterance: str | None = None
        self._clock_ms = 0  # newest media timestamp of the current stream
        self._clock_base_ms = 0  # audio time of the streams this call had before
        self._said_at: dict[str, float] = {}  # customer utterance → audio time its speech started
        self._finished = False
        # What the call said and was offered, for its wrap-up; the live insights.
        self.record = CallRecord()
        self.insights = InsightTracker()
        self.insights_published = 0
        self._wrapup = wrapup
        self.task = task  # the call's TaskRouter task, when known (stream parameter, TaskRouter)
        self.wrapup_result: WrapUpResult | None = None
        self.recorder = recorder
        self._audio = recorder.audio if recorder is not None else None
        # Redaction of every text leaving the call, the audio spans it silences, and pauses.
        self.privacy = CallPrivacy(config.privacy, clock)
        # Nothing the model has not heard is written either (it may still report speech there):
        # bounded by what the model link may buffer, and a margin.
        self._hold_unheard = self._audio is not None and self.privacy.enabled
        if self._audio is not None and self.privacy.enabled:
            bytes_per_s = _BYTES_PER_MS.get(config.audio_format, _ULAW_BYTES_PER_MS) * 1000
            buffered_s = config.link.buffer_max_bytes / bytes_per_s
            self._audio.hold_back(HOLD_MIN_S, max(HOLD_MAX_S, buffered_s + SPAN_BEFORE_S + _UNHEARD_MARGIN_S))
        self._pause_timer: asyncio.TimerHandle | None = None
        # The call's agent (stream parameters, when known): who may pause it besides a supervisor.
        self.agent_identity = start.custom_parameters.get("WorkerIdentity") or None
        self.agent_worker_sid = start.custom_parameters.get("WorkerSid") or None
        if recorder is not None:
            worker = start.custom_parameters.get("WorkerIdentity") or start.custom_parameters.get("WorkerSid")
            recorder.started(self.stream_sid or "", prompt_name, engine, task.task_sid if task else None, worker)
        self.link = ModelLink(connector, session_config, config.link, self, clock=clock)
        self._pipes = {ASSISTED_TRACK: _TrackPipe(self.link, make_transcoder(config.audio_format))}
        self.agent_link: ModelLink | None = None
        if agent_session_config is not None and AGENT_TRACK in start.tracks:
            self.agent_link = ModelLink(connector, agent_session_config, config.link, _AgentSink(self), clock=clock)
            self._pipes[AGENT_TRACK] = _TrackPipe(self.agent_link, make_transcoder(config.audio_format))
        for link in self.links:
            link.start()
        self._status("started", "assist listening", stream_sid=self.stream_sid)
        self._continue_pause(seed_context)

    @property
    def links(self) -> list[ModelLink]:
        return [self.link] if self.agent_link is None else [self.link, self.agent_link]

    # ------------------------------------------------------------------ from the socket

    def on_media(self, media: Media) -> None:
        self.frames_in += 1
        pipe = self._pipes.get(media.track)
        if pipe is None:
            self.dropped["track_not_assisted"] += 1
            return
        if self._finished:
            self.dropped["after_call_end"] += 1
            return
        if self.privacy.paused_since is not None and not self._pause_over():
            self.dropped["paused"] += 1  # a payment: the model hears nothing, the recording silence
            if media.timestamp_ms is not None and media.timestamp_ms > self._clock_ms:
                self._clock_ms = media.timestamp_ms
            pipe.skip(media)  # the call's audio goes on (positions after the pause stay right)
            if self._audio is not None:
                self._audio.add(media, silent=True)
            if pipe.skipped >= self._batch_bytes:
                self._flush(pipe)
            return
        pipe.add(media)
        if media.timestamp_ms is not None and media.timestamp_ms > self._clock_ms:
            self._clock_ms = media.timestamp_ms
        if self._audio is not None:
            self._audio.add(media)
        if len(pipe.batch) >= self._batch_bytes:
            self._flush(pipe)

    def _flush(self, pipe: _TrackPipe, *, final: bool = False) -> None:
        """Send the track's batch; the recorder keeps back what the model has not heard yet
        (where it may still report speech: a lagging link, a session still connecting)."""
        pipe.flush(final=final)
        if self._hold_unheard and self._audio is not None:
            for track, p in self._pipes.items():
                # A track whose audio the model has all (or never got any) holds nothing back.
                self._audio.hold_unheard(track, p.heard_s - SPAN_BEFORE_S if p.positions else None)

    def on_ignored_media(self, reason: str) -> None:
        """A media message that carried no usable audio (empty, unknown track, …)."""
        self.frames_in += 1
        self.dropped[reason] += 1

    def adopt_stream(self, start: Start) -> None:
        """A newer stream of this call took over: send the old stream's tails, start the
        tracks afresh, and carry on under the new StreamSid (same model session)."""
        for pipe in self._pipes.values():
            self._flush(pipe, final=True)
            pipe.restart()
        self.stream_sid = start.stream_sid
        self._clock_base_ms += self._clock_ms
        self._clock_ms = 0
        if self._audio is not None:
            self._audio.restart_timestamps()

    def count_event(self, name: str) -> None:
        self.events[name] += 1

    # ------------------------------------------------------------------ from the model

    def on_model_event(self, event: ModelEvent) -> None:
        if isinstance(event, TranscriptDelta | TranscriptCompleted | TranscriptFailed):
            self.on_transcription_event(event, "customer")
        elif isinstance(event, SpeechStarted):
            if len(self._said_at) < 1000:
                self._said_at[event.item_id] = self._heard(ASSISTED_TRACK)
            self._speech_started("customer", event.item_id, ASSISTED_TRACK)
        elif isinstance(event, SpeechStopped):
            self._last_speech_stopped = self._clock()
            self._turn_ended_at = self._heard(ASSISTED_TRACK)
            self.privacy.speech_stopped("customer", event.item_id, self._turn_ended_at)
        elif isinstance(event, ResponseStarted):
            if len(self._response_turn) >= 100:  # bounded: responses that never finished
                self._response_turn.pop(next(iter(self._response_turn)))
            self._response_turn[event.response_id] = self._turn_ended_at
        elif isinstance(event, ResponseTextDone):
            self._on_answer(event)
        elif isinstance(event, ResponseDone):
            self._response_turn.pop(event.response_id, None)
            if event.status != "completed":
                self.events[f"response_{event.status}"] += 1
        elif isinstance(event, ResponseUsage | TranscriptionUsage):
            self._on_usage(event)
        elif isinstance(event, ModelError):
            log.warning(
                "model error",
                extra={"code": event.code, "error_type": event.error_type, "class": event.classification.value},
            )

    def on_transcription_event(self, event: ModelEvent, speaker: str) -> None:
        if self.privacy.paused_since is not None:
            self._pause_over()  # a pause past RELAY_PAUSE_MAX_S ends here too, media or not
        if isinstance(event, SpeechStarted):  # the agent's transcription session
            self._speech_started(speaker, event.item_id, AGENT_TRACK)
        elif isinstance(event, SpeechStopped):
            self.privacy.speech_stopped(speaker, event.item_id, self._heard(AGENT_TRACK))
        elif isinstance(event, TranscriptDelta):
            key = (speaker, event.item_id)
            text = self._partial_text.get(key, "") + event.delta
            self._partial_text[key] = text
            self.partials += 1
            shown = None if self.privacy.paused else self.privacy.partial(text)
            if shown is None:  # paused, or ends in a number still being said: the next shows it
                self.events["partials_held"] += 1
                return
            self._channel.publish(messages.transcript(speaker, shown, final=False, utterance_id=event.item_id))
        elif isinstance(event, TranscriptCompleted):
            self._partial_text.pop((speaker, event.item_id), None)
            text = event.transcript.strip()
            if self.privacy.paused:  # said while paused for a payment: kept nowhere, its audio silenced
                self.events["transcripts_paused"] += 1
                self._utterance_done(speaker, event.item_id, masked=bool(text))
                return
            text, masked = self.privacy.final(text)
            self._utterance_done(speaker, event.item_id, masked=masked)
            if not text:
                return
            self.transcripts += 1
            self._remember(f"{speaker.capitalize()}: {text}")
            passage_id = None
            if speaker == "customer":
                self._last_question = text
                self._last_question_utterance = event.item_id
                if any(is_question(s) for s in sentences(text)):
                    passage_id = self._passage_for(text)
            else:
                passage_id = self._on_agent_words(text)
            self._channel.publish(messages.transcript(speaker, text, final=True, utterance_id=event.item_id))
            said_at = self._said_at.pop(event.item_id, None) if speaker == "customer" else None
            at = said_at if said_at is not None else self._heard(AGENT_TRACK if speaker == "agent" else ASSISTED_TRACK)
            self.record.add_line(Line(at, speaker, text, event.item_id, passage_id))
            if self.recorder is not None:
                self.recorder.line(at, speaker, text, event.item_id)
            self._publish_insights(self.insights.on_line(speaker, text, event.item_id, passage_id), at)
            if self._config.log_transcripts:
                log.info("transcript", extra={"speaker": speaker, "text": text})
        elif isinstance(event, TranscriptFailed):
            self._partial_text.pop((speaker, event.item_id), None)
            self._utterance_done(speaker, event.item_id, masked=False)
            self.events[f"transcription_failed:{event.code}"] += 1
        elif isinstance(event, TranscriptionUsage):
            self._on_usage(event)
        elif isinstance(event, ModelError):
            log.warning("transcription error", extra={"speaker": speaker, "code": event.code})

    def _on_usage(self, event: ResponseUsage | TranscriptionUsage) -> None:
        """Count what a response or a transcription billed; past the budget, transcripts only."""
        if isinstance(event, ResponseUsage):
            added = self.usage.add_response(event.usage) is not None
        else:
            added = self.usage.add_transcription(event.usage, event.model) is not None
        if not added:
            self.events["usage_refused"] += 1
            return
        budget = self._max_cost_usd
        if budget is None or self.budget_exceeded:
            return
        cost = self.usage.cost_usd(self.prices)
        if cost is not None and cost > budget:
            self.budget_exceeded = True
            self.events["budget_exceeded"] += 1
            self.link.stop_responses()
            log.warning(
                "call budget passed: transcripts only", extra={"cost_usd": round(cost, 4), "budget_usd": budget}
            )
            self._status("degraded", f"call cost ${cost:.2f} passed the ${budget:.2f} budget: transcripts only")

    # ------------------------------------------------------------------ privacy

    def _speech_started(self, speaker: str, item_id: str, track: str) -> None:
        """Hold the recording back from here until this utterance's final is in."""
        start = self.privacy.speech_started(speaker, item_id, self._heard(track))
        if start is not None and self._audio is not None:
            self._audio.hold(f"{speaker}:{item_id}", start, track)

    def _utterance_done(self, speaker: str, item_id: str, *, masked: bool) -> None:
        """Silence the utterance's audio if its final had something masked, then let it be written."""
        track = AGENT_TRACK if speaker == "agent" else ASSISTED_TRACK
        span = self.privacy.utterance_done(speaker, item_id, self._heard(track), masked)
        if span is not None and self.recorder is not None and self._audio is not None:
            self.recorder.event(span.start_s, "audio_masked", span.as_dict())
        if self._audio is not None:
            if span is not None and not self._audio.mask(span.start_s, span.end_s, track):
                self.privacy.late_masks += 1
            self._audio.release(f"{speaker}:{item_id}")

    def pause(self) -> bool:
        """A payment: no audio to the model, no transcripts, silence in the recording, until
        `resume()` or RELAY_PAUSE_MAX_S. False if already paused or the call is ending."""
        if self._finished or not self.privacy.pause(self._elapsed()):
            return False
        for pipe in self._pipes.values():
            self._flush(pipe)  # what was said before the pause still reaches the model
        self._partial_text.clear()
        self._schedule_pause_end(self.privacy.config.pause_max_s)
        self._share_pause(time.time() + self.privacy.config.pause_max_s)
        self._status("paused", "paused for a payment: nothing heard, transcribed or recorded")
        return True

    def resume(self, *, expired: bool = False) -> bool:
        """False if not paused."""
        if not self.privacy.resume(self._elapsed(), event="expired" if expired else "resumed"):
            return False
        self._cancel_pause_timer()
        self._share_pause(0.0)
        reason = f"pause ended after {self.privacy.config.pause_max_s:g} s" if expired else "resumed"
        self._status("resumed", reason)
        return True

    def _pause_over(self) -> bool:
        if self.privacy.pause_expired():
            self.resume(expired=True)
            return True
        return False

    def _schedule_pause_end(self, delay_s: float) -> None:
        """The pause ends after RELAY_PAUSE_MAX_S even if no media comes (a held call)."""
        self._cancel_pause_timer()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): media and model events end it
            return
        self._pause_timer = loop.call_later(max(0.01, delay_s), self._on_pause_timer)

    def _on_pause_timer(self) -> None:
        self._pause_timer = None
        if self._finished or self.privacy.paused_since is None or self._pause_over():
            return
        # The injected clock and the loop's disagree (tests, a suspended machine): look again.
        since = self.privacy.paused_since
        self._schedule_pause_end(self.privacy.config.pause_max_s - (self._clock() - since))

    def _share_pause(self, until: float) -> None:
        if self._on_context is not None:
            self._on_context(f"{PAUSE_MARK}{until:.3f}")

    def _continue_pause(self, seed_context: Sequence[str]) -> None:
        """The call was paused on the replica it comes from: paused here too, until then."""
        marks = [line for line in seed_context if line.startswith(PAUSE_MARK)]
        if not marks:
            return
        try:
            until = float(marks[-1][len(PAUSE_MARK) :])
        except ValueError:
            return
        pause_max_s = self.privacy.config.pause_max_s
        left = min(until - time.time(), pause_max_s)
        if left <= 0 or not self.privacy.pause(0.0, count=False):
            return
        self.privacy.paused_since = self._clock() - (pause_max_s - left)
        self._schedule_pause_end(left)
        self._status("paused", "paused for a payment (continued): nothing heard, transcribed or recorded")

    def _cancel_pause_timer(self) -> None:
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None

    def _heard(self, track: str) -> float:
        """Where in the call's audio (seconds) the model is on `track`: model events (speech
        started, a turn ended, a transcript) are timed by it, so a line points at its place
        in the recording whatever the speed the audio was played at."""
        pipe = self._pipes.get(track)
        return pipe.heard() if pipe is not None else self._elapsed()

    def _elapsed(self) -> float:
        """Where the call's audio is now (seconds): the newest media timestamp received,
        continued across replaced streams; frames × 20 ms for clients that send no timestamps.
        For the relay's own events (status); model events use `_heard`."""
        if self._clock_ms or self._clock_base_ms:
            return round((self._clock_base_ms + self._clock_ms) / 1000, 3)
        return round(self.frames_in * 0.02 / max(1, len(self._pipes)), 3)

    def _passage_for(self, text: str) -> str | None:
        if self._retriever is None:
            return None
        hits = self._retriever.search(text, k=1, min_score=self._retrieval_min_score)
        return hits[0].passage.id if hits else None

    def _publish_insights(self, found: list[Insight], at: float) -> None:
        for insight in found:
            self.insights_published += 1
            item = messages.insight(
                insight.kind,
                insight.text,
                speaker=insight.speaker,
                utterance_id=insight.utterance_id,
                id=insight.key,
                answered=insight.answered,
                owner=insight.owner,
                due=insight.due,
            )
            self._channel.publish(item)
            if self.recorder is not None:
                self.recorder.event(at, "insight", item.body)

    def _status(self, state: str, reason: str, **extra: Any) -> None:
        self._channel.publish(messages.status(state, reason, **extra))
        if self.recorder is not None:
            self.recorder.event(self._elapsed(), "status", {"state": state, "reason": reason})

    def _on_agent_words(self, text: str) -> str | None:
        """What the agent said: the customer's session hears it (so the model does not suggest
        what was just answered), and the passage it covers is remembered so a suggestion
        from that passage is not shown again."""
        if self._agent_lines_sent < MAX_AGENT_LINES:
            self._agent_lines_sent += 1
            self.link.add_context_soon(f"Agent said: {text[:MAX_AGENT_LINE_CHARS]}")
        else:
            self.events["agent_lines_not_sent"] += 1  # bounded for long calls; re-seeds still carry them
        passage_id = self._passage_for(text)
        if passage_id is not None:
            self._covered[passage_id] = self._clock()
        return passage_id

    def _already_answered(self, sources: list[dict[str, str]]) -> bool:
        now = self._clock()

        def covered(passage_id: str) -> bool:
            at = self._covered.get(passage_id)  # None: the agent never covered it
            return at is not None and now - at < COVERED_FOR_S

        return bool(sources) and all(covered(s["id"]) for s in sources)

    def _on_answer(self, event: ResponseTextDone) -> None:
        parsed = parse_model_answer(event.text)
        if parsed is None:
            self.suggestions_empty += 1
            return
        # The model may quote what it heard (a card number read out): masked like the lines.
        parsed = dataclasses.replace(
            parsed, question=self.privacy.text(parsed.question), answer=self.privacy.text(parsed.answer)
        )
        sources = self._resolve_sources(parsed.sources)
        if self._already_answered(sources):
            self.suggestions_suppressed += 1  # the agent already said what these passages say
            return
        question = parsed.question or self._last_question
        self.suggestions += 1
        self._remember(f"Suggested answer: {parsed.answer}")
        latency = self._clock() - self._last_speech_stopped if self._last_speech_stopped is not None else None
        if latency is not None:
            self.suggestion_latencies.append(latency)
        suggestion_id = event.response_id or event.item_id
        self._channel.publish(messages.suggestion(question, parsed.answer, suggestion_id, sources=sources))
        # A card belongs where the turn it answers ended (its latency is recorded beside it):
        # an audio position, so it comes before the next turn whatever the playback speed.
        at = self._response_turn.get(event.response_id)
        if at is None:
            at = self._turn_ended_at if self._turn_ended_at is not None else self._heard(ASSISTED_TRACK)
        if self.recorder is not None:
            self.recorder.suggestion(at, suggestion_id, question, parsed.answer, sources, latency)
        pairs = tuple((s["id"], s["title"]) for s in sources)
        self.record.add_suggestion(GivenSuggestion(at, question, parsed.answer, pairs))
        self._publish_insights(
            self.insights.on_suggestion(tuple(s["id"] for s in sources), self._last_question_utterance), at
        )
        if self._config.log_transcripts:
            log.info("suggestion", extra={"question": question, "answer": parsed.answer})

    def _resolve_sources(self, ids: tuple[str, ...]) -> list[dict[str, str]]:
        """Passage ids the answer names → `{"id", "title"}` from the knowledge in force when
        the call started; an id the knowledge does not hold (made up) is dropped and counted."""
        resolved = []
        for pid in ids:
            passage = self._retriever.knowledge.by_id.get(pid) if self._retriever is not None else None
            if passage is None:
                self.events["sources_unknown"] += 1
                continue
            resolved.append({"id": pid, "title": passage.title[:120]})
        return resolved

    def on_tool_call(self, call: ToolCall, calls_this_turn: int) -> ToolAnswer:
        answer = answer_tool_call(
            call, self._retriever, calls_this_turn=calls_this_turn, min_score=self._retrieval_min_score
        )
        if not answer.ok:  # counted by the link (tool_errors)
            log.warning("knowledge tool call refused", extra={"output": answer.output[:200]})
        return answer

    def publish(self, item: messages.Outgoing) -> None:
        """Publish an out-of-band message (e.g. a stream status) on this call's channel."""
        self._channel.publish(item)

    def on_link_state(self, state: str, reason: str) -> None:
        self.events[f"status_{state}"] += 1
        self._status(state, reason)

    def _remember(self, line: str) -> None:
        self._recent.append(line)
        if self._on_context is not None:
            self._on_context(line)

    def context_for_new_session(self) -> str | None:
        if not self._recent:
            return None
        lines = "\n".join(self._recent)
        return (
            "Context from earlier in this call, for reference. These turns were already "
            "handled; do not answer them again.\n" + lines
        )

    # ------------------------------------------------------------------ end of call

    async def finish(self, reason: str) -> dict[str, Any]:
        """Flush audio, close the model side, flush Sync, and return the summary.

        Whatever fails or is cancelled on the way, the call is still closed: `ended` is
        published, the channel closed (its publisher flushed), the end row written and the
        audio file closed; then the failure propagates."""
        if self._finished:
            raise RuntimeError("bridge already finished")
        # Taken over: the call goes on elsewhere, which ends it, writes its wrap-up and says
        # `ended`; this bridge only flushes what it already queued.
        continues_elsewhere = reason == TAKEN_OVER
        failed: BaseException | None = None
        try:
            for pipe in self._pipes.values():
                self._flush(pipe, final=True)
            self._finished = True
            await asyncio.gather(*(link.finish(self._config.flush_deadline_s) for link in self.links))
            if self._wrapup is not None and not continues_elsewhere:
                result = await self._wrapup.compose(self._wrapup_request())
                self.wrapup_result = redact_result(result, self.privacy.text)
                self._channel.publish(messages.summary(self.wrapup_result.message_body()))
        except BaseException as exc:  # cancellation included: the cleanup below must run
            failed = exc
            raise
        finally:
            self._finished = True
            self._cancel_pause_timer()
            self.privacy.resume(self._elapsed(), event="ended")  # ended paused: its span goes in the record
            summary = await self._close(reason, continues_elsewhere, failed)
        return summary

    async def _close(self, reason: str, continues_elsewhere: bool, failed: BaseException | None) -> dict[str, Any]:
        """The cleanup steps of `finish`, each attempted even if one before it failed."""
        errors: list[tuple[str, BaseException]] = []
        if isinstance(failed, asyncio.CancelledError):
            errors.append(("finish", failed))
            log.warning("call end interrupted; closing the call anyway")
        elif failed is not None:
            errors.append(("finish", failed))
            log.error("call end failed; closing the call anyway", exc_info=failed)
        report = StreamReport()
        if not continues_elsewhere:
            try:
                self._status("ended", reason)
            except Exception as exc:
                errors.append(("status", exc))
        try:
            report = await self._channel.close(self._config.flush_deadline_s)
        except Exception as exc:
            errors.append(("channel_close", exc))
        if self._wrapup is not None and self.wrapup_result is not None:
            try:
                self._wrapup.deliver_to_task(self.call_sid, self.task, self.wrapup_result)
            except Exception as exc:
                errors.append(("deliver_wrapup", exc))
        summary = self._summary(reason, report)
        if errors:
            summary["finish_errors"] = [f"{step}: {type(error).__name__}" for step, error in errors]
            for step, error in errors[1 if failed is not None else 0 :]:
                log.error("call end step failed", extra={"step": step}, exc_info=error)
        if self.recorder is not None and not continues_elsewhere:
            result = self.wrapup_result
            notes = result.notes if result is not None else None
            await self.recorder.ended(
                reason,
                summary,
                result.message_body() if result is not None else None,
                notes.disposition if notes is not None else None,
                self.task.task_sid if self.task else None,
            )
        return summary

    def _wrapup_request(self) -> WrapUpRequest:
        assert self._wrapup is not None
        return WrapUpRequest(
            call_sid=self.call_sid,
            lines=tuple(self.record.lines),
            suggestions=tuple(self.record.suggestions),
            dispositions=self._wrapup.dispositions,
            lines_not_kept=self.record.lines_dropped,
        )

    def link_totals(self) -> LinkCounters:
        """The counters of every model link of the call (the assist session and, with both
        tracks, the agent's transcription), added up in one place."""
        totals = LinkCounters()
        for link in self.links:
            totals.add(link.counters)
        return totals

    @property
    def frames_forwarded(self) -> int:
        return sum(link.counters.forwarded_frames for link in self.links)

    def frames_dropped(self) -> Counter[str]:
        dropped = Counter(self.dropped)
        for link in self.links:
            dropped.update(link.counters.dropped_frames)
        return dropped

    def _summary(self, reason: str, report: StreamReport) -> dict[str, Any]:
        link = self.link.counters
        totals = self.link_totals()
        latencies = sorted(self.suggestion_latencies)
        if self._audio is not None:
            self.privacy.unheard_written_s = self._audio.unheard_written / 8000
        summary: dict[str, Any] = {
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "reason": reason,
            "duration_s": round(self._clock() - self._started_at, 3),
            "tracks": list(self.tracks),
            "prompt": self.prompt_name,
            "frames_in": self.frames_in,
            "frames_forwarded": totals.forwarded_frames,
            "frames_dropped": dict(self.frames_dropped()),
            "bytes_forwarded": totals.forwarded_bytes,
            "bytes_replayed": totals.replayed_bytes,
            "appends": totals.appends,
            "appends_merged": totals.merged_appends,
            "tool_calls": totals.tool_calls,
            "tool_errors": totals.tool_errors,
            "agent_lines": {"sent": totals.context_sent, "not_sent": totals.context_dropped},
            "turns_ended_at_close": totals.turns_ended_at_close,
            "transcripts": self.transcripts,
            "suggestions": self.suggestions,
            "suggestions_empty": self.suggestions_empty,
            "suggestions_suppressed": self.suggestions_suppressed,
            "suggestion_latency_p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
            "model_connects": link.connects,
            "model_reconnects": link.reconnects,
            "model_rollovers": link.rollovers,
            "model_errors": dict(link.errors),
            "assist_failed": self.link.failed,
            "events": dict(self.events),
            "insights": self.insights_published,
            "sync": report.as_dict(),
            "privacy": self.privacy.summary(),
            "usage": self.usage.to_summary(self.prices),
        }
        if self.task is not None:
            summary["task_sid"] = self.task.task_sid
        if self.wrapup_result is not None:
            result = self.wrapup_result
            summary["wrapup"] = {
                "status": result.status,
                "reason": result.reason or None,
                "engine": result.engine,
                "model": result.model,
                "chunks": result.chunks,
                "lines": result.lines,
                **result.usage.as_dict(),
            }
        if self.agent_link is not None:
            summary["agent_transcription"] = _link_summary(self.agent_link.counters, self.agent_link.failed)
        return summary


def _link_summary(counters: LinkCounters, failed: str | None) -> dict[str, Any]:
    return {
        "frames_forwarded": counters.forwarded_frames,
        "connects": counters.connects,
        "reconnects": counters.reconnects,
        "rollovers": counters.rollovers,
        "errors": dict(counters.errors),
        "failed": failed,
    }


# ---------------------------------------------------------------------- construction

_BYTES_PER_MS = {"pcm24k": 48, "pcm16k": 32, "pcmu": 8}


def build_bridge(
    start: Start,
    *,
    settings: Settings,
    prompts: PromptLibrary,
    connector: RealtimeConnector,
    channel: Channel,
    send_delays: RecentSamples | None,
    retriever: Retriever | None = None,
    wrapup: WrapUpService | None = None,
    recorder: CallRecorder | None = None,
    seed_context: Sequence[str] = (),
    on_context: Callable[[str], None] | None = None,
) -> CallBridge:
    """A call's bridge as the settings describe it: prompt (the stream's `prompt` parameter
    may pick one), audio format, buffer and reconnect policy, agent transcription."""
    selection = prompts.select(start.custom_parameters.get("prompt"))
    # The offline engine's recognizer takes 16 kHz; OpenAI takes 24 kHz PCM or μ-law.
    audio_format = "pcm16k" if settings.effective_engine == "local" else settings.audio_format
    bytes_per_ms = _BYTES_PER_MS[audio_format]
    config = BridgeConfig(
        audio_format=audio_format,
        append_batch_ms=settings.append_batch_ms,
        flush_deadline_s=settings.sync_flush_deadline_s,
        log_transcripts=settings.log_transcripts,
        privacy=PrivacyConfig(
            redact=settings.redact,
            redaction=redaction_config(settings.redact_entities),
            pause_max_s=settings.pause_max_s,
        ),
        link=LinkConfig(
            buffer_max_bytes=settings.audio_buffer_max_ms * bytes_per_ms,
            max_attempts=settings.reconnect_max_attempts,
            initial_delay_s=settings.reconnect_initial_delay_s,
            max_delay_s=settings.reconnect_max_delay_s,
            session_max_age_s=settings.session_max_age_s,
            rollover_grace_s=min(120.0, max(5.0, 3600 - settings.session_max_age_s - 30)),
            replay_max_bytes=settings.reconnect_replay_ms * bytes_per_ms,
            # Catching up after falling behind: at most 1 s of audio per append. Not for the
            # offline engine: an append is a function call there, and appends of one batch
            # keep its turn times to a batch (`CallBridge._heard`).
            merge_max_bytes=0 if audio_format == "pcm16k" else 1000 * bytes_per_ms,
            send_delays=send_delays,
        ),
    )
    session_config = SessionConfig(
        instructions=selection.text,
        audio_format=audio_format,
        transcription_model=settings.transcription_model,
        transcription_language=settings.transcription_language,
        # The OpenAI model grounds its answers through the knowledge tool; the offline engine
        # retrieves by itself.
        tools=(SEARCH_TOOL,) if settings.knowledge_tool and audio_format != "pcm16k" else (),
        truncation=Truncation(settings.max_context_tokens, settings.context_retention_ratio),
    )
    agent_config = None
    if settings.transcribe_agent and AGENT_TRACK in start.tracks:
        agent_config = dataclasses.replace(session_config, instructions="", transcription_only=True, tools=())
    return CallBridge(
        start,
        connector=connector,
        session_config=session_config,
        agent_session_config=agent_config,
        channel=channel,
        config=config,
        prompt_name=selection.name,
        retriever=retriever,
        retrieval_min_score=settings.retrieval_min_score,
        wrapup=wrapup,
        task=wrapup.task_for(start.custom_parameters) if wrapup is not None else None,
        recorder=recorder,
        engine=settings.effective_engine,
        seed_context=seed_context,
        on_context=on_context,
        prices=prices_at(settings.prices_file),
        model=settings.realtime_model if settings.effective_engine == "openai" else "local",
        max_cost_usd=settings.max_cost_per_call_usd,
    )
