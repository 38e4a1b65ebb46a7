"""The Flex-facing HTTP API against the fake Twilio (IAM, Calls/Streams, Sync)."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import API_KEY_SID, API_SECRET, PUBLIC_URL, TWILIO_TOKEN, RunningRelay, StartRelay
from tests.fakes.twilio_server import FakeTwilio, Fault

CALL = "CA" + "1234abcd" * 4
FLEX_ORIGIN = "https://flex.twilio.com"


async def _get(url: str, **kwargs: Any) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as s, s.get(url, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, r.headers


async def _post(url: str, **kwargs: Any) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    method = kwargs.pop("method", "POST")
    async with aiohttp.ClientSession() as s, s.request(method, url, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body, r.headers


@pytest.fixture
async def relay(start_relay: StartRelay, fake_twilio: FakeTwilio) -> RunningRelay:
    fake_twilio.add_agent("flex-token-agent", "alice_40example_2Ecom", ["agent"])
    fake_twilio.add_agent("flex-token-guest", "guest", ["guest"])
    fake_twilio.add_agent("flex-token-expired", "bob", ["agent"], valid=False)
    fake_twilio.state.calls[CALL] = "in-progress"
    return await start_relay(allowed_origins=(FLEX_ORIGIN,))


# ------------------------------------------------------------------ /token


async def test_a_valid_agent_gets_a_sync_token(relay: RunningRelay, fake_twilio: FakeTwilio) -> None:
    status, body, headers = await _get(relay.http_url("/token"), headers={"Authorization": "Bearer flex-token-agent"})
    assert status == 200
    assert body["identity"] == "alice_40example_2Ecom" and body["ttl"] == 3600
    claims = jwt.decode(body["token"], API_SECRET, algorithms=["HS256"])
    assert claims["iss"] == API_KEY_SID
    assert claims["sub"] == fake_twilio.state.account_sid
    assert claims["grants"]["identity"] == "alice_40example_2Ecom"
    assert claims["grants"]["data_sync"]["service_sid"] == fake_twilio.state.sync_service_sid
    assert claims["exp"] - claims["nbf"] <= 3600 + 1
    assert headers["Cache-Control"] == "no-store"


async def test_token_in_the_body_works_but_never_in_the_url(relay: RunningRelay) -> None:
    status, body, _ = await _post(relay.http_url("/token"), data={"Token": "flex-token-agent"})
    assert status == 200 and body["identity"] == "alice_40example_2Ecom"
    status, body, _ = await _post(relay.http_url("/token"), json={"Token": "flex-token-agent"})
    assert status == 200 and body["identity"] == "alice_40example_2Ecom"
    # A URL lands in proxies' access logs: refused before the token is even checked.
    for url in ("/token?Token=flex-token-agent", "/token?token=flex-token-agent"):
        status, body, _ = await _get(relay.http_url(url))
        assert status == 400 and "Authorization header" in body["error"]
    status, body, _ = await _post(
        relay.http_url("/stream?Token=flex-token-agent"), json={"action": "stop", "callSid": "CA" + "0" * 32}
    )
    assert status == 400
    assert relay.state.stats.flex_auth["token_in_url"] == 3


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "", 401),  # missing
        ({"Authorization": "Bearer not-a-known-token"}, "", 401),  # invalid
        ({"Authorization": "Bearer flex-token-expired"}, "", 401),  # expired: valid false
        ({"Authorization": "Bearer has spaces in it"}, "", 401),  # malformed
        ({"Authorization": "Bearer flex-token-guest"}, "", 403),  # role not allowed
    ],
)
async def test_bad_proof_is_refused(relay: RunningRelay, headers: dict[str, str], query: str, status: int) -> None:
    got, body, _ = await _get(relay.http_url("/token" + query), headers=headers)
    assert got == status and "token" not in body


async def test_malformed_tokens_never_reach_iam(relay: RunningRelay, fake_twilio: FakeTwilio) -> None:
    status, _, _ = await _get(relay.http_url("/token"), headers={"Authorization": "Bearer has spaces in it"})
    assert status == 401
    status, _, _ = await _post(relay.http_url("/token"), data={"Token": "x" * 9000})  # absurdly long
    assert status == 401
    assert fake_twilio.state.iam_requests == 0


async def test_iam_down_denies_with_503_never_allows(relay: RunningRelay, fake_twilio: FakeTwilio) -> None:
    fake_twilio.state.iam_down = True
    status, body, _ = await _get(relay.http_url("/token"), headers={"Authorization": "Bearer flex-token-agent"})
    assert status == 503 and "token" not in body
    fake_twilio.state.iam_down = False  # an outage is not cached
    status, _, _ = await _get(relay.http_url("/token"), headers={"Authorization": "Bearer flex-token-agent"})
    assert status == 200


async def test_iam_unreachable_denies_with_503(start_relay: StartRelay, fake_twilio: FakeTwilio) -> None:
    relay = await start_relay(twilio_iam_base_url="http://127.0.0.1:9")  # nothing listens there
    status, _, _ = await _get(relay.http_url("/token"), headers={"Authorization": "Bearer flex-token-agent"})
    assert status == 503


async def test_verdicts_are_cached_by_token_hash(relay: RunningRelay, fake_twilio: FakeTwilio) -> None:
    for _ in range(3):
        await _get(relay.http_url("/token"), headers={"Authorization": "Bearer flex-token-agent"})
    assert fake_twilio.state.iam_requests == 1
    cache = relay.state.flex_validator._cache  # type: ignore[union-attr]
    assert "flex-token-agent" not in cache
    assert hashlib.sha256(b"flex-token-agent").hexdigest() in cache


async def test_a_cached_verdict_expires_after_its_ttl_on_the_validators_clock(fake_twilio: FakeTwilio) -> None:
    from relay.twilio.flex_auth import FlexTokenValidator
    from sync_publisher.twilio_transport import make_twilio_client

    fake_twilio.add_agent("flex-token-agent", "alice_40example_2Ecom", ["agent"])
    now = [1000.0]
    client = make_twilio_client(
        account_sid=fake_twilio.state.account_sid, auth_token=TWILIO_TOKEN, api_base_url=fake_twilio.base_url
    )
    validator = FlexTokenValidator(
        client,
        account_sid=fake_twilio.state.account_sid,
        iam_base_url=fake_twilio.base_url,
        cache_ttl_s=60,
        clock=lambda: now[0],
    )
    try:
        first = await validator.validate("flex-token-agent")
        now[0] += 59.9
        assert await validator.validate("flex-token-agent") == first
        assert fake_twilio.state.iam_requests == 1  # served from the cache
        now[0] += 0.1  # 60 s after the verdict: asked again
        await validator.validate("flex-token-agent")
        assert fake_twilio.state.iam_requests == 2
    finally:
        await client.http_client.close()


async def test_legacy_identity_only_when_configured(start_relay: StartRelay) -> None:
    off = await start_relay()
    status, _, _ = await _get(off.http_url("/token?identity=shared-plugin-identity"))
    assert status == 401
    on = await start_relay(legacy_token_identity="shared-plugin-identity")
    status, body, _ = await _get(on.http_url("/token?identity=shared-plugin-identity"))
    assert status == 200 and body["identity"] == "shared-plugin-identity"
    status, _, _ = await _get(on.http_url("/token?identity=someone-else"))
    assert status == 401


# ------------------------------------------------------------------ /stream


async def test_start_then_stop_makes_exactly_the_functions_rest_calls(
    relay: RunningRelay, fake_twilio: FakeTwilio
) -> None:
    start = {"action": "start", "callSid": CALL, "Token": "flex-token-agent"}
    status, body, _ = await _post(relay.http_url("/stream"), json=start)
    assert (status, body["result"]) == (200, True)
    status, body, _ = await _post(relay.http_url("/stream"), json={**start, "action": "stop"})
    assert (status, body) == (200, {"result": True})
    assert fake_twilio.state.rest_calls == [
        (
            "create",
            CALL,
            {
                "Url": f"wss://relay.example.test/ws/{CALL}",
                "Name": f"assist_{CALL}",
                "Track": "inbound_track",
                "StatusCallback": f"{PUBLIC_URL}/twilio/stream-status",
                "StatusCallbackMethod": "POST",
                # Who started assist is the call's agent: the one who may pause it.
                "Parameter1.Name": "WorkerIdentity",
                "Parameter1.Value": "alice_40example_2Ecom",
                "Parameter2.Name": "WorkerSid",
                "Parameter2.Value": "WK00000000000000000000000000000001",
            },
        ),
        ("update", CALL, {"stream": f"assist_{CALL}", "Status": "stopped"}),
    ]


async def test_a_start_naming_the_task_passes_it_as_stream_parameters(
    relay: RunningRelay, fake_twilio: FakeTwilio
) -> None:
    task, workspace = "WT" + "a" * 32, "WS" + "b" * 32
    start = {
        "action": "start",
        "callSid": CALL,
        "Token": "flex-token-agent",
        "taskSid": task,
        "workspaceSid": workspace,
    }
    status, _, _ = await _post(relay.http_url("/stream"), json=start)
    assert status == 200
    [(_, _, form)] = fake_twilio.state.rest_calls
    assert (form["Parameter1.Name"], form["Parameter1.Value"]) == ("TaskSid", task)
    assert (form["Parameter2.Name"], form["Parameter2.Value"]) == ("WorkspaceSid", workspace)


async def test_a_second_start_creates_no_second_stream(relay: RunningRelay, fake_twilio: FakeTwilio) -> None:
    start = {"action": "start", "callSid": CALL, "Token": "flex-token-agent"}
    first = await _post(relay.http_url("/stream"), json=start)
    second = await _post(relay.http_url("/stream"), data=start)  # the form shape works too
    assert first[1]["result"] is True and second[1]["result"] is True
    running = [s for s in fake_twilio.state.media_streams.values() if s["status"] == "in-progress"]
    assert len(running) == 1


@pytest.mark.parametrize(
    ("call_status", "fault", "expected"),
    [
        (None, None, 404),  # unknown call
        ("completed", None, 409),  # not in progress (21220)
        ("in-progress", Fault(500, 20500, "Internal Server Error"), 502),
        ("in-progress", Fault(503, 20503, "Service Unavailable"), 502),
    ],
)
async def test_twilio_errors_map_to_clear_answers(
    relay: RunningRelay, fake_twilio: FakeTwilio, call_status: str | None, fault: Fault | None, expected: int
) -> None:
    other = "CA" + "9" * 32
    if call_status:
        fake_twilio.state.calls[other] = call_status
    if fault:
        fake_twilio.state.api_faults.append(fault)
    status, body, _ = await _post(
        relay.http_url("/stream"), json={"action": "start", "callSid": other, "Token": "flex-token-agent"}
    )
    assert status == expected and "error" in body


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "start", "callSid": "CA123", "Token": "flex-token-agent"},
        {"action": "explode", "callSid": CALL, "Token": "flex-token-agent"},
        {"action": "start", "callSid": CALL, "Token": "flex-token-agent", "taskSid": "WT123"},
        {
            "action": "start",
            "callSid": CALL,
            "Token": "flex-token-agent",
            "taskSid": "WT" + "a" * 32,
            "workspaceSid": "x",
        },
    ],
)
async def test_bad_stream_requests_are_400(relay: RunningRelay, payload: dict[str, str]) -> None:
    status, _, _ = await _post(relay.http_url("/stream"), json=payload)
    assert status == 400


async def test_stream_control_requires_a_valid_flex_token(relay: RunningRelay, fake_twilio: FakeTwilio) -> None:
    status, _, _ = await _post(relay.http_url("/stream"), json={"action": "start", "callSid": CALL, "Token": "nope"})
    assert status == 401 and fake_twilio.state.rest_calls == []


async def test_restful_assist_endpoints_share_the_code(relay: RunningRelay, fake_twilio: FakeTwilio) -> None:
    auth = {"Authorization": "Bearer flex-token-agent"}
    status, body, _ = await _post(relay.http_url(f"/calls/{CALL}/assist"), headers=auth)
    assert status == 200 and body["result"] is True
    status, body, _ = await _post(relay.http_url(f"/calls/{CALL}/assist"), headers=auth, method="DELETE")
    assert status == 200 and body["result"] is True
    assert [kind for kind, _, _ in fake_twilio.state.rest_calls] == ["create", "update"]


# ------------------------------------------------------------------ CORS


async def test_cors_preflight_from_an_allowed_origin_passes(relay: RunningRelay) -> None:
    headers = {
        "Origin": FLEX_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    status, _, got = await _post(relay.http_url("/stream"), headers=headers, method="OPTIONS")
    assert status == 204
    assert got["Access-Control-Allow-Origin"] == FLEX_ORIGIN
    assert "POST" in got["Access-Control-Allow-Methods"]


async def test_cors_preflight_from_another_origin_fails(relay: RunningRelay) -> None:
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    status, _, got = await _post(relay.http_url("/stream"), headers=headers, method="OPTIONS")
    assert status == 403 and "Access-Control-Allow-Origin" not in got


async def test_cors_response_echoes_the_origin_never_a_wildcard(relay: RunningRelay) -> None:
    _, _, got = await _get(
        relay.http_url("/token"), headers={"Origin": FLEX_ORIGIN, "Authorization": "Bearer flex-token-agent"}
    )
    assert got["Access-Control-Allow-Origin"] == FLEX_ORIGIN and got["Vary"] == "Origin"
    _, _, got = await _get(relay.http_url("/token"), headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in got


# ------------------------------------------------------------------ status callbacks


def _status_form(event: str = "stream-started", **extra: str) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "1" * 32,
        "CallSid": CALL,
        "StreamSid": "MZ" + "2" * 32,
        "StreamName": f"assist_{CALL}",
        "StreamEvent": event,
        "Timestamp": "2026-11-29T07:00:00Z",
        **extra,
    }


async def test_a_signed_status_callback_is_accepted_and_counted(relay: RunningRelay) -> None:
    form = _status_form()
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{PUBLIC_URL}/twilio/stream-status", form)
    status, _, _ = await _post(
        relay.http_url("/twilio/stream-status"), data=form, headers={"X-Twilio-Signature": signature}
    )
    assert status == 204
    assert relay.state.stats.stream_callbacks["stream-started"] == 1


@pytest.mark.parametrize("signature", [None, "bm90IGEgc2lnbmF0dXJl"])
async def test_unsigned_or_badly_signed_callbacks_are_refused(relay: RunningRelay, signature: str | None) -> None:
    headers = {"X-Twilio-Signature": signature} if signature else {}
    status, _, _ = await _post(relay.http_url("/twilio/stream-status"), data=_status_form(), headers=headers)
    assert status == 403


async def test_stream_error_becomes_a_status_message_on_sync(relay: RunningRelay, fake_twilio: FakeTwilio) -> None:
    form = _status_form("stream-error", StreamError="31920: handshake failed")
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"{PUBLIC_URL}/twilio/stream-status", form)
    await _post(relay.http_url("/twilio/stream-status"), data=form, headers={"X-Twilio-Signature": signature})
    await relay.state.background_idle()
    published = fake_twilio.messages_for(f"FLEX_ASSIST_{CALL}")
    assert [(m["type"], m["state"]) for m in published] == [("status", "degraded")]
    assert "31920" in published[0]["reason"]


async def test_json_body_with_body_sha256_is_verified(relay: RunningRelay) -> None:
    body = json.dumps(_status_form("stream-stopped"))
    digest = hashlib.sha256(body.encode()).hexdigest()
    url = f"{PUBLIC_URL}/twilio/stream-status?{urlencode({'bodySHA256': digest})}"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, {})
    status, _, _ = await _post(
        relay.http_url(f"/twilio/stream-status?bodySHA256={digest}"),
        data=body,
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/json"},
    )
    assert status == 204
    tampered = body.replace("stream-stopped", "stream-started")
    status, _, _ = await _post(
        relay.http_url(f"/twilio/stream-status?bodySHA256={digest}"),
        data=tampered,
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/json"},
    )
    assert status == 403


async def test_hmac_sha256_shared_key_variant(start_relay: StartRelay) -> None:
    relay = await start_relay(twilio_webhook_shared_key="webhooks-shared-key-secret")
    form = _status_form()
    signature = RequestValidator("webhooks-shared-key-secret").compute_signature(
        f"{PUBLIC_URL}/twilio/stream-status", form, algorithm="HMAC_SHA256"
    )
    headers = {
        "X-Twilio-Signature": signature,
        "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256",
    }
    status, _, _ = await _post(relay.http_url("/twilio/stream-status"), data=form, headers=headers)
    assert status == 204
    headers["X-Twilio-Webhooks-Signature-Settings"] = "key=x,algorithm=HMAC_SHA1"  # downgrade attempt
    status, _, _ = await _post(relay.http_url("/twilio/stream-status"), data=form, headers=headers)
    assert status == 403


# ------------------------------------------------------------------ OpenAPI


async def test_openapi_describes_exactly_the_routes(relay: RunningRelay) -> None:
    status, spec, _ = await _get(relay.http_url("/openapi.json"))
    assert status == 200 and spec["openapi"].startswith("3.")
    described = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    served = {
        (route.resource.canonical, route.method)
        for route in relay.server.app.router.routes()
        if route.method not in ("HEAD", "OPTIONS") and route.resource is not None
    }
    assert described == served


async def test_console_in_sync_mode_reads_real_sync_and_serves_no_feed(relay: RunningRelay) -> None:
    status, html, _ = await _get(relay.http_url("/console"))
    assert status == 200 and 'data-mode="sync"' in html
    assert "twilio-sync@4.0.1/builds/twilio-sync.min.js" in html
    assert 'data-stream-template="FLEX_ASSIST_{call_sid}"' in html
    for path in ("/console/events", "/console/calls"):
        status, _, _ = await _get(relay.http_url(path))
        assert status == 404  # transcripts are never served without Flex authentication
