"""Pure Twilio Media Streams protocol: JSON text frames in, frozen typed events out, and
the encoders that write each event the way Twilio does.

Sans-I/O in the style of h11: a `MediaStreamParser` holds the stream state
(awaiting start → streaming → stopped), turns each text frame into one event, and raises
`ProtocolViolation` carrying the WebSocket close code and reason when the peer breaks the
protocol. What every event means in every state is one table, `TRANSITIONS`. It accepts
Twilio's full protocol and the minimal subset some senders use (`start` with only
`callSid`, `media` with only `payload`; reference §E2).

`start` is validated fully; `media` is validated cheaply because it arrives 50 times a
second per track. The `encode_*` functions are the inverse of the parser (the simulator,
the load generator and the tests write Twilio's JSON only through them).
"""

from __future__ import annotations

import binascii
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, NamedTuple

import orjson

from relay.errors import RemoteProtocolError


class CloseCode(enum.IntEnum):
    """WebSocket close codes the relay sends. The README carries this table."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003  # binary frames
    INVALID_PAYLOAD = 1007  # malformed JSON, wrong field types, invalid base64
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    PROTOCOL_ORDER = 4400  # media before start, second start, missing required fields
    START_TIMEOUT = 4408
    REPLACED = 4409  # a newer stream for the same call took over
    IDLE_TIMEOUT = 4410
    CALL_TOO_LONG = 4413
    UNSUPPORTED_MEDIA_FORMAT = 4415
    PARAMETERS_TOO_LARGE = 4431


class ProtocolViolation(RemoteProtocolError):
    """The remote peer broke the protocol; the connection should close with `code`."""

    def __init__(self, code: CloseCode, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.kind = kind  # short label for counting


class StreamState(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str | None
    version: str | None


@dataclass(frozen=True, slots=True)
class Start:
    call_sid: str
    stream_sid: str | None
    account_sid: str | None
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    minimal: bool = False  # sender used the minimal subset (no streamSid / mediaFormat)


class Media(NamedTuple):
    """One audio chunk. A NamedTuple, not a dataclass: it is built 50×/s per track."""

    track: str
    payload: bytes
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class Mark:
    name: str | None


@dataclass(frozen=True, slots=True)
class Dtmf:
    track: str | None
    digit: str | None


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Unknown:
    """An event name the relay does not handle: ignored and counted."""

    event: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message that is valid but carries nothing to act on; `reason` is counted. For a
    `media` message this is a frame received and dropped (the bridge counts it as such)."""

    reason: str
    event: str = "media"


Event = Connected | Start | Media | Mark | Dtmf | Stop | Unknown | Ignored

KNOWN_TRACKS: Final = frozenset({"inbound", "outbound"})
_SID_RE: Final = re.compile(r"^[A-Za-z0-9_\-.:]{1,64}$")
_EXPECTED_FORMAT: Final = ("audio/x-mulaw", 8000, 1)


def _violation(code: CloseCode, reason: str, kind: str) -> ProtocolViolation:
    return ProtocolViolation(code, reason, kind)


# ---------------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class Accept:
    """Parse the message into its event; the stream is then in state `then`."""

    then: StreamState


@dataclass(frozen=True, slots=True)
class Refuse:
    """The peer broke the protocol: close with `code`."""

    code: CloseCode
    reason: str
    kind: str


Rule = Accept | Ignored | Refuse

_S = StreamState
_SECOND_START = Refuse(CloseCode.PROTOCOL_ORDER, "second start on one stream", "duplicate_start")

