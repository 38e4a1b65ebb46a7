"""A fake OpenAI Realtime server (GA interface) on loopback, speaking the real protocol.

- `GET /v1/realtime?model=…` with `Authorization: Bearer <key>` upgrades to a WebSocket.
- Every client event is validated with `TypeAdapter(RealtimeClientEvent)` plus a walk for
  stray keys (the SDK models allow extras; the GA server does not accept beta keys), and
  audio before `session.update` is a recorded violation.
- Every server event it sends is validated with `TypeAdapter(RealtimeServerEvent)` first.
- Scriptable: answer turns every N bytes of audio, refuse the first connects, drop the
  connection after N appends, stall, expire sessions, emit error codes.
- Bills the way the API does (`relay.usage.ConversationLedger`): every response's
  `response.done` carries a `usage` that bills the whole conversation so far as input (what
  an earlier response billed as cached), truncated per the session's `truncation`; every
  transcription's `usage` is the committed turn's duration. Audio: 10 tokens/s of user audio;
  text: ~4 characters a token.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

from relay.usage import MODEL_INPUT_LIMITS, ConversationLedger, ResponseBill, Truncation

from .responses_api import FakeResponses

CLIENT_EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
SERVER_EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)


def stray_keys(model: BaseModel, path: str = "") -> list[str]:
    """Keys the SDK model accepted as extras (the GA server rejects unknown parameters)."""
    found = [f"{path}{k}" for k in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, BaseModel):
                found.extend(stray_keys(v, f"{path}{name}."))
    return found


def validate_client_event(data: Any) -> tuple[Any | None, str | None]:
    """(model, None) when the GA API would accept the event, else (None, why)."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None, "event must be an object with a type"
    try:
        model = CLIENT_EVENTS.validate_python(data)
    except ValidationError as exc:
        return None, f"invalid {data.get('type')}: {exc.error_count()} errors"
    if getattr(model, "type", None) != data["type"]:
        return None, f"unknown event type {data['type']}"
    extras = stray_keys(model)
    if extras:
        return None, f"unknown parameters: {extras}"
    return model, None


@dataclass
class Turn:
    transcript: str
    answer: str  # the model's text output, verbatim
    # Function calls the model makes before answering, each as (tool name, arguments text),
    # exactly as the API streams them; the answer waits for each call's output and the
    # client's response.create.
    tool_calls: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class FakeSession:
    index: int
    id: str
    opened_at: float
    ws: web.WebSocketResponse
    configured: bool = False
    session_config: dict[str, Any] | None = None
    audio: bytearray = field(default_factory=bytearray)
    audio_bytes_seen: int = 0
    append_times: list[tuple[float, int]] = field(default_factory=list)
    appends: int = 0
    client_events: list[str] = field(default_factory=list)
    open_item: str | None = None  # the open turn's item, once speech_started was sent
    open_committed: bool = False
    context_items: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    turns_sent: int = 0
    responses: list[str] = field(default_factory=list)
    tool_outputs: list[dict[str, Any]] = field(default_factory=list)  # function_call_output items
    response_creates: list[dict[str, Any]] = field(default_factory=list)  # the client's response.create
    response_requested: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by_server: str | None = None
    head: bytes = b""  # the first audio bytes: the load bench tells pass-through calls apart by them
    model: str = "gpt-realtime-1.5"  # the `model` the client connected with
    # Billing: the conversation as the API bills it (realtime sessions), what each response
    # and each transcription billed, and where the last committed turn ended (audio bytes).
    ledger: ConversationLedger | None = None
    bills: list[ResponseBill] = field(default_factory=list)
    transcribed_s: list[float] = field(default_factory=list)
    committed_bytes: int = 0


