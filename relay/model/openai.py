"""The OpenAI Realtime adapter: GA sessions through the official SDK.

`session.update` goes through the SDK's connection with our pre-built event, and server events
are read as raw bytes and translated by the pure `translate_server_event()`. Audio appends are
pre-serialised (the typed path costs ~100+ µs per append) and written as WebSocket frames
straight onto the SDK's connection (`FrameWriter`), below its send wrapper; when the socket is
not open or not draining, they go through `send_raw()` like every other event.
SDK and websockets exceptions are translated here, at the boundary, into `SessionClosed` /
`RealtimeConnectError` (chained, so the SDK's cause stays in the traceback).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pybase64

from relay.model.events import (
    SESSION_UPDATE_EVENT_ID,
    ErrorClass,
    ModelError,
    ModelEvent,
    SessionClosed,
    classify_error,
    translate_server_event,
)
from relay.model.session import RealtimeConnectError, RealtimeSession, SessionClosedError, SessionConfig
from sync_publisher.network import describe_failure

log = logging.getLogger("relay.model.session")


_APPEND_PREFIX = b'{"type":"input_audio_buffer.append","audio":"'
_APPEND_SUFFIX = b'"}'


def append_event(audio: bytes) -> bytes:
    """Pre-serialised `input_audio_buffer.append` (base64 has nothing to escape)."""
    return _APPEND_PREFIX + pybase64.b64encode(audio) + _APPEND_SUFFIX


_WRITE_BUFFER_MAX = 256 * 1024  # past this, appends take the SDK path, which waits for the socket


class FrameWriter:
    """Client text frames written straight to the SDK connection's socket.

    What websockets' `send()` does per message, minus what costs per append at hundreds of
    calls: its send context, frame objects, and a `getrandom` syscall for each masking key.
    The key comes from `random.getrandbits` (as aiohttp's client does: masking defends
    proxies from cache poisoning, it is not a secret), the mask is websockets' own C
    `apply_mask`, and the frame is one `transport.write`. Frames are whole messages, so they
    never interleave with the SDK's own sends on the same connection."""

    __slots__ = ("_apply_mask", "_open", "_protocol", "_transport")

    def __init__(self, websocket: Any) -> None:
        from websockets.protocol import State

        try:
            from websockets.speedups import apply_mask
        except ImportError:  # pragma: no cover - websockets without its C extension
            from websockets.utils import apply_mask
        self._protocol = websocket.protocol
        self._transport = websocket.transport
        self._open = State.OPEN
        self._apply_mask = apply_mask

    @classmethod
    def for_connection(cls, connection: Any) -> FrameWriter | None:
        """A writer for the SDK connection's websockets connection, if it has the known shape."""
        websocket = getattr(connection, "_connection", None)
        if websocket is None or not hasattr(websocket, "protocol") or not hasattr(websocket, "transport"):
            return None
        return cls(websocket)

    def try_write(self, payload: bytes) -> bool:
        """Write one text frame now; False when the socket is not open or not draining."""
        transport = self._transport
        if self._protocol.state is not self._open or transport.get_write_buffer_size() > _WRITE_BUFFER_MAX:
            return False
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0xFE, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0xFF, n)
        mask = random.getrandbits(32).to_bytes(4, "big")
        transport.write(header + mask + self._apply_mask(payload, mask))
        return True


