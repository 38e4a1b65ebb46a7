"""The Flex plugin's panel in headless Chromium, fed by a real relay during a call.

The relay runs on its offline engine with Twilio pointed at the fake (Flex token checks,
TaskRouter) but without Twilio Sync, so its messages go to the in-process hub. twilio-sync
cannot read the hub, so the test page (flex-plugin/src/testPage/) gives the unchanged panel a
Sync client stand-in that reads the relay's `/console/events` feed: the same messages, `seq`
and parts a Sync stream carries; everything else (the relay's HTTP API with the Flex token,
passages, the wrap-up save) is the plugin's own code against the real relay. The page is
served by the relay's own app (a route the test adds), so it is same-origin like the console.

Needs chromium and chromium-driver (as the console's browser test) and the plugin's
node_modules (`flex-plugin/ci.sh`); without them the test skips, unless CI is set.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relay.audio.callfile import load_call_audio
from relay.bundled import bundled_sample_call
from relay.cli.simulator import CallSpec, stream_call
from relay.web.app import create_app
from tests.conftest import TIME_SCALE, RunningRelay, StartRelay, relay_settings, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.fakes.tooling import CHROMEDRIVER, CHROMIUM, headless_chromium
from tests.fakes.twilio_server import FakeTwilio

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "flex-plugin"
PAGE = PLUGIN / "test-page"
ARTIFACTS = ROOT / "artifacts"
SCREENSHOT = PLUGIN / "docs" / "panel.png"
NODE = shutil.which("node")

AGENT_TOKEN, AGENT = "flex-token-agent", "alice_40example_2Ecom"
SUPERVISOR_TOKEN = "flex-token-supervisor"


def _missing() -> str | None:
    if not (CHROMIUM and CHROMEDRIVER):
        return "chromium/chromedriver not installed"
    if not NODE or not (PLUGIN / "node_modules" / "esbuild").is_dir():
        return "the plugin's packages are not installed (run flex-plugin/ci.sh)"
    return None


if (why := _missing()) is not None:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the plugin's browser test: {why}")
    pytest.skip(why, allow_module_level=True)


def _build_test_page() -> None:
    subprocess.run([NODE or "node", "scripts/build-test-page.js"], cwd=PLUGIN, check=True, timeout=120 * TIME_SCALE)


def _browser(profile: str):  # type: ignore[no-untyped-def]
    return headless_chromium(profile, "600,1500")


async def _until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll the page (blocking WebDriver calls, off the loop: the relay runs on it)."""
    deadline = asyncio.get_running_loop().time() + timeout_s * TIME_SCALE
    while not await asyncio.to_thread(condition):
        assert asyncio.get_running_loop().time() < deadline, "the page never showed it"
        await asyncio.sleep(0.1)


def _count(driver: Any, selector: str) -> int:
    return len(driver.find_elements("css selector", selector))


def _text(driver: Any, selector: str) -> str:
    found = driver.find_elements("css selector", selector)
    return str(found[0].text) if found else ""