@dataclass
class Behaviour:
    api_key: str = "sk-test"
    turns: list[Turn] = field(default_factory=list)
    agent_turns: list[Turn] = field(default_factory=list)  # what transcription sessions hear
    turn_every_bytes: int | None = None  # emit the next turn after this much audio
    repeat_turns: bool = False
    # Independent callers do not speak in step: with this on, session k's turns are shifted by
    # a fraction of the period (golden-ratio spread), so a load test's calls, which all start
    # within a second, do not all get an answer in the same second.
    stagger_turns: bool = False
    refuse_connects: int = 0  # answer 503 to the first N upgrades
    refuse_status: int = 503
    drop_after_appends: list[int] = field(default_factory=list)  # per session index, abort after N
    stall_after_appends: int | None = None
    stall_seconds: float = 0.0
    expire_after_s: float | None = None
    errors_on_connect: list[tuple[str, str]] = field(default_factory=list)  # (type, code)
    delay_session_updated_s: float = 0.0
    slow_sessions: int = 0  # the delay applies to the first N sessions only (0: to all)
    validate_own_events: bool = True
    # Off only in the load bench's standalone fake: the relay's events are validated by the
    # test suite, and validating 2,500 appends/s would load the generator's core.
    validate_client_events: bool = True
    response_delay_s: float = 0.0
    # A turn the customer is still speaking when the call ends: speech_started after the first
    # append, never speech_stopped; an input_audio_buffer.commit completes it (transcript), and
    # a response.create after that answers it.
    open_turn: Turn | None = None


