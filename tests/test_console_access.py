"""Hub mode is never public by accident: without Twilio Sync the relay listens on loopback
unless RELAY_HOST says otherwise, and a console reachable from other machines answers its data
routes (live feed, hub history, records, audio, passages) only with a credential: the console
token (bearer or session cookie) or a supervisor's Flex token. Requests come from a real
non-loopback address of this machine."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from relay.cli.simulator import CallSpec, stream_call
from relay.settings import Settings
from relay.web.app import create_app
from relay.web.state import RELAY
from tests.conftest import (
    OPENAI_KEY,
    TIME_SCALE,
    TWILIO_TOKEN,
    StartRelay,
    fresh_data_dir,
    qa_turns,
    read_line,
    relay_process,
    speech_like_ulaw,
    wait_until,
)
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.twilio_server import FakeTwilio

TOKEN = "console-token-" + "c" * 20
SUPERVISOR, AGENT = "flex-token-supervisor", "flex-token-agent"


def non_loopback_address() -> str:
    """An IPv4 address of this machine that is not loopback (the default route's interface,
    else one the host name resolves to), or skip: the tests need a peer address other
    machines could use."""
    candidates: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # UDP connect sends nothing: it only picks the interface
        candidates.append(probe.getsockname()[0])
    with contextlib.suppress(OSError):
        candidates.extend(socket.gethostbyname_ex(socket.gethostname())[2])
    for address in candidates:
        if ipaddress.ip_address(address).is_loopback:
            continue
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind((address, 0))
            return address
    pytest.skip("this machine has no non-loopback IPv4 address to listen on")


StartHub = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_hub(fake_realtime: FakeRealtimeServer) -> AsyncIterator[StartHub]:
    """A hub-mode relay (OpenAI engine on the fake, no Twilio Sync) listening on `host`."""
    servers: list[TestServer] = []

    async def start(host: str, bind: str | None = None, **overrides: Any) -> TestServer:
        values: dict[str, Any] = {
            "openai_api_key": OPENAI_KEY,
            "openai_base_url": fake_realtime.base_url,
            "use_uvloop": False,
            "host": host,
            "port": 0,
            "data_dir": fresh_data_dir(),
            "record_audio": True,
        }
        values.update(overrides)
        server = TestServer(create_app(Settings(**values)), host=bind or host)
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def _recorded_call(server: TestServer, fake_realtime: FakeRealtimeServer) -> str:
    fake_realtime.behaviour.turns = qa_turns(1)
    fake_realtime.behaviour.turn_every_bytes = 8_000
    spec = CallSpec(audio={"inbound": speech_like_ulaw(2.0)}, pace=0, call_sid="minimal-call.42")
    await stream_call(f"ws://{server.host}:{server.port}/media", spec)
    state = server.app[RELAY]
    await wait_until(lambda: state.idle, timeout_s=15)
    assert state.records is not None and await state.records.writer.idle()
    return spec.call_sid


def _data_routes(server: TestServer, call_id: str) -> list[str]:
    """Every hub-mode data route of the app, filled in; fails when a new one is not listed."""
    passage = server.app[RELAY].retriever.knowledge.passages[0].id
    filled = {
        "/console/calls": "/console/calls",
        "/console/events": "/console/events",
        "/console/records": "/console/records",
        "/console/records/{callSid}": f"/console/records/{call_id}",
        "/console/records/{callSid}/audio": f"/console/records/{call_id}/audio",
        "/console/records/{callSid}/audio/{part}": f"/console/records/{call_id}/audio/0",
        "/knowledge/passage": "/knowledge/passage?id=" + passage.replace("#", "%23"),
    }
    served = {
        info.get("formatter") or info.get("path", "")
        for info in (route.resource.get_info() for route in server.app.router.routes() if route.resource)
    }
    not_data = {"/console", "/console/assets/{name}", "/console/session"}
    data = {p for p in served if (p.startswith("/console") or p.startswith("/knowledge")) and p not in not_data}
    assert data == set(filled), "a console data route is missing from this test"
    return list(filled.values())


async def _status(session: aiohttp.ClientSession, url: str, **headers: str) -> int:
    async with session.get(url, headers=headers) as response:
        return response.status  # the feed stays open: leaving the block closes it


async def test_every_data_route_needs_the_console_token_from_another_machine(
    start_hub: StartHub, fake_realtime: FakeRealtimeServer
) -> None:
    address = non_loopback_address()
    relay = await start_hub(address, console_token=TOKEN)
    call_id = await _recorded_call(relay, fake_realtime)
    routes = _data_routes(relay, call_id)
    base = f"http://{address}:{relay.port}"
    async with aiohttp.ClientSession() as anonymous:
        for route in routes:
            assert await _status(anonymous, base + route) == 401, route
            assert await _status(anonymous, base + route, Authorization="Bearer not-the-token-at-all") == 401, route
            assert await _status(anonymous, base + route, Cookie="relay_console=" + "0" * 64) == 401, route
            assert await _status(anonymous, base + route, Authorization=f"Bearer {TOKEN}") == 200, route
        # The page and its files carry no data: served to anyone.
        assert await _status(anonymous, base + "/console") == 200
        assert await _status(anonymous, base + "/console/assets/console.js") == 200
        async with anonymous.post(base + "/console/session", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401 and "Set-Cookie" not in r.headers
    # The one-click link's session: the cookie opens every route, and holds no token.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.post(base + "/console/session", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 204
            cookie = r.cookies["relay_console"]
            assert TOKEN not in cookie.value and cookie["httponly"] and cookie["samesite"] == "Strict"
        for route in routes:
            assert await _status(browser, base + route) == 200, route


async def test_a_supervisor_flex_token_opens_the_console_and_an_agent_token_does_not(
    start_hub: StartHub, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.add_agent(SUPERVISOR, "sam_40example_2Ecom", ["supervisor"])
    fake_twilio.add_agent(AGENT, "alice_40example_2Ecom", ["agent"])
    address = non_loopback_address()
    # Twilio credentials (Flex validation) but no Sync service: hub mode, no console token.
    relay = await start_hub(
        address,
        twilio_account_sid=fake_twilio.state.account_sid,
        twilio_auth_token=TWILIO_TOKEN,
        twilio_api_base_url=fake_twilio.base_url,
        twilio_iam_base_url=fake_twilio.base_url,
        require_twilio_signature=False,
    )
    assert relay.app[RELAY].hub is not None
    call_id = await _recorded_call(relay, fake_realtime)
    base = f"http://{address}:{relay.port}"
    async with aiohttp.ClientSession() as s:
        for route in _data_routes(relay, call_id):
            assert await _status(s, base + route) == 401, route
            assert await _status(s, base + route, Authorization="Bearer not-a-flex-token") == 401, route
            assert await _status(s, base + route, Authorization=f"Bearer {AGENT}") == 403, route
            assert await _status(s, base + route, Authorization=f"Bearer {SUPERVISOR}") == 200, route


async def test_without_a_console_token_an_opened_console_refuses_everyone(start_hub: StartHub) -> None:
    address = non_loopback_address()
    relay = await start_hub(address)
    base = f"http://{address}:{relay.port}"
    async with aiohttp.ClientSession() as s:
        assert await _status(s, base + "/console/records") == 401
        assert await _status(s, base + "/console/calls", Authorization="Bearer anything-at-all-here") == 401
        async with s.post(base + "/console/session", headers={"Authorization": "Bearer anything-at-all-here"}) as r:
            assert r.status == 401


async def test_only_this_machines_own_browser_goes_without_a_credential(start_hub: StartHub) -> None:
    """Loopback bind and loopback peer: open (the demo's one click). Bound to every interface,
    even a loopback request needs the token, and so does one forwarded by a local proxy."""
    local = await start_hub("127.0.0.1", console_token=TOKEN)
    everywhere = await start_hub("0.0.0.0", console_token=TOKEN)
    async with aiohttp.ClientSession() as s:
        assert await _status(s, f"http://127.0.0.1:{local.port}/console/calls") == 200
        assert await _status(s, f"http://127.0.0.1:{local.port}/console/records") == 200
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        assert await _status(s, f"http://127.0.0.1:{local.port}/console/calls", **forwarded) == 401
        assert await _status(s, f"http://127.0.0.1:{everywhere.port}/console/calls") == 401
        assert (
            await _status(s, f"http://127.0.0.1:{everywhere.port}/console/calls", Authorization=f"Bearer {TOKEN}")
            == 200
        )


async def test_a_request_from_another_machine_needs_the_token_whatever_the_setting_says(
    start_hub: StartHub,
) -> None:
    """Settings say loopback, yet the socket listens elsewhere (an embedding server, a port
    forward): the peer's address alone requires the credential."""
    address = non_loopback_address()
    relay = await start_hub("127.0.0.1", bind=address, console_token=TOKEN)
    async with aiohttp.ClientSession() as s:
        assert await _status(s, f"http://{address}:{relay.port}/console/calls") == 401
        assert await _status(s, f"http://{address}:{relay.port}/console/calls", Authorization=f"Bearer {TOKEN}") == 200


def test_hub_mode_defaults_to_loopback_and_sync_mode_to_every_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().host == "127.0.0.1"
    sync: dict[str, Any] = {
        "twilio_account_sid": "AC" + "1" * 32,
        "twilio_auth_token": TWILIO_TOKEN,
        "twilio_sync_service_sid": "IS" + "2" * 32,
        "public_url": "https://relay.example.test",
    }
    assert Settings(**sync).host == "0.0.0.0"
    monkeypatch.setenv("RELAY_HOST", "0.0.0.0")  # opening hub mode is a deliberate setting
    assert Settings().host == "0.0.0.0"
    monkeypatch.setenv("RELAY_HOST", "")  # empty counts as unset (.env.example)
    assert Settings().host == "127.0.0.1"
    with pytest.raises(ValueError, match="16"):
        Settings(console_token="short")


async def test_relay_serve_in_hub_mode_is_not_reachable_from_another_address(
    fake_realtime: FakeRealtimeServer,
) -> None:
    address = non_loopback_address()
    env = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": fake_realtime.base_url,
        "RELAY_PORT": "0",
        "RELAY_LOG_LEVEL": "INFO",
    }
    async with relay_process("serve", env=env) as proc:
        line = await read_line(proc.stderr, "relay listening")
        found = re.search(r'"port": ?(\d+)', line)
        assert found is not None, line
        port = int(found[1])
        async with aiohttp.ClientSession() as s:
            assert await _status(s, f"http://127.0.0.1:{port}/healthz") == 200
            with pytest.raises(aiohttp.ClientConnectionError):
                await _status(s, f"http://{address}:{port}/healthz")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), timeout=60 * TIME_SCALE)


