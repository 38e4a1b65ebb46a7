"""Only Twilio (or a keyed minimal client) gets in; limits answer clearly; secrets stay out of logs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from relay.cli.simulator import CallSpec, sign_upgrade, stream_call
from relay.logs import JsonFormatter, configure_logging, secrets_from_settings
from relay.settings import Settings
from relay.twilio.flex_auth import FlexAuthError, FlexTokenValidator
from relay.twilio.media import CloseCode
from sync_publisher.twilio_transport import make_twilio_client
from tests.conftest import (
    API_SECRET,
    OPENAI_KEY,
    TWILIO_TOKEN,
    RunningRelay,
    StartRelay,
    qa_turns,
    speech_like_ulaw,
    wait_until,
)
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_server import FakeTwilio

WSS_MEDIA = "wss://relay.example.test/media"


async def _upgrade_status(url: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


# ------------------------------------------------------------------ signatures


@pytest.mark.parametrize(
    ("signed_url", "path", "expected"),
    [
        (WSS_MEDIA, "/media", 101),  # Twilio's own algorithm over the public wss URL
        ("wss://relay.example.test/ws/CA1", "/media", 403),  # replayed on another path
        ("https://relay.example.test/media", "/media", 403),  # proxy-rewritten scheme
        ("ws://relay.example.test/media", "/media", 403),
        ("wss://relay.attacker.test/media", "/media", 403),  # another host
    ],
)
async def test_upgrade_signature(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, signed_url: str, path: str, expected: int
) -> None:
    relay = await start_relay()
    signature = sign_upgrade(TWILIO_TOKEN, signed_url)
    status = await _upgrade_status(relay.ws_url(path), {"x-twilio-signature": signature})
    assert status == expected
    if expected == 403:
        assert fake_realtime.connect_attempts == 0  # refused before any model session


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": "bm90LWEtc2lnbmF0dXJl"},
        {"X-Twilio-Signature": sign_upgrade("some-other-auth-token-value", WSS_MEDIA)},
        # Forwarded headers are ignored: the public URL comes from RELAY_PUBLIC_URL only.
        {
            "X-Twilio-Signature": sign_upgrade(TWILIO_TOKEN, "wss://evil.test/media"),
            "X-Forwarded-Host": "evil.test",
            "X-Forwarded-Proto": "wss",
        },
    ],
)
async def test_missing_or_wrong_signature_is_403(start_relay: StartRelay, headers: dict[str, str]) -> None:
    relay = await start_relay()
    assert await _upgrade_status(relay.ws_url(), headers) == 403
    assert sum(relay.state.stats.refusals.values()) == 1


async def test_minimal_clients_use_an_api_key_and_both_modes_coexist(start_relay: StartRelay) -> None:
    relay = await start_relay(media_api_key="vendor-key-0123456789")
    assert await _upgrade_status(relay.ws_url(), {"apikey": "vendor-key-0123456789"}) == 101
    assert await _upgrade_status(relay.ws_url(), {"apikey": "wrong-key"}) == 403
    assert await _upgrade_status(relay.ws_url(), relay.signed_headers()) == 101


async def test_api_key_only_deployment_requires_the_key(start_relay: StartRelay) -> None:
    relay = await start_relay(twilio_auth_token=None, media_api_key="vendor-key-0123456789")
    assert await _upgrade_status(relay.ws_url(), {}) == 403
    assert await _upgrade_status(relay.ws_url(), {"apikey": "vendor-key-0123456789"}) == 101


# ------------------------------------------------------------------ limits


async def test_max_calls_refuses_with_503_before_upgrade(start_relay: StartRelay) -> None:
    relay = await start_relay(max_calls=1)
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.0)}, pace=1.0)
    first = asyncio.create_task(stream_call(relay.ws_url(), spec, headers=relay.signed_headers()))
    await wait_until(lambda: bool(relay.state.calls))
    assert await _upgrade_status(relay.ws_url(), relay.signed_headers()) == 503
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


async def test_compression_offered_by_a_peer_is_not_negotiated(start_relay: StartRelay) -> None:
    relay = await start_relay()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(relay.ws_url(), headers=relay.signed_headers(), compress=15) as ws,
    ):
        assert ws.compress == 0  # the relay answered without Sec-WebSocket-Extensions
        await ws.close()


async def _call_close(relay: RunningRelay, spec: CallSpec, linger_s: float = 0.0) -> tuple[int | None, str]:
    result = await stream_call(relay.ws_url(), spec, headers=relay.signed_headers(), linger_s=linger_s)
    return result.close_code, result.close_reason


async def test_message_too_big_closes_with_1009(start_relay: StartRelay) -> None:
    relay = await start_relay(max_message_bytes=4096)
    spec = CallSpec(audio={"inbound": speech_like_ulaw(1.0)}, pace=0, frame_bytes=4000)
    code, _ = await _call_close(relay, spec)
    assert code == CloseCode.MESSAGE_TOO_BIG


async def test_no_start_in_time_closes_with_4408(start_relay: StartRelay) -> None:
    relay = await start_relay(start_timeout_s=0.3)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(relay.ws_url(), headers=relay.signed_headers()) as ws,
    ):
        msg = await asyncio.wait_for(ws.receive(), timeout=3)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == CloseCode.START_TIMEOUT
        assert msg.extra == "no start message in time"


async def test_idle_stream_closes_with_4410(start_relay: StartRelay) -> None:
    relay = await start_relay(idle_timeout_s=0.3)
    spec = CallSpec(audio={"inbound": speech_like_ulaw(0.2)}, pace=0, send_stop=False)
    code, reason = await _call_close(relay, spec, linger_s=2.0)
    assert (code, reason) == (CloseCode.IDLE_TIMEOUT, "no media received in time")


async def test_call_longer_than_the_limit_closes_with_4413(start_relay: StartRelay) -> None:
    relay = await start_relay(max_call_s=0.4)
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.0)}, pace=1.0)
    code, _ = await _call_close(relay, spec)
    assert code == CloseCode.CALL_TOO_LONG


async def test_custom_parameters_too_large_close_with_4431(start_relay: StartRelay) -> None:
    relay = await start_relay(max_custom_params_bytes=64)
    spec = CallSpec(audio={"inbound": speech_like_ulaw(0.2)}, pace=0, custom_parameters={"note": "x" * 100})
    code, _ = await _call_close(relay, spec)
    assert code == CloseCode.PARAMETERS_TOO_LARGE


# ------------------------------------------------------------------ duplicate streams


async def test_a_second_stream_for_a_call_replaces_the_first_and_reuses_its_session(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    relay = await start_relay()
    first_audio, second_audio = speech_like_ulaw(1.0, seed=1), speech_like_ulaw(1.0, seed=2)
    first = CallSpec(audio={"inbound": first_audio}, pace=2.0, send_stop=False)
    second = CallSpec(audio={"inbound": second_audio}, pace=0, call_sid=first.call_sid)
    old = asyncio.create_task(stream_call(relay.ws_url(), first, headers=relay.signed_headers(), linger_s=1.0))
    await wait_until(lambda: bool(relay.state.calls))
    first_bridge = next(iter(relay.state.calls.values())).bridge
    await wait_until(lambda: first_bridge.frames_in >= 10)  # the first stream is mid-call
    new = await stream_call(relay.ws_url(), second, headers=relay.signed_headers())
    replaced = await old
    await wait_until(lambda: bool(relay.state.idle))
    assert replaced.close_code == CloseCode.REPLACED
    assert new.close_code == CloseCode.NORMAL
    assert len(fake_realtime.sessions) == 1  # never a second model session
    assert relay.state.stats.streams_replaced == 1
    # Audio from both sockets reached the one session: the second stream in full.
    received = len(fake_realtime.sessions[0].audio)
    assert received >= len(second_audio) * 6


# ------------------------------------------------------------------ logs


async def _call_with_captured_logs(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, level: str, **overrides: object
) -> str:
    fake_realtime.behaviour.turns = qa_turns(1)
    fake_realtime.behaviour.turn_every_bytes = 24_000
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    relay = await start_relay(**overrides)
    settings = relay.settings
    configure_logging(level, secrets_from_settings(settings))
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        spec = CallSpec(audio={"inbound": speech_like_ulaw(1.0)}, pace=0)
        await stream_call(relay.ws_url(), spec, headers=relay.signed_headers())
        await wait_until(lambda: bool(relay.state.idle))
        # The call's record is written too while the capture runs (database drivers log too).
        assert relay.state.records is not None and await relay.state.records.writer.idle()
        await _get_token(relay)
    finally:
        root.handlers[:], root.level = saved
    return stream.getvalue()


async def _get_token(relay: RunningRelay) -> None:
    async with aiohttp.ClientSession() as s, s.get(relay.http_url("/token?Token=flex-secret-token-xyz")) as r:
        await r.read()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_no_secret_or_transcript_reaches_the_logs(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, level: str
) -> None:
    logs = await _call_with_captured_logs(start_relay, fake_realtime, level)
    assert "call summary" in logs  # the capture works
    signature = sign_upgrade(TWILIO_TOKEN, WSS_MEDIA)
    for secret in (OPENAI_KEY, TWILIO_TOKEN, API_SECRET, "flex-secret-token-xyz", signature):
        assert secret not in logs
    for text in ("Question number 0", "refund please", "within 30 days"):
        assert text not in logs


async def test_transcripts_are_logged_only_when_the_operator_opts_in(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    logs = await _call_with_captured_logs(start_relay, fake_realtime, "INFO", log_transcripts=True)
    assert "Question number 0 about my refund please" in logs
    assert OPENAI_KEY not in logs


async def test_sockets_that_never_start_count_toward_the_call_limit(start_relay: StartRelay) -> None:
    relay = await start_relay(max_calls=2)
    async with aiohttp.ClientSession() as session:
        first = await session.ws_connect(relay.ws_url(), headers=relay.signed_headers())
        second = await session.ws_connect(relay.ws_url(), headers=relay.signed_headers())
        await wait_until(lambda: relay.state.open_connections == 2)
        assert await _upgrade_status(relay.ws_url(), relay.signed_headers()) == 503
        async with session.get(relay.http_url("/readyz")) as r:
            assert r.status == 503 and (await r.json())["open_connections"] == 2
        await first.close()
        await second.close()
    await wait_until(lambda: relay.state.open_connections == 0)
    assert await _upgrade_status(relay.ws_url(), relay.signed_headers()) == 101


# ------------------------------------------------------------------ Flex token checks


@contextlib.asynccontextmanager
async def _validator(fake_twilio: FakeTwilio, **options: Any) -> AsyncIterator[FlexTokenValidator]:
    client = make_twilio_client(
        account_sid=fake_twilio.state.account_sid, auth_token=TWILIO_TOKEN, api_base_url=fake_twilio.base_url
    )
    try:
        yield FlexTokenValidator(
            client, account_sid=fake_twilio.state.account_sid, iam_base_url=fake_twilio.base_url, **options
        )
    finally:
        await client.http_client.close()


async def test_invalid_tokens_from_one_source_cost_at_most_the_limit_of_iam_requests(fake_twilio: FakeTwilio) -> None:
    now = [1000.0]
    async with _validator(fake_twilio, failure_limit=5, failure_window_s=60, clock=lambda: now[0]) as validator:
        statuses = []
        for i in range(50):
            with pytest.raises(FlexAuthError) as caught:
                await validator.validate(f"made-up-token-{i}", source="203.0.113.7")
            statuses.append(caught.value.status)
        assert fake_twilio.state.iam_requests == 5
        assert statuses == [401] * 5 + [429] * 45
        assert caught.value.retry_after_s == 60
        # Another source is not held up; this one may try again when its window is over.
        with pytest.raises(FlexAuthError, match="invalid or expired"):
            await validator.validate("made-up-token-x", source="198.51.100.1")
        now[0] += 60
        with pytest.raises(FlexAuthError, match="invalid or expired"):
            await validator.validate("made-up-token-y", source="203.0.113.7")
        assert fake_twilio.state.iam_requests == 7


async def test_concurrent_invalid_tokens_are_limited_too(fake_twilio: FakeTwilio) -> None:
    async with _validator(fake_twilio, failure_limit=5) as validator:
        results = await asyncio.gather(
            *(validator.validate(f"made-up-token-{i}", source="203.0.113.7") for i in range(40)),
            return_exceptions=True,
        )
    assert fake_twilio.state.iam_requests == 5
    assert sorted(r.status for r in results if isinstance(r, FlexAuthError)) == [401] * 5 + [429] * 35


async def test_valid_tokens_never_count_against_their_source(fake_twilio: FakeTwilio) -> None:
    for i in range(20):  # twenty agents behind one NAT
        fake_twilio.add_agent(f"flex-token-agent-{i}", f"agent{i}", ["agent"])
    async with _validator(fake_twilio, failure_limit=3) as validator:
        for i in range(20):
            identity = await validator.validate(f"flex-token-agent-{i}", source="203.0.113.7")
            assert identity.identity == f"agent{i}"
        with pytest.raises(FlexAuthError, match="invalid or expired"):
            await validator.validate("made-up-token", source="203.0.113.7")


async def test_a_cached_refusal_raises_a_fresh_exception_whose_traceback_does_not_grow(
    fake_twilio: FakeTwilio,
) -> None:
    async with _validator(fake_twilio) as validator:
        errors = []
        for _ in range(20):
            try:
                await validator.validate("made-up-token", source="203.0.113.7")
            except FlexAuthError as exc:
                errors.append(exc)
        assert fake_twilio.state.iam_requests == 1  # the refusal was cached
        assert len({id(e) for e in errors}) == 20
        depths = {len(traceback.extract_tb(e.__traceback__)) for e in errors[1:]}
        assert len(depths) == 1
        assert all(e.status == 401 and e.__context__ is None for e in errors)


# ------------------------------------------------------------------ what the logs scrub


def _secret_fields() -> list[str]:
    return [name for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)]


# Secret settings whose validators want a shape; every other one gets a plain value.
_SHAPED = {
    "database_url": "postgresql://relay:pg-password-{n}@db.example:5432/relay",
    "redis_url": "redis://:redis-password-{n}@redis.example:6379/0",
}


def _line(formatter: JsonFormatter, text: str) -> str:
    return formatter.format(logging.LogRecord("relay.test", logging.ERROR, __file__, 1, text, (), None))


def test_every_secret_setting_and_every_url_password_is_scrubbed_from_the_logs() -> None:
    secret_fields = _secret_fields()
    assert "twilio_webhook_shared_key" in secret_fields and "database_url" in secret_fields
    values: dict[str, Any] = {}
    for n, name in enumerate(secret_fields):
        values[name] = _SHAPED.get(name, "secret-value-{n}-of-" + name).format(n=n)
    # Every plain-text URL setting, written with credentials (a proxy, say).
    url_fields = [
        name
        for name, f in Settings.model_fields.items()
        if name.endswith("_url") and name not in secret_fields and "str" in str(f.annotation)
    ]
    assert {"openai_base_url", "twilio_api_base_url", "public_url"} <= set(url_fields)
    for n, name in enumerate(url_fields):
        values[name] = f"https://proxy-user:url-password-{n}@{name.replace('_', '-')}.example"
    settings = Settings(**values)
    formatter = JsonFormatter(secrets_from_settings(settings))
    for name in secret_fields:
        secret = values[name]
        line = _line(formatter, f"connect failed: {secret}; retrying")
        assert secret not in line and "[redacted]" in line, name
    for name, url in values.items():
        if "://" in url:
            password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
            # Alone (a driver's message), and in the URL.
            for text in (f"auth failed for password {password}", f"cannot reach {url}"):
                line = _line(formatter, text)
                assert password not in line, name


def test_a_password_in_any_url_is_scrubbed_even_when_no_setting_holds_it() -> None:
    line = _line(JsonFormatter(), "lost redis://:short@10.0.0.5:6379/0 and postgresql://app:pw@db/x")
    assert "short" not in line and ":pw@" not in line
    assert "redis://:[redacted]@10.0.0.5:6379/0" in line and "postgresql://app:[redacted]@db/x" in line


async def test_a_burst_of_one_valid_token_costs_one_iam_request_and_no_refusal(fake_twilio: FakeTwilio) -> None:
    # Many requests at once behind one proxy (the topology's balancer) with the same token:
    # one IAM request answers all of them, and none is counted against the source.
    fake_twilio.add_agent("flex-token-burst", "burst", ["agent"])
    async with _validator(fake_twilio, failure_limit=3) as validator:
        identities = await asyncio.gather(
            *(validator.validate("flex-token-burst", source="203.0.113.7") for _ in range(30))
        )
    assert {i.identity for i in identities} == {"burst"}
    assert fake_twilio.state.iam_requests == 1


async def test_a_burst_of_one_invalid_token_raises_a_fresh_error_for_each_caller(fake_twilio: FakeTwilio) -> None:
    async with _validator(fake_twilio) as validator:
        results = await asyncio.gather(
            *(validator.validate("made-up-token", source="203.0.113.7") for _ in range(5)), return_exceptions=True
        )
    assert all(isinstance(r, FlexAuthError) and r.status == 401 for r in results)
    assert len({id(r) for r in results}) == 5 and fake_twilio.state.iam_requests == 1


@pytest.mark.parametrize(("trusted", "valid_status"), [("127.0.0.0/8", 200), ("", 429)])
async def test_behind_a_trusted_proxy_invalid_tokens_are_limited_per_forwarded_client(
    start_relay: StartRelay, fake_twilio: FakeTwilio, trusted: str, valid_status: int
) -> None:
    """Every request comes from the balancer: unless it is trusted to name the client, one
    client's bad tokens use up the allowance of everyone behind it."""
    relay = await start_relay(trusted_proxies=trusted)
    fake_twilio.add_agent("flex-token-late-agent", "late", ["agent"])

    async def token(value: str, client: str) -> int:
        headers = {"Authorization": f"Bearer {value}", "X-Forwarded-For": f"198.51.100.1, {client}"}
        async with aiohttp.ClientSession() as s, s.post(relay.http_url("/token"), headers=headers) as r:
            return r.status

    statuses = [await token(f"made-up-token-{i}", "203.0.113.7") for i in range(12)]
    assert statuses.count(429) == 2 and statuses.count(401) == 10
    # Another agent behind the same balancer is not locked out by it.
    assert await token("flex-token-late-agent", "203.0.113.99") == valid_status


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    with pytest.raises(ValidationError, match="not-a-network"):
        Settings(trusted_proxies="10.0.0.0/8,not-a-network")