class FakeRealtimeServer:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.sessions: list[FakeSession] = []
        self.connect_attempts = 0
        self.refused = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.keep_audio = True  # load runs count bytes instead of keeping them
        # The Responses API (wrap-ups) on the same base URL, as on api.openai.com.
        self.responses = FakeResponses(api_key=self.behaviour.api_key)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/v1/realtime", self._handle)
        self.responses.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------ views

    @property
    def violations(self) -> list[str]:
        return [v for s in self.sessions for v in s.violations] + self.responses.violations

    def audio(self) -> bytes:
        return b"".join(bytes(s.audio) for s in self.sessions)

    # ------------------------------------------------------------------ protocol

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    async def _send(self, session: FakeSession, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self._next_id("event"))
        if self.behaviour.validate_own_events:
            model = SERVER_EVENTS.validate_python(event)
            assert model.type == event["type"], f"fake produced an invalid {event['type']}"
        if not session.ws.closed:
            await session.ws.send_str(json.dumps(event))

    async def send_unchecked(self, session: FakeSession, event: dict[str, Any]) -> None:
        """Send an event as is, unvalidated: a server gone wrong (a field of the wrong type)."""
        event.setdefault("event_id", self._next_id("event"))
        if not session.ws.closed:
            await session.ws.send_str(json.dumps(event))

    def _session_object(self, session: FakeSession) -> dict[str, Any]:
        if session.session_config and session.session_config.get("type") == "transcription":
            return {"type": "transcription", "audio": session.session_config.get("audio", {})}
        body: dict[str, Any] = {
            "type": "realtime",
            "object": "realtime.session",
            "id": session.id,
            "model": "gpt-realtime-1.5",
            "expires_at": int(time.time()) + 3600,
            "output_modalities": ["audio"],
        }
        if session.session_config:
            for key in ("instructions", "output_modalities", "audio"):
                if key in session.session_config:
                    body[key] = session.session_config[key]
        return body

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.connect_attempts += 1
        behaviour = self.behaviour
        if request.headers.get("Authorization") != f"Bearer {behaviour.api_key}":
            return web.json_response(
                {"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "bad key"}},
                status=401,
            )
        if "OpenAI-Beta" in request.headers:
            return web.json_response({"error": {"message": "beta header not allowed"}}, status=400)
        if not request.query.get("model"):
            return web.json_response({"error": {"message": "model required"}}, status=400)
        if self.refused < behaviour.refuse_connects:
            self.refused += 1
            return web.json_response({"error": {"message": "unavailable"}}, status=behaviour.refuse_status)

        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        session = FakeSession(len(self.sessions), self._next_id("sess"), time.monotonic(), ws)
        session.model = request.query["model"]
        self.sessions.append(session)
        await self._send(session, {"type": "session.created", "session": self._session_object(session)})
        for error_type, code in behaviour.errors_on_connect:
            await self._send(session, {"type": "error", "error": {"type": error_type, "code": code, "message": code}})
        expiry: asyncio.Task[Any] | None = None
        if behaviour.expire_after_s is not None:
            expiry = self._spawn(self._expire(session, behaviour.expire_after_s))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    session.violations.append("non-text frame")
                    continue
                await self._on_client_event(session, msg.data, time.monotonic())
        finally:
            if expiry is not None:
                expiry.cancel()
        return ws

    async def _on_client_event(self, session: FakeSession, raw: str, arrived: float) -> None:
        if not self.behaviour.validate_client_events and session.configured and not self.keep_audio:
            b64 = _append_audio(raw)
            if b64 is not None:  # the load bench's hot path: no JSON parse, no full decode
                if not session.appends:
                    session.head = base64.b64decode(b64[:12])[:8]
                size = len(b64) * 3 // 4 - b64.count("=", -2)
                session.audio_bytes_seen += size
                session.appends += 1
                session.append_times.append((arrived, size))
                await self._after_append(session)
                return
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            session.violations.append("malformed JSON")
            return
        problem = validate_client_event(data)[1] if self.behaviour.validate_client_events else None
        kind = data.get("type") if isinstance(data, dict) else None
        session.client_events.append(str(kind))
        if problem is not None:
            session.violations.append(problem)
            await self._send(
                session,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "code": "invalid_value",
                        "message": problem,
                        "event_id": data.get("event_id"),
                    },
                },
            )
            return
        if kind == "session.update":
            session_body = data["session"]
            if session_body.get("type") not in ("realtime", "transcription"):
                session.violations.append("session.update without a session type")
            session.session_config = session_body
            session.ledger = _ledger(session.model, session_body)
            slow = self.behaviour.slow_sessions == 0 or session.index < self.behaviour.slow_sessions
            if self.behaviour.delay_session_updated_s and slow:
                await asyncio.sleep(self.behaviour.delay_session_updated_s)
            session.configured = True
            await self._send(session, {"type": "session.updated", "session": self._session_object(session)})
        elif kind == "input_audio_buffer.append":
            if not session.configured:
                session.violations.append("audio before session.update")
            chunk = base64.b64decode(data["audio"])
            if not session.appends:
                session.head = chunk[:8]
            if self.keep_audio:
                session.audio += chunk
            else:
                session.audio_bytes_seen += len(chunk)
            session.appends += 1
            session.append_times.append((arrived, len(chunk)))
            await self._after_append(session)
        elif kind == "input_audio_buffer.commit":
            open_turn = self.behaviour.open_turn
            if session.open_item is not None and open_turn is not None and not session.open_committed:
                session.open_committed = True
                await self._transcribe(session, session.open_item, open_turn)
        elif kind == "response.create":
            session.response_creates.append(data.get("response") or {})
            session.response_requested.set()
            if session.open_committed and self.behaviour.open_turn is not None and session.open_item is not None:
                session.open_item = None  # answered once
                self._spawn(self._answer(session, self.behaviour.open_turn))
        elif kind == "conversation.item.create":
            if data["item"].get("type") == "function_call_output":
                session.tool_outputs.append(data["item"])
                text = str(data["item"].get("output", ""))
            else:
                session.context_items.append(data["item"])
                text = " ".join(str(part.get("text", "")) for part in data["item"].get("content") or [])
            if session.ledger is not None:
                session.ledger.add_text(text_tokens(text))
            item = dict(data["item"])
            item.setdefault("id", self._next_id("item"))
            item.update({"object": "realtime.item", "status": "completed"})
            await self._send(session, {"type": "conversation.item.added", "previous_item_id": None, "item": item})

    async def _after_append(self, session: FakeSession) -> None:
        behaviour = self.behaviour
        if behaviour.open_turn is not None and session.open_item is None and not session.open_committed:
            is_transcription = (session.session_config or {}).get("type") == "transcription"
            if not is_transcription:
                session.open_item = self._next_id("item")
                await self._send(
                    session,
                    {"type": "input_audio_buffer.speech_started", "item_id": session.open_item, "audio_start_ms": 0},
                )
        drops = behaviour.drop_after_appends
        if session.index < len(drops) and drops[session.index] and session.appends >= drops[session.index]:
            session.closed_by_server = "dropped"
            transport = session.ws._req.transport if session.ws._req else None  # abrupt: no close frame
            if transport is not None:
                transport.abort()
            return
        if behaviour.stall_after_appends is not None and session.appends == behaviour.stall_after_appends:
            await asyncio.sleep(behaviour.stall_seconds)  # stop reading: backpressure on the client
        every = behaviour.turn_every_bytes
        heard = len(session.audio) + session.audio_bytes_seen
        if every and behaviour.stagger_turns:
            heard += int(every * ((session.index * 0.6180339887) % 1.0))
        if every and behaviour.turns and heard >= every * (session.turns_sent + 1):
            index = session.turns_sent
            if index >= len(behaviour.turns) and not behaviour.repeat_turns:
                return
            session.turns_sent += 1
            is_transcription = bool(session.session_config) and session.session_config.get("type") == "transcription"
            script = behaviour.agent_turns if is_transcription and behaviour.agent_turns else behaviour.turns
            turn = script[index % len(script)]
            self._spawn(self._play_turn(session, turn))

    async def _play_turn(self, session: FakeSession, turn: Turn) -> None:
        item_id = self._next_id("item")
        audio_ms = (len(session.audio) + session.audio_bytes_seen) // 48
        await self._send(
            session,
            {
                "type": "input_audio_buffer.speech_started",
                "item_id": item_id,
                "audio_start_ms": max(0, audio_ms - 1500),
            },
        )
        await self._send(
            session,
            {"type": "input_audio_buffer.speech_stopped", "item_id": item_id, "audio_end_ms": audio_ms},
        )
        await self._transcribe(session, item_id, turn)
        if session.session_config and session.session_config.get("type") == "transcription":
            return  # transcription sessions never respond
        await self._answer(session, turn)

    def _commit_turn(self, session: FakeSession) -> float:
        """The audio since the last committed turn becomes a turn: its seconds, in the
        conversation (realtime sessions) as user audio."""
        heard = len(session.audio) + session.audio_bytes_seen
        fmt = ((session.session_config or {}).get("audio") or {}).get("input", {}).get("format") or {}
        bytes_per_s = 8000 if fmt.get("type") == "audio/pcmu" else 48000
        seconds = max(0.0, (heard - session.committed_bytes) / bytes_per_s)
        session.committed_bytes = heard
        session.transcribed_s.append(seconds)
        if session.ledger is not None:
            session.ledger.add_user_audio(seconds)
        return seconds

    async def _transcribe(self, session: FakeSession, item_id: str, turn: Turn) -> None:
        seconds = self._commit_turn(session)
        await self._send(
            session, {"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None}
        )
        words = turn.transcript.split(" ")
        half = " ".join(words[: len(words) // 2])
        if half:
            await self._send(
                session,
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": half,
                },
            )
        await self._send(
            session,
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": turn.transcript,
                "usage": {"type": "duration", "seconds": round(seconds, 3)},
            },
        )

    async def _answer(self, session: FakeSession, turn: Turn) -> None:
        for name, arguments in turn.tool_calls:
            session.response_requested.clear()
            await self._call_tool(session, name, arguments)
            try:
                await asyncio.wait_for(session.response_requested.wait(), timeout=10)
            except TimeoutError:
                session.violations.append("no response.create after a function call")
                return
        if self.behaviour.response_delay_s:
            await asyncio.sleep(self.behaviour.response_delay_s)
        response_id = self._next_id("resp")
        out_item = self._next_id("item")
        session.responses.append(response_id)
        await self._response_created(session, response_id)
        for i in range(0, len(turn.answer), 40):
            await self._send(
                session,
                {
                    "type": "response.output_text.delta",
                    "response_id": response_id,
                    "item_id": out_item,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": turn.answer[i : i + 40],
                },
            )
        await self._send(
            session,
            {
                "type": "response.output_text.done",
                "response_id": response_id,
                "item_id": out_item,
                "output_index": 0,
                "content_index": 0,
                "text": turn.answer,
            },
        )
        await self._response_done(session, response_id, [], text_tokens(turn.answer))

    async def _response_created(self, session: FakeSession, response_id: str) -> None:
        response = {"id": response_id, "object": "realtime.response", "status": "in_progress", "output": []}
        await self._send(session, {"type": "response.created", "response": response})

    async def _response_done(
        self, session: FakeSession, response_id: str, output: list[dict[str, Any]], tokens_out: int
    ) -> None:
        response: dict[str, Any] = {
            "id": response_id,
            "object": "realtime.response",
            "status": "completed",
            "output": output,
        }
        if session.ledger is not None:
            bill = session.ledger.respond(tokens_out)
            session.bills.append(bill)
            response["usage"] = bill.usage_payload()
        await self._send(session, {"type": "response.done", "response": response})

    async def _call_tool(self, session: FakeSession, name: str, arguments: str) -> None:
        """One response that is a function call, streamed as the GA API does."""
        response_id, item_id, call_id = self._next_id("resp"), self._next_id("item"), self._next_id("call")
        session.responses.append(response_id)
        item = {"id": item_id, "object": "realtime.item", "type": "function_call", "call_id": call_id, "name": name}
        await self._response_created(session, response_id)
        await self._send(
            session,
            {
                "type": "response.output_item.added",
                "response_id": response_id,
                "output_index": 0,
                "item": {**item, "arguments": "", "status": "in_progress"},
            },
        )
        for i in range(0, len(arguments), 16):
            await self._send(
                session,
                {
                    "type": "response.function_call_arguments.delta",
                    "response_id": response_id,
                    "item_id": item_id,
                    "output_index": 0,
                    "call_id": call_id,
                    "delta": arguments[i : i + 16],
                },
            )
        done_item = {**item, "arguments": arguments, "status": "completed"}
        await self._send(
            session,
            {
                "type": "response.function_call_arguments.done",
                "response_id": response_id,
                "item_id": item_id,
                "output_index": 0,
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
            },
        )
        await self._send(
            session,
            {"type": "response.output_item.done", "response_id": response_id, "output_index": 0, "item": done_item},
        )
        await self._response_done(session, response_id, [done_item], text_tokens(name + arguments))

    async def _expire(self, session: FakeSession, after: float) -> None:
        await asyncio.sleep(after)
        session.closed_by_server = "expired"
        message = "Your session hit the maximum duration of 60 minutes."
        await self._send(
            session,
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "code": "session_expired", "message": message},
            },
        )
        await session.ws.close(code=1001, message=message.encode())

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def text_tokens(text: str) -> int:
    """Text as tokens, roughly (about 4 characters a token in English)."""
    return max(1, round(len(text) / 4))


