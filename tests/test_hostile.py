"""Hostile input: a fuzzer over the pure parser, and a battery over real connections.

Pass means: the process never dies, a well-behaved call running beside the battery reaches
the model complete and in order, every hostile connection gets its documented answer, and
memory returns to baseline afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import random
import tracemalloc
from collections import Counter
from dataclasses import dataclass

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.audio.dsp import PcmTranscoder
from relay.cli.simulator import CallSpec, new_sid, stream_call
from relay.twilio.media import (
    CloseCode,
    Event,
    Ignored,
    Media,
    MediaStreamParser,
    ProtocolViolation,
    Start,
    encode_media,
    encode_start,
)
from tests.conftest import RunningRelay, StartRelay, speech_like_ulaw, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer

# ------------------------------------------------------------------ fuzzer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Media bodies for both fuzzers: hostile values in every field, and valid ones often enough
# to get past the earlier checks.
media_bodies = st.fixed_dictionaries(
    {},
    optional={
        "payload": st.text(max_size=40)
        | json_values
        | st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
        "track": json_values | st.sampled_from(["inbound", "outbound", "both_tracks"]),
        "timestamp": json_values,
        "chunk": json_values,
    },
)
events = st.fixed_dictionaries(
    {"event": st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "other"]) | st.text(max_size=8)},
    optional={
        "start": st.fixed_dictionaries(
            {},
            optional={
                "callSid": st.text(max_size=40) | st.just("CA" + "0" * 32),
                "streamSid": json_values,
                "tracks": json_values | st.just(["inbound", "outbound"]),
                "customParameters": json_values,
                "mediaFormat": json_values,
            },
        ),
        "media": media_bodies,
        "streamSid": json_values,
    },
)
frames = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    events.map(json.dumps),
    events.map(lambda e: json.dumps(e)[: max(0, len(json.dumps(e)) // 2)]),
)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=12))
def test_parser_only_ever_returns_an_event_or_raises_a_violation(sequence: list[str | bytes]) -> None:
    parser = MediaStreamParser(max_custom_params_bytes=256)
    for frame in sequence:
        try:
            event = parser.receive(frame)
        except ProtocolViolation as violation:
            assert 1000 <= violation.code < 5000 and violation.kind
            return
        assert isinstance(event, Event.__args__)  # type: ignore[attr-defined]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(media_bodies | json_values, min_size=1, max_size=8))
def test_media_after_a_valid_start_is_audio_ignored_or_a_violation(bodies: list[object]) -> None:
    """The hot path gets the hostile values directly: the mixed fuzzer above rarely reaches
    it, because it needs a valid start first (a list `track` once slipped through as 1011)."""
    parser = MediaStreamParser()
    parser.receive(_start())
    for body in bodies:
        try:
            event = parser.receive(json.dumps({"event": "media", "media": body}))
        except ProtocolViolation as violation:
            assert violation.code == CloseCode.INVALID_PAYLOAD and violation.kind
            return
        assert isinstance(event, Media | Ignored)


# ------------------------------------------------------------------ battery over real sockets

# Valid messages from the encoders; the battery mutates copies of them.
START_OK = json.loads(encode_start(Start("CA0", "MZ0", None, ("inbound",))))
MEDIA_OK = json.loads(encode_media(Media("inbound", b"\xff" * 160, None)))


def _start(call: str | None = None, **changes: object) -> str:
    msg = json.loads(json.dumps(START_OK))
    msg["start"]["callSid"] = call or new_sid("CA")
    msg["start"]["streamSid"] = new_sid("MZ")
    msg["start"].update(changes)
    return json.dumps(msg)


@dataclass
class Hostile:
    kind: str
    frames: list[str | bytes]
    expect: int  # close code, or HTTP status for refused upgrades
    signed: bool = True


def battery(rng: random.Random) -> list[Hostile]:
    cases: list[Hostile] = []
    for _ in range(6):
        cases.append(Hostile("malformed_json", ["{" + "".join(rng.choices('"{}[]:,ab', k=30))], 1007))
        text = _start()
        cases.append(Hostile("truncated_start", [text[: rng.randrange(1, len(text) - 1)]], 1007))
        cases.append(Hostile("binary_frame", [rng.randbytes(rng.randrange(1, 400))], 1003))
        cases.append(Hostile("media_before_start", [json.dumps(MEDIA_OK)], 4400))
        cases.append(
            Hostile("wrong_format", [_start(mediaFormat={"encoding": "audio/l16", "sampleRate": 16000})], 4415)
        )
        cases.append(Hostile("second_start", [_start(), _start()], 4400))
        bad = json.loads(json.dumps(MEDIA_OK))
        bad["media"]["payload"] = "%%%" + "".join(rng.choices("ABC=!", k=20))
        cases.append(Hostile("invalid_base64", [_start(), json.dumps(bad)], 1007))
        cases.append(Hostile("absurd_size", [_start(), "x" * 70_000], 1009))
        cases.append(Hostile("payload_wrong_type", [_start(), '{"event":"media","media":{"payload":42}}'], 1007))
        cases.append(Hostile("unsigned", [], 403, signed=False))
    # Ignorable noise: counted, never fatal; ends with a clean stop.
    noise_kinds = [
        '{"event":"mark","mark":{"name":"x"}}',
        '{"event":"dtmf","dtmf":{"digit":"5"}}',
        '{"event":"wat","data":[1,2,3]}',
        '{"event":"connected","protocol":"Call"}',
        json.dumps({**MEDIA_OK, "media": {**MEDIA_OK["media"], "track": "sideways"}}),  # type: ignore[dict-item]
        json.dumps({**MEDIA_OK, "media": {**MEDIA_OK["media"], "payload": ""}}),  # type: ignore[dict-item]
    ]
    for _ in range(20):
        noise: list[str | bytes] = [_start()] + [rng.choice(noise_kinds) for _ in range(120)] + ['{"event":"stop"}']
        cases.append(Hostile("ignorable_noise", noise, 1000))
    cases.append(Hostile("no_start", [], 4408))
    return cases


async def _attack(relay: RunningRelay, case: Hostile, session: aiohttp.ClientSession) -> tuple[str, int]:
    headers = relay.signed_headers() if case.signed else {}
    try:
        ws = await session.ws_connect(relay.ws_url(), headers=headers, autoclose=False)
    except aiohttp.WSServerHandshakeError as exc:
        return case.kind, exc.status
    try:
        for frame in case.frames:
            if ws.closed:
                break
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        while True:
            msg = await asyncio.wait_for(ws.receive(), timeout=5)
            if msg.type is aiohttp.WSMsgType.CLOSE:
                await ws.close()
                return case.kind, int(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return case.kind, ws.close_code or -1
    except (ConnectionResetError, aiohttp.ClientConnectionError):
        return case.kind, ws.close_code or -1
    finally:
        await ws.close()


async def _wave(relay: RunningRelay, cases: list[Hostile]) -> Counter[tuple[str, int]]:
    answers: Counter[tuple[str, int]] = Counter()
    limit = asyncio.Semaphore(20)
    async with aiohttp.ClientSession() as session:

        async def one(case: Hostile) -> None:
            async with limit:
                answers[await _attack(relay, case, session)] += 1

        await asyncio.gather(*(one(c) for c in cases))
    return answers


async def test_hostile_battery_beside_a_good_call(start_relay: StartRelay, fake_realtime: FakeRealtimeServer) -> None:
    relay = await start_relay(max_message_bytes=64 * 1024, start_timeout_s=1.0, max_calls=500)
    rng = random.Random(20261129)
    await _wave(relay, battery(rng))  # warm-up wave: one-time allocations (caches, imports)
    await wait_until(lambda: bool(relay.state.idle))
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]

    good_audio = speech_like_ulaw(3.0, seed=99)
    good = CallSpec(audio={"inbound": good_audio}, pace=3.0)
    good_task = asyncio.create_task(stream_call(relay.ws_url(), good, headers=relay.signed_headers()))
    cases = battery(rng)
    answers = await _wave(relay, cases)
    good_result = await good_task
    await wait_until(lambda: bool(relay.state.idle))
    await relay.state.background_idle()
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()

    inputs = sum(len(c.frames) for c in cases)
    by_code = Counter(code for (_, code), n in answers.items() for _ in range(n))
    print(
        f"\nhostile battery: {inputs} inputs over {len(cases)} connections beside one good call; "
        f"answers {dict(sorted(by_code.items()))}; crashes 0; retained {retained / 1024:.0f} KiB"
    )
    for case in cases:
        assert answers[(case.kind, case.expect)] > 0, f"{case.kind} did not get {case.expect}: {answers}"
    wrong = {k: n for k, n in answers.items() if k not in {(c.kind, c.expect) for c in cases}}
    assert wrong == {}
    # The process is alive and the good call was untouched: complete and in order at the model.
    async with aiohttp.ClientSession() as s, s.get(relay.http_url("/healthz")) as r:
        assert r.status == 200
    assert good_result.close_code == 1000
    session = next(s for s in fake_realtime.sessions if len(s.audio) == len(good_audio) * 6)
    # The relay transcodes 100 ms (800-byte) batches; the same batching gives identical bytes.
    reference = PcmTranscoder(24000)
    expected = b"".join(reference.process(good_audio[i : i + 800]) for i in range(0, len(good_audio), 800))
    assert bytes(session.audio) == expected + reference.flush()
    assert retained < 4 * 1024 * 1024
