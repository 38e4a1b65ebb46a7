"""The pure translation of server events and the error classification, as tables.

Every server event type the installed SDK defines is translated: the ones the relay acts on
to their typed event, every other one to `Other` (never an exception), so a new SDK event
type shows up here as a failing row rather than as a surprise in a call.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from typing import Any

import pytest
from openai.types.realtime import RealtimeServerEvent

from relay.model.events import (
    ErrorClass,
    Malformed,
    ModelError,
    ModelEvent,
    Other,
    ResponseDone,
    ResponseStarted,
    ResponseTextDelta,
    ResponseTextDone,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    TranscriptCompleted,
    TranscriptDelta,
    TranscriptFailed,
    classify_error,
    translate_server_event,
)


def _sdk_server_event_types() -> list[str]:
    union = typing.get_args(RealtimeServerEvent)[0]  # Annotated[Union[...], discriminator]
    return sorted(typing.get_args(member.model_fields["type"].annotation)[0] for member in typing.get_args(union))


# type → (a server event body, what it becomes)
HANDLED: dict[str, tuple[dict[str, Any], ModelEvent]] = {
    "input_audio_buffer.speech_started": ({"item_id": "it1"}, SpeechStarted("it1")),
    "input_audio_buffer.speech_stopped": ({"item_id": "it1"}, SpeechStopped("it1")),
    "conversation.item.input_audio_transcription.delta": (
        {"item_id": "it1", "delta": "wh"},
        TranscriptDelta("it1", "wh"),
    ),
    "conversation.item.input_audio_transcription.completed": (
        {"item_id": "it1", "transcript": "where is my order"},
        TranscriptCompleted("it1", "where is my order"),
    ),
    "conversation.item.input_audio_transcription.failed": (
        {"item_id": "it1", "error": {"code": "audio_unintelligible"}},
        TranscriptFailed("it1", "audio_unintelligible"),
    ),
    "response.created": ({"response": {"id": "resp1"}}, ResponseStarted("resp1")),
    "response.output_text.delta": ({"response_id": "resp1", "delta": "{"}, ResponseTextDelta("resp1", "{")),
    "response.output_text.done": (
        {"response_id": "resp1", "item_id": "it2", "text": "{}"},
        ResponseTextDone("resp1", "it2", "{}"),
    ),
    "response.done": (
        {"response": {"id": "resp1", "status": "cancelled", "status_details": {"reason": "turn_detected"}}},
        ResponseDone("resp1", "cancelled", "turn_detected"),
    ),
    "session.updated": ({"session": {"id": "sess1"}}, SessionReady("sess1")),
    "response.function_call_arguments.done": (
        {
            "response_id": "resp1",
            "item_id": "it3",
            "output_index": 0,
            "call_id": "call1",
            "name": "search_knowledge",
            "arguments": '{"query": "refund time"}',
        },
        ToolCall("resp1", "call1", "search_knowledge", '{"query": "refund time"}'),
    ),
    "error": (
        {"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "bad key"}},
        ModelError("invalid_api_key", "invalid_request_error", "bad key", ErrorClass.FATAL),
    ),
}


@pytest.mark.parametrize("event_type", _sdk_server_event_types())
def test_every_sdk_server_event_type_is_translated(event_type: str) -> None:
    body, expected = HANDLED.get(event_type, ({}, Other(event_type)))
    assert translate_server_event({"type": event_type, "event_id": "ev1", **body}) == expected


def test_the_table_names_only_real_event_types() -> None:
    assert set(HANDLED) <= set(_sdk_server_event_types())


@pytest.mark.parametrize(
    "body",
    [
        {"type": "response.created"},  # no response object
        {"type": "response.done", "response": {"status_details": "odd"}},
        {"type": "error"},
        {"type": "error", "error": {"message": 7}},
        {"type": "conversation.item.input_audio_transcription.failed", "error": "x"},
        {"type": 42},
        {},
    ],
)
def test_malformed_events_never_raise(body: dict[str, Any]) -> None:
    translate_server_event(body)


# Every field the translator reads, by event type: (path, "object" or "string").
READ_FIELDS: dict[str, list[tuple[str, str]]] = {
    "input_audio_buffer.speech_started": [("item_id", "string")],
    "input_audio_buffer.speech_stopped": [("item_id", "string")],
    "conversation.item.input_audio_transcription.delta": [("item_id", "string"), ("delta", "string")],
    "conversation.item.input_audio_transcription.completed": [("item_id", "string"), ("transcript", "string")],
    "conversation.item.input_audio_transcription.failed": [
        ("item_id", "string"),
        ("error", "object"),
        ("error.code", "string"),
    ],
    "response.created": [("response", "object"), ("response.id", "string")],
    "response.output_text.delta": [("response_id", "string"), ("delta", "string")],
    "response.output_text.done": [("response_id", "string"), ("item_id", "string"), ("text", "string")],
    "response.done": [
        ("response", "object"),
        ("response.id", "string"),
        ("response.status", "string"),
        ("response.status_details", "object"),
        ("response.status_details.reason", "string"),
    ],
    "response.function_call_arguments.done": [
        ("response_id", "string"),
        ("call_id", "string"),
        ("name", "string"),
        ("arguments", "string"),
    ],
    "session.updated": [("session", "object"), ("session.id", "string")],
    "error": [("error", "object"), ("error.code", "string"), ("error.type", "string")],
}
WRONG: dict[str, list[Any]] = {
    "object": ["boom", 7, 1.5, True, [], [1, 2], ["id"]],
    "string": [7, 1.5, True, {"id": "x"}, [], ["x"]],
}


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `body` with the field at `path` (dotted) set to `value`."""
    out: dict[str, Any] = json.loads(json.dumps(body))
    node = out
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def test_the_read_fields_table_covers_every_handled_type() -> None:
    assert set(READ_FIELDS) == set(HANDLED)