def _ledger(model: str, session: dict[str, Any]) -> ConversationLedger | None:
    """A realtime session's conversation, billed per its `truncation` (transcription sessions
    have no conversation: only their transcriptions bill)."""
    if session.get("type") != "realtime":
        return None
    instructions = text_tokens(str(session.get("instructions") or ""))
    instructions += sum(text_tokens(json.dumps(tool)) for tool in session.get("tools") or [])
    limit = MODEL_INPUT_LIMITS.get(model, MODEL_INPUT_LIMITS["gpt-realtime-1.5"]) - instructions
    return ConversationLedger(instructions, Truncation.from_session_field(session.get("truncation"), model_limit=limit))


# ---------------------------------------------------------------------------- own process


_APPEND_HEADS = ('{"type":"input_audio_buffer.append"', '{"type": "input_audio_buffer.append"')


def _append_audio(raw: str) -> str | None:
    """The base64 audio of an `input_audio_buffer.append` serialised type-first, else None."""
    if not raw.startswith(_APPEND_HEADS):
        return None
    key = raw.find('"audio"')
    if key < 0:
        return None
    start = raw.find('"', key + 7) + 1
    end = raw.find('"', start)
    return raw[start:end] if start > 0 and end > start else None


def _stats(server: FakeRealtimeServer) -> dict[str, Any]:
    sessions = []
    for s in server.sessions:
        cumulative, timeline = 0, []
        for at, size in s.append_times:
            cumulative += size
            timeline.append((at, cumulative))
        sessions.append(
            {
                "instructions": (s.session_config or {}).get("instructions", "")[:200],
                "head": s.head.hex(),
                "appends": timeline,
                "violations": s.violations[:5],
                "responses": len(s.responses),
            }
        )
    return {"sessions": sessions, "connect_attempts": server.connect_attempts}


