"""`/console`: watch calls live, like an agent's side panel.

Hub mode (Twilio Sync not configured: local evaluation): the page reads `/console/events`,
a Server-Sent Events feed of the in-process hub, and `/console/calls`. Those two exist only
in hub mode, so a production relay never serves transcripts without Flex authentication.
Sync mode: the page asks for a Flex token and a call SID, gets a Sync token from `/token`,
and subscribes to the call's real Sync stream with the official twilio-sync browser SDK.

Hub mode binds loopback unless RELAY_HOST says otherwise (settings). A console reachable from
other machines (bound to a non-loopback address, or asked by a non-loopback peer or through a
proxy) answers its data routes only with a credential: `RELAY_CONSOLE_TOKEN` as a bearer
header or as the session cookie `POST /console/session` sets (the page does it for a
`/console#token=…` link: a fragment never reaches the server or a proxy's logs), or a Flex
token with one of `RELAY_RECORDS_ROLES`.

`GET /knowledge/passage?id=` returns one passage of the knowledge in force (a card's source):
hub mode behind the console's guard, Sync mode behind a Flex token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import ipaddress
import logging
import re
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web

from relay.bundled import console_asset
from relay.knowledge.base import Passage
from relay.settings import Settings
from relay.twilio.flex_auth import FlexAuthError
from relay.web.http_api import authenticate, client_address, refusal
from relay.web.state import RELAY, RelayState

log = logging.getLogger("relay.web.console")

SYNC_SDK_URL = "https://cdn.jsdelivr.net/npm/twilio-sync@4.0.1/builds/twilio-sync.min.js"


# The page's files (relay/assets/console/), read once at import: name → (bytes, content type).
_ASSETS: Final = {
    "console.js": (console_asset("console.js"), "text/javascript"),
    "console.css": (console_asset("console.css"), "text/css"),
}
_PAGE: Final = console_asset("index.html").decode("utf-8")


SESSION_COOKIE: Final = "relay_console"
MAX_PASSAGE_ID: Final = 300
_HEADING_RE: Final = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
_PROXY_HEADERS: Final = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def is_loopback_host(host: str) -> bool:
    """True for an address only this machine can reach (`127.0.0.1`, `::1`, `localhost`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or "" (every interface): assume reachable


def console_opened(settings: Settings) -> bool:
    """Hub mode listening where other machines can reach it."""
    return not is_loopback_host(settings.host)


def _needs_credential(request: web.Request, settings: Settings) -> bool:
    # Bound to loopback and asked from loopback, directly: this machine's own browser (the
    # demo's one-click console). A proxy in front (forwarding headers) counts as elsewhere.
    if console_opened(settings) or not is_loopback_host(request.remote or ""):
        return True
    return any(name in request.headers for name in _PROXY_HEADERS)


def _session_value(token: str) -> str:
    """The cookie holds a digest of the token, not the token itself."""
    return hashlib.sha256(b"relay-console-session:" + token.encode()).hexdigest()


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _refused(state: RelayState, reason: str) -> web.Response:
    state.stats.flex_auth[f"console_{reason}"] += 1
    hint = (
        "this console is reachable from other machines: send RELAY_CONSOLE_TOKEN "
        "(Authorization: Bearer …, or open /console#token=…) or a supervisor's Flex token"
    )
    return _error(401, hint, **{"WWW-Authenticate": 'Bearer realm="relay console"'})


async def console_guard(request: web.Request, state: RelayState) -> web.Response | None:
    """None when the request may read the console's data, else the refusal (404 outside hub
    mode; 401/403 when a credential is needed and missing or wrong)."""
    if state.sync is not None or state.hub is None:
        return _error(404, "the console's data routes are served only in hub mode (no Twilio Sync)")
    return await _console_credential(request, state)


async def _console_credential(request: web.Request, state: RelayState) -> web.Response | None:
    if not _needs_credential(request, state.settings):
        return None
    bearer = _bearer(request)
    configured = state.settings.console_token
    if configured is not None:
        secret = configured.get_secret_value()
        if bearer is not None and hmac.compare_digest(bearer.encode(), secret.encode()):
            return None
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is not None and hmac.compare_digest(cookie.encode(), _session_value(secret).encode()):
            return None
    if bearer is not None and state.flex_validator is not None:
        try:
            identity = await authenticate(state, bearer, client_address(request))
        except FlexAuthError as exc:
            return _refused(state, "invalid") if exc.status == 401 else refusal(exc)
        if set(state.settings.records_roles).intersection(identity.roles):
            return None
        state.stats.flex_auth["console_role_denied"] += 1
        return _error(403, "the console's data needs a supervisor or admin Flex role")
    return _refused(state, "invalid" if bearer is not None else "missing")


async def console_session(request: web.Request) -> web.Response:
    """`POST /console/session` with the console token as bearer: sets the session cookie the
    page's feeds (EventSource cannot send headers) and audio player carry."""
    state = request.app[RELAY]
    if state.sync is not None or state.hub is None:
        return _error(404, "the console's data routes are served only in hub mode (no Twilio Sync)")
    configured = state.settings.console_token
    bearer = _bearer(request)
    if (
        configured is None
        or bearer is None
        or not hmac.compare_digest(bearer.encode(), configured.get_secret_value().encode())
    ):
        return _refused(state, "invalid" if bearer is not None else "missing")
    response = web.Response(status=204, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE,
        _session_value(configured.get_secret_value()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
    )
    return response


async def passage(request: web.Request) -> web.Response:
    """`GET /knowledge/passage?id=orders.md%23where-is-my-order`: a card's source, to read."""
    state = request.app[RELAY]
    if state.hub is not None and state.sync is None:
        if (refused := await _console_credential(request, state)) is not None:
            return refused
    else:
        try:
            await authenticate(state, _bearer(request), client_address(request))
        except FlexAuthError as exc:
            return refusal(exc)
    pid = request.query.get("id", "")
    if not pid or len(pid) > MAX_PASSAGE_ID:
        return _error(400, f"id is required, at most {MAX_PASSAGE_ID} characters")
    found = state.retriever.knowledge.by_id.get(pid)
    if found is None:
        return _error(404, "no such passage in the knowledge in force")
    folder = state.settings.data_dirs().knowledge
    heading = await asyncio.to_thread(_heading, folder, found)
    body = {
        "id": found.id,
        "title": found.title,
        "file": found.source,
        "line": found.line,
        "heading": heading,
        "text": found.text,
        "questions": list(found.questions),
        "tags": list(found.tags),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _heading(folder: Path, found: Passage) -> str | None:
    """The section a passage sits in: an article passage's own heading; for a Q&A entry the
    nearest Markdown heading above it in its file (its title is only its first question)."""
    if not found.questions:
        return found.title
    try:
        lines = (folder / found.source).read_text(encoding="utf-8").splitlines()[: max(0, found.line - 1)]
    except (OSError, UnicodeDecodeError):
        return None  # the file changed or went since it was loaded
    for line in reversed(lines):
        match = _HEADING_RE.match(line.strip())
        if match:
            return match.group(1)
    return None


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
    if (refused := await console_guard(request, state)) is not None:
        return refused
    hub = state.hub
    assert hub is not None
    calls = [{"call_sid": sid, "active": sid in hub.active_calls, "messages": hub.history(sid)} for sid in hub.calls()]
    return web.json_response({"calls": calls})


async def console_events(request: web.Request) -> web.StreamResponse:
    state = request.app[RELAY]
    if (refused := await console_guard(request, state)) is not None:
        return refused
    assert state.hub is not None
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
    app.router.add_post("/console/session", console_session)
    app.router.add_get("/knowledge/passage", passage)
