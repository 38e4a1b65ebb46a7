"""Model sessions: the `RealtimeSession` seam, our typed model events, and the OpenAI adapter.

The bridge sees only `ModelEvent`s defined here. The adapter speaks the GA Realtime API
through the official SDK: `session.update` through the SDK's typed `send()`, audio through
`send_raw()` with a pre-serialised event (the typed path costs ~100+ µs per append), and
server events read as raw bytes and translated by the pure `translate_server_event()`.
SDK and websockets exceptions are mapped to `SessionClosed` / `RealtimeConnectError` here.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import pybase64

from sync_publisher.network import describe_failure

from .errors import UpstreamError

log = logging.getLogger("relay.realtime")


# ---------------------------------------------------------------------------- config

# Errors naming this event id are the server rejecting our configuration: fatal.
SESSION_UPDATE_EVENT_ID = "relay_session_update"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    instructions: str
    audio_format: str  # "pcm24k" | "pcmu"
    transcription_model: str
    transcription_language: str | None = None
    vad_threshold: float = 0.5
    vad_prefix_padding_ms: int = 300
    vad_silence_ms: int = 500
    # A transcription-only session (the agent's track): no responses, no instructions.
    transcription_only: bool = False

    def session_update(self) -> dict[str, Any]:
        """The GA `session.update` event (reference D3)."""
        audio_format: dict[str, Any] = (
            {"type": "audio/pcmu"} if self.audio_format == "pcmu" else {"type": "audio/pcm", "rate": 24000}
        )
        transcription: dict[str, Any] = {"model": self.transcription_model}
        if self.transcription_language:
            transcription["language"] = self.transcription_language
        vad: dict[str, Any] = {
            "type": "server_vad",
            "threshold": self.vad_threshold,
            "prefix_padding_ms": self.vad_prefix_padding_ms,
            "silence_duration_ms": self.vad_silence_ms,
        }
        if self.transcription_only:
            return {
                "type": "session.update",
                "event_id": SESSION_UPDATE_EVENT_ID,
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"format": audio_format, "transcription": transcription, "turn_detection": vad}},
                },
            }
        return {
            "type": "session.update",
            "event_id": SESSION_UPDATE_EVENT_ID,
            "session": {
                "type": "realtime",
                "instructions": self.instructions,
                "output_modalities": ["text"],
                "audio": {
                    "input": {
                        "format": audio_format,
                        "transcription": transcription,
                        # A new customer turn must not cancel the suggestion for the last one.
                        "turn_detection": {**vad, "create_response": True, "interrupt_response": False},
                    }
                },
            },
        }


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class SessionReady:
    session_id: str | None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    item_id: str


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class TranscriptCompleted:
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class TranscriptFailed:
    item_id: str
    code: str | None


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    response_id: str


@dataclass(frozen=True, slots=True)
class ResponseTextDelta:
    response_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ResponseTextDone:
    response_id: str
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: str
    reason: str | None


class ErrorClass(enum.Enum):
    IGNORABLE = "ignorable"  # the session carries on
    RETRYABLE = "retryable"  # reconnect and carry on
    FATAL = "fatal"  # assist cannot work for this call (bad key, bad model, bad config)


@dataclass(frozen=True, slots=True)
class ModelError:
    code: str | None
    error_type: str | None
    message: str
    classification: ErrorClass


@dataclass(frozen=True, slots=True)
class SessionClosed:
    close_code: int | None
    reason: str
    expired: bool = False


@dataclass(frozen=True, slots=True)
class Other:
    event_type: str


ModelEvent = (
    SessionReady
    | SpeechStarted
    | SpeechStopped
    | TranscriptDelta
    | TranscriptCompleted
    | TranscriptFailed
    | ResponseStarted
    | ResponseTextDelta
    | ResponseTextDone
    | ResponseDone
    | ModelError
    | SessionClosed
    | Other
)

# Error codes by handling (reference D4/D6). Unknown codes: the error `type` decides.
_IGNORABLE_CODES = frozenset(
    {
        "conversation_already_has_active_response",
        "response_cancel_not_active",
        "input_audio_buffer_commit_empty",
        "item_truncate_invalid_item_id",
        "decimals_not_supported",
    }
)
_RETRYABLE_CODES = frozenset({"session_expired", "server_error", "rate_limit_exceeded", "internal_error"})
_FATAL_CODES = frozenset(
    {
        "invalid_api_key",
        "model_not_found",
        "insufficient_quota",
        "invalid_model",
        "beta_api_shape_disabled",
        "unsupported_model",
        "invalid_session_config",
    }
)


def classify_error(code: str | None, error_type: str | None) -> ErrorClass:
    if code in _IGNORABLE_CODES:
        return ErrorClass.IGNORABLE
    if code in _RETRYABLE_CODES:
        return ErrorClass.RETRYABLE
    if code in _FATAL_CODES or error_type in ("authentication_error", "permission_error"):
        return ErrorClass.FATAL
    if error_type in ("server_error", "rate_limit_error"):
        return ErrorClass.RETRYABLE
    # invalid_request_error about one event: log and carry on.
    return ErrorClass.IGNORABLE


def translate_server_event(event: dict[str, Any]) -> ModelEvent:
    """Pure: one GA server event (as a dict) → one `ModelEvent`."""
    kind = event.get("type")
    if kind == "input_audio_buffer.speech_started":
        return SpeechStarted(str(event.get("item_id", "")))
    if kind == "input_audio_buffer.speech_stopped":
        return SpeechStopped(str(event.get("item_id", "")))
    if kind == "conversation.item.input_audio_transcription.delta":
        return TranscriptDelta(str(event.get("item_id", "")), str(event.get("delta") or ""))
    if kind == "conversation.item.input_audio_transcription.completed":
        return TranscriptCompleted(str(event.get("item_id", "")), str(event.get("transcript") or ""))
    if kind == "conversation.item.input_audio_transcription.failed":
        error = event.get("error") or {}
        return TranscriptFailed(str(event.get("item_id", "")), error.get("code") if isinstance(error, dict) else None)
    if kind == "response.created":
        response = event.get("response") or {}
        return ResponseStarted(str(response.get("id", "")))
    if kind == "response.output_text.delta":
        return ResponseTextDelta(str(event.get("response_id", "")), str(event.get("delta") or ""))
    if kind == "response.output_text.done":
        return ResponseTextDone(
            str(event.get("response_id", "")), str(event.get("item_id", "")), str(event.get("text") or "")
        )
    if kind == "response.done":
        response = event.get("response") or {}
        details = response.get("status_details") or {}
        return ResponseDone(
            str(response.get("id", "")),
            str(response.get("status", "")),
            details.get("reason") if isinstance(details, dict) else None,
        )
    if kind in ("session.updated",):
        session = event.get("session") or {}
        return SessionReady(session.get("id") if isinstance(session, dict) else None)
    if kind == "error":
        error = event.get("error") or {}
        code = error.get("code")
        error_type = error.get("type")
        return ModelError(code, error_type, str(error.get("message", ""))[:300], classify_error(code, error_type))
    return Other(str(kind))


# ---------------------------------------------------------------------------- the seam


class RealtimeConnectError(UpstreamError):
    """Could not open a session. `fatal` means retrying cannot help (auth, model)."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class SessionClosedError(UpstreamError):
    """Sending on a session that is gone."""