async def test_a_passage_is_read_with_a_flex_token_in_sync_mode(
    start_relay: StartRelay, fake_twilio: FakeTwilio
) -> None:
    """The route the console (and the Flex plugin) opens a card's source with: the file, the
    heading the entry sits under (not its question again), and the text."""
    fake_twilio.add_agent(AGENT, "alice_40example_2Ecom", ["agent"])
    relay = await start_relay()
    assert relay.state.sync is not None
    url = relay.http_url("/knowledge/passage?id=orders.md%23where-is-my-order")
    async with aiohttp.ClientSession() as s:
        assert await _status(s, url) == 401
        async with s.get(url, headers={"Authorization": f"Bearer {AGENT}"}) as r:
            assert r.status == 200
            passage = await r.json()
        expected = relay.state.retriever.knowledge.by_id["orders.md#where-is-my-order"]
        assert passage["file"] == "orders.md" and passage["heading"] == "Orders and delivery"
        assert passage["title"] == "Where is my order?" and passage["text"] == expected.text
        assert passage["questions"] == list(expected.questions)
        missing = relay.http_url("/knowledge/passage?id=orders.md%23no-such-thing")
        assert await _status(s, missing, Authorization=f"Bearer {AGENT}") == 404
        assert await _status(s, relay.http_url("/knowledge/passage"), Authorization=f"Bearer {AGENT}") == 400