# What each event means in each state. Event names not listed are `Unknown` in any state
# (counted, never fatal: Twilio may add events).
TRANSITIONS: Final[Mapping[tuple[StreamState, str], Rule]] = MappingProxyType(
    {
        (_S.AWAITING_START, "connected"): Accept(_S.AWAITING_START),
        (_S.AWAITING_START, "start"): Accept(_S.STREAMING),
        # Audio before start cannot be attributed to a call: refuse rather than lose it quietly.
        (_S.AWAITING_START, "media"): Refuse(CloseCode.PROTOCOL_ORDER, "media before start", "media_before_start"),
        (_S.AWAITING_START, "mark"): Ignored("before_start", "mark"),
        (_S.AWAITING_START, "dtmf"): Ignored("before_start", "dtmf"),
        # A stop for a stream that never started is a broken sender, not a call that ended.
        (_S.AWAITING_START, "stop"): Refuse(CloseCode.PROTOCOL_ORDER, "stop before start", "stop_before_start"),
        (_S.STREAMING, "connected"): Ignored("after_start", "connected"),
        (_S.STREAMING, "start"): _SECOND_START,
        (_S.STREAMING, "media"): Accept(_S.STREAMING),
        (_S.STREAMING, "mark"): Accept(_S.STREAMING),
        (_S.STREAMING, "dtmf"): Accept(_S.STREAMING),
        (_S.STREAMING, "stop"): Accept(_S.STOPPED),
        (_S.STOPPED, "connected"): Ignored("after_stop", "connected"),
        (_S.STOPPED, "start"): _SECOND_START,
        # Frames in flight when the stream stopped: received, counted as dropped.
        (_S.STOPPED, "media"): Ignored("after_stop"),
        (_S.STOPPED, "mark"): Ignored("after_stop", "mark"),
        (_S.STOPPED, "dtmf"): Ignored("after_stop", "dtmf"),
        (_S.STOPPED, "stop"): Ignored("after_stop", "stop"),
    }
)


