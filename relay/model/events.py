"""Pure: the model's server events as our typed `ModelEvent`s, and error classification.

No I/O and no SDK import: the OpenAI adapter feeds `translate_server_event()` each decoded
server event; the offline engine builds `ModelEvent`s directly. Table-tested against every
server event type the SDK defines (tests/test_model_events.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# Errors naming this event id are the server rejecting our configuration: fatal.
SESSION_UPDATE_EVENT_ID = "relay_session_update"


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
    # The event's `usage` as sent (read, and refused when hostile, by `relay.usage`); not
    # part of what the event is.
    usage: Any = field(default=None, compare=False)


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
    usage: Any = field(default=None, compare=False)  # `response.usage` as sent


@dataclass(frozen=True, slots=True)
class ResponseUsage:
    """What one response billed (`response.done`'s `response.usage`, unread): the model link
    hands it on after the `ResponseDone` that carried it. The session's Realtime model."""

    response_id: str
    usage: Any


@dataclass(frozen=True, slots=True)
class TranscriptionUsage:
    """What one transcription billed (`…input_audio_transcription.completed`'s `usage`,
    unread), by the session's transcription model."""

    item_id: str
    model: str
    usage: Any


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
class ToolCall:
    """The model called a function tool (its arguments are complete)."""

    response_id: str
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (may be malformed)


@dataclass(frozen=True, slots=True)
class SessionClosed:
    close_code: int | None
    reason: str
    expired: bool = False


@dataclass(frozen=True, slots=True)
class Other:
    event_type: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A server event the relay acts on, with a field of the wrong type: counted and logged."""

    event_type: str
    field: str


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
    | ToolCall
    | ModelError
    | SessionClosed
    | Other
    | Malformed
    | ResponseUsage
    | TranscriptionUsage
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


class _Malformed(Exception):
    """A field of the event has the wrong JSON type (caught in `translate_server_event`)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _object(event: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """An object field: absent or null is empty; anything else but an object is malformed."""
    value = event.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(where + key)
    return value


def _text(event: dict[str, Any], key: str, where: str = "") -> str:
    """A string field: absent or null is empty; anything else but a string is malformed."""
    value = event.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Malformed(where + key)
    return value


def _optional_text(event: dict[str, Any], key: str, where: str = "") -> str | None:
    value = event.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Malformed(where + key)
    return value


def translate_server_event(event: dict[str, Any]) -> ModelEvent:
    """Pure and total: one GA server event (as a dict) → one `ModelEvent`. A field of the
    wrong JSON type (an object that is a string, a text that is a number) gives `Malformed`,
    never an exception: the caller counts it and the session carries on."""
    kind = event.get("type")
    try:
        return _translate(kind, event)
    except _Malformed as exc:
        return Malformed(str(kind)[:100], exc.field)


def _translate(kind: object, event: dict[str, Any]) -> ModelEvent:
    if kind == "input_audio_buffer.speech_started":
        return SpeechStarted(_text(event, "item_id"))
    if kind == "input_audio_buffer.speech_stopped":
        return SpeechStopped(_text(event, "item_id"))
    if kind == "conversation.item.input_audio_transcription.delta":
        return TranscriptDelta(_text(event, "item_id"), _text(event, "delta"))
    if kind == "conversation.item.input_audio_transcription.completed":
        return TranscriptCompleted(_text(event, "item_id"), _text(event, "transcript"), event.get("usage"))
    if kind == "conversation.item.input_audio_transcription.failed":
        error = _object(event, "error")
        return TranscriptFailed(_text(event, "item_id"), _optional_text(error, "code", "error."))
    if kind == "response.created":
        response = _object(event, "response")
        return ResponseStarted(_text(response, "id", "response."))
    if kind == "response.output_text.delta":
        return ResponseTextDelta(_text(event, "response_id"), _text(event, "delta"))
    if kind == "response.output_text.done":
        return ResponseTextDone(_text(event, "response_id"), _text(event, "item_id"), _text(event, "text"))
    if kind == "response.done":
        response = _object(event, "response")
        details = _object(response, "status_details", "response.")
        return ResponseDone(
            _text(response, "id", "response."),
            _text(response, "status", "response."),
            _optional_text(details, "reason", "response.status_details."),
            response.get("usage"),
        )
    if kind == "response.function_call_arguments.done":
        return ToolCall(
            _text(event, "response_id"),
            _text(event, "call_id"),
            _text(event, "name"),
            _text(event, "arguments"),
        )
    if kind == "session.updated":
        session = _object(event, "session")
        return SessionReady(_optional_text(session, "id", "session."))
    if kind == "error":
        error = _object(event, "error")
        code = _optional_text(error, "code", "error.")
        error_type = _optional_text(error, "type", "error.")
        message = error.get("message")
        # The message is only logged: any value will do, never a reason to drop the error.
        text = message if isinstance(message, str) else "" if message is None else str(message)
        return ModelError(code, error_type, text[:300], classify_error(code, error_type))
    return Other(str(kind)[:100])
