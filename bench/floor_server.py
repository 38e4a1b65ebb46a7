"""The floor for bench/load.py: a bare aiohttp server that only receives and parses frames.

    RELAY_LOAD_MODULE=bench.floor_server .venv/bin/python bench/load.py --steps 100,200,400

It accepts the same signed Media Streams, parses every message with orjson and decodes each
`media` payload, and nothing else: no transcoding, no model, no Sync. Whatever the relay costs
per frame beyond this figure is the relay's own work. It serves just enough of the relay's
HTTP surface (/healthz, /readyz, /metrics) for the load generator to drive it.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator

import orjson
from aiohttp import WSMsgType, web

from relay.recent import RecentSamples
from relay.web.metrics import LAG_WINDOW, monitor_loop_lag

FRAMES = web.AppKey("frames", list)
OPEN = web.AppKey("open", set)
LAGS = web.AppKey("lags", RecentSamples)


async def media(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=64 * 1024)
    await ws.prepare(request)
    counter = request.app[FRAMES]
    request.app[OPEN].add(ws)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                break
            event = orjson.loads(msg.data)
            kind = event.get("event")
            if kind == "media":
                base64.b64decode(event["media"]["payload"])
                counter[0] += 1
            elif kind == "stop":
                break
    finally:
        request.app[OPEN].discard(ws)
        await ws.close()
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready", "active_calls": len(request.app[OPEN])})


async def metrics(request: web.Request) -> web.Response:
    lines = [f"relay_frames_in_total {request.app[FRAMES][0]}"]
    qs = (0.5, 0.99, 1.0)
    values = request.app[LAGS].quantiles(qs)
    if values is not None:
        lines += [f'relay_event_loop_lag_recent_seconds{{quantile="{q}"}} {v}' for q, v in zip(qs, values, strict=True)]
    return web.Response(text="\n".join(lines) + "\n")


async def lag_probe(app: web.Application) -> AsyncIterator[None]:
    """The relay's own probe and window, so both report the same figure."""
    task = asyncio.create_task(monitor_loop_lag(None, record=app[LAGS]))
    yield
    task.cancel()


def make_app() -> web.Application:
    app = web.Application()
    app[FRAMES] = [0]
    app[OPEN] = set()
    app[LAGS] = RecentSamples(LAG_WINDOW)
    app.cleanup_ctx.append(lag_probe)
    app.add_routes(
        [
            web.get("/media", media),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
        ]
    )
    return app


def main() -> None:
    port = int(os.environ.get("RELAY_PORT", "8080"))
    # The relay's own switch (RELAY_UVLOOP=false), so `--env RELAY_UVLOOP=false` compares both.
    if os.environ.get("RELAY_UVLOOP", "true").lower() in ("0", "false", "no", "off"):
        loop = asyncio.new_event_loop()
    else:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(make_app(), host="127.0.0.1", port=port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
