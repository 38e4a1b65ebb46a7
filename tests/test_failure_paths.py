"""Failure paths of the process around the calls: a background task that fails is logged and
counted, retention outlives a failed pass, overlapping reloads end with the last one
requested, and a drain closes every socket at once."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiohttp
import pytest

from relay.cli.simulator import CallSpec, encode_connected, encode_start, new_sid
from relay.knowledge.base import KnowledgeBase
from relay.logs import JsonFormatter
from relay.records.service import Records
from relay.records.sqlite import SqliteStore
from relay.twilio.media import Start
from relay.web import app as relay_app
from relay.web.app import drain, reload_knowledge
from tests.conftest import TIME_SCALE, StartRelay, wait_until
from tests.fakes.twilio_server import FakeTwilio

# ------------------------------------------------------------------ background tasks


async def test_a_failed_background_task_is_logged_with_its_name_on_one_line_and_counted(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    relay = await start_relay()

    async def fails() -> None:
        raise RuntimeError("the flush went wrong")

    task = relay.state.spawn(fails(), name="stream-event")
    await asyncio.gather(task, return_exceptions=True)
    await wait_until(lambda: not relay.state.background)  # done callbacks run on a later turn
    assert relay.state.background_failures == {"stream-event": 1}
    (record,) = [r for r in caplog.records if r.getMessage() == "background task failed"]
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert '"task":"stream-event"' in line and '"error":"RuntimeError"' in line and "the flush went wrong" in line


async def test_a_cancelled_background_task_is_not_a_failure(start_relay: StartRelay) -> None:
    relay = await start_relay()
    task = relay.state.spawn(asyncio.sleep(60), name="ws-close")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await wait_until(lambda: not relay.state.background)
    assert not relay.state.background_failures


# ------------------------------------------------------------------ retention


class _OnceBrokenStore(SqliteStore):
    """A real store whose first retention pass fails with something other than an outage."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.passes = 0

    async def expire(self, ended_before: float) -> list[tuple[str, str | None]]:
        self.passes += 1
        if self.passes == 1:
            raise PermissionError("audio file not removable")
        return []


async def test_retention_survives_a_failed_pass_and_runs_again_next_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _OnceBrokenStore(str(tmp_path / "relay.db"))
    records = Records(store, audio_dir=None, retention_days=30)
    records.retention_period_s = 0.01
    records.start()
    try:
        await wait_until(lambda: store.passes >= 3)
        assert records.retention_failures == 1
        assert any(r.getMessage().startswith("retention pass failed") for r in caplog.records)
    finally:
        await records.close(5.0)


# ------------------------------------------------------------------ reloads


async def test_overlapping_reloads_end_with_the_last_one_requested(
    start_relay: StartRelay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "faq.md").write_text("Q: Where is my order?\nA: Check the tracking link.\n")
    relay = await start_relay(knowledge_dir=folder)
    state = relay.state

    # The first reload reads the folder, then is slow to finish (a large folder, a busy
    # executor); the folder changes and a second reload is requested meanwhile.
    real_load = KnowledgeBase.load
    first_read = threading.Event()
    release_first = threading.Event()
    calls = 0

    def load(directory: Path) -> KnowledgeBase:
        nonlocal calls
        calls += 1
        knowledge = real_load(directory)
        if calls == 1:
            first_read.set()
            release_first.wait(30)
        return knowledge

    monkeypatch.setattr(relay_app.KnowledgeBase, "load", load)
    (folder / "returns.md").write_text("# Returning an item\n\nThirty days, unused.\n")
    older = asyncio.create_task(reload_knowledge(state))
    await asyncio.get_running_loop().run_in_executor(None, first_read.wait, 30)
    (folder / "shipping.md").write_text("# Shipping\n\nTwo to five days.\n")
    newer = asyncio.create_task(reload_knowledge(state))
    # Unserialized, the newer reload would finish here and the older one land over it.
    await asyncio.wait({newer}, timeout=1.0 * TIME_SCALE)
    release_first.set()
    assert await older and await newer
    assert {p.id.split("#")[0] for p in state.knowledge.passages} == {"faq.md", "returns.md", "shipping.md"}


# ------------------------------------------------------------------ drain


async def test_drain_closes_every_call_at_once_even_when_one_peer_stops_reading(
    start_relay: StartRelay, fake_twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_app, "DRAIN_CLOSE_DEADLINE_S", 0.5)
    relay = await start_relay()
    polite_calls = 2
    codes: list[int] = []

    async def open_call(session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        spec = CallSpec(audio={"inbound": b""})
        start = Start(spec.call_sid, new_sid("MZ"), spec.account_sid, ("inbound",))
        ws = await session.ws_connect(relay.ws_url(), headers=relay.signed_headers(), autoclose=False)
        await ws.send_str(encode_connected())
        await ws.send_str(encode_start(start, sequence_number=1))
        return ws

    async def polite(ws: aiohttp.ClientWebSocketResponse) -> None:
        msg = await ws.receive()
        while msg.type is not aiohttp.WSMsgType.CLOSE:
            msg = await ws.receive()
        codes.append(msg.data)
        await ws.close()

    async with aiohttp.ClientSession() as session:
        # The first call's peer pings and never reads: the relay's answers fill the socket
        # until the relay cannot write to it, its close frame included.
        stuck = await open_call(session)
        await wait_until(lambda: len(relay.state.calls) == 1)
        pings = 0

        async def flood() -> None:
            nonlocal pings
            while True:
                await stuck.ping(b"p" * 125)
                pings += 1

        flooding = asyncio.create_task(flood())
        draining: asyncio.Task[None] | None = None
        try:
            last = -1
            while pings != last or pings < 1000:  # until the relay stopped reading it (blocked writing)
                last = pings
                await asyncio.sleep(0.3)
            others = [await open_call(session) for _ in range(polite_calls)]
            await wait_until(lambda: len(relay.state.calls) == 1 + polite_calls)
            draining = asyncio.create_task(drain(relay.state, deadline_s=0))
            # One close at a time would wait on the stuck socket before the others, for good.
            await asyncio.wait_for(asyncio.gather(*(polite(ws) for ws in others)), timeout=10 * TIME_SCALE)
            await asyncio.wait_for(draining, timeout=30 * TIME_SCALE)
        finally:
            flooding.cancel()
            await asyncio.gather(flooding, return_exceptions=True)
            if draining is not None and not draining.done():
                draining.cancel()
                await asyncio.gather(draining, return_exceptions=True)
            # The stuck peer reads again: what the relay wrote flushes and its socket closes.
            async with asyncio.timeout(10 * TIME_SCALE):
                while (await stuck.receive()).type not in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    pass
    assert codes == [1001] * polite_calls
    await wait_until(lambda: relay.state.idle)
