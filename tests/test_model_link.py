"""The model link's shell performs what its policy decides, driven through its injected
clock, sleep and random source by a scripted in-process session: no sockets, no waiting on
the wall clock. (Over real sockets against the fake Realtime server: test_staying_up.py.)

The doubles here implement the seams they stand for (`RealtimeSession`, `RealtimeConnector`,
`LinkSink`) in full; mypy checks this module (`mypy relay sync_publisher tests/test_model_link.py`)."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import AsyncIterator

import pytest

from relay.model.events import ModelEvent, SessionClosed, ToolCall
from relay.model.knowledge_tool import ToolAnswer
from relay.model.link import LinkConfig, LinkSink, ModelLink
from relay.model.link_policy import ConnectRules, default_backoff
from relay.model.session import RealtimeConnectError, RealtimeConnector, RealtimeSession, SessionConfig

CONFIG = SessionConfig(instructions="be brief", audio_format="pcm24k", transcription_model="gpt-transcribe")


class ScriptedSession:
    """A `RealtimeSession` that records what the link sends and emits what a test scripts."""

    def __init__(self) -> None:
        self.audio: list[bytes] = []
        self.context: list[str] = []
        self.tool_results: list[tuple[str, str, bool]] = []
        self.turns_ended: list[bool] = []  # `respond` of each end_turn
        self._events: asyncio.Queue[ModelEvent] = asyncio.Queue()

    async def send_audio(self, audio: bytes) -> None:
        self.audio.append(audio)

    async def add_context(self, text: str) -> None:
        self.context.append(text)

    async def send_tool_result(self, call_id: str, output: str, *, more_tools: bool) -> None:
        self.tool_results.append((call_id, output, more_tools))

    async def end_turn(self, *, respond: bool) -> None:
        self.turns_ended.append(respond)

    async def events(self) -> AsyncIterator[ModelEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, SessionClosed):
                return

    async def close(self) -> None:
        self._events.put_nowait(SessionClosed(1000, "closed"))


# The doubles stand for the seams: mypy refuses this module if one lacks a member.
_SESSION: type[RealtimeSession] = ScriptedSession


class ScriptedConnector:
    """Refuses the first `refusals` opens (fatally, if asked), then opens sessions."""

    def __init__(self, refusals: int = 0, *, fatal: bool = False) -> None:
        self.refusals = refusals
        self.fatal = fatal
        self.sessions: list[ScriptedSession] = []
        self.attempts = 0

    async def open(self, config: SessionConfig) -> RealtimeSession:
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise RealtimeConnectError("api.example: connection refused", fatal=self.fatal)
        session = ScriptedSession()
        self.sessions.append(session)
        return session


class Sink:
    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []

    def on_model_event(self, event: ModelEvent) -> None:
        pass

    def on_link_state(self, state: str, reason: str) -> None:
        self.states.append((state, reason))

    def context_for_new_session(self) -> str | None:
        return "earlier turns"

    def on_tool_call(self, call: ToolCall, calls_this_turn: int) -> ToolAnswer:
        return ToolAnswer('{"passages": []}', ok=True, more_tools=False)


class Sleeps:
    """An injected sleep that records what it was asked and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)


def link(
    connector: ScriptedConnector,
    sink: Sink,
    sleeps: Sleeps,
    seed: int = 3,
    *,
    max_attempts: int = 8,
    replay_max_bytes: int = 0,
) -> ModelLink:
    settings = LinkConfig(buffer_max_bytes=10_000, max_attempts=max_attempts, replay_max_bytes=replay_max_bytes)
    return ModelLink(connector, CONFIG, settings, sink, rng=random.Random(seed), sleep=sleeps, clock=lambda: 100.0)


async def test_refused_connects_back_off_by_the_policy_then_deliver_everything_in_order() -> None:
    connector, sink, sleeps = ScriptedConnector(refusals=2), Sink(), Sleeps()
    model = link(connector, sink, sleeps)
    model.start()
    for i in range(5):
        model.push_audio(bytes([i]) * 100, frames=5)
    await asyncio.wait_for(_until(lambda: bool(connector.sessions) and len(connector.sessions[0].audio) > 0), 5)
    await model.finish(deadline_s=5)

    expected = default_backoff(ConnectRules(), random.Random(3))
    assert sleeps.asked == [expected(1), expected(2)]  # the same draws, in order
    assert sink.states == [
        ("degraded", "model_unavailable: api.example: connection refused"),
        ("recovered", "model session restored"),
    ]
    (session,) = connector.sessions
    assert b"".join(session.audio) == b"".join(bytes([i]) * 100 for i in range(5))
    assert model.counters.connect_failures == 2 and model.counters.forwarded_frames == 25
    # Every session gets the sink's context; the bridge has none for a call's first session
    # unless the call began on another bridge (tests/test_shared_state.py).
    assert session.context == ["earlier turns"]


