"""Call records through the relay, over real sockets: every call kept (transcript of both
speakers, suggestions, insights, wrap-up, statuses), two-channel FLAC audio served with range
requests, search, deletion, retention, the Flex role guard, and a database outage mid-call."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from relay.audio.dsp import ulaw_decode
from relay.cli.simulator import CallSpec, stream_call
from tests.conftest import RunningRelay, StartRelay, qa_turns, speech_like_ulaw, tone_ulaw, wait_until
from tests.fakes.postgres import PostgresServer
from tests.fakes.realtime_server import FakeRealtimeServer, Turn
from tests.fakes.twilio_server import FakeTwilio

SUPERVISOR, AGENT = "flex-token-supervisor", "flex-token-agent"


@pytest.fixture(autouse=True)
def _agents(fake_twilio: FakeTwilio) -> None:
    fake_twilio.add_agent(SUPERVISOR, "sam_40example_2Ecom", ["supervisor"])
    fake_twilio.add_agent(AGENT, "alice_40example_2Ecom", ["agent"])


async def get(relay: RunningRelay, path: str, token: str | None = SUPERVISOR, **headers: str) -> tuple[int, Any, bytes]:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.get(relay.http_url(path), headers=headers) as r:
        body = await r.read()
        data = await r.json() if r.content_type == "application/json" else None
        return r.status, data if data is not None else dict(r.headers), body


async def delete(relay: RunningRelay, path: str, token: str = SUPERVISOR) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.delete(relay.http_url(path), headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        return r.status


async def two_party_call(relay: RunningRelay, fake_realtime: FakeRealtimeServer) -> tuple[CallSpec, bytes, bytes]:
    fake_realtime.behaviour.turns = qa_turns(1)
    fake_realtime.behaviour.agent_turns = [Turn("I'll email you the return label today", "")]
    fake_realtime.behaviour.turn_every_bytes = 48_000
    customer, agent = speech_like_ulaw(3.0), tone_ulaw(300.0, seconds=3.0)
    spec = CallSpec(
        audio={"inbound": customer, "outbound": agent}, pace=0, custom_parameters={"WorkerIdentity": "alice"}
    )
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle, timeout_s=15)
    assert relay.state.records is not None and await relay.state.records.writer.idle()
    return spec, customer, agent


async def test_a_call_is_kept_searchable_and_replayable_then_deleted(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    relay = await start_relay(record_audio=True, stream_track="both_tracks")
    spec, customer, agent = await two_party_call(relay, fake_realtime)

    status, record, _ = await get(relay, f"/calls/{spec.call_sid}")
    assert status == 200
    assert (record["call_sid"], record["stream_sid"], record["worker"]) == (spec.call_sid, spec.stream_sid, "alice")
    assert record["end_reason"] == "stop" and record["engine"] == "openai" and record["prompt"] == "default"
    assert {(line["speaker"], line["text"]) for line in record["transcript"]} == {
        ("customer", qa_turns(1)[0].transcript),
        ("agent", "I'll email you the return label today"),
    }
    assert all(0 <= line["at_s"] < 30 for line in record["transcript"])
    [suggestion] = record["suggestions"]
    assert suggestion["question"] == "Can I get a refund?" and suggestion["latency_s"] is not None
    assert any(i["kind"] == "action_item" for i in record["insights"])
    assert record["wrapup"]["status"] == "ok" and record["disposition"] == record["wrapup"]["disposition"]
    assert record["statuses"][0]["state"] == "started" and record["statuses"][-1]["state"] == "ended"
    assert record["counters"]["frames_in"] > 0 and record["has_audio"] is True

    status, page, _ = await get(relay, "/calls?q=refund&agent=alice")
    assert status == 200 and [c["call_sid"] for c in page["calls"]] == [spec.call_sid]
    assert page["calls"][0]["matches"][0]["speaker"] == "customer"
    status, page, _ = await get(relay, "/calls?q=helicopter")
    assert page["calls"] == []
    status, page, _ = await get(relay, "/calls?from=2000-01-01T00:00:00Z&to=2001-01-01")
    assert page["calls"] == []

    # Audio: FLAC, customer left, agent right, every sample; range requests answered 206.
    status, headers, flac = await get(relay, f"/calls/{spec.call_sid}/audio")
    assert status == 200 and headers["Content-Type"] == "audio/flac"
    samples, rate = sf.read(io.BytesIO(flac), dtype="int16")
    assert rate == 8000 and samples.shape == (len(customer), 2)
    assert np.array_equal(samples[:, 0], ulaw_decode(customer)) and np.array_equal(samples[:, 1], ulaw_decode(agent))
    status, headers, part = await get(relay, f"/calls/{spec.call_sid}/audio", Range="bytes=100-199")
    assert status == 206 and part == flac[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(flac)}"

    assert await delete(relay, f"/calls/{spec.call_sid}") == 204
    assert (await get(relay, f"/calls/{spec.call_sid}"))[0] == 404
    assert (await get(relay, f"/calls/{spec.call_sid}/audio"))[0] == 404
    assert await delete(relay, f"/calls/{spec.call_sid}") == 404


@pytest.mark.parametrize(
    ("token", "expected"), [(None, 401), ("not-a-flex-token", 401), (AGENT, 403), (SUPERVISOR, 200)]
)
async def test_records_need_a_supervisor_or_admin_flex_token(
    start_relay: StartRelay, token: str | None, expected: int
) -> None:
    relay = await start_relay()
    assert (await get(relay, "/calls", token))[0] == expected
    assert (await get(relay, f"/calls/CA{'0' * 32}", token))[0] == (404 if expected == 200 else expected)


async def test_a_token_in_the_url_opens_only_the_audio(start_relay: StartRelay) -> None:
    """A URL lands in access logs: only the audio, which an <audio> element loads by URL, takes one."""
    relay = await start_relay()
    sid = f"CA{'0' * 32}"
    assert (await get(relay, f"/calls?Token={SUPERVISOR}", None))[0] == 400
    assert (await get(relay, f"/calls/{sid}?Token={SUPERVISOR}", None))[0] == 400
    # Past the guard: no such call (404), not a refused token.
    assert (await get(relay, f"/calls/{sid}/audio?Token={SUPERVISOR}", None))[0] == 404
    assert (await get(relay, f"/calls/{sid}/audio?Token={AGENT}", None))[0] == 403


async def test_each_call_shows_its_cost_and_a_period_totals_them(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    relay = await start_relay(stream_track="both_tracks")
    first, _, _ = await two_party_call(relay, fake_realtime)
    second, _, _ = await two_party_call(relay, fake_realtime)

    costs, audio_in = [], 0
    for spec in (first, second):
        status, record, _ = await get(relay, f"/calls/{spec.call_sid}")
        assert status == 200 and record["usage"]["model"] == "gpt-realtime-1.5"
        assert record["usage"]["audio_in"] > 0 and record["usage"]["transcription_s"] > 0
        assert record["cost_usd"] == record["usage"]["cost_usd"] == record["counters"]["usage"]["cost_usd"] > 0
        costs.append(record["cost_usd"])
        audio_in += record["usage"]["audio_in"]
    status, page, _ = await get(relay, "/calls")
    assert status == 200 and [c["cost_usd"] for c in page["calls"]] == costs[::-1]

    status, body, _ = await get(relay, "/calls?from=2020-01-01T00:00:00Z&totals=true")
    assert status == 200
    totals = body["totals"]
    assert totals["calls"] == totals["calls_priced"] == 2
    assert totals["cost_usd"] == pytest.approx(sum(costs), abs=2e-6)
    assert totals["tokens"]["audio_in"] == audio_in
    status, body, _ = await get(relay, "/calls?from=2000-01-01&to=2001-01-01&totals=true")
    assert status == 200 and body["totals"]["calls"] == 0 and body["totals"]["cost_usd"] == 0
    assert (await get(relay, "/calls?totals=maybe"))[0] == 400
    assert (await get(relay, "/calls?q=refund&totals=true"))[0] == 400
    assert (await get(relay, "/calls?totals=true", AGENT))[0] == 403


async def test_bad_record_requests_are_400(start_relay: StartRelay) -> None:
    relay = await start_relay()
    # Ids are what the media endpoint accepts; anything else (a slash: path traversal) is 400.
    assert (await get(relay, "/calls/..%2F..%2Fetc%2Fpasswd"))[0] == 400
    assert (await get(relay, "/calls/..%2F..%2Fetc%2Fpasswd/audio"))[0] == 400
    assert (await get(relay, "/calls/a%20b"))[0] == 400
    assert (await get(relay, "/calls/" + "x" * 65))[0] == 400
    assert (await get(relay, "/calls/CA123/audio/first"))[0] == 400
    assert (await get(relay, "/calls/CA123"))[0] == 404  # a short id is an id (minimal clients)
    assert (await get(relay, "/calls?from=yesterday"))[0] == 400
    assert (await get(relay, "/calls?cursor=%%%"))[0] == 400
    assert (await get(relay, "/calls?limit=lots"))[0] == 400
    assert (await get(relay, "/calls?q=" + "refund%20" * 200))[0] == 400  # a query is words, not a document
    # The console's copies exist only in hub mode (this relay publishes to Sync).
    assert (await get(relay, "/console/records", None))[0] == 404


async def test_retention_deletes_old_records_and_their_audio(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    relay = await start_relay(record_audio=True, stream_track="both_tracks", retention_days=30)
    spec, _, _ = await two_party_call(relay, fake_realtime)
    records = relay.state.records
    assert records is not None and records.audio_dir is not None
    audio = records.audio_path(spec.call_sid)
    assert audio.exists()
    assert await records.expire_now() == 0  # the call just ended
    assert await records.expire_now(now=__import__("time").time() + 31 * 86_400) == 1
    assert not audio.exists() and (await get(relay, f"/calls/{spec.call_sid}"))[0] == 404


async def test_a_database_outage_mid_call_harms_nothing_and_loses_nothing(
    start_relay: StartRelay,
    fake_realtime: FakeRealtimeServer,
    fake_twilio: FakeTwilio,
    postgres: PostgresServer,
) -> None:
    url = postgres.create_database("outage")
    relay = await start_relay(database_url=url)
    fake_realtime.behaviour.turns = [
        Turn(f"Question {i} about my refund", '{"question": "Q", "answer": "A"}') for i in range(6)
    ]
    fake_realtime.behaviour.turn_every_bytes = 48_000  # a turn per second of audio
    spec = CallSpec(audio={"inbound": speech_like_ulaw(6.0)}, pace=1.0)
    call = asyncio.create_task(stream_call(relay.ws_url(), spec, headers=relay.signed_headers()))
    await wait_until(lambda: spec.call_sid in relay.state.calls, timeout_s=10)
    await asyncio.sleep(1.5)
    await asyncio.to_thread(postgres.stop)  # the database goes away mid-call
    try:
        result = await asyncio.wait_for(call, timeout=30)
        await wait_until(lambda: relay.state.idle, timeout_s=15)
        assert relay.state.records is not None
        assert relay.state.records.writer.pending > 0 and relay.state.records.writer.stats.retries >= 1
    finally:
        await asyncio.to_thread(postgres.start_again)
    # The call was unharmed: every frame forwarded, every message on Sync, a normal close.
    assert result.close_code == 1000
    summary = relay.state.recent_summaries[-1]
    assert summary["frames_dropped"] == {} and summary["suggestions"] == 6
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    assert published[-1]["state"] == "ended"
    # Writes resumed; nothing acknowledged (or queued) was lost.
    assert await relay.state.records.writer.idle(timeout_s=30)
    status, record, _ = await get(relay, f"/calls/{spec.call_sid}")
    assert status == 200 and len(record["transcript"]) == 6 and len(record["suggestions"]) == 6
    assert record["end_reason"] == "stop" and relay.state.records.writer.stats.dropped == {}


async def _stream(relay: RunningRelay, spec: CallSpec, **headers: str) -> None:
    await stream_call(relay.ws_url(), spec, headers=headers or relay.signed_headers())
    await wait_until(lambda: relay.state.idle, timeout_s=15)
    assert relay.state.records is not None and await relay.state.records.writer.idle()


def _decoded(flac: bytes) -> np.ndarray[Any, Any]:
    samples, rate = sf.read(io.BytesIO(flac), dtype="int16")
    assert rate == 8000
    customer: np.ndarray[Any, Any] = samples[:, 0]
    return customer


async def _continued_call(relay: RunningRelay, bridges: int = 2) -> tuple[str, list[bytes]]:
    """One call streamed `bridges` times (each later bridge continues it, as another replica
    would): audio parts `{CallSid}.flac`, `{CallSid}.1.flac`, …"""
    call_sid = CallSpec(audio={}).call_sid
    sent = [tone_ulaw(400.0 + 250 * n, seconds=1.0 + 0.5 * n) for n in range(bridges)]
    for audio in sent:
        await _stream(relay, CallSpec(audio={"inbound": audio}, call_sid=call_sid, pace=0))
    return call_sid, sent


async def test_every_audio_part_of_a_continued_call_is_served_and_deleted(start_relay: StartRelay) -> None:
    relay = await start_relay(record_audio=True)
    call_sid, audio = await _continued_call(relay)
    records = relay.state.records
    assert records is not None and records.audio_dir is not None
    files = sorted(p.name for p in records.audio_dir.iterdir())
    assert files == [f"{call_sid}.1.flac", f"{call_sid}.flac"]

    status, record, _ = await get(relay, f"/calls/{call_sid}")
    assert status == 200 and record["audio_parts"] == [{"part": 0}, {"part": 1}] and record["has_audio"] is True
    for part, sent in enumerate(audio):
        status, headers, flac = await get(relay, f"/calls/{call_sid}/audio/{part}")
        assert status == 200 and headers["Content-Type"] == "audio/flac"
        assert np.array_equal(_decoded(flac), ulaw_decode(sent))
    assert (await get(relay, f"/calls/{call_sid}/audio"))[2] == (await get(relay, f"/calls/{call_sid}/audio/0"))[2]
    assert (await get(relay, f"/calls/{call_sid}/audio/2"))[0] == 404

    # A part whose bridge never wrote its end row (its replica died) is deleted too.
    (records.audio_dir / f"{call_sid}.7.flac").write_bytes(b"fLaC")
    (records.audio_dir / f"{call_sid}X.flac").write_bytes(b"fLaC")  # another call's file: kept
    assert await delete(relay, f"/calls/{call_sid}") == 204
    assert sorted(p.name for p in records.audio_dir.iterdir()) == [f"{call_sid}X.flac"]
    assert (await get(relay, f"/calls/{call_sid}/audio/1"))[0] == 404


async def test_retention_deletes_every_audio_part(start_relay: StartRelay) -> None:
    relay = await start_relay(record_audio=True, retention_days=30)
    call_sid, _ = await _continued_call(relay, bridges=3)
    records = relay.state.records
    assert records is not None and records.audio_dir is not None
    assert len(list(records.audio_dir.glob(f"{call_sid}*.flac"))) == 3
    assert await records.expire_now(now=__import__("time").time() + 31 * 86_400) == 1
    assert list(records.audio_dir.iterdir()) == []


async def test_a_minimal_clients_call_id_is_readable_and_deletable(start_relay: StartRelay) -> None:
    """Minimal clients name calls with any id the media endpoint accepts, not only `CA…`."""
    key = "vendor-key-0123456789"
    relay = await start_relay(record_audio=True, media_api_key=key)
    call_id = "vendor-7.call:1"
    sent = tone_ulaw(600.0, seconds=1.0)
    await _stream(relay, CallSpec(audio={"inbound": sent}, call_sid=call_id, minimal=True, pace=0), apikey=key)
    records = relay.state.records
    assert records is not None and records.audio_dir is not None
    # On disk the id's dot and colon are escaped: the part number stays unambiguous.
    assert [p.name for p in records.audio_dir.iterdir()] == ["vendor-7%2Ecall%3A1.flac"]

    status, record, _ = await get(relay, f"/calls/{call_id}")
    assert status == 200 and record["call_sid"] == call_id and record["audio_parts"] == [{"part": 0}]
    status, _, flac = await get(relay, f"/calls/{call_id}/audio")
    assert status == 200 and np.array_equal(_decoded(flac), ulaw_decode(sent))
    status, page, _ = await get(relay, "/calls")
    assert call_id in [c["call_sid"] for c in page["calls"]]
    assert await delete(relay, f"/calls/{call_id}") == 204
    assert (await get(relay, f"/calls/{call_id}"))[0] == 404 and list(records.audio_dir.iterdir()) == []