class RealtimeSession(Protocol):
    """One model session. `events()` ends after yielding a `SessionClosed`."""

    async def send_audio(self, audio: bytes) -> None: ...

    async def add_context(self, text: str) -> None: ...

    def events(self) -> AsyncIterator[ModelEvent]: ...

    async def close(self) -> None: ...


class RealtimeConnector(Protocol):
    """Opens sessions: the OpenAI adapter in production, the local engine offline."""

    async def open(self, config: SessionConfig) -> RealtimeSession: ...


# ---------------------------------------------------------------------------- OpenAI

_APPEND_PREFIX = b'{"type":"input_audio_buffer.append","audio":"'
_APPEND_SUFFIX = b'"}'


def append_event(audio: bytes) -> bytes:
    """Pre-serialised `input_audio_buffer.append` (base64 has nothing to escape)."""
    return _APPEND_PREFIX + pybase64.b64encode(audio) + _APPEND_SUFFIX


class OpenAIRealtimeSession:
    def __init__(self, connection: Any) -> None:
        self._conn = connection
        self._closed = False

    async def send_audio(self, audio: bytes) -> None:
        if self._closed:
            raise SessionClosedError("session closed")
        try:
            await self._conn.send_raw(append_event(audio).decode())
        except Exception as exc:  # websockets.ConnectionClosed and friends
            self._closed = True
            raise SessionClosedError(type(exc).__name__) from None

    async def add_context(self, text: str) -> None:
        event = {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "system", "content": [{"type": "input_text", "text": text}]},
        }
        try:
            await self._conn.send(event)
        except Exception as exc:
            self._closed = True
            raise SessionClosedError(type(exc).__name__) from None

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

    def __init__(self, *, api_key: str, base_url: str, model: str, connect_timeout_s: float) -> None:
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
        session = OpenAIRealtimeSession(connection)
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