@pytest.mark.parametrize(
    ("event_type", "path", "value"),
    [
        (event_type, path, value)
        for event_type, read in READ_FIELDS.items()
        for path, kind in read
        for value in WRONG[kind]
    ],
)
def test_a_field_of_the_wrong_type_is_malformed_never_an_exception(event_type: str, path: str, value: Any) -> None:
    body = _with({"type": event_type, **HANDLED[event_type][0]}, path, value)
    assert translate_server_event(body) == Malformed(event_type, path)


@pytest.mark.parametrize("event_type", _sdk_server_event_types())
@pytest.mark.parametrize("key", ["response", "error", "item", "usage", "session", "part", "delta", "item_id"])
@pytest.mark.parametrize("value", ["boom", 7, [1], None, True])
def test_no_server_event_raises_whatever_its_fields_hold(event_type: str, key: str, value: Any) -> None:
    body, _ = HANDLED.get(event_type, ({}, Other(event_type)))
    event = translate_server_event({"type": event_type, **body, key: value})
    assert isinstance(event, type(HANDLED.get(event_type, ({}, Other(event_type)))[1]) | Malformed)


def test_fields_the_translator_does_not_read_do_not_matter() -> None:
    completed = {"type": "conversation.item.input_audio_transcription.completed", "item_id": "it1", "transcript": "hi"}
    assert translate_server_event({**completed, "usage": "lots"}) == TranscriptCompleted("it1", "hi")
    assert translate_server_event({"type": "conversation.item.added", "item": "x"}) == Other("conversation.item.added")
    error = {"type": "error", "error": {"type": "server_error", "code": None, "message": {"nested": True}}}
    assert translate_server_event(error) == ModelError(None, "server_error", "{'nested': True}", ErrorClass.RETRYABLE)


@pytest.mark.parametrize(
    ("code", "error_type", "expected"),
    [
        ("conversation_already_has_active_response", "invalid_request_error", ErrorClass.IGNORABLE),
        ("response_cancel_not_active", "invalid_request_error", ErrorClass.IGNORABLE),
        ("input_audio_buffer_commit_empty", "invalid_request_error", ErrorClass.IGNORABLE),
        ("item_truncate_invalid_item_id", "invalid_request_error", ErrorClass.IGNORABLE),
        ("decimals_not_supported", "invalid_request_error", ErrorClass.IGNORABLE),
        ("session_expired", "invalid_request_error", ErrorClass.RETRYABLE),
        ("server_error", None, ErrorClass.RETRYABLE),
        ("rate_limit_exceeded", None, ErrorClass.RETRYABLE),
        ("internal_error", None, ErrorClass.RETRYABLE),
        ("invalid_api_key", "invalid_request_error", ErrorClass.FATAL),
        ("model_not_found", "invalid_request_error", ErrorClass.FATAL),
        ("insufficient_quota", None, ErrorClass.FATAL),
        ("invalid_model", None, ErrorClass.FATAL),
        ("beta_api_shape_disabled", None, ErrorClass.FATAL),
        ("unsupported_model", None, ErrorClass.FATAL),
        ("invalid_session_config", None, ErrorClass.FATAL),
        # Unknown codes: the error type decides.
        (None, "authentication_error", ErrorClass.FATAL),
        ("something_new", "permission_error", ErrorClass.FATAL),
        ("something_new", "server_error", ErrorClass.RETRYABLE),
        (None, "rate_limit_error", ErrorClass.RETRYABLE),
        ("something_new", "invalid_request_error", ErrorClass.IGNORABLE),
        (None, None, ErrorClass.IGNORABLE),
    ],
)
def test_error_classification(code: str | None, error_type: str | None, expected: ErrorClass) -> None:
    assert classify_error(code, error_type) is expected


def test_the_pure_part_imports_neither_the_sdk_connection_nor_pybase64() -> None:
    probe = (
        "import sys, relay.model.events; "
        "bad = [m for m in ('pybase64', 'openai', 'websockets', 'aiohttp', 'asyncio') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
