"""A real browser watches /console during a simulated call (headless Debian Chromium).

CI installs chromium and chromium-driver (see .ci/run); on a machine without them the test
skips unless CI is set, where a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from relay.app import create_app
from relay.bundled import bundled_sample_call
from relay.callfile import load_call_audio
from relay.settings import Settings
from relay.simulator import CallSpec, stream_call
from relay.state import RELAY
from tests.conftest import TIME_SCALE, fresh_data_dir, wait_until

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI must provide chromium and chromium-driver (.ci/run installs them)")
    pytest.skip("chromium/chromedriver not installed", allow_module_level=True)


@pytest.fixture
async def offline_relay() -> AsyncIterator[TestServer]:
    settings = Settings(
        engine="local", use_uvloop=False, host="127.0.0.1", port=0, data_dir=fresh_data_dir(), record_audio=True
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def _browser(profile: str):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


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
        assert sources == cards and "Source: Where is my order?" in text  # each card names its passage
        assert spec.call_sid in text
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
    audio = load_call_audio(bundled_sample_call())
    spec = CallSpec(audio=audio, pace=0)
    await stream_call(f"ws://127.0.0.1:{offline_relay.port}/media", spec)
    state = offline_relay.app[RELAY]
    await wait_until(lambda: state.idle, timeout_s=30)
    assert state.records is not None and await state.records.writer.idle()
    record = await state.records.store.get(spec.call_sid)
    assert record is not None

    profile = tempfile.mkdtemp(prefix="relay-chromium-")
    driver = await asyncio.to_thread(_browser, profile)
    try:
        await asyncio.to_thread(driver.get, f"http://127.0.0.1:{offline_relay.port}/console#history")
        await _until_browser(lambda: _count(driver, ".record") >= 1)
        search = driver.find_element("id", "history-q")
        await asyncio.to_thread(search.send_keys, "password")
        await asyncio.to_thread(driver.find_element("css selector", "#history-form button").click)
        await _until_browser(lambda: "password" in driver.find_element("id", "history-results").text)
        await asyncio.to_thread(driver.find_element("css selector", f'.record[data-call-sid="{spec.call_sid}"]').click)
        await _until_browser(lambda: _count(driver, "#history-call .timeline .line") == len(record["transcript"]))
        page = await asyncio.to_thread(lambda: driver.find_element("id", "history-call").text)
        assert _count(driver, "#history-call .suggestion") == len(record["suggestions"]) >= 3
        assert "Source: Where is my order?" in page and "Wrap-up · " in page
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