class OpenAIRealtimeSession:
    def __init__(self, connection: Any, *, direct_frames: bool = True) -> None:
        self._conn = connection
        self._closed = False
        self._writer = FrameWriter.for_connection(connection) if direct_frames else None

    async def send_audio(self, audio: bytes) -> None:
        if self._closed:
            raise SessionClosedError("session closed")
        event = append_event(audio)
        writer = self._writer
        try:
            if writer is not None and writer.try_write(event):
                return
            await self._conn.send_raw(event.decode())
        except Exception as exc:  # websockets.ConnectionClosed and friends
            self._closed = True
            raise SessionClosedError(type(exc).__name__) from exc

    async def add_context(self, text: str) -> None:
        event = {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "system", "content": [{"type": "input_text", "text": text}]},
        }
        try:
            await self._conn.send(event)
        except Exception as exc:
            self._closed = True
            raise SessionClosedError(type(exc).__name__) from exc

    async def send_tool_result(self, call_id: str, output: str, *, more_tools: bool) -> None:
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        try:
            await self._conn.send({"type": "conversation.item.create", "item": item})
            await self._conn.send(
                {"type": "response.create", "response": {"tool_choice": "auto" if more_tools else "none"}}
            )
        except Exception as exc:
            self._closed = True
            raise SessionClosedError(type(exc).__name__) from exc

    async def end_turn(self, *, respond: bool) -> None:
        # With server VAD the buffer is committed when speech stops; a call that ends first
        # commits it here. A manual commit starts no response by itself: ask for one.
        try:
            await self._conn.send_raw('{"type":"input_audio_buffer.commit"}')
            if respond:
                await self._conn.send_raw('{"type":"response.create"}')
        except Exception as exc:
            self._closed = True
            raise SessionClosedError(type(exc).__name__) from exc

    async def events(self) -> AsyncIterator[ModelEvent]:
        from websockets.exceptions import ConnectionClosed

        expired = False
        while True:
            try:
                raw = await self._conn.recv_bytes()
            except ConnectionClosed as exc:
                self._closed = True
                close = exc.rcvd
                yield SessionClosed(close.code if close else None, (close.reason if close else "")[:200], expired)
                return
            except Exception as exc:
                self._closed = True
                yield SessionClosed(None, type(exc).__name__)
                return
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            event = translate_server_event(data)
            if isinstance(event, ModelError) and event.code == "session_expired":
                expired = True
            yield event

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._conn.close()
        except Exception:
            log.debug("error closing realtime connection", exc_info=True)


class OpenAIConnector:
    """Opens GA Realtime sessions with the official SDK and waits for `session.updated`."""

    def __init__(
        self, *, api_key: str, base_url: str, model: str, connect_timeout_s: float, direct_frames: bool = True
    ) -> None:
        self._direct_frames = direct_frames
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
        self._host = urlsplit(base_url).netloc  # named in connect failures
        self._model = model
        self._timeout = connect_timeout_s

    def warm_up(self) -> None:
        """Do the SDK's lazy imports now, not inside the first call (~150 ms measured)."""
        import openai.lib._websocket  # noqa: F401 - the SDK imports it on first connect
        import websockets.asyncio.client  # noqa: F401

        _ = self._client.realtime

    async def open(self, config: SessionConfig) -> RealtimeSession:
        try:
            async with asyncio.timeout(self._timeout):
                connection = await self._client.realtime.connect(model=self._model).enter()
        except TimeoutError as exc:
            raise RealtimeConnectError(f"{self._host}: connect timed out after {self._timeout:g} s") from exc
        except Exception as exc:
            raise RealtimeConnectError(
                _describe_connect_failure(exc, self._host), fatal=_is_fatal_connect(exc)
            ) from exc
        session = OpenAIRealtimeSession(connection, direct_frames=self._direct_frames)
        try:
            async with asyncio.timeout(self._timeout):
                await connection.send_raw(orjson.dumps(config.session_update()).decode())
                await _await_session_updated(connection)
        except TimeoutError as exc:
            await session.close()
            raise RealtimeConnectError(f"{self._host}: session.update not acknowledged in time") from exc
        except RealtimeConnectError:
            await session.close()
            raise
        except Exception as exc:
            await session.close()
            raise RealtimeConnectError(f"{self._host}: session setup failed: {describe_failure(exc)}") from exc
        return session

    async def aclose(self) -> None:
        await self._client.close()


async def _await_session_updated(connection: Any) -> None:
    """Read until `session.updated`. An error about our `session.update` is fatal (the
    configuration is wrong); other errors are classified like any other."""
    while True:
        data = orjson.loads(await connection.recv_bytes())
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "session.updated":
            return
        if kind == "error":
            error = data.get("error") or {}
            code = error.get("code") or error.get("type")
            if error.get("event_id") == SESSION_UPDATE_EVENT_ID:
                raise RealtimeConnectError(f"session configuration rejected: {code}", fatal=True)
            classification = classify_error(error.get("code"), error.get("type"))
            if classification is not ErrorClass.IGNORABLE:
                raise RealtimeConnectError(f"session refused: {code}", fatal=classification is ErrorClass.FATAL)


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_fatal_connect(exc: BaseException) -> bool:
    return _status_of(exc) in (401, 403, 404)


def _describe_connect_failure(exc: BaseException, host: str) -> str:
    status = _status_of(exc)
    if status:
        return f"{host}: connect refused with HTTP {status}"
    return describe_failure(exc, host)
