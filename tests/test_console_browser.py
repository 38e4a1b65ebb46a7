"""A real browser watches /console during a simulated call (headless Debian Chromium).

CI installs chromium and chromium-driver (see .ci/run); on a machine without them the test
skips unless CI is set, where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from relay.audio.callfile import load_call_audio
from relay.bundled import bundled_sample_call
from relay.cli.simulator import CallSpec, stream_call
from relay.settings import Settings
from relay.web.app import create_app
from relay.web.state import RELAY
from tests.conftest import OPENAI_KEY, TIME_SCALE, fresh_data_dir, qa_turns, speech_like_ulaw, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.tooling import CHROMEDRIVER, CHROMIUM, headless_chromium
from tests.test_console_access import non_loopback_address

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI must provide chromium and chromium-driver (.ci/run installs them)")
    pytest.skip("chromium/chromedriver not installed", allow_module_level=True)


StartOffline = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_offline() -> AsyncIterator[StartOffline]:
    servers: list[TestServer] = []

    async def start(**overrides: Any) -> TestServer:
        values: dict[str, Any] = {
            "engine": "local",
            "use_uvloop": False,
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": fresh_data_dir(),
            "record_audio": True,
        }
        values.update(overrides)
        server = TestServer(create_app(Settings(**values)), host=values["host"])
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def offline_relay(start_offline: StartOffline) -> TestServer:
    return await start_offline()


@pytest.fixture
def driver() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="relay-chromium-")
    browser = _browser(profile)
    yield browser
    browser.quit()
    shutil.rmtree(profile, ignore_errors=True)


async def _recorded_call(server: TestServer, **spec: Any) -> tuple[CallSpec, dict[str, Any]]:
    """The bundled sample call, played at full speed; returns it with its stored record."""
    call = CallSpec(audio=load_call_audio(bundled_sample_call()), pace=0, **spec)
    await stream_call(f"ws://{server.host}:{server.port}/media", call)
    state = server.app[RELAY]
    await wait_until(lambda: state.idle, timeout_s=30)
    assert state.records is not None and await state.records.writer.idle()
    record = await state.records.store.get(call.call_sid)
    assert record is not None
    return call, record


def _browser(profile: str):  # type: ignore[no-untyped-def]
    return headless_chromium(profile, "1280,900")


def _count(driver, selector: str) -> int:  # type: ignore[no-untyped-def]
    return len(driver.find_elements("css selector", selector))


async def _until_browser(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll the page (blocking WebDriver calls, off the loop) until `condition` holds."""
    deadline = asyncio.get_running_loop().time() + timeout_s * TIME_SCALE
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "the page never showed it"
        await asyncio.sleep(0.1)


