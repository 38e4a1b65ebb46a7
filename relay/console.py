"""`/console`: watch calls live, like an agent's side panel.

Hub mode (Twilio Sync not configured: local evaluation): the page reads `/console/events`,
a Server-Sent Events feed of the in-process hub, and `/console/calls`. Those two exist only
in hub mode, so a production relay never serves transcripts without Flex authentication.
Sync mode: the page asks for a Flex token and a call SID, gets a Sync token from `/token`,
and subscribes to the call's real Sync stream with the official twilio-sync browser SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from typing import Any, Final

import orjson
from aiohttp import web

from .bundled import console_asset
from .state import RELAY

SYNC_SDK_URL = "https://cdn.jsdelivr.net/npm/twilio-sync@4.0.1/builds/twilio-sync.min.js"


# The page's files (relay/assets/console/), read once at import: name → (bytes, content type).
_ASSETS: Final = {
    "console.js": (console_asset("console.js"), "text/javascript"),
    "console.css": (console_asset("console.css"), "text/css"),
}
_PAGE: Final = console_asset("index.html").decode("utf-8")


async def console_page(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    mode = "sync" if state.sync is not None else "hub"
    # The page reads its configuration from data-* attributes; values are escaped for HTML.
    page = (
        _PAGE.replace("__MODE__", mode)
        .replace("__SYNC_SDK__", html.escape(SYNC_SDK_URL))
        .replace("__STREAM_TEMPLATE__", html.escape(state.settings.sync_stream_name))
    )
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})


async def console_file(request: web.Request) -> web.Response:
    asset = _ASSETS.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    body, content_type = asset
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers={"Cache-Control": "no-cache"})


async def console_calls(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    if state.sync is not None or state.hub is None:
        return web.json_response({"error": "the console feed is served only in hub mode"}, status=404)
    hub = state.hub
    calls = [{"call_sid": sid, "active": sid in hub.active_calls, "messages": hub.history(sid)} for sid in hub.calls()]
    return web.json_response({"calls": calls})


async def console_events(request: web.Request) -> web.StreamResponse:
    state = request.app[RELAY]
    if state.sync is not None or state.hub is None:
        return web.json_response({"error": "the console feed is served only in hub mode"}, status=404)
    only_call = request.query.get("call_sid")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    queue = state.hub.subscribe()
    try:
        # Replay what this call (or every kept call) has said so far, then go live.
        sids = [only_call] if only_call else state.hub.calls()
        for sid in sids:
            for kept in state.hub.history(sid):
                await response.write(_sse(kept))
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")  # also how a gone viewer is noticed
                continue
            if message is None:  # the relay is shutting down
                break
            if only_call and message.get("call_sid") != only_call:
                continue
            await response.write(_sse(message))
    except ConnectionResetError:
        return response  # the viewer left
    finally:
        state.hub.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def _end_feeds(app: web.Application) -> None:
    hub = app[RELAY].hub
    if hub is not None:
        hub.end_subscriptions()


def _sse(message: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(message) + b"\n\n"


def add_routes(app: web.Application) -> None:
    app.on_shutdown.append(_end_feeds)
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/assets/{name}", console_file)
    app.router.add_get("/console/calls", console_calls)
    app.router.add_get("/console/events", console_events)