async def test_a_fatal_refusal_makes_assist_unavailable_and_counts_what_follows() -> None:
    connector, sink, sleeps = ScriptedConnector(refusals=1, fatal=True), Sink(), Sleeps()
    model = link(connector, sink, sleeps)
    model.start()
    await asyncio.wait_for(_until(lambda: model.failed is not None), 5)
    model.push_audio(b"x" * 100, frames=5)
    await model.finish(deadline_s=5)
    assert sink.states == [("degraded", "model rejected the session: api.example: connection refused")]
    assert model.counters.dropped_frames == {"assist_unavailable": 5}
    assert sleeps.asked == [] and connector.sessions == []


async def test_a_lost_session_is_replaced_reseeded_and_the_unacknowledged_audio_replayed() -> None:
    connector, sink, sleeps = ScriptedConnector(), Sink(), Sleeps()
    model = link(connector, sink, sleeps, replay_max_bytes=1000)
    model.start()
    model.push_audio(b"a" * 100, frames=5)
    await asyncio.wait_for(_until(lambda: bool(connector.sessions) and len(connector.sessions[0].audio) == 1), 5)
    await connector.sessions[0].close()  # the server drops the session (at clock 100: it died young)
    await asyncio.wait_for(_until(lambda: len(connector.sessions) == 2), 5)
    model.push_audio(b"b" * 100, frames=5)
    await asyncio.wait_for(_until(lambda: len(connector.sessions[1].audio) == 2), 5)
    await model.finish(deadline_s=5)

    _, second = connector.sessions
    assert second.context == ["earlier turns"]
    assert second.audio == [b"a" * 100, b"b" * 100]  # the replay window first, then new audio
    assert model.counters.replayed_bytes == 100 and model.counters.reconnects == 1
    assert len(sleeps.asked) == 1  # a young death counts as a failed attempt: one backoff
    assert sink.states[0] == ("degraded", "model_connection_lost") and sink.states[-1][0] == "recovered"


async def _until(condition: object) -> None:
    assert callable(condition)
    while not condition():  # noqa: ASYNC110 - yields to the loop; no wall-clock wait
        await asyncio.sleep(0)


@pytest.mark.parametrize("size", [10, 125, 126, 65535, 65536, 200_000])
async def test_the_frame_writer_writes_frames_a_server_reads_as_the_message(size: int) -> None:
    """Every length class of the WebSocket header, masked, read back by a real server."""
    import websockets.asyncio.client
    from aiohttp import WSMsgType, web

    from relay.model.openai import FrameWriter

    got: asyncio.Queue[str] = asyncio.Queue()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await got.put(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with websockets.asyncio.client.connect(f"ws://127.0.0.1:{port}/", max_size=None) as client:

            class Sdk:  # the SDK connection's shape: its websockets connection in `_connection`
                _connection = client

            writer = FrameWriter.for_connection(Sdk())
            assert writer is not None
            message = ("x" * size).encode()
            assert writer.try_write(message)
            await client.send("after")  # the library's own sends interleave by whole messages
            assert await asyncio.wait_for(got.get(), 5) == message.decode()
            assert await asyncio.wait_for(got.get(), 5) == "after"
        assert not writer.try_write(b"closed")  # not open any more: the caller takes the SDK path
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("double", "seam"), [(ScriptedSession, RealtimeSession), (ScriptedConnector, RealtimeConnector), (Sink, LinkSink)]
)
def test_each_double_has_every_member_of_its_seam_with_the_same_signature(double: type, seam: type) -> None:
    """The run-time half of the mypy check above (pytest alone catches a seam that grew)."""
    members = {n: v for n, v in vars(seam).items() if callable(v) and not n.startswith("_")}
    assert members
    for name, member in members.items():
        assert hasattr(double, name), f"{double.__name__} lacks {name}"
        assert inspect.signature(getattr(double, name)) == inspect.signature(member), name
