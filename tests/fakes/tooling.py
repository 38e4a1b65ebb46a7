"""Small helpers the fakes, the tests and the benchmarks share."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web


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
