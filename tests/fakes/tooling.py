"""Small helpers the fakes, the tests and the benchmarks share."""

from __future__ import annotations

import asyncio
import gc
import shutil
import socket
from collections.abc import Coroutine
from typing import Any

import aiohttp
from aiohttp import web


def free_port() -> int:
    """A loopback port nothing listens on right now (for a server started next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape_metrics(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """A Prometheus text page as {"name{labels}": value}."""
    async with session.get(url) as response:
        text = await response.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def serve_forever_with_stats(name: str, port: int, routes: list[web.RouteDef]) -> None:
    """Run a fake's control endpoints on port + 1 (its protocol listens on `port`), forever."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port + 1).start()
    print(f"{name} on {port}, stats on {port + 1}", flush=True)
    await asyncio.Event().wait()


def run_standalone(main: Coroutine[Any, Any, None]) -> None:
    """A fake in its own process (load bench): on uvloop where it installs, like the relay,
    so the fakes' share of the generator's core stays small.

    A fake is a measuring instrument: a full collection over its growing records (every
    append's arrival time) paused it for tens of milliseconds, and that pause was charged to
    the relay as latency. Young generations are still collected; full passes are not.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 1_000_000_000)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def headless_chromium(profile: str, window: str):  # type: ignore[no-untyped-def]
    """Debian's Chromium under Selenium for the browser tests: headless, in its own profile,
    and without the background connections this machine's closed network refuses."""
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
        f"--window-size={window}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
