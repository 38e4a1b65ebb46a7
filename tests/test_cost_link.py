"""The model link's part in what a call costs, with the scripted sessions of test_model_link:
what a response or a transcription billed follows its event as a typed usage event, and
`stop_responses()` (the per-call budget) swaps the answering session for a transcription-only
one, even when that session cannot be opened at first. (Over real sockets: test_cost_flow.py.)"""

from __future__ import annotations

import asyncio
import random

from relay.model.events import (
    ModelEvent,
    ResponseDone,
    ResponseUsage,
    SpeechStarted,
    TranscriptCompleted,
    TranscriptionUsage,
)
from relay.model.link import LinkConfig, ModelLink
from relay.model.session import RealtimeSession, SessionConfig
from tests.test_model_link import CONFIG, ScriptedConnector, Sink, Sleeps, _until


class ConfigsConnector(ScriptedConnector):
    """Also keeps the config each session was opened with."""

    def __init__(self, refusals: int = 0) -> None:
        super().__init__(refusals)
        self.configs: list[SessionConfig] = []

    async def open(self, config: SessionConfig) -> RealtimeSession:
        self.configs.append(config)
        return await super().open(config)


class Events(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[ModelEvent] = []

    def on_model_event(self, event: ModelEvent) -> None:
        self.events.append(event)


def make(connector: ScriptedConnector, sink: Sink) -> ModelLink:
    settings = LinkConfig(buffer_max_bytes=10_000, retire_timeout_s=0.5)
    return ModelLink(connector, CONFIG, settings, sink, rng=random.Random(1), sleep=Sleeps(), clock=lambda: 100.0)


async def test_a_billed_event_is_followed_by_what_it_billed() -> None:
    connector, sink = ConfigsConnector(), Events()
    model = make(connector, sink)
    model.start()
    await asyncio.wait_for(_until(lambda: bool(connector.sessions)), 5)
    session = connector.sessions[0]
    usage = {"input_tokens": 0, "output_tokens": 0}
    for event in (
        ResponseDone("r1", "completed", None, usage),
        ResponseDone("r2", "completed", None),  # no usage sent: nothing follows
        TranscriptCompleted("i1", "hello", {"type": "duration", "seconds": 2.5}),
    ):
        session._events.put_nowait(event)
    await asyncio.wait_for(_until(lambda: len(sink.events) >= 5), 5)
    await model.finish(deadline_s=5)
    assert sink.events[:5] == [
        ResponseDone("r1", "completed", None),
        ResponseUsage("r1", usage),
        ResponseDone("r2", "completed", None),
        TranscriptCompleted("i1", "hello"),
        TranscriptionUsage("i1", "gpt-transcribe", {"type": "duration", "seconds": 2.5}),
    ]


async def test_stop_responses_swaps_in_a_transcription_only_session() -> None:
    connector, sink = ConfigsConnector(), Events()
    model = make(connector, sink)
    model.start()
    model.push_audio(b"a" * 100, frames=5)
    await asyncio.wait_for(_until(lambda: bool(connector.sessions) and connector.sessions[0].audio), 5)
    first = connector.sessions[0]
    first._events.put_nowait(SpeechStarted("turn-1"))  # the customer is mid-sentence
    await asyncio.wait_for(_until(lambda: bool(sink.events)), 5)

    assert model.responding and model.stop_responses()
    assert not model.stop_responses()  # once is enough
    model.push_audio(b"b" * 100, frames=5)
    await asyncio.wait_for(_until(lambda: len(connector.sessions) == 2 and connector.sessions[1].audio), 5)
    model.add_context_soon("Agent said: hello")  # a transcription session has no conversation
    await model.finish(deadline_s=5)

    second = connector.sessions[1]
    assert not model.responding
    assert connector.configs[1].transcription_only and connector.configs[1].instructions == ""
    assert second.context == []  # not seeded either
    assert first.turns_ended == [False]  # the open turn is committed (transcribed), not answered
    assert first.audio == [b"a" * 100] and second.audio == [b"b" * 100]
    assert model.counters.context_dropped == 1 and model.counters.reconnects == 0


async def test_a_transcription_session_that_cannot_open_yet_comes_through_the_reconnect() -> None:
    connector, sink = ConfigsConnector(), Events()
    model = make(connector, sink)
    model.start()
    model.push_audio(b"a" * 100, frames=5)
    await asyncio.wait_for(_until(lambda: bool(connector.sessions) and connector.sessions[0].audio), 5)
    connector.refusals = connector.attempts + 1  # the next open is refused
    model.stop_responses()
    model.push_audio(b"b" * 100, frames=5)
    await asyncio.wait_for(_until(lambda: len(connector.sessions) == 2 and connector.sessions[1].audio), 5)
    await model.finish(deadline_s=5)

    assert [c.transcription_only for c in connector.configs] == [False, True, True]
    assert model.counters.connect_failures == 1 and model.failed is None
    assert b"b" * 100 in connector.sessions[1].audio
