"""What a call costs, end to end over real sockets: a caller → the relay → the fake Realtime
server, which bills like the API (relay.usage.ConversationLedger). Every response's and every
transcription's usage reaches the call's summary line, its record and /metrics; the session
asks for the truncation bound; past RELAY_MAX_COST_PER_CALL_USD the call goes on with
transcripts only."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from relay.cli.simulator import CallSpec, stream_call
from relay.usage import KINDS, TokenCounts, read_prices
from tests.conftest import TIME_SCALE, StartRelay, qa_turns, speech_like_ulaw, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer, Turn
from tests.fakes.tooling import scrape_metrics
from tests.fakes.twilio_server import FakeTwilio

MODEL = "gpt-realtime-1.5"
TRANSCRIBE = "gpt-transcribe"


def _billed(fake: FakeRealtimeServer) -> TokenCounts:
    return sum((bill.usage for s in fake.sessions for bill in s.bills), TokenCounts())


async def test_every_usage_reaches_the_summary_the_record_and_the_metrics(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.behaviour.turns = qa_turns(3)
    fake_realtime.behaviour.agent_turns = [Turn("Let me look at your refund", "")]
    fake_realtime.behaviour.turn_every_bytes = 48_000  # a turn per second of audio
    relay = await start_relay(stream_track="both_tracks")
    spec = CallSpec(audio={"inbound": speech_like_ulaw(3.3), "outbound": speech_like_ulaw(1.5)}, pace=0)

    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)

    assert fake_realtime.violations == []
    realtime = next(s for s in fake_realtime.sessions if s.session_config and s.session_config["type"] == "realtime")
    # The session bounds what each response re-reads (validated against the SDK's types).
    assert realtime.session_config is not None
    assert realtime.session_config["truncation"] == {
        "type": "retention_ratio",
        "retention_ratio": 0.5,
        "token_limits": {"post_instructions": 16_000},
    }
    assert len(realtime.bills) == 3
    billed = _billed(fake_realtime)
    # The second response re-read the first turn: billed as cached, as the API does.
    assert realtime.bills[1].usage.cached_tokens > 0 and billed.audio_in_cached > 0

    usage = relay.state.recent_summaries[-1]["usage"]
    assert list(usage) == ["model", *KINDS, "transcription_s", "cost_usd"]
    assert usage["model"] == MODEL
    assert {k: usage[k] for k in KINDS} == billed.as_dict()
    seconds = sum(sum(s.transcribed_s) for s in fake_realtime.sessions)
    assert seconds > 4.0 and usage["transcription_s"] == pytest.approx(seconds, abs=0.01)
    prices = read_prices()
    realtime_usd = prices.token_cost(MODEL, billed)
    assert realtime_usd is not None and realtime_usd > 0
    expected = realtime_usd + seconds / 60 * 0.0045  # gpt-transcribe, per minute
    assert usage["cost_usd"] == pytest.approx(expected, abs=2e-6)

    records = relay.state.records
    assert records is not None and await records.writer.idle()
    record = await records.store.get(spec.call_sid)
    assert record is not None and record["cost_usd"] == usage["cost_usd"]
    assert record["counters"]["usage"] == usage

    async with aiohttp.ClientSession() as session:
        metrics = await scrape_metrics(session, relay.http_url("/metrics"))
    for kind in KINDS:
        assert metrics[f'relay_model_tokens_total{{kind="{kind}",model="{MODEL}"}}'] == usage[kind]
    assert metrics[f'relay_model_cost_usd_total{{model="{MODEL}"}}'] == pytest.approx(realtime_usd)
    assert metrics[f'relay_transcription_seconds_total{{model="{TRANSCRIBE}"}}'] == pytest.approx(seconds)
    assert metrics["relay_calls_budget_exceeded_total"] == 0


async def test_a_model_without_a_price_costs_null_with_one_startup_warning(
    start_relay: StartRelay,
    fake_realtime: FakeRealtimeServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_realtime.behaviour.turns = qa_turns(1)
    fake_realtime.behaviour.turn_every_bytes = 48_000
    with caplog.at_level(logging.WARNING, logger="relay.usage"):
        relay = await start_relay(realtime_model="gpt-realtime-next", transcription_model="whisper-9")
    warnings = [r for r in caplog.records if r.name == "relay.usage"]
    assert len(warnings) == 1 and warnings[0].models == ["gpt-realtime-next", "whisper-9"]  # type: ignore[attr-defined]

    spec = CallSpec(audio={"inbound": speech_like_ulaw(1.2)}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)
    usage = relay.state.recent_summaries[-1]["usage"]
    assert usage["model"] == "gpt-realtime-next" and usage["cost_usd"] is None
    assert usage["audio_in"] > 0  # counted all the same
    async with aiohttp.ClientSession() as session:
        metrics = await scrape_metrics(session, relay.http_url("/metrics"))
    assert metrics['relay_model_tokens_total{kind="audio_in",model="gpt-realtime-next"}'] == usage["audio_in"]
    assert not any(name.startswith("relay_model_cost_usd_total{") for name in metrics)


async def test_past_the_budget_the_call_goes_on_with_transcripts_only(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.behaviour.turns = qa_turns(8)
    fake_realtime.behaviour.turn_every_bytes = 48_000
    # The first answer alone costs more (instructions, tool and turn at list prices).
    relay = await start_relay(max_cost_per_call_usd=0.0005)
    spec = CallSpec(audio={"inbound": speech_like_ulaw(6.5)}, pace=2.0 / TIME_SCALE)

    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)

    assert fake_realtime.violations == []
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    degraded = [i for i, m in enumerate(published) if m["type"] == "status" and m["state"] == "degraded"]
    assert len(degraded) == 1
    reason = published[degraded[0]]["reason"]
    assert "budget" in reason and "transcripts only" in reason
    before = [m for m in published[: degraded[0]] if m["type"] == "suggestion"]
    after = published[degraded[0] :]
    assert len(before) >= 1
    # Transcripts go on; suggestions stop (a response already under way may still land).
    assert len([m for m in after if m["type"] == "suggestion"]) <= 1
    assert [m for m in after if m["type"] == "transcript" and m["final"]]
    # The lever: the answering session was swapped for a transcription-only one.
    kinds = [(s.session_config or {}).get("type") for s in fake_realtime.sessions]
    assert kinds == ["realtime", "transcription"]
    assert fake_realtime.sessions[1].responses == [] and fake_realtime.sessions[1].turns_sent >= 1
    summary = relay.state.recent_summaries[-1]
    assert summary["events"]["budget_exceeded"] == 1
    assert summary["usage"]["cost_usd"] > 0.0005
    async with aiohttp.ClientSession() as session:
        metrics = await scrape_metrics(session, relay.http_url("/metrics"))
    assert metrics["relay_calls_budget_exceeded_total"] == 1


async def test_without_a_budget_every_turn_is_answered(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_realtime.behaviour.turns = qa_turns(3)
    fake_realtime.behaviour.turn_every_bytes = 48_000
    relay = await start_relay()
    spec = CallSpec(audio={"inbound": speech_like_ulaw(3.3)}, pace=0)
    await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
    await wait_until(lambda: relay.state.idle)
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{spec.call_sid}")
    assert len([m for m in published if m["type"] == "suggestion"]) == 3
    assert not [m for m in published if m["type"] == "status" and m["state"] == "degraded"]
    assert len(fake_realtime.sessions) == 1
