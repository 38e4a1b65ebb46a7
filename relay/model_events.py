"""Pure: the model's server events as our typed `ModelEvent`s, and error classification.

No I/O and no SDK import: the OpenAI adapter feeds `translate_server_event()` each decoded
server event; the offline engine builds `ModelEvent`s directly. Table-tested against every
server event type the SDK defines (tests/test_model_events.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
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
    if kind == "response.function_call_arguments.done":
        return ToolCall(
            str(event.get("response_id", "")),
            str(event.get("call_id", "")),
            str(event.get("name", "")),
            str(event.get("arguments") or ""),
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
