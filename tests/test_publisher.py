"""The Sync publisher against the fake Twilio, through the real twilio SDK transport."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest

from sync_publisher import PublisherConfig, StreamPublisher, SyncPublisher, messages
from sync_publisher.errors import SyncRetryableError
from sync_publisher.publisher import PublisherStats
from sync_publisher.twilio_transport import TwilioSyncTransport, make_twilio_client
from tests.conftest import wait_until
from tests.fakes.twilio_server import FakeTwilio, Fault

CALL = "CA" + "e" * 32
STREAM = f"FLEX_ASSIST_{CALL}"


def sync_transport(fake_twilio: FakeTwilio, timeout_s: float = 5) -> TwilioSyncTransport:
    client = make_twilio_client(
        account_sid=fake_twilio.state.account_sid,
        auth_token=fake_twilio.state.auth_token,
        sync_base_url=fake_twilio.base_url,
        timeout_s=timeout_s,
    )
    return TwilioSyncTransport(client, fake_twilio.state.sync_service_sid)


@pytest.fixture
async def transport(fake_twilio: FakeTwilio) -> AsyncIterator[TwilioSyncTransport]:
    t = sync_transport(fake_twilio)
    yield t
    await t.aclose()


def fast_config(**overrides: float) -> PublisherConfig:
    values: dict[str, float] = {"backoff_initial_s": 0.01, "backoff_max_s": 0.1, "retry_budget_s": 10.0}
    values.update(overrides)
    return PublisherConfig(**values)  # type: ignore[arg-type]


def open_stream(transport: TwilioSyncTransport, config: PublisherConfig | None = None) -> StreamPublisher:
    return SyncPublisher(transport, config or fast_config(), lambda sid: f"FLEX_ASSIST_{sid}").open(CALL)


def finals(n: int) -> list[messages.Outgoing]:
    return [messages.transcript("customer", f"final {i}", final=True, utterance_id=f"u{i}") for i in range(n)]


async def test_a_burst_respects_30_per_second_and_arrives_in_seq_order(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    publisher = open_stream(transport)
    for item in finals(75):
        publisher.publish(item)
    report = await publisher.close(deadline_s=10)

    received = fake_twilio.messages_for(STREAM)
    assert [m["text"] for m in received] == [f"final {i}" for i in range(75)]
    assert [m["seq"] for m in received] == list(range(1, 76))
    assert fake_twilio.max_in_window(STREAM, accepted_only=False) <= 30
    assert fake_twilio.state.rate_limit_hits == 0
    assert report.published == 75 and not report.dropped


async def test_429_storms_500s_and_slow_answers_lose_no_final(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    state = fake_twilio.state
    state.sync_faults.extend(
        [Fault(429, 54009, "Rate limit exceeded")] * 6
        + [Fault(500, 20500, "Internal Server Error"), Fault(503, 20503, "Service Unavailable")]
        + [Fault(429, 54009, "Rate limit exceeded", retry_after="0.2")]
    )
    state.random_429_rate = 0.15
    state.sync_delay_s = 0.01
    publisher = open_stream(transport)
    items = finals(40)
    for item in items:
        publisher.publish(item)
    report = await publisher.close(deadline_s=20)

    received = fake_twilio.messages_for(STREAM)
    texts = [m["text"] for m in received]
    assert texts == [f"final {i}" for i in range(40)]  # each exactly once, in order
    seqs = [m["seq"] for m in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == 40
    assert report.retried >= 9 and report.dropped_finals == 0
    assert fake_twilio.max_in_window(STREAM) <= 30
    assert all(len(m.raw.encode()) <= 4096 for m in state.messages)


async def test_a_retried_message_keeps_its_seq(transport: TwilioSyncTransport, fake_twilio: FakeTwilio) -> None:
    fake_twilio.state.sync_faults.extend([Fault(500, 20500, "Internal Server Error")] * 3)
    publisher = open_stream(transport)
    publisher.publish(messages.status("started", "x"))
    publisher.publish(messages.status("ended", "y"))
    await publisher.close(deadline_s=5)
    assert [(m["seq"], m["state"]) for m in fake_twilio.messages_for(STREAM)] == [
        (1, "started"),
        (2, "ended"),
    ]


async def test_a_vanished_stream_is_recreated_once_and_publishing_resumes(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    publisher = open_stream(transport)
    publisher.publish(messages.status("started", "x"))
    await wait_until(lambda: len(fake_twilio.messages_for(STREAM)) == 1)
    fake_twilio.vanish(STREAM)
    for item in finals(3):
        publisher.publish(item)
    report = await publisher.close(deadline_s=5)
    assert report.recreated == 1
    assert [name for name, _ in fake_twilio.state.stream_creates] == [STREAM, STREAM]
    texts = [m["text"] for m in fake_twilio.messages_for(STREAM) if m["type"] == "transcript"]
    assert texts == ["final 0", "final 1", "final 2"]


async def test_an_existing_stream_is_reused_and_its_ttl_extended(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.state.streams[STREAM] = fake_twilio._stream_resource(STREAM, 60)
    publisher = open_stream(transport, fast_config(stream_ttl_s=7200))
    publisher.publish(messages.status("started", "x"))
    await publisher.close(deadline_s=5)
    assert fake_twilio.state.stream_creates == []
    assert fake_twilio.state.ttl_updates == [(STREAM, 7200)]
    assert len(fake_twilio.messages_for(STREAM)) == 1


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_ttl_is_refreshed_every_half_ttl_of_the_publishers_clock(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    clock = ManualClock()
    config = fast_config(stream_ttl_s=600)  # refresh due every 300 s
    publisher = StreamPublisher(transport, STREAM, CALL, config, PublisherStats(), clock=clock)

    async def publish_and_deliver(n: int) -> None:
        publisher.publish(messages.status("started", f"m{n}"))
        await wait_until(lambda: len(fake_twilio.messages_for(STREAM)) == n)

    await publish_and_deliver(1)  # creates the stream: no refresh yet
    clock.now += 299.0
    await publish_and_deliver(2)
    assert fake_twilio.state.ttl_updates == []
    clock.now += 1.0  # 300 s after creation: the next wake-up refreshes first
    await publish_and_deliver(3)
    assert fake_twilio.state.ttl_updates == [(STREAM, 600)]
    clock.now += 300.0
    await publish_and_deliver(4)
    assert fake_twilio.state.ttl_updates == [(STREAM, 600)] * 2
    report = await publisher.close(deadline_s=2)
    assert report.ttl_refreshed == 2


async def test_other_4xx_is_not_retried_and_is_logged_with_twilios_code(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    fake_twilio.state.sync_faults.append(Fault(400, 54008, "Invalid data"))
    publisher = open_stream(transport)
    publisher.publish(messages.status("started", "x"))
    publisher.publish(messages.status("ended", "y"))
    with caplog.at_level(logging.ERROR, logger="sync_publisher"):
        report = await publisher.close(deadline_s=5)
    assert report.dropped == {"rejected_54008": 1}
    assert len(fake_twilio.state.attempts) == 2  # no retry of the rejected one
    assert any(getattr(r, "code", None) == 54008 for r in caplog.records)


async def test_a_dead_sync_service_hits_the_retry_budget_instead_of_piling_up(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.state.random_500_rate = 1.0
    publisher = open_stream(transport, fast_config(retry_budget_s=0.3))
    publisher.publish(messages.status("started", "x"))
    report = await publisher.close(deadline_s=5)
    assert report.dropped == {"retry_budget": 1} and report.dropped_finals == 1


async def test_a_10_kib_answer_arrives_as_parts_that_join_back(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    answer = "".join(f"Step {i}: check the order status screen and confirm. " for i in range(200))[:10_240]
    publisher = open_stream(transport)
    publisher.publish(messages.suggestion("How do I track my order?", answer, "resp_big"))
    await publisher.close(deadline_s=5)
    received = fake_twilio.messages_for(STREAM)
    assert len(received) >= 3
    assert all(len(m.raw.encode()) <= 4096 for m in fake_twilio.state.messages)
    assert [m["part"] for m in received] == list(range(1, len(received) + 1))
    assert "".join(m["answer"] for m in received) == answer
    assert all(json.loads(m["transcript"])["question"] == "How do I track my order?" for m in received)


async def test_partials_are_coalesced_and_finals_never_dropped(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.state.sync_delay_s = 0.05  # backs the queue up
    publisher = open_stream(transport, fast_config(queue_max=8))
    words = []
    for i in range(30):
        words.append(f"w{i}")
        publisher.publish(messages.transcript("customer", " ".join(words), final=False, utterance_id="u1"))
    publisher.publish(messages.transcript("customer", " ".join(words), final=True, utterance_id="u1"))
    for item in finals(12):
        publisher.publish(item)
    report = await publisher.close(deadline_s=10)
    received = fake_twilio.messages_for(STREAM)
    final_texts = [m["text"] for m in received if m["final"]]
    assert final_texts == [" ".join(words)] + [f"final {i}" for i in range(12)]
    assert report.coalesced >= 25 and report.dropped_finals == 0
    partials = [m for m in received if not m["final"]]
    assert len(partials) <= 3


async def test_publish_never_blocks_or_raises(transport: TwilioSyncTransport, fake_twilio: FakeTwilio) -> None:
    fake_twilio.state.sync_delay_s = 1.0
    publisher = open_stream(transport, fast_config(queue_max=8))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(2000):
        publisher.publish(messages.transcript("customer", "x" * (i % 50), final=False, utterance_id=f"p{i}"))
    assert loop.time() - start < 0.5
    report = await publisher.close(deadline_s=0.1)
    assert report.dropped["queue_full"] > 0
    assert sum(report.dropped.values()) + report.published == 2000


async def test_a_second_publisher_on_a_stream_continues_its_seq(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    hub = SyncPublisher(transport, fast_config(), lambda sid: f"FLEX_ASSIST_{sid}")
    first = hub.open(CALL)
    first.publish(messages.status("started", "a"))
    first.publish(messages.status("ended", "a"))
    await first.close(deadline_s=5)
    second = hub.open(CALL)
    second.publish(messages.status("started", "b"))
    await second.close(deadline_s=5)
    assert [m["seq"] for m in fake_twilio.messages_for(STREAM)] == [1, 2, 3]


async def test_overlapping_publishers_on_one_stream_never_repeat_a_seq(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    hub = SyncPublisher(transport, fast_config(), lambda sid: f"FLEX_ASSIST_{sid}")
    old, new = hub.open(CALL), hub.open(CALL)  # a new stream while the old one still flushes
    for i in range(10):
        (old if i % 2 else new).publish(messages.status("x", str(i)))
    await asyncio.gather(old.close(deadline_s=5), new.close(deadline_s=5))
    seqs = sorted(m["seq"] for m in fake_twilio.messages_for(STREAM))
    assert seqs == list(range(1, 11))


async def test_a_hung_twilio_times_out_at_the_configured_seconds(fake_twilio: FakeTwilio) -> None:
    # The SDK asks aiohttp for no timeout at all; the client bounds every call itself.
    transport = sync_transport(fake_twilio, timeout_s=0.2)
    try:
        await transport.create_stream("FLEX_ASSIST_CA1", ttl=60)
        fake_twilio.state.sync_delay_s = 2.0  # ten times the timeout
        with pytest.raises(SyncRetryableError, match="timed out"):
            await asyncio.wait_for(transport.publish("FLEX_ASSIST_CA1", "{}"), timeout=10)
    finally:
        await transport.aclose()


async def test_retry_after_is_read_from_the_failed_response(
    transport: TwilioSyncTransport, fake_twilio: FakeTwilio
) -> None:
    await transport.create_stream("FLEX_ASSIST_CA2", ttl=60)
    fake_twilio.state.sync_faults.append(Fault(429, 54009, "Rate limit exceeded", retry_after="3"))
    with pytest.raises(SyncRetryableError) as caught:
        await transport.publish("FLEX_ASSIST_CA2", '{"type":"status"}')
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (429, 54009, 3.0)
