"""`GET`/`PUT /calls/{CallSid}/wrapup`: the agent reads and corrects the call's wrap-up.

`GET` answers the wrap-up the record holds (the relay's, or the agent's once saved) with the
operator's disposition codes, so the plugin can offer them. `PUT` takes the agent's edit
(`summary`, `disposition` from the codes, `action_items` of `{owner, text, due}`), redacts its
text like every other text, writes it to the call record, then into the call's TaskRouter task
(the task SID from the record) through the same If-Match read-modify-write the relay's own
wrap-up uses.

Guarded by the Flex token of the call's agent (the record's worker) or of a supervisor (a role
in RELAY_RECORDS_ROLES); a call whose agent is unknown may be edited by any token with a role in
RELAY_FLEX_ALLOWED_ROLES. Answers: 200 `{"wrapup", "task"}`; 400 bad body (one log line); 404
unknown call; 409 when the task kept changing under the write (TaskRouter's 412 on every
attempt: another writer is busy with it; the record is saved, sending the same edit again
is safe); 502 when Twilio failed or could not be reached (the record is saved too).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relay.assist.privacy import redaction_config
from relay.records.service import CALL_ID_RE
from relay.records.store import StoreUnavailable
from relay.redaction import RedactionSession, Redactor
from relay.twilio.flex_auth import FlexAuthError, FlexIdentity
from relay.twilio.task_attributes import TaskAttributeWriter, TaskWriteFailed
from relay.web.http_api import authenticate, client_address, flex_token, may_act_for_call, refusal
from relay.web.state import RELAY, RelayState

log = logging.getLogger("relay.wrapup.schema")

MAX_BODY_BYTES: Final = 32 * 1024
MAX_SUMMARY_CHARS: Final = 4000
MAX_ITEMS: Final = 50
MAX_ITEM_CHARS: Final = 500
MAX_DUE_CHARS: Final = 100
WORKSPACE_SID_RE: Final = re.compile(r"^WS[0-9a-fA-F]{32}$")


class EditedActionItem(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    owner: Literal["agent", "customer", "other"]
    text: str = Field(min_length=1, max_length=MAX_ITEM_CHARS)
    due: str | None = Field(default=None, max_length=MAX_DUE_CHARS)


class EditedWrapUp(BaseModel):
    """The agent's edit: what the plugin lets the agent change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    summary: str = Field(max_length=MAX_SUMMARY_CHARS)
    disposition: str = Field(min_length=1, max_length=64)
    action_items: list[EditedActionItem] = Field(default_factory=list, max_length=MAX_ITEMS)
    # The task's workspace (Flex knows it: `task.workspaceSid`); else TWILIO_TASKROUTER_WORKSPACE_SID.
    workspace_sid: str | None = Field(default=None, pattern=WORKSPACE_SID_RE.pattern)


@runtime_checkable
class _SavesWrapUp(Protocol):
    """A store that takes an edited wrap-up (both stores do)."""

    async def save_wrapup(self, call_sid: str, wrapup: dict[str, Any], disposition: str) -> bool: ...


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _bad(call_sid: str, reason: str) -> web.Response:
    # One line per refusal, naming the call and why; never the body (it holds what was said).
    log.warning("wrap-up edit refused", extra={"call_sid": call_sid, "reason": reason})
    return _error(400, reason)


def _may_edit(state: RelayState, identity: FlexIdentity, worker: str | None) -> bool:
    """The call's agent (the record's worker: its WorkerIdentity or WorkerSid) or a supervisor;
    a call whose agent is not known is a supervisor's only (the rule pausing follows too)."""
    return may_act_for_call(state, identity, worker, worker)


def _redaction(state: RelayState) -> RedactionSession | None:
    """The configured redaction (RELAY_REDACT, RELAY_REDACT_ENTITIES), as one session over the
    edit's texts in order, so a cue in the summary ("the card number is") reaches digits
    written in the next field."""
    settings = state.settings
    return RedactionSession(Redactor(redaction_config(settings.redact_entities))) if settings.redact else None


def _parse(raw: bytes, call_sid: str, codes: tuple[str, ...]) -> EditedWrapUp | web.Response:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _bad(call_sid, "malformed JSON")
    if not isinstance(data, dict):
        return _bad(call_sid, "the body must be a JSON object")
    try:
        edit = EditedWrapUp.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return _bad(call_sid, f"{where}: {first['msg']}")
    if edit.disposition not in codes:
        return _bad(call_sid, f"disposition must be one of the operator's codes: {', '.join(codes)}")
    return edit


async def _checked(request: web.Request) -> tuple[RelayState, str, dict[str, Any], FlexIdentity] | web.Response:
    """Proof, call id, records on, the record itself, and the right to touch it."""
    state = request.app[RELAY]
    try:
        identity = await authenticate(state, flex_token(request, {}), client_address(request))
    except FlexAuthError as exc:
        return refusal(exc)
    call_sid = request.match_info["callSid"]
    if not CALL_ID_RE.match(call_sid):
        return _error(400, "not a call id")
    if state.records is None:
        return _error(503, "call records are off (RELAY_RECORDS=false)")
    if state.wrapup is None:
        return _error(503, "the wrap-up is off (RELAY_WRAPUP=false)")
    try:
        await state.records.ready()
        record = await state.records.store.get(call_sid)
    except StoreUnavailable:
        return _error(503, "the call records database is unavailable")
    if record is None:
        return _error(404, "no record of that call")
    if not _may_edit(state, identity, record.get("worker")):
        state.stats.flex_auth["wrapup_denied"] += 1
        return _error(403, "only the call's agent or a supervisor may edit its wrap-up")
    return state, call_sid, record, identity


