"""The pure Media Streams parser: every message shape from the reference, and every refusal."""

from __future__ import annotations

import base64
import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.twilio.media import (
    TRANSITIONS,
    CloseCode,
    Connected,
    Dtmf,
    Event,
    Ignored,
    Mark,
    Media,
    MediaStreamParser,
    ProtocolViolation,
    Refuse,
    Start,
    Stop,
    StreamState,
    Unknown,
    encode_connected,
    encode_dtmf,
    encode_mark,
    encode_media,
    encode_start,
    encode_stop,
)

CALL = "CA" + "a" * 32
STREAM = "MZ" + "b" * 32
PAYLOAD = base64.b64encode(bytes(range(160))).decode()


def start_message(**start_overrides: Any) -> str:
    """Twilio's start (from the encoder), with fields replaced to make it wrong."""
    good = Start(CALL, STREAM, "AC" + "c" * 32, ("inbound",), MappingProxyType({"prompt": "billing"}))
    message = json.loads(encode_start(good, sequence_number=1))
    message["start"].update(start_overrides)
    return json.dumps(message)


def media_message(payload: str = PAYLOAD, track: str | None = "inbound", **extra: Any) -> str:
    """Twilio's media (from the encoder), with its payload and track replaceable."""
    good = Media("inbound", base64.b64decode(PAYLOAD), 5)
    message = json.loads(encode_media(good, stream_sid=STREAM, chunk=1, sequence_number=3))
    message["media"].update(payload=payload, **extra)
    if track is None:
        del message["media"]["track"]
    else:
        message["media"]["track"] = track
    return json.dumps(message)


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


# ------------------------------------------------------------------ the transition table

# A valid message of each kind, written by the encoders.
VALID = {
    "connected": encode_connected(),
    "start": encode_start(
        Start(CALL, STREAM, "AC" + "c" * 32, ("inbound",), MappingProxyType({"prompt": "billing"})),
        sequence_number=1,
    ),
    "media": encode_media(Media("inbound", bytes(range(160)), 20), stream_sid=STREAM, chunk=1, sequence_number=2),
    "mark": encode_mark(Mark("m1"), stream_sid=STREAM),
    "dtmf": encode_dtmf(Dtmf("inbound_track", "5"), stream_sid=STREAM),
    "stop": encode_stop(stream_sid=STREAM, call_sid=CALL),
}


def _parser_in(state: StreamState) -> MediaStreamParser:
    parser = MediaStreamParser()
    if state is not StreamState.AWAITING_START:
        parser.receive(VALID["start"])
    if state is StreamState.STOPPED:
        parser.receive(VALID["stop"])
    assert parser.state is state
    return parser


def test_the_table_covers_every_state_and_event() -> None:
    assert set(TRANSITIONS) == {(s, e) for s in StreamState for e in VALID}


@pytest.mark.parametrize(("state", "event"), sorted(TRANSITIONS, key=lambda k: (k[0].value, k[1])))
def test_each_transition_does_what_the_table_says(state: StreamState, event: str) -> None:
    parser = _parser_in(state)
    rule = TRANSITIONS[(state, event)]
    if isinstance(rule, Refuse):
        with pytest.raises(ProtocolViolation) as caught:
            parser.receive(VALID[event])
        assert (caught.value.code, caught.value.kind) == (rule.code, rule.kind)
        assert parser.state is state
    elif isinstance(rule, Ignored):
        assert parser.receive(VALID[event]) == rule
        assert parser.state is state
    else:
        parsed = parser.receive(VALID[event])
        assert type(parsed).__name__.lower() == event
        assert parser.state is rule.then


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        # The decisions the table records, spelled out.
        (StreamState.AWAITING_START, "stop", "refuse"),  # used to be accepted by accident
        (StreamState.AWAITING_START, "media", "refuse"),
        (StreamState.STREAMING, "start", "refuse"),
        (StreamState.STOPPED, "start", "refuse"),
        (StreamState.STOPPED, "media", "ignore"),
        (StreamState.STOPPED, "stop", "ignore"),
        (StreamState.AWAITING_START, "mark", "ignore"),
        (StreamState.STREAMING, "connected", "ignore"),
    ],
)
def test_decisions(state: StreamState, event: str, expected: str) -> None:
    rule = TRANSITIONS[(state, event)]
    assert isinstance(rule, Refuse if expected == "refuse" else Ignored)


def test_unknown_events_are_counted_in_every_state() -> None:
    for state in StreamState:
        assert _parser_in(state).receive('{"event":"clear","streamSid":"MZ1"}') == Unknown("clear")


# ------------------------------------------------------------------ encoders: round trip

_sids = st.from_regex(r"[A-Za-z0-9]{2,34}", fullmatch=True)
_params = st.dictionaries(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    max_size=4,
)


@st.composite
def starts(draw: st.DrawFn) -> Start:
    stream_sid = draw(st.none() | _sids)
    tracks = draw(st.sampled_from([("inbound",), ("outbound",), ("inbound", "outbound"), ("outbound", "inbound")]))
    return Start(
        call_sid=draw(_sids),
        stream_sid=stream_sid,
        account_sid=draw(st.none() | _sids),
        tracks=tracks,
        custom_parameters=MappingProxyType(draw(_params)),
        minimal=draw(st.booleans()) if stream_sid is None else False,
    )


@st.composite
def sessions(draw: st.DrawFn) -> tuple[Start, list[Event]]:
    start = draw(starts())
    medias = st.builds(
        Media,
        st.sampled_from(start.tracks),
        st.binary(min_size=1, max_size=400),
        st.none() | st.integers(min_value=0, max_value=10**9),
    )
    others = st.builds(Mark, st.none() | st.text(max_size=10)) | st.builds(
        Dtmf, st.none() | st.sampled_from(["inbound_track"]), st.none() | st.sampled_from(list("0123456789*#"))
    )
    middle = draw(st.lists(medias | others, max_size=12))
    return start, [Connected("Call", "1.0.0"), start, *middle, Stop()]


def _encode(event: Event, start: Start, seq: int) -> str:
    sid = start.stream_sid
    if isinstance(event, Connected):
        return encode_connected(event)
    if isinstance(event, Start):
        return encode_start(event, sequence_number=seq)
    if isinstance(event, Media):
        return encode_media(event, stream_sid=sid, chunk=seq, sequence_number=seq)
    if isinstance(event, Mark):
        return encode_mark(event, stream_sid=sid, sequence_number=seq)
    if isinstance(event, Dtmf):
        return encode_dtmf(event, stream_sid=sid, sequence_number=seq)
    return encode_stop(stream_sid=sid, call_sid=start.call_sid, sequence_number=seq)


@settings(max_examples=300, deadline=None)
@given(sessions())
def test_encode_then_parse_is_the_identity(session: tuple[Start, list[Event]]) -> None:
    start, events = session
    parser = MediaStreamParser()
    for seq, event in enumerate(events, 1):
        assert parser.receive(_encode(event, start, seq)) == event
    assert parser.state is StreamState.STOPPED


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=400))
def test_minimal_media_round_trips(payload: bytes) -> None:
    parser = MediaStreamParser()
    parser.receive(encode_start(Start("CA1", None, None, ("inbound",), minimal=True)))
    media = Media("inbound", payload, None)
    assert parser.receive(encode_media(media, minimal=True)) == media


def test_a_minimal_start_is_just_the_call_sid() -> None:
    assert encode_start(Start("CA1", None, None, ("inbound",), minimal=True)) == (
        '{"event":"start","start":{"callSid":"CA1"}}'
    )