async def test_console_shows_transcripts_and_suggestion_cards_live(offline_relay: TestServer) -> None:
    profile = tempfile.mkdtemp(prefix="relay-chromium-")
    driver = await asyncio.to_thread(_browser, profile)
    try:
        await asyncio.to_thread(driver.get, f"http://127.0.0.1:{offline_relay.port}/console")
        assert "Agent assist console" in await asyncio.to_thread(lambda: driver.title)
        audio = load_call_audio(bundled_sample_call())
        spec = CallSpec(audio=audio, pace=4.0)
        call = asyncio.create_task(stream_call(f"ws://127.0.0.1:{offline_relay.port}/media", spec))

        # Cards appear while the call is still running, not only at the end.
        await _until_browser(lambda: _count(driver, ".suggestion") >= 1)
        assert not call.done(), "the first suggestion should appear during the call"
        await call
        state = offline_relay.app[RELAY]
        await wait_until(lambda: bool(state.recent_summaries), timeout_s=30)
        await _until_browser(lambda: "ENDED" in driver.find_element("css selector", ".call .state").text.upper())

        # Each card names its passage's file and heading (not the question again) once known.
        await _until_browser(
            lambda: "Source: orders.md › Orders and delivery" in driver.find_element("id", "calls").text
        )
        lines = await asyncio.to_thread(_count, driver, ".line.customer")
        cards = await asyncio.to_thread(_count, driver, ".suggestion")
        text = await asyncio.to_thread(lambda: driver.find_element("css selector", "main").text)
        ARTIFACTS.mkdir(exist_ok=True)
        await asyncio.to_thread(driver.save_screenshot, str(ARTIFACTS / "console.png"))
        # The page shows everything the relay published for the call, whatever the recognizer heard.
        assert state.hub is not None
        published = state.hub.history(spec.call_sid)
        assert cards == sum(m["type"] == "suggestion" for m in published) >= 3
        assert lines == sum(m["type"] == "transcript" and m["final"] for m in published)
        assert "Where is my order?" in text and "reset link" in text
        sources = await asyncio.to_thread(_count, driver, ".suggestion .src:not(:empty)")
        assert sources == cards and "Source: Where is my order?" not in text
        assert spec.call_sid in text
        # The call uses the page's width, and once ended it reads as a page (no inner scrolling).
        card_w, main_w, scroll_h, client_h = await asyncio.to_thread(
            driver.execute_script,
            "const c = document.querySelector('.call'), b = c.querySelector('.body');"
            "return [c.getBoundingClientRect().width, document.getElementById('calls').clientWidth,"
            " b.scrollHeight, b.clientHeight];",
        )
        assert card_w >= main_w - 40 and card_w > 1000, (card_w, main_w)
        assert scroll_h <= client_h + 1, "the ended call still scrolls inside its card"
        # A click on a source opens the passage's text.
        source = driver.find_element("css selector", ".suggestion .source")
        passage = state.retriever.knowledge.by_id[source.get_attribute("data-id")]
        await asyncio.to_thread(source.click)
        await _until_browser(lambda: _count(driver, ".suggestion .passage .where") == 1)
        opened = await asyncio.to_thread(lambda: driver.find_element("css selector", ".suggestion .passage").text)
        assert passage.text in opened and passage.source in opened
        # The wrap-up is shown under the call: each question with its mark, topics, disposition.
        [wrapup] = [m for m in published if m["type"] == "summary"]
        box = await asyncio.to_thread(lambda: driver.find_element("css selector", ".wrapup").text)
        assert f"Wrap-up · {wrapup['disposition']}" in box and wrapup["summary"] in box
        answered = await asyncio.to_thread(_count, driver, ".wrapup .item.question.answered")
        assert answered == sum(q["answered"] for q in wrapup["questions"]) >= 3
        assert "Topics: " + ", ".join(wrapup["topics"]) in box
        # Live question insights: one row per question, marked once answered.
        questions = {m["id"] for m in published if m["type"] == "insight" and m["kind"] == "question"}
        assert await asyncio.to_thread(_count, driver, ".insight.question") == len(questions) >= 3
    finally:
        await asyncio.to_thread(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)


async def test_history_finds_the_ended_call_and_replays_it_from_a_clicked_line(offline_relay: TestServer) -> None:
    """Hub mode: the demo's call is in the history once it ends; its page shows the timeline,
    the cards with sources and the wrap-up, and a click on a line seeks the audio there."""
    spec, record = await _recorded_call(offline_relay, custom_parameters={"WorkerIdentity": "alice"})

    profile = tempfile.mkdtemp(prefix="relay-chromium-")
    driver = await asyncio.to_thread(_browser, profile)
    try:
        await asyncio.to_thread(driver.get, f"http://127.0.0.1:{offline_relay.port}/console#history")
        await _until_browser(lambda: _count(driver, ".record") >= 1)
        # No call opened yet: its (empty) box stays hidden, whatever its display rule says.
        shown = await asyncio.to_thread(
            driver.execute_script,
            "const e = document.getElementById('history-call'); return [getComputedStyle(e).display, e.offsetHeight];",
        )
        assert shown == ["none", 0]
        # Each row says how long the call lasted, with which agent, and how it was closed.
        row = driver.find_element("css selector", f'.record[data-call-sid="{spec.call_sid}"]')
        duration = row.find_element("css selector", ".duration .value").text
        assert re.fullmatch(r"\d+:\d\d", duration), duration
        minutes, seconds = map(int, duration.split(":"))
        assert abs(60 * minutes + seconds - (record["ended_at"] - record["started_at"])) <= 1
        assert row.find_element("css selector", ".agent .value").text == "alice"
        assert (
            record["disposition"]
            and row.find_element("css selector", ".disposition .value").text == record["disposition"]
        )
        search = driver.find_element("id", "history-q")
        await asyncio.to_thread(search.send_keys, "password")
        await asyncio.to_thread(driver.find_element("css selector", "#history-form button").click)
        await _until_browser(lambda: "password" in driver.find_element("id", "history-results").text)
        await asyncio.to_thread(driver.find_element("css selector", f'.record[data-call-sid="{spec.call_sid}"]').click)
        await _until_browser(lambda: _count(driver, "#history-call .timeline .line") == len(record["transcript"]))
        page = await asyncio.to_thread(lambda: driver.find_element("id", "history-call").text)
        assert _count(driver, "#history-call .suggestion") == len(record["suggestions"]) >= 3
        await _until_browser(
            lambda: "Source: orders.md › Orders and delivery" in driver.find_element("id", "history-call").text
        )
        assert "Wrap-up · " in page and _count(driver, "#history-call .no-audio") == 0
        # The audio loads (FLAC over range requests) and a click on a line seeks to its time.
        await _until_browser(
            lambda: driver.execute_script("return document.querySelector('.record-audio').readyState") >= 1
        )
        lines = driver.find_elements("css selector", "#history-call .timeline .line")
        target = lines[-1]
        at = float(target.get_attribute("data-at"))
        await asyncio.to_thread(target.click)
        position = await asyncio.to_thread(
            driver.execute_script, "return document.querySelector('.record-audio').currentTime"
        )
        assert abs(position - at) < 0.5
        ARTIFACTS.mkdir(exist_ok=True)
        await asyncio.to_thread(driver.save_screenshot, str(ARTIFACTS / "console-history.png"))
    finally:
        await asyncio.to_thread(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)


