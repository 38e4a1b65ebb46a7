"""Call records over HTTP.

`GET /calls?q=&agent=&from=&to=&limit=&cursor=` (search, newest first, paginated by cursor;
each call with its `cost_usd`), `GET /calls?from=&to=&agent=&totals=true` (what the calls that
started in the period cost: `{"totals": {"calls", "calls_priced", "cost_usd", "tokens": {kind},
"transcription_s"}}`),
`GET /calls/{CallSid}` (the record), `GET /calls/{CallSid}/audio` (FLAC, HTTP range
requests: the first part), `GET /calls/{CallSid}/audio/{part}` (each part of a call continued
by another bridge, listed in the record's `audio_parts`), `DELETE /calls/{CallSid}` (the record
and every part). Guarded by a Flex token whose roles include one of `RELAY_RECORDS_ROLES`
(supervisor, admin): never open. `{CallSid}` is any id the media endpoint accepts (minimal
clients send ids that are not `CA…` SIDs).

In hub mode (no Twilio: the offline demo) the console reads the same answers from
`/console/records…`, which exist only in that mode, like the live feed, behind the console's
guard (relay/web/console.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from aiohttp import web

from relay.records.service import CALL_ID_RE, Records
from relay.records.store import SearchQuery, StoreUnavailable
from relay.twilio.flex_auth import FlexAuthError
from relay.web.console import console_guard
from relay.web.http_api import authenticate, client_address, flex_token, refusal
from relay.web.state import RELAY, RelayState

log = logging.getLogger("relay.records.service")

PART_RE = re.compile(r"^[0-9]{1,9}$")
MAX_LIMIT = 100
MAX_QUERY_CHARS = 500
AUDIO_ROUTE = "records-audio"
Guard = Callable[[web.Request, RelayState], Awaitable[web.Response | None]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _supervisor(request: web.Request, state: RelayState) -> web.Response | None:
    try:
        # Only the audio is loaded by URL (an <audio> element cannot set a header).
        by_url = (request.match_info.route.name or "").startswith(AUDIO_ROUTE)
        token = flex_token(request, dict(request.query), query_allowed=by_url)
        identity = await authenticate(state, token, client_address(request))
    except FlexAuthError as exc:
        return refusal(exc)
    if not set(state.settings.records_roles).intersection(identity.roles):
        state.stats.flex_auth["records_role_denied"] += 1
        return _error(403, "call records need a supervisor or admin Flex role")
    return None


def _moment(value: str | None, name: str) -> float | None:
    """ISO 8601 (`2026-12-03T10:00:00Z`, a date alone) or Unix seconds."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"error":"{name} must be ISO 8601 or Unix seconds"}}', content_type="application/json"
        ) from None