async def _main(port: int, turn_every_s: float, validate: bool) -> None:
    behaviour = Behaviour(
        api_key="sk-load-test",
        turns=[
            Turn(
                "I would like to know where my order is",
                '{"question": "Where is my order?", "answer": "Share the tracking link from the order screen."}',
            )
        ],
        turn_every_bytes=int(turn_every_s * 48000),
        repeat_turns=True,
        stagger_turns=True,
        validate_own_events=validate,
        validate_client_events=validate,
    )
    server = FakeRealtimeServer(behaviour)
    server.keep_audio = False
    await server.start(port=port)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(_stats(server))

    async def reset(_: web.Request) -> web.Response:
        server.sessions.clear()
        return web.json_response({"ok": True})

    from tests.fakes.tooling import serve_forever_with_stats

    await serve_forever_with_stats("fake realtime", port, [web.get("/stats", stats), web.post("/reset", reset)])


if __name__ == "__main__":
    import argparse

    from tests.fakes.tooling import run_standalone

    parser = argparse.ArgumentParser(description="fake OpenAI Realtime server (load tests)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--turn-every-s", type=float, default=6.0, help="answer a turn every N s of audio")
    parser.add_argument("--no-validate", action="store_true", help="skip validating events (saves CPU)")
    args = parser.parse_args()
    run_standalone(_main(args.port, args.turn_every_s, not args.no_validate))