def _as_str(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _violation(CloseCode.INVALID_PAYLOAD, "field of the wrong type", "bad_field_type")


class MediaStreamParser:
    """State machine for one Media Streams WebSocket."""

    __slots__ = ("_max_custom_params_bytes", "_state", "start", "tracks")

    def __init__(self, *, max_custom_params_bytes: int = 4096) -> None:
        self._max_custom_params_bytes = max_custom_params_bytes
        self._state = StreamState.AWAITING_START
        self.start: Start | None = None
        self.tracks: frozenset[str] = frozenset()

    @property
    def state(self) -> StreamState:
        return self._state

    def receive(self, text: str | bytes) -> Event:
        """Parse one text frame. Raises `ProtocolViolation` on a protocol error."""
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise _violation(CloseCode.INVALID_PAYLOAD, "malformed JSON", "malformed_json") from None
        if type(message) is not dict:
            raise _violation(CloseCode.INVALID_PAYLOAD, "message is not a JSON object", "not_object")
        event = message.get("event")
        if event == "media" and self._state is StreamState.STREAMING:  # the hot path, as the table says
            return self._media(message)
        if not isinstance(event, str):
            raise _violation(CloseCode.INVALID_PAYLOAD, "missing or non-string event", "missing_event")
        rule = TRANSITIONS.get((self._state, event))
        if rule is None:
            return Unknown(event[:64])
        if type(rule) is not Accept:
            if type(rule) is Refuse:
                raise _violation(rule.code, rule.reason, rule.kind)
            return rule  # type: ignore[return-value]  # an Ignored
        parsed = self._parse(event, message)
        self._state = rule.then
        return parsed

    def _parse(self, event: str, message: dict[str, object]) -> Event:
        if event == "start":
            return self._start(message)
        if event == "media":
            return self._media(message)
        if event == "connected":
            return Connected(_as_str(message.get("protocol")), _as_str(message.get("version")))
        if event == "mark":
            mark = message.get("mark")
            return Mark(_as_str(mark.get("name")) if isinstance(mark, dict) else None)
        if event == "dtmf":
            dtmf = message.get("dtmf")
            if isinstance(dtmf, dict):
                return Dtmf(_as_str(dtmf.get("track")), _as_str(dtmf.get("digit")))
            return Dtmf(None, None)
        assert event == "stop", event  # the table accepts nothing else
        return Stop()

    # ------------------------------------------------------------------ start

    def _start(self, message: dict[str, object]) -> Start:
        body = message.get("start")
        if not isinstance(body, dict):
            raise _violation(CloseCode.PROTOCOL_ORDER, "start without a start object", "start_missing_body")
        call_sid = body.get("callSid")
        if not isinstance(call_sid, str) or not _SID_RE.match(call_sid):
            raise _violation(CloseCode.PROTOCOL_ORDER, "start without a valid callSid", "start_bad_call_sid")
        stream_sid = _as_str(body.get("streamSid") or message.get("streamSid"))
        if stream_sid is not None and not _SID_RE.match(stream_sid):
            raise _violation(CloseCode.INVALID_PAYLOAD, "invalid streamSid", "start_bad_stream_sid")
        account_sid = _as_str(body.get("accountSid"))

        media_format = body.get("mediaFormat")
        if media_format is not None:
            if not isinstance(media_format, dict):
                raise _violation(CloseCode.INVALID_PAYLOAD, "mediaFormat is not an object", "bad_field_type")
            got = (media_format.get("encoding"), media_format.get("sampleRate"), media_format.get("channels"))
            if got != _EXPECTED_FORMAT:
                raise _violation(
                    CloseCode.UNSUPPORTED_MEDIA_FORMAT,
                    "media format must be audio/x-mulaw, 8000 Hz, 1 channel",
                    "unsupported_media_format",
                )

        raw_tracks = body.get("tracks", ["inbound"])
        if not isinstance(raw_tracks, list) or not all(isinstance(t, str) for t in raw_tracks):
            raise _violation(CloseCode.INVALID_PAYLOAD, "tracks must be a list of strings", "bad_field_type")
        tracks = tuple(dict.fromkeys(raw_tracks)) or ("inbound",)
        unknown = [t for t in tracks if t not in KNOWN_TRACKS]
        if unknown:
            raise _violation(CloseCode.PROTOCOL_ORDER, "unknown track in start", "start_unknown_track")

        raw_params = body.get("customParameters") or {}
        if not isinstance(raw_params, dict):
            raise _violation(CloseCode.INVALID_PAYLOAD, "customParameters is not an object", "bad_field_type")
        params: dict[str, str] = {}
        size = 0
        for key, value in raw_params.items():
            text = _as_str(value) if not isinstance(value, dict | list) else None
            if text is None:
                raise _violation(CloseCode.INVALID_PAYLOAD, "custom parameter values must be strings", "bad_field_type")
            size += len(key.encode()) + len(text.encode())
            params[key] = text
        if size > self._max_custom_params_bytes:
            raise _violation(CloseCode.PARAMETERS_TOO_LARGE, "custom parameters too large", "parameters_too_large")

        start = Start(
            call_sid=call_sid,
            stream_sid=stream_sid,
            account_sid=account_sid,
            tracks=tracks,
            custom_parameters=MappingProxyType(params),
            minimal=stream_sid is None and media_format is None,
        )
        self.start = start
        self.tracks = frozenset(tracks)
        return start

    # ------------------------------------------------------------------ media

    def _media(self, message: dict[str, object]) -> Media | Ignored:
        body = message.get("media")
        if type(body) is not dict:
            raise _violation(CloseCode.INVALID_PAYLOAD, "media without a media object", "media_missing_body")
        payload = body.get("payload")
        if type(payload) is not str:
            raise _violation(CloseCode.INVALID_PAYLOAD, "media without a string payload", "media_bad_payload")
        try:
            audio = binascii.a2b_base64(payload, strict_mode=True)
        except (binascii.Error, ValueError):
            raise _violation(CloseCode.INVALID_PAYLOAD, "payload is not valid base64", "invalid_base64") from None
        track = body.get("track", "inbound")
        if type(track) is not str:
            raise _violation(CloseCode.INVALID_PAYLOAD, "media track must be a string", "media_bad_track")
        if track not in self.tracks:
            # Unknown names, or a track the start did not announce: drop and count.
            return Ignored("unknown_track" if track not in KNOWN_TRACKS else "unannounced_track")
        if not audio:
            return Ignored("empty_payload")
        timestamp = body.get("timestamp")
        ts: int | None = None
        if timestamp is not None:
            try:
                ts = int(timestamp)  # type: ignore[call-overload,unused-ignore]
            except (TypeError, ValueError):
                ts = None
        return Media(track, audio, ts)


# ---------------------------------------------------------------------------- encoders
# Twilio's JSON for each event (reference §E1), the inverse of the parser:
# `parser.receive(encode_x(event)) == event` in a state that accepts it.

_MEDIA_FORMAT: Final = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


def _dumps(message: dict[str, object], sequence_number: int | None, stream_sid: str | None) -> str:
    if sequence_number is not None:
        message["sequenceNumber"] = str(sequence_number)
    if stream_sid is not None:
        message["streamSid"] = stream_sid
    return orjson.dumps(message).decode()


def encode_connected(event: Connected = Connected("Call", "1.0.0")) -> str:
    message: dict[str, object] = {"event": "connected"}
    if event.protocol is not None:
        message["protocol"] = event.protocol
    if event.version is not None:
        message["version"] = event.version
    return orjson.dumps(message).decode()


def encode_start(event: Start, *, sequence_number: int | None = None) -> str:
    """Twilio's full `start`, or the minimal one (only what the event needs) for a minimal start."""
    body: dict[str, object] = {"callSid": event.call_sid}
    if event.account_sid is not None:
        body["accountSid"] = event.account_sid
    if event.stream_sid is not None:
        body["streamSid"] = event.stream_sid
    if not event.minimal or event.tracks != ("inbound",):
        body["tracks"] = list(event.tracks)
    if event.custom_parameters or not event.minimal:
        body["customParameters"] = dict(event.custom_parameters)
    if not event.minimal:
        body["mediaFormat"] = dict(_MEDIA_FORMAT)
    return _dumps({"event": "start", "start": body}, sequence_number, event.stream_sid)


def encode_media(
    event: Media,
    *,
    stream_sid: str | None = None,
    chunk: int | None = None,
    sequence_number: int | None = None,
    minimal: bool = False,
) -> str:
    """A `media` message; `minimal` sends only the payload (track inbound, no timestamp)."""
    payload = binascii.b2a_base64(event.payload, newline=False).decode()
    if minimal:
        if event.track != "inbound" or event.timestamp_ms is not None:
            raise ValueError("a minimal media message carries only an inbound payload")
        return orjson.dumps({"event": "media", "media": {"payload": payload}}).decode()
    body: dict[str, object] = {"track": event.track}
    if chunk is not None:
        body["chunk"] = str(chunk)
    if event.timestamp_ms is not None:
        body["timestamp"] = str(event.timestamp_ms)
    body["payload"] = payload
    return _dumps({"event": "media", "media": body}, sequence_number, stream_sid)


def encode_mark(event: Mark, *, stream_sid: str | None = None, sequence_number: int | None = None) -> str:
    mark = {"name": event.name} if event.name is not None else {}
    return _dumps({"event": "mark", "mark": mark}, sequence_number, stream_sid)


def encode_dtmf(event: Dtmf, *, stream_sid: str | None = None, sequence_number: int | None = None) -> str:
    dtmf = {k: v for k, v in (("track", event.track), ("digit", event.digit)) if v is not None}
    return _dumps({"event": "dtmf", "dtmf": dtmf}, sequence_number, stream_sid)


def encode_stop(
    *,
    stream_sid: str | None = None,
    account_sid: str | None = None,
    call_sid: str | None = None,
    sequence_number: int | None = None,
) -> str:
    stop = {k: v for k, v in (("accountSid", account_sid), ("callSid", call_sid)) if v is not None}
    return _dumps({"event": "stop", "stop": stop}, sequence_number, stream_sid)