def _handlers(guard: Guard) -> dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    async def search(request: web.Request) -> web.StreamResponse:
        state = request.app[RELAY]
        if (refused := await guard(request, state)) is not None:
            return refused
        if state.records is None:
            return _error(503, "call records are off (RELAY_RECORDS=false)")
        q = request.query
        if len(q.get("q", "")) > MAX_QUERY_CHARS or len(q.get("agent", "")) > 200:
            return _error(400, f"q is limited to {MAX_QUERY_CHARS} characters, agent to 200")
        try:
            limit = min(MAX_LIMIT, max(1, int(q.get("limit", "20"))))
        except ValueError:
            return _error(400, "limit must be a number")
        query = SearchQuery(
            text=q.get("q") or None,
            agent=q.get("agent") or None,
            since=_moment(q.get("from"), "from"),
            until=_moment(q.get("to"), "to"),
            limit=limit,
            cursor=q.get("cursor") or None,
        )
        totals = q.get("totals", "false").lower()
        if totals not in ("true", "false", "1", "0"):
            return _error(400, "totals must be true or false")
        if totals in ("true", "1"):
            if query.text or query.cursor:
                return _error(400, "totals add up a period (from, to, agent), not a search")
            return await _totals(state, query)
        try:
            await state.records.ready()
            page = await state.records.store.search(query)
        except ValueError:
            return _error(400, "invalid cursor")
        except StoreUnavailable as exc:
            log.warning("records search failed: database unavailable", extra={"error": str(exc)})
            return _error(503, "the call records database is unavailable")
        return web.json_response({"calls": page.calls, "next_cursor": page.next_cursor})

    async def one_call(request: web.Request) -> tuple[Records, str] | web.Response:
        """The checks every per-call request starts with: the guard, the SID, records on."""
        state = request.app[RELAY]
        if (refused := await guard(request, state)) is not None:
            return refused
        call_sid = request.match_info["callSid"]
        if not CALL_ID_RE.match(call_sid):
            return _error(400, "callSid must be 1 to 64 of A-Z a-z 0-9 _ - . : (a CA… SID, or a minimal client's id)")
        if state.records is None:
            return _error(503, "call records are off (RELAY_RECORDS=false)")
        return state.records, call_sid

    async def record(request: web.Request) -> web.StreamResponse:
        checked = await one_call(request)
        if isinstance(checked, web.Response):
            return checked
        records, call_sid = checked
        try:
            await records.ready()
            found = await records.store.get(call_sid)
        except StoreUnavailable:
            return _error(503, "the call records database is unavailable")
        if found is None:
            return _error(404, "no record of that call")
        usage = found.get("usage")
        found["usage"] = json.loads(usage) if isinstance(usage, str) else usage  # a JSON column, as text
        parts = await records.audio_parts(call_sid)
        # What the files say, not the database: a part written by a bridge that never wrote
        # its end row (its replica died) still counts.
        found["audio_recording"] = records.audio_dir is not None
        found["audio_parts"] = [{"part": n} for n, _ in parts]
        found["has_audio"] = bool(parts)
        return web.json_response(found)

    async def audio(request: web.Request) -> web.StreamResponse:
        checked = await one_call(request)
        if isinstance(checked, web.Response):
            return checked
        records, call_sid = checked
        wanted = request.match_info.get("part")
        if wanted is not None and not PART_RE.match(wanted):
            return _error(400, "part must be a number")
        if records.audio_dir is None:
            return _error(404, "call audio is not recorded (RELAY_RECORD_AUDIO=false)")
        parts = await records.audio_parts(call_sid)
        if not parts:
            return _error(404, "no audio for that call")
        if wanted is None:
            path: Path = parts[0][1]
        else:
            by_part = dict(parts)
            if int(wanted) not in by_part:
                return _error(404, f"no audio part {int(wanted)} for that call")
            path = by_part[int(wanted)]
        # aiohttp's FileResponse answers Range requests (206, Content-Range) and HEAD.
        return web.FileResponse(path, headers={"Content-Type": "audio/flac", "Cache-Control": "no-store"})

    async def delete(request: web.Request) -> web.StreamResponse:
        checked = await one_call(request)
        if isinstance(checked, web.Response):
            return checked
        records, call_sid = checked
        try:
            existed = await records.delete(call_sid)
        except StoreUnavailable:
            return _error(503, "the call records database is unavailable")
        log.info("call record deleted", extra={"call_sid": call_sid, "existed": existed})
        return web.Response(status=204) if existed else _error(404, "no record of that call")

    return {"search": search, "record": record, "audio": audio, "delete": delete}


async def _totals(state: RelayState, query: SearchQuery) -> web.Response:
    assert state.records is not None
    store = state.records.store
    try:
        await state.records.ready()
        found = await store.totals(query)
    except StoreUnavailable as exc:
        log.warning("records totals failed: database unavailable", extra={"error": str(exc)})
        return _error(503, "the call records database is unavailable")
    period = {"from": query.since, "to": query.until, "agent": query.agent}
    return web.json_response({"totals": found, "period": period})


def add_routes(app: web.Application) -> None:
    api = _handlers(_supervisor)
    app.router.add_get("/calls", api["search"])
    app.router.add_get("/calls/{callSid}", api["record"])
    app.router.add_get("/calls/{callSid}/audio", api["audio"], name=AUDIO_ROUTE)
    app.router.add_get("/calls/{callSid}/audio/{part}", api["audio"], name=f"{AUDIO_ROUTE}-part")
    app.router.add_delete("/calls/{callSid}", api["delete"])
    hub = _handlers(console_guard)
    app.router.add_get("/console/records", hub["search"])
    app.router.add_get("/console/records/{callSid}", hub["record"])
    app.router.add_get("/console/records/{callSid}/audio", hub["audio"])
    app.router.add_get("/console/records/{callSid}/audio/{part}", hub["audio"])