async def test_a_call_page_says_when_audio_was_not_recorded(start_offline: StartOffline, driver: Any) -> None:
    relay = await start_offline(record_audio=False)  # the default
    spec, record = await _recorded_call(relay)
    await asyncio.to_thread(driver.get, f"http://127.0.0.1:{relay.port}/console#history")
    await _until_browser(lambda: _count(driver, ".record") >= 1)
    await asyncio.to_thread(driver.find_element("css selector", f'.record[data-call-sid="{spec.call_sid}"]').click)
    await _until_browser(lambda: _count(driver, "#history-call .timeline .line") == len(record["transcript"]))
    note = await asyncio.to_thread(lambda: driver.find_element("css selector", "#history-call .no-audio").text)
    assert "Audio was not recorded" in note and "RELAY_RECORD_AUDIO" in note
    assert _count(driver, "#history-call .record-audio") == 0


async def test_an_opened_console_asks_for_its_token_and_a_token_link_opens_it(
    start_offline: StartOffline, driver: Any
) -> None:
    """Hub mode bound to a non-loopback address: the page asks for the console token; the
    one-click `/console#token=…` link opens it (and leaves no token in the address bar)."""
    address = non_loopback_address()
    token = "console-token-0123456789"
    relay = await start_offline(host=address, console_token=token)
    spec, _ = await _recorded_call(relay)
    base = f"http://{address}:{relay.port}/console"
    await asyncio.to_thread(driver.get, base + "#history")
    await _until_browser(lambda: driver.find_element("id", "console-login").is_displayed())
    assert _count(driver, ".record") == 0 and not driver.find_element("id", "history").is_displayed()

    await asyncio.to_thread(driver.get, base + "#token=" + token)
    await _until_browser(lambda: not driver.find_element("id", "console-login").is_displayed())
    assert token not in await asyncio.to_thread(lambda: driver.current_url)
    await asyncio.to_thread(driver.get, base + "#history")  # the session cookie now opens every route
    await _until_browser(lambda: _count(driver, f'.record[data-call-sid="{spec.call_sid}"]') == 1)


async def test_history_shows_what_each_call_cost(
    start_offline: StartOffline, driver: Any, fake_realtime: FakeRealtimeServer
) -> None:
    """Hub mode with the OpenAI engine (the fake Realtime server bills like the API): each
    History row shows the call's cost, the listing its total, and the call page its usage."""
    fake_realtime.behaviour.turns = qa_turns(2)
    fake_realtime.behaviour.turn_every_bytes = 48_000
    relay = await start_offline(
        engine="openai", openai_api_key=OPENAI_KEY, openai_base_url=fake_realtime.base_url, record_audio=False
    )
    call = CallSpec(audio={"inbound": speech_like_ulaw(2.5)}, pace=0)
    await stream_call(f"ws://{relay.host}:{relay.port}/media", call)
    state = relay.app[RELAY]
    await wait_until(lambda: state.idle, timeout_s=30)
    assert state.records is not None and await state.records.writer.idle()
    record = await state.records.store.get(call.call_sid)
    assert record is not None and record["cost_usd"] > 0
    shown = f"${record['cost_usd']:.4f}"

    await asyncio.to_thread(driver.get, f"http://127.0.0.1:{relay.port}/console#history")
    await _until_browser(lambda: _count(driver, ".record") >= 1)
    row = driver.find_element("css selector", f'.record[data-call-sid="{call.call_sid}"]')
    assert row.find_element("css selector", ".cost .value").text == shown
    await _until_browser(lambda: _count(driver, "#history-results .totals") == 1)
    assert driver.find_element("css selector", "#history-results .totals").text == f"1 call · {shown}"
    await asyncio.to_thread(row.click)
    await _until_browser(lambda: _count(driver, "#history-call .usage") == 1)
    usage = driver.find_element("css selector", "#history-call .usage").text
    assert usage.startswith(f"Cost {shown} · gpt-realtime-1.5 · ") and "cached" in usage