def _codes(state: RelayState) -> list[dict[str, str]]:
    assert state.wrapup is not None
    return [{"code": d.code, "description": d.description} for d in state.wrapup.dispositions.codes]


async def get_wrapup(request: web.Request) -> web.Response:
    checked = await _checked(request)
    if isinstance(checked, web.Response):
        return checked
    state, _, record, _ = checked
    assert state.wrapup is not None
    return web.json_response(
        {"wrapup": record.get("wrapup"), "dispositions": _codes(state), "default": state.wrapup.dispositions.default},
        headers={"Cache-Control": "no-store"},
    )


async def put_wrapup(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _bad(request.match_info["callSid"], f"the body is limited to {MAX_BODY_BYTES} bytes")
    checked = await _checked(request)
    if isinstance(checked, web.Response):
        return checked
    state, call_sid, record, identity = checked
    assert state.wrapup is not None and state.records is not None
    # read() of n bytes returns what has arrived so far: a body in several segments is read whole.
    raw = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return _bad(call_sid, f"the body is limited to {MAX_BODY_BYTES} bytes")
    edit = _parse(bytes(raw), call_sid, state.wrapup.dispositions.names)
    if isinstance(edit, web.Response):
        return edit

    session = _redaction(state)

    def clean(text: str) -> str:
        return session.redact(text).text if session is not None else text

    stored: dict[str, Any] = record.get("wrapup") or {}
    # A second edit starts again from what the relay wrote, not from the first edit.
    previous: dict[str, Any] = (stored.get("generated") or {}) if stored.get("edited_at") else stored
    saved: dict[str, Any] = {
        **{k: v for k, v in previous.items() if k not in ("generated", "edited_by", "edited_at")},
        "status": "ok",
        "summary": clean(edit.summary),
        "disposition": edit.disposition,
        "action_items": [
            {"owner": item.owner, "text": clean(item.text), "due": clean(item.due) if item.due else None}
            for item in edit.action_items
        ],
        "edited_by": identity.identity,
        "edited_at": time.time(),
        # What the relay wrote, kept beside the agent's version (one level deep, not a history).
        "generated": previous or None,
    }
    store = state.records.store
    if not isinstance(store, _SavesWrapUp):
        return _error(501, "this records database cannot save an edited wrap-up")
    try:
        found = await store.save_wrapup(call_sid, saved, edit.disposition)
    except StoreUnavailable:
        return _error(503, "the call records database is unavailable")
    if not found:  # deleted between the read and the write
        return _error(404, "no record of that call")
    log.info(
        "wrap-up edited",
        extra={"call_sid": call_sid, "by": identity.identity, "disposition": edit.disposition},
    )
    task = await _write_task(state, call_sid, record.get("task_sid"), edit.workspace_sid, saved)
    body = {"wrapup": saved, "task": task}
    if task.get("conflict"):
        return web.json_response(
            {**body, "error": "the task kept changing; the record is saved, try again"}, status=409
        )
    if task.get("failed"):
        return web.json_response({**body, "error": "Twilio failed; the record is saved, try again"}, status=502)
    return web.json_response(body)


async def _write_task(
    state: RelayState, call_sid: str, task_sid: str | None, workspace_sid: str | None, saved: dict[str, Any]
) -> dict[str, Any]:
    """Into the task's attributes under RELAY_TASK_SUMMARY_ATTRIBUTE, with If-Match."""
    if not task_sid:
        return {"written": False, "reason": "the call has no known task"}
    workspace = workspace_sid or state.settings.twilio_taskrouter_workspace_sid
    if not workspace:
        return {"written": False, "reason": "the task's workspace is unknown: set TWILIO_TASKROUTER_WORKSPACE_SID"}
    if state.twilio_client is None:
        return {"written": False, "reason": "Twilio is not configured"}
    value = {
        **{k: v for k, v in saved.items() if k != "generated"},
        "call_sid": call_sid,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    writer = TaskAttributeWriter(state.twilio_client)
    extra = {"call_sid": call_sid, "task_sid": task_sid}
    try:
        attempts = await writer.set_attribute(workspace, task_sid, state.settings.task_summary_attribute, value)
    except TaskWriteFailed as exc:
        log.warning("edited wrap-up not written to the task", extra={**extra, "reason": exc.reason, "code": exc.code})
        outcome: dict[str, Any] = {"written": False, "task_sid": task_sid, "reason": exc.reason}
        if exc.status == 412:
            outcome["conflict"] = True
        elif exc.status == 429 or (exc.status or 0) >= 500 or exc.reason.startswith("unreachable"):
            outcome["failed"] = True
        return outcome
    log.info("edited wrap-up written to the task", extra={**extra, "attempts": attempts})
    return {"written": True, "task_sid": task_sid, "attempts": attempts}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/calls/{callSid}/wrapup", get_wrapup)
    app.router.add_put("/calls/{callSid}/wrapup", put_wrapup)