async def _serve_page(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ("index.html", "test-page.js"):
        raise web.HTTPNotFound()
    return web.FileResponse(PAGE / name, headers={"Cache-Control": "no-store"})


async def _offline_relay(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> RunningRelay:
    # Offline engine; Twilio (IAM, TaskRouter) at the fake; no Sync service, so the hub.
    overrides: dict[str, Any] = {"engine": "local", "openai_api_key": None, "twilio_sync_service_sid": None}
    app = create_app(relay_settings(fake_realtime, fake_twilio, **overrides))
    app.router.add_get("/plugin-test/{name}", _serve_page)
    return await start_relay(app, **overrides)


async def test_the_panel_shows_the_call_and_saves_the_edited_wrapup(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio
) -> None:
    await asyncio.to_thread(_build_test_page)
    fake_twilio.add_agent(AGENT_TOKEN, AGENT, ["agent"])
    fake_twilio.add_agent(SUPERVISOR_TOKEN, "sam_40example_2Ecom", ["supervisor"])
    relay = await _offline_relay(start_relay, fake_realtime, fake_twilio)
    state = relay.state
    assert state.hub is not None and state.sync is None and state.flex_validator is not None
    task_sid = fake_twilio.add_task({"type": "inbound", "keep": "me"})
    workspace = fake_twilio.state.workspace_sid
    spec = CallSpec(
        audio=load_call_audio(bundled_sample_call()),
        pace=4.0,
        custom_parameters={"TaskSid": task_sid, "WorkspaceSid": workspace, "WorkerIdentity": AGENT},
    )
    page = relay.http_url(f"/plugin-test/index.html?call={spec.call_sid}&token={AGENT_TOKEN}&workspace={workspace}")

    profile = tempfile.mkdtemp(prefix="relay-chromium-")
    driver = await asyncio.to_thread(_browser, profile)
    try:
        await asyncio.to_thread(driver.get, page)
        await _until(lambda: _count(driver, '[data-testid="assist-panel"]') == 1)
        call = asyncio.create_task(stream_call(relay.ws_url(), spec, headers=relay.signed_headers()))

        # Cards, transcript and the listening status arrive while the call runs.
        await _until(lambda: _count(driver, ".suggestion-card") >= 1)
        assert not call.done(), "the first card should appear during the call"
        state_now = await asyncio.to_thread(
            lambda: driver.find_element("css selector", '[data-testid="assist-status"]').get_attribute("data-state")
        )
        assert state_now == "listening"
        if os.environ.get("FLEX_PLUGIN_SCREENSHOT"):  # the README's picture, refreshed on purpose only
            await _until(lambda: _count(driver, ".suggestion-card") >= 2 or call.done())
            panel = driver.find_element("css selector", '[data-testid="assist-panel"]')
            await asyncio.to_thread(panel.screenshot, str(SCREENSHOT))
        await call
        await wait_until(lambda: state.idle, timeout_s=30)
        published = state.hub.history(spec.call_sid)
        await _until(lambda: _count(driver, '[data-testid="wrapup-form"]') == 1)
        await _until(
            lambda: (
                driver.find_element("css selector", '[data-testid="assist-status"]').get_attribute("data-state")
                == "ended"
            )
        )

        # Everything the relay published for the call is on the panel.
        cards = [m for m in published if m["type"] == "suggestion"]
        finals = [m for m in published if m["type"] == "transcript" and m["final"]]
        questions = {m["id"] for m in published if m["type"] == "insight" and m["kind"] == "question"}
        answered = {
            m["id"] for m in published if m["type"] == "insight" and m["kind"] == "question" and m.get("answered")
        }
        assert await asyncio.to_thread(_count, driver, ".suggestion-card") == len(cards) >= 3
        assert await asyncio.to_thread(_count, driver, '.transcript-line[data-final="true"]') == len(finals)
        assert await asyncio.to_thread(_count, driver, ".insight-question") == len(questions) >= 3
        assert await asyncio.to_thread(_count, driver, '.insight-question[data-answered="true"]') == len(answered)
        sources = sum(len(m.get("sources", [])) for m in cards)
        assert await asyncio.to_thread(_count, driver, ".suggestion-source") == sources >= 3

        # A source's passage is fetched from the relay when asked for.
        first = driver.find_element("css selector", ".suggestion-source")
        passage = state.retriever.knowledge.by_id[first.get_attribute("data-source-id")]
        await asyncio.to_thread(first.find_element("css selector", "button").click)
        await _until(lambda: _count(driver, ".passage-text") == 1)
        assert " ".join(passage.text.split()) in " ".join(_text(driver, ".passage-text").split())

        ARTIFACTS.mkdir(exist_ok=True)
        await asyncio.to_thread(driver.save_screenshot, str(ARTIFACTS / "flex-plugin-panel.png"))

        # The relay's wrap-up is in the form; the agent edits it, the tab closes before saving.
        [summary] = [m for m in published if m["type"] == "summary"]
        area = driver.find_element("css selector", "textarea[name=summary]")
        assert area.get_attribute("value") == summary["summary"]
        edited = "Order late; card 4111 1111 1111 1111 charged for reshipping. Label emailed."
        await asyncio.to_thread(area.clear)
        await asyncio.to_thread(area.send_keys, edited)
        await asyncio.to_thread(_choose, driver, "select[name=disposition]", "follow_up_required")
        await asyncio.to_thread(driver.refresh)
        await _until(lambda: _count(driver, '[data-testid="wrapup-form"]') == 1)
        kept = await asyncio.to_thread(
            lambda: driver.find_element("css selector", "textarea[name=summary]").get_attribute("value")
        )
        assert kept == edited, "the unsaved edit did not survive the reload"
        await asyncio.to_thread(driver.find_element("css selector", '[data-testid="wrapup-save"]').click)
        await _until(
            lambda: (
                driver.find_element("css selector", '[data-testid="wrapup-state"]').get_attribute("data-state")
                in ("saved", "error")
            )
        )
        assert "in the task" in _text(driver, '[data-testid="wrapup-state"]'), _text(
            driver, '[data-testid="wrapup-state"]'
        )
        stored = await asyncio.to_thread(
            driver.execute_script, f"return window.localStorage.getItem('relay-assist:wrapup:{spec.call_sid}')"
        )
        assert stored is None, "a saved draft is forgotten"
    finally:
        await asyncio.to_thread(driver.quit)
        shutil.rmtree(profile, ignore_errors=True)

    # The edit reached the record (redacted) and the task's attributes.
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            relay.http_url(f"/calls/{spec.call_sid}"), headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
        ) as response,
    ):
        assert response.status == 200
        record = await response.json()
    assert record["disposition"] == "follow_up_required"
    assert record["wrapup"]["summary"].startswith("Order late; card [card ending 1111]")
    assert not re.search(r"4111 1111", record["wrapup"]["summary"])
    assert record["wrapup"]["edited_by"] == AGENT
    assert record["wrapup"]["generated"]["summary"] == summary["summary"]
    attributes = fake_twilio.task_attributes(task_sid)
    assert attributes["keep"] == "me"
    assert attributes[relay.settings.task_summary_attribute]["summary"] == record["wrapup"]["summary"]


def _choose(driver: Any, selector: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("css selector", selector)).select_by_value(value)
