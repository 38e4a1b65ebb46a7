"""The pure Media Streams parser: every message shape from the reference, and every refusal."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from relay.twilio_media import (
    CloseCode,
    Connected,
    Dtmf,
    Ignored,
    Mark,
    Media,
    MediaStreamParser,
    ProtocolViolation,
    Start,
    Stop,
    StreamState,
    Unknown,
)

CALL = "CA" + "a" * 32
STREAM = "MZ" + "b" * 32
PAYLOAD = base64.b64encode(bytes(range(160))).decode()


def start_message(**start_overrides: Any) -> str:
    start: dict[str, Any] = {
        "accountSid": "AC" + "c" * 32,
        "streamSid": STREAM,
        "callSid": CALL,
        "tracks": ["inbound"],
        "customParameters": {"prompt": "billing"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    start.update(start_overrides)
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": STREAM, "start": start})


def media_message(payload: str = PAYLOAD, track: str | None = "inbound", **extra: Any) -> str:
    media: dict[str, Any] = {"chunk": "1", "timestamp": "5", "payload": payload, **extra}
    if track is not None:
        media["track"] = track
    return json.dumps({"event": "media", "sequenceNumber": "3", "streamSid": STREAM, "media": media})


def started(**start_overrides: Any) -> MediaStreamParser:
    parser = MediaStreamParser()
    parser.receive(start_message(**start_overrides))
    return parser


# ------------------------------------------------------------------ accepted shapes


def test_connected_start_media_stop_in_order() -> None:
    parser = MediaStreamParser()
    connected = parser.receive('{"event":"connected","protocol":"Call","version":"1.0.0"}')
    assert connected == Connected("Call", "1.0.0")
    start = parser.receive(start_message())
    assert isinstance(start, Start)
    assert (start.call_sid, start.stream_sid, start.tracks) == (CALL, STREAM, ("inbound",))
    assert dict(start.custom_parameters) == {"prompt": "billing"}
    assert start.minimal is False
    assert parser.state is StreamState.STREAMING
    media = parser.receive(media_message())
    assert media == Media("inbound", bytes(range(160)), 5)
    assert parser.receive('{"event":"stop","sequenceNumber":"5","streamSid":"MZ1","stop":{}}') == Stop()
    assert parser.state is StreamState.STOPPED


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('{"event":"mark","sequenceNumber":"4","streamSid":"MZ","mark":{"name":"x"}}', Mark("x")),
        (
            '{"event":"dtmf","streamSid":"MZ","dtmf":{"track":"inbound_track","digit":"1"}}',
            Dtmf("inbound_track", "1"),
        ),
        ('{"event":"dtmf"}', Dtmf(None, None)),
        ('{"event":"something-new","x":1}', Unknown("something-new")),
    ],
)
def test_other_events_are_typed_or_counted(message: str, expected: object) -> None:
    assert started().receive(message) == expected


def test_minimal_client_subset() -> None:
    parser = MediaStreamParser()
    start = parser.receive(json.dumps({"event": "start", "start": {"callSid": "call-42"}}))
    assert isinstance(start, Start) and start.minimal and start.stream_sid is None
    assert start.tracks == ("inbound",)
    odd = bytes(range(200)) * 3 + b"\x01"  # 601 bytes: not frame aligned
    media = parser.receive(json.dumps({"event": "media", "media": {"payload": base64.b64encode(odd).decode()}}))
    assert media == Media("inbound", odd, None)


def test_both_tracks_are_told_apart() -> None:
    parser = started(tracks=["inbound", "outbound"])
    assert parser.receive(media_message(track="outbound")).track == "outbound"  # type: ignore[union-attr]
    assert parser.receive(media_message(track="inbound")).track == "inbound"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (media_message(track="sideways"), "unknown_track"),
        (media_message(track="outbound"), "unannounced_track"),
        (media_message(payload=""), "empty_payload"),
    ],
)
def test_media_without_usable_audio_is_ignored_with_a_reason(message: str, reason: str) -> None:
    assert started().receive(message) == Ignored(reason)


def test_media_after_stop_is_ignored() -> None:
    parser = started()
    parser.receive('{"event":"stop"}')
    assert parser.receive(media_message()) == Ignored("after_stop")


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("message", "code", "kind"),
    [
        ("{not json", CloseCode.INVALID_PAYLOAD, "malformed_json"),
        ("[1,2]", CloseCode.INVALID_PAYLOAD, "not_object"),
        ('{"no":"event"}', CloseCode.INVALID_PAYLOAD, "missing_event"),
        ('{"event":7}', CloseCode.INVALID_PAYLOAD, "missing_event"),
        (media_message(), CloseCode.PROTOCOL_ORDER, "media_before_start"),
        ('{"event":"start"}', CloseCode.PROTOCOL_ORDER, "start_missing_body"),
        ('{"event":"start","start":{"callSid":""}}', CloseCode.PROTOCOL_ORDER, "start_bad_call_sid"),
        ('{"event":"start","start":{"callSid":"../../etc"}}', CloseCode.PROTOCOL_ORDER, "start_bad_call_sid"),
        (
            start_message(mediaFormat={"encoding": "audio/l16", "sampleRate": 16000, "channels": 1}),
            CloseCode.UNSUPPORTED_MEDIA_FORMAT,
            "unsupported_media_format",
        ),
        (
            start_message(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2}),
            CloseCode.UNSUPPORTED_MEDIA_FORMAT,
            "unsupported_media_format",
        ),
        (start_message(tracks=["inbound", "sideways"]), CloseCode.PROTOCOL_ORDER, "start_unknown_track"),
        (start_message(tracks="inbound"), CloseCode.INVALID_PAYLOAD, "bad_field_type"),
        (start_message(customParameters={"k": {"nested": 1}}), CloseCode.INVALID_PAYLOAD, "bad_field_type"),
        (
            start_message(customParameters={"k": "v" * 5000}),
            CloseCode.PARAMETERS_TOO_LARGE,
            "parameters_too_large",
        ),
    ],
)
def test_protocol_violations_carry_close_code_and_kind(message: str, code: CloseCode, kind: str) -> None:
    parser = MediaStreamParser()
    with pytest.raises(ProtocolViolation) as caught:
        parser.receive(message)
    assert (caught.value.code, caught.value.kind) == (code, kind)


@pytest.mark.parametrize(
    ("message", "code", "kind"),
    [
        (start_message(), CloseCode.PROTOCOL_ORDER, "duplicate_start"),
        (media_message(payload="!!!notbase64"), CloseCode.INVALID_PAYLOAD, "invalid_base64"),
        (media_message(payload="AAA"), CloseCode.INVALID_PAYLOAD, "invalid_base64"),
        ('{"event":"media","media":{"payload":5}}', CloseCode.INVALID_PAYLOAD, "media_bad_payload"),
        ('{"event":"media","media":"x"}', CloseCode.INVALID_PAYLOAD, "media_missing_body"),
        # A track that is not a string cannot name a track; a list or object used to reach a
        # set lookup and fail as an internal error (1011) instead of a bad payload (1007).
        (
            f'{{"event":"media","media":{{"track":["inbound"],"payload":"{PAYLOAD}"}}}}',
            CloseCode.INVALID_PAYLOAD,
            "media_bad_track",
        ),
        (
            f'{{"event":"media","media":{{"track":{{"a":1}},"payload":"{PAYLOAD}"}}}}',
            CloseCode.INVALID_PAYLOAD,
            "media_bad_track",
        ),
        (
            f'{{"event":"media","media":{{"track":7,"payload":"{PAYLOAD}"}}}}',
            CloseCode.INVALID_PAYLOAD,
            "media_bad_track",
        ),
        (
            f'{{"event":"media","media":{{"track":null,"payload":"{PAYLOAD}"}}}}',
            CloseCode.INVALID_PAYLOAD,
            "media_bad_track",
        ),
    ],
)
def test_violations_once_streaming(message: str, code: CloseCode, kind: str) -> None:
    with pytest.raises(ProtocolViolation) as caught:
        started().receive(message)
    assert (caught.value.code, caught.value.kind) == (code, kind)


def test_bytes_frames_parse_like_text() -> None:
    parser = MediaStreamParser()
    assert isinstance(parser.receive(start_message().encode()), Start)
