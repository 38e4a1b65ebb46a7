"""A Twilio Media Streams client: streams μ-law audio to a relay exactly as Twilio would.

Used by `relay simulate`, by the tests, and by the load generator. Full protocol:
`connected`, `start` (SIDs, tracks, custom parameters, media format), 20 ms `media`
frames per track with `sequenceNumber`/`chunk`/`timestamp`, `stop`. Minimal protocol
(reference E2): `start` with only `callSid`, then bare `media` payloads of any length.
Signs the upgrade with `X-Twilio-Signature` when given the auth token and public URL.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

import aiohttp
from twilio.request_validator import RequestValidator

from relay.twilio.media import Media, Start, encode_connected, encode_media, encode_start, encode_stop

FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
FRAME_SECONDS = 0.02


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def sign_upgrade(auth_token: str, public_ws_url: str) -> str:
    """What Twilio puts in `X-Twilio-Signature` for a WebSocket upgrade (empty params)."""
    signature: str = RequestValidator(auth_token).compute_signature(public_ws_url, {})
    return signature


@dataclass
class CallResult:
    call_sid: str
    stream_sid: str
    frames_sent: int = 0
    bytes_sent: int = 0
    close_code: int | None = None
    close_reason: str = ""
    received: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    send_times: list[float] = field(default_factory=list)


@dataclass
class CallSpec:
    audio: dict[str, bytes]  # track → μ-law bytes ("inbound", optionally "outbound")
    call_sid: str = field(default_factory=lambda: new_sid("CA"))
    stream_sid: str = field(default_factory=lambda: new_sid("MZ"))
    account_sid: str = "AC" + "0" * 32
    custom_parameters: dict[str, str] = field(default_factory=dict)
    minimal: bool = False
    pace: float = 1.0  # 1.0 = real time, 0 = as fast as possible
    frame_bytes: int = FRAME_BYTES
    send_stop: bool = True
    record_send_times: bool = False


async def stream_call(
    url: str,
    spec: CallSpec,
    *,
    headers: dict[str, str] | None = None,
    session: aiohttp.ClientSession | None = None,
    on_progress: Callable[[float, CallResult], None] | None = None,
    linger_s: float = 0.0,
) -> CallResult:
    """Open the WebSocket, play the call, and return how it ended."""
    result = CallResult(spec.call_sid, spec.stream_sid)
    own_session = session is None
    client = session or aiohttp.ClientSession()
    started = time.monotonic()
    try:
        async with client.ws_connect(url, headers=headers or {}, autoclose=False, max_msg_size=0) as ws:
            reader = asyncio.create_task(_collect(ws, result))
            try:
                await _play(ws, spec, result, started, on_progress)
                if linger_s:
                    await asyncio.sleep(linger_s)
                if not ws.closed:
                    await ws.close()
            except (ConnectionResetError, aiohttp.ClientConnectionError):
                pass
            await asyncio.wait_for(reader, timeout=10)
            result.close_code = ws.close_code
    finally:
        if own_session:
            await client.close()
    result.elapsed_s = time.monotonic() - started
    return result


async def _collect(ws: aiohttp.ClientWebSocketResponse, result: CallResult) -> None:
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.TEXT:
            result.received.append(msg.data)
            continue
        if msg.type is aiohttp.WSMsgType.CLOSE:
            result.close_reason = str(msg.extra or "")
            await ws.close()
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return


def _frames(audio: bytes, size: int) -> list[bytes]:
    return [audio[i : i + size] for i in range(0, len(audio), size)]


async def _play(
    ws: aiohttp.ClientWebSocketResponse,
    spec: CallSpec,
    result: CallResult,
    started: float,
    on_progress: Callable[[float, CallResult], None] | None,
) -> None:
    seq = 0

    def next_seq() -> int | None:
        nonlocal seq
        seq += 1
        return None if spec.minimal else seq

    tracks = list(spec.audio)
    start = Start(
        call_sid=spec.call_sid,
        stream_sid=None if spec.minimal else spec.stream_sid,
        account_sid=None if spec.minimal else spec.account_sid,
        tracks=tuple(tracks) if not spec.minimal else ("inbound",),
        custom_parameters=MappingProxyType(dict(spec.custom_parameters)),
        minimal=spec.minimal,
    )
    if not spec.minimal:
        next_seq()
        await ws.send_str(encode_connected())
    await ws.send_str(encode_start(start, sequence_number=next_seq()))
    frames = {track: _frames(audio, spec.frame_bytes) for track, audio in spec.audio.items()}
    count = max((len(f) for f in frames.values()), default=0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    chunks = dict.fromkeys(tracks, 0)
    for i in range(count):
        for track in tracks:
            if i >= len(frames[track]):
                continue
            payload = frames[track][i]
            chunks[track] += 1
            if ws.closed:
                return
            if spec.minimal:
                media = encode_media(Media("inbound", payload, None), minimal=True)
            else:
                media = encode_media(
                    Media(track, payload, int(i * spec.frame_bytes / 8)),
                    stream_sid=spec.stream_sid,
                    chunk=chunks[track],
                    sequence_number=next_seq(),
                )
            if spec.record_send_times:
                result.send_times.append(time.monotonic())
            await ws.send_str(media)
            result.frames_sent += 1
            result.bytes_sent += len(payload)
        if spec.pace > 0:
            due = t0 + (i + 1) * spec.frame_bytes / 8000 / spec.pace
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        elif i % 50 == 49:
            await asyncio.sleep(0)
        if on_progress is not None and i % 50 == 0:
            on_progress(time.monotonic() - started, result)
    if spec.send_stop and not spec.minimal and not ws.closed:
        stop = encode_stop(
            stream_sid=spec.stream_sid, account_sid=spec.account_sid, call_sid=spec.call_sid, sequence_number=next_seq()
        )
        await ws.send_str(stop)
