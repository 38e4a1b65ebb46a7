"""HTTP endpoints: health, readiness, metrics, and the Flex-facing API.

The Flex-facing API is wire-compatible with the voice-assist plugin's Twilio Functions
(reference §E1): `GET /token` and `POST /stream {"action","callSid","Token"} → {"result": true}`.
New plugins can use `POST`/`DELETE /calls/{callSid}/assist` (same code, Bearer token).
`POST /calls/{callSid}/pause` and `/resume` pause a live call for a payment (the call's agent
or a supervisor).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from twilio.request_validator import HMAC_SHA256, RequestValidator, get_signature_algorithm

from relay.assist.bridge import CallBridge
from relay.records.service import CALL_ID_RE
from relay.taskrouter.events import EventError, from_callback, from_cloudevents
from relay.twilio.flex_auth import FlexAuthError, FlexIdentity
from relay.twilio.stream_control import Result, StreamOutcome
from relay.web.openapi import OPENAPI
from relay.web.state import RELAY, RelayState
from sync_publisher import messages
from sync_publisher.tokens import mint_sync_token

log = logging.getLogger("relay.http")

CALL_SID_RE = re.compile(r"^CA[0-9a-fA-F]{32}$")
TASK_SID_RE = re.compile(r"^WT[0-9a-fA-F]{32}$")
WORKSPACE_SID_RE = re.compile(r"^WS[0-9a-fA-F]{32}$")
STREAM_EVENTS = frozenset({"stream-started", "stream-stopped", "stream-error"})
_MAX_BODY = 64 * 1024


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


# ---------------------------------------------------------------------------- health


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    body = {
        "ready": state.ready,
        "draining": state.draining,
        "active_calls": len(state.calls),
        "open_connections": state.open_connections,
        "max_calls": state.settings.max_calls,
    }
    return web.json_response(body, status=200 if state.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    return web.Response(body=state.metrics.render(), content_type="text/plain", charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


# ---------------------------------------------------------------------------- Flex auth


async def _request_fields(request: web.Request) -> dict[str, str]:
    """Query parameters plus a JSON or form body, as strings (the plugin sends either)."""
    fields = {k: v for k, v in request.query.items()}
    if request.method in ("POST", "PUT", "DELETE") and request.can_read_body:
        if request.content_length is not None and request.content_length > _MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=_MAX_BODY, actual_size=request.content_length)
        raw = await request.read()
        if raw:
            if request.content_type == "application/json":
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise web.HTTPBadRequest(
                        text='{"error":"malformed JSON"}', content_type="application/json"
                    ) from None
                if not isinstance(body, dict):
                    raise web.HTTPBadRequest(text='{"error":"body must be an object"}', content_type="application/json")
                fields.update({k: v for k, v in body.items() if isinstance(v, str)})
            else:
                form = await request.post()
                fields.update({k: v for k, v in form.items() if isinstance(v, str)})
    return fields


QUERY_TOKEN_NAMES = ("Token", "token")


def flex_token(request: web.Request, fields: dict[str, str], *, query_allowed: bool = False) -> str | None:
    """The Flex token from `Authorization: Bearer …` or the body's `Token` field.

    A token in the URL ends up in proxies' and load balancers' access logs, so a query-string
    token is refused (400) unless the route passes `query_allowed`: only routes a browser element
    loads by URL, which cannot set a header (the records API's audio), do.
    """
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    in_query = any(name in request.query for name in QUERY_TOKEN_NAMES)
    if in_query and not query_allowed:
        request.app[RELAY].stats.flex_auth["token_in_url"] += 1
        log.warning("Flex token refused: sent in the URL", extra={"path": request.path})
        raise FlexAuthError(400, "send the Flex token in the Authorization header or the request body, not in the URL")
    return fields.get("Token") or fields.get("token")


def client_address(request: web.Request) -> str | None:
    """Who sent the request: the peer, or, when the peer is a trusted proxy
    (RELAY_TRUSTED_PROXIES), the nearest X-Forwarded-For hop that is not one."""
    address = request.remote
    trusted = request.app[RELAY].trusted_proxies
    if not trusted or address is None:
        return address
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    while hops and _is_trusted(address, trusted):
        address = hops.pop()
    return address


def _is_trusted(address: str, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a forged hop that is not an address stops the walk
    return any(ip in network for network in trusted)


def refusal(exc: FlexAuthError) -> web.Response:
    """A failed Flex check as its HTTP answer; a rate-limited source learns when to come back."""
    response = web.json_response({"error": exc.reason}, status=exc.status)
    if exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


async def authenticate(state: RelayState, token: str | None, source: str | None = None) -> FlexIdentity:
    """`source` is the client's address: invalid tokens are rate-limited per source. Behind a
    proxy that is the proxy's address, so the limit holds per proxy (valid tokens never count)."""
    if not token:
        state.stats.flex_auth["missing"] += 1
        raise FlexAuthError(401, "a Flex token is required (Authorization: Bearer … or Token)")
    if state.flex_validator is None:
        state.stats.flex_auth["unconfigured"] += 1
        raise FlexAuthError(503, "Flex token validation is not configured (TWILIO_ACCOUNT_SID/AUTH_TOKEN)")
    try:
        identity = await state.flex_validator.validate(token, source)
    except FlexAuthError as exc:
        outcome = {401: "invalid", 429: "rate_limited", 503: "iam_unavailable"}.get(exc.status, "denied")
        state.stats.flex_auth[outcome] += 1
        raise
    allowed = set(state.settings.flex_allowed_roles)
    if allowed and not allowed.intersection(identity.roles):
        state.stats.flex_auth["role_denied"] += 1
        raise FlexAuthError(403, "this Flex role may not use agent assist")
    state.stats.flex_auth["ok"] += 1
    return identity


# ---------------------------------------------------------------------------- /token


async def token(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    settings = state.settings
    fields = await _request_fields(request)
    try:
        presented = flex_token(request, fields)
        identity = (await authenticate(state, presented, client_address(request))).identity if presented else None
    except FlexAuthError as exc:
        return refusal(exc)
    if identity is None and "identity" in fields:
        legacy = settings.legacy_token_identity
        if legacy is None or not hmac.compare_digest(fields["identity"].encode(), legacy.encode()):
            state.stats.flex_auth["legacy_denied"] += 1
            return _error(401, "legacy identity mode is off or the identity does not match")
        state.stats.flex_auth["legacy"] += 1
        log.warning("Sync token issued in legacy shared-identity mode; move the plugin to Flex tokens")
        identity = legacy
    elif identity is None:
        state.stats.flex_auth["missing"] += 1
        return _error(401, "a Flex token is required (Authorization: Bearer … or Token)")

    if not (settings.twilio_account_sid and settings.twilio_api_key and settings.twilio_api_secret):
        return _error(503, "Sync tokens are not configured (TWILIO_API_KEY/TWILIO_API_SECRET)")
    if not settings.twilio_sync_service_sid:
        return _error(503, "Sync is not configured (TWILIO_SYNC_SERVICE_SID)")
    jwt = mint_sync_token(
        account_sid=settings.twilio_account_sid,
        api_key=settings.twilio_api_key,
        api_secret=settings.twilio_api_secret.get_secret_value(),
        service_sid=settings.twilio_sync_service_sid,
        identity=identity,
        ttl_s=settings.token_ttl_s,
    )
    return web.json_response(
        {"token": jwt, "identity": identity, "ttl": settings.token_ttl_s},
        headers={"Cache-Control": "no-store"},
    )


# ---------------------------------------------------------------------------- stream control


_OUTCOME_ANSWERS: dict[Result, tuple[int, str]] = {
    Result.NOT_CONFIGURED: (503, "stream control needs Twilio credentials and RELAY_PUBLIC_URL"),
    Result.CALL_NOT_FOUND: (404, "unknown call"),
    Result.CALL_NOT_IN_PROGRESS: (409, "the call is not in progress"),
    Result.TWILIO_FAILED: (502, "Twilio failed; try again"),
    Result.REFUSED: (400, "Twilio refused the request"),
    Result.UNREACHABLE: (502, "Twilio could not be reached"),
}


def _answer(outcome: StreamOutcome) -> web.Response:
    """A stream-control outcome as the plugin expects it (`{"result": true}` on success)."""
    if outcome.result is Result.STARTED:
        return web.json_response({"result": True, "stream_sid": outcome.stream_sid})
    if outcome.result is Result.ALREADY_RUNNING:
        return web.json_response({"result": True, "already_running": True})
    if outcome.result is Result.STOPPED:
        return web.json_response({"result": True})
    if outcome.result is Result.ALREADY_STOPPED:
        return web.json_response({"result": True, "already_stopped": True})
    status, message = _OUTCOME_ANSWERS[outcome.result]
    extra = {"twilio_code": outcome.code} if outcome.code is not None else {}
    return _error(status, message, **extra)


async def _control(request: web.Request, call_sid: str, action: str | None) -> web.Response:
    """Shared by both shapes: prove the agent, check the call SID, start or stop."""
    state = request.app[RELAY]
    fields = await _request_fields(request)
    try:
        agent = await authenticate(state, flex_token(request, fields), client_address(request))
    except FlexAuthError as exc:
        return refusal(exc)
    call_sid = call_sid or fields.get("callSid", "")
    if not CALL_SID_RE.match(call_sid):
        return _error(400, "callSid must look like CA followed by 32 hex digits")
    action = action or fields.get("action")
    if action == "start":
        task: dict[str, str] = {}
        for field, pattern, name in (
            ("taskSid", TASK_SID_RE, "TaskSid"),
            ("workspaceSid", WORKSPACE_SID_RE, "WorkspaceSid"),
        ):
            value = fields.get(field)
            if value is not None and not pattern.match(value):
                return _error(400, f"{field} must look like {name[:2].upper()} followed by 32 hex digits")
            if value:
                task[name] = value
        # The agent who starts assist is the call's agent: pausing it and editing its wrap-up
        # are theirs (and supervisors'), not every agent's.
        task["WorkerIdentity"] = agent.identity
        if agent.worker_sid:
            task["WorkerSid"] = agent.worker_sid
        return _answer(await state.stream_control.start(call_sid, task))
    if action == "stop":
        return _answer(await state.stream_control.stop(call_sid))
    return _error(400, "action must be start or stop")


async def stream_control(request: web.Request) -> web.Response:
    """`POST /stream {"action","callSid","Token"}`, exactly as the voice-assist plugin sends it."""
    return await _control(request, "", None)


async def call_assist(request: web.Request) -> web.Response:
    """`POST`/`DELETE /calls/{callSid}/assist`: the same operations, RESTful."""
    return await _control(request, request.match_info["callSid"], "start" if request.method == "POST" else "stop")


# ---------------------------------------------------------------------------- pause for payments


def may_act_for_call(state: RelayState, identity: FlexIdentity, agent: str | None, worker: str | None) -> bool:
    """The call's agent (its stream's `WorkerIdentity`/`WorkerSid`, which `/stream`, the assist
    route and the TaskRouter driver set) or a supervisor (a role in RELAY_RECORDS_ROLES). A call
    whose agent is not known (a stream started elsewhere without them) is a supervisor's only:
    an agent must not pause, resume or read another agent's call."""
    if set(state.settings.records_roles).intersection(identity.roles):
        return True
    return (agent is not None and identity.identity == agent) or (worker is not None and identity.worker_sid == worker)


def may_pause(state: RelayState, identity: FlexIdentity, bridge: CallBridge) -> bool:
    return may_act_for_call(state, identity, bridge.agent_identity, bridge.agent_worker_sid)


async def call_pause(request: web.Request) -> web.Response:
    """`POST /calls/{callSid}/pause` and `/resume`: no audio to the model, no transcripts and
    silence in the recording while the customer reads a card number; RELAY_PAUSE_MAX_S ends
    a pause nobody resumed."""
    state = request.app[RELAY]
    pausing = request.path.endswith("/pause")
    fields = await _request_fields(request)
    try:
        identity = await authenticate(state, flex_token(request, fields), client_address(request))
    except FlexAuthError as exc:
        return refusal(exc)
    call_sid = request.match_info["callSid"]
    if not CALL_ID_RE.match(call_sid):
        return _error(400, "not a call id")
    handle = state.calls.get(call_sid)
    if handle is None:
        # Several relays: the call's socket is on another one, which alone can stop its audio.
        # The answer names the stream that owns it; the balancer (or the caller) retries there.
        owner = await state.directory.owner_stream(call_sid) if state.directory.shared else None
        if owner is not None:
            state.stats.flex_auth["pause_elsewhere"] += 1
            return _error(421, "the call is live on another relay", owner_stream=owner)
        return _error(404, "no live call with this id on this relay")
    bridge = handle.bridge
    if not may_pause(state, identity, bridge):
        state.stats.flex_auth["pause_denied"] += 1
        return _error(403, "only the call's agent or a supervisor may pause or resume it")
    changed = bridge.pause() if pausing else bridge.resume()
    log.info(
        "call paused" if pausing else "call resumed",
        extra={"call_sid": call_sid, "by": identity.identity, "changed": changed},
    )
    return web.json_response({"result": True, "paused": bridge.privacy.paused, "changed": changed})


# ---------------------------------------------------------------------------- Twilio webhooks


def verify_twilio_webhook(state: RelayState, request: web.Request, raw_body: bytes) -> bool:
    """Form bodies, JSON bodies (`bodySHA256`), and the HMAC-SHA256 shared-key variant."""
    settings = state.settings
    signature = request.headers.get("X-Twilio-Signature")
    public = settings.http_public_url(request.path)
    if not signature or public is None:
        return False
    url = public + (f"?{request.query_string}" if request.query_string else "")
    algorithm = get_signature_algorithm(request.headers.get("X-Twilio-Webhooks-Signature-Settings"))
    secret = settings.twilio_auth_token
    if algorithm == HMAC_SHA256 and settings.twilio_webhook_shared_key is not None:
        secret = settings.twilio_webhook_shared_key
    if secret is None:
        return False
    validator = RequestValidator(secret.get_secret_value())
    try:
        body = raw_body.decode()
    except UnicodeDecodeError:
        return False
    if "bodySHA256" in request.query:
        return bool(validator.validate(url, body, signature, algorithm=algorithm))
    if request.content_type == "application/json":
        return False  # Twilio signs JSON bodies through `bodySHA256`; a JSON body without it is not covered
    params: dict[str, Any] = {}
    if body:
        params = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
    return bool(validator.validate(url, params, signature, algorithm=algorithm))


def _unsigned(state: RelayState, request: web.Request, raw: bytes, counter: str, what: str) -> web.Response | None:
    """403 (counted, one log line) unless the webhook carries a valid Twilio signature."""
    if verify_twilio_webhook(state, request, raw):
        return None
    state.stats.stream_callbacks[counter] += 1
    log.warning(f"{what} refused: bad or missing signature")
    return _error(403, "invalid Twilio signature")


async def stream_status(request: web.Request) -> web.Response:
    """Twilio's stream status callback: stream-started / stream-stopped / stream-error."""
    state = request.app[RELAY]
    raw = await request.read()
    if (refused := _unsigned(state, request, raw, "bad_signature", "stream status callback")) is not None:
        return refused
    if "bodySHA256" in request.query:
        try:
            loaded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "malformed JSON")
        fields = {k: str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    else:
        form = await request.post()
        fields = {k: str(v) for k, v in form.items()}
    event = fields.get("StreamEvent", "")
    call_sid = fields.get("CallSid", "")
    if event not in STREAM_EVENTS or not CALL_SID_RE.match(call_sid):
        state.stats.stream_callbacks["malformed"] += 1
        return _error(400, "StreamEvent and CallSid are required")
    state.stats.stream_callbacks[event] += 1
    log.info(
        "stream status",
        extra={
            "call_sid": call_sid,
            "stream_sid": fields.get("StreamSid"),
            "event": event,
            "stream_error": fields.get("StreamError"),
        },
    )
    degraded = f"stream error: {fields.get('StreamError', 'unknown')}"[:300] if event == "stream-error" else None
    restart = event != "stream-started" and state.settings.restart_streams
    if degraded is not None or restart:
        # In the background: Twilio's callback gets its answer at once.
        state.spawn(
            _after_stream_event(state, call_sid, fields.get("StreamSid"), event, degraded, restart), name="stream-event"
        )
    return web.Response(status=204)


STOPPED_RESTART_DELAY_S = 1.0
STATUS_BEFORE_RESTART_S = 1.0


async def _after_stream_event(
    state: RelayState, call_sid: str, stream_sid: str | None, event: str, degraded: str | None, restart: bool
) -> None:
    if degraded is not None:
        flushed = _publish_status(state, call_sid, "degraded", degraded)
        if restart and flushed is not None:
            # The status takes its `seq` before the new stream's relay leases any, so a
            # browser ordering by `seq` sees "degraded" before the resumed call's "started".
            # A slow Sync delays the restart by at most this much (the flush carries on).
            await asyncio.wait({flushed}, timeout=STATUS_BEFORE_RESTART_S)
    if not restart:
        return
    # A relay died or drained, or Twilio lost the socket: if the relay started this stream
    # and the call still wants assist, start it again (on whichever replica the balancer
    # picks). A `stream-stopped` is most often a hang-up whose `stop` message the relay
    # holding the call is processing right now (it marks the stream as no longer wanted):
    # give it a moment. A `stream-error` is a broken socket: no wait.
    if event == "stream-stopped":
        await asyncio.sleep(STOPPED_RESTART_DELAY_S)
    outcome = await state.stream_control.restart(call_sid, stream_sid)
    if outcome is not None:
        state.stats.stream_callbacks[f"restart_{outcome.result.value}"] += 1


async def taskrouter_events(request: web.Request) -> web.Response:
    """TaskRouter's Event Callback (form) or an Event Streams webhook sink (a JSON array of
    CloudEvents), signed like every Twilio webhook. Answers 204 at once; the work (REST
    calls) runs in the background, well inside Twilio's 15 s (Event Streams: 5 s)."""
    state = request.app[RELAY]
    raw = await request.read()
    if (refused := _unsigned(state, request, raw, "taskrouter_bad_signature", "taskrouter event")) is not None:
        return refused
    driver = state.taskrouter
    if driver is None:
        return _error(503, "TaskRouter events are not handled (the relay is not running)")
    try:
        if request.content_type == "application/json":
            try:
                events = from_cloudevents(orjson.loads(raw))
            except orjson.JSONDecodeError:
                return _error(400, "malformed JSON")
        else:
            events = [from_callback(dict(parse_qsl(raw.decode(), keep_blank_values=True)))]
    except (EventError, UnicodeDecodeError) as exc:
        driver.stats.outcomes["malformed"] += 1
        log.warning("taskrouter event refused: malformed", extra={"error": str(exc)})
        return _error(400, f"malformed TaskRouter event: {exc}")
    driver.submit(events)
    return web.Response(status=204, content_type="application/json")


def _publish_status(state: RelayState, call_sid: str, status: str, reason: str) -> asyncio.Task[Any] | None:
    """Through the call's live bridge when this relay holds it; otherwise on a channel of its
    own, whose flush is returned."""
    handle = state.calls.get(call_sid)
    item = messages.status(status, reason)
    if handle is not None:
        handle.bridge.publish(item)
        return None
    channel = state.open_channel(call_sid)
    channel.publish(item)
    return state.spawn(channel.close(state.settings.sync_flush_deadline_s), name="status-flush")


# ---------------------------------------------------------------------------- CORS

_CORS_PATHS = ("/token", "/stream", "/calls/", "/knowledge/")


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(_CORS_PATHS) or request.path == "/calls":
        return await handler(request)
    state = request.app[RELAY]
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in state.settings.allowed_origins
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not allowed:
            return web.Response(status=403, text="origin not allowed")
        return web.Response(status=204, headers=_cors_headers(origin or "", preflight=True))
    response = await handler(request)
    if allowed and origin:
        response.headers.update(_cors_headers(origin, preflight=False))
    return response


def _cors_headers(origin: str, *, preflight: bool) -> dict[str, str]:
    headers = {
        "Access-Control-Allow-Origin": origin,  # echoed, never "*": credentials are involved
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
    if preflight:
        headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
        headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        headers["Access-Control-Max-Age"] = "600"
    return headers


def add_routes(app: web.Application) -> None:
    app.middlewares.append(cors_middleware)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/token", token)
    app.router.add_post("/token", token)
    app.router.add_post("/stream", stream_control)
    app.router.add_post("/calls/{callSid}/assist", call_assist)
    app.router.add_delete("/calls/{callSid}/assist", call_assist)
    app.router.add_post("/calls/{callSid}/pause", call_pause)
    app.router.add_post("/calls/{callSid}/resume", call_pause)
    app.router.add_post("/twilio/stream-status", stream_status)
    app.router.add_post("/twilio/taskrouter", taskrouter_events)
