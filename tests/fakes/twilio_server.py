"""A fake Twilio on loopback: Sync streams, IAM token validation, Calls/Streams REST,
TaskRouter Tasks (fetch/update with `ETag` / `If-Match`, 412 code 20412 on a stale version).

Answers with Twilio's bodies, status codes and error codes (error body
`{"code", "message", "more_info", "status"}`), checks HTTP Basic auth, and records what
it received with timestamps so tests can assert rate, size and order. Faults are
scriptable: 429 storms (54009, optional Retry-After), 5xx, slow answers, vanished streams,
IAM down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

from tests.fakes.media_dialer import MediaDialer

ERROR_DOCS = "https://www.twilio.com/docs/errors/{code}"


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"code": code, "message": message, "more_info": ERROR_DOCS.format(code=code), "status": status}
    return web.json_response(body, status=status, headers=headers)


@dataclass
class SyncMessage:
    stream: str
    data: dict[str, Any]
    raw: str
    at: float
    sid: str


@dataclass
class Fault:
    status: int
    code: int
    message: str
    retry_after: str | None = None


@dataclass
class FakeTwilioState:
    account_sid: str = "AC" + "1" * 32
    auth_token: str = "auth-token-secret-value"
    api_keys: dict[str, str] = field(default_factory=dict)  # SK… → secret
    sync_service_sid: str = "IS" + "2" * 32
    # Sync
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)  # unique_name → resource
    messages: list[SyncMessage] = field(default_factory=list)
    attempts: list[tuple[str, float]] = field(default_factory=list)  # every publish request
    sync_faults: deque[Fault] = field(default_factory=deque)
    random_429_rate: float = 0.0
    random_500_rate: float = 0.0
    sync_delay_s: float = 0.0
    enforce_rate_limit: bool = True
    rate_limit_hits: int = 0
    ttl_updates: list[tuple[str, int]] = field(default_factory=list)
    stream_creates: list[tuple[str, int]] = field(default_factory=list)
    # IAM
    flex_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # token → verdict
    iam_down: bool = False
    iam_requests: int = 0
    iam_invalid_status: int = 200
    # Voice
    calls: dict[str, str] = field(default_factory=dict)  # CA… → status
    media_streams: dict[str, dict[str, Any]] = field(default_factory=dict)  # MZ… → resource
    rest_calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    api_faults: deque[Fault] = field(default_factory=deque)
    unauthorized: int = 0
    # TaskRouter
    workspace_sid: str = "WS" + "4" * 32
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # WT… → resource (attributes: JSON str)
    task_versions: dict[str, int] = field(default_factory=dict)  # WT… → version (the ETag)
    task_requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, sid, form+headers)
    task_faults: deque[Fault] = field(default_factory=deque)
    # Another writer changes the task right after each of the next N fetches (→ 412 on update).
    concurrent_edits: int = 0
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)  # WK… → resource
    conferences: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # CF… → participants
    stream_create_delay_s: float = 0.0
    # Twilio's media side: when set, a created stream is dialled (tests/fakes/media_dialer.py).
    dialer: MediaDialer | None = None


class FakeTwilio:
    def __init__(self, state: FakeTwilioState | None = None, seed: int = 7) -> None:
        self.state = state or FakeTwilioState()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        svc = "/v1/Services/{service}"
        app.router.add_post(svc + "/Streams", self._create_stream)
        app.router.add_post(svc + "/Streams/{stream}", self._update_stream)
        app.router.add_delete(svc + "/Streams/{stream}", self._delete_stream)
        app.router.add_post(svc + "/Streams/{stream}/Messages", self._publish)
        app.router.add_post("/v1/Accounts/{account}/Tokens/validate", self._validate_token)
        base = "/2010-04-01/Accounts/{account}/Calls/{call}"
        app.router.add_post(base + "/Streams.json", self._start_media_stream)
        app.router.add_post(base + "/Streams/{stream}.json", self._update_media_stream)
        task = "/v1/Workspaces/{workspace}/Tasks/{task}"
        app.router.add_get(task, self._fetch_task)
        app.router.add_post(task, self._update_task)
        app.router.add_get("/v1/Workspaces/{workspace}/Workers/{worker}", self._fetch_worker)
        app.router.add_get(
            "/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants.json", self._participants
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ helpers

    def _sid(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):032x}"

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        state = self.state
        if user == state.account_sid and password == state.auth_token:
            return True
        return state.api_keys.get(user) == password

    def _deny(self) -> web.Response:
        self.state.unauthorized += 1
        return twilio_error(401, 20003, "Authenticate")

    def messages_for(self, stream: str) -> list[dict[str, Any]]:
        return [m.data for m in self.state.messages if m.stream == stream]

    def max_in_window(self, stream: str, window: float = 1.0, *, accepted_only: bool = True) -> int:
        times = (
            [m.at for m in self.state.messages if m.stream == stream]
            if accepted_only
            else [t for s, t in self.state.attempts if s == stream]
        )
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # ------------------------------------------------------------------ Sync

    def _stream_resource(self, name: str, ttl: int) -> dict[str, Any]:
        sid = self._sid("TO")
        svc = self.state.sync_service_sid
        now = formatdate(usegmt=True)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl)) if ttl else None
        return {
            "sid": sid,
            "unique_name": name,
            "account_sid": self.state.account_sid,
            "service_sid": svc,
            "url": f"https://sync.twilio.com/v1/Services/{svc}/Streams/{sid}",
            "links": {"stream_messages": f"https://sync.twilio.com/v1/Services/{svc}/Streams/{sid}/Messages"},
            "date_expires": expires,
            "date_created": now,
            "date_updated": now,
            "created_by": "system",
        }

    def _find_stream(self, key: str) -> dict[str, Any] | None:
        if key in self.state.streams:
            return self.state.streams[key]
        return next((s for s in self.state.streams.values() if s["sid"] == key), None)

    async def _create_stream(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._deny()
        if request.match_info["service"] != self.state.sync_service_sid:
            return twilio_error(404, 20404, "The requested resource was not found")
        form = await request.post()
        name = str(form.get("UniqueName", "")) or self._sid("TO")
        try:
            ttl = int(str(form.get("Ttl", "0")))
        except ValueError:
            return twilio_error(400, 54011, "Invalid TTL")
        if not 0 <= ttl <= 31_536_000:
            return twilio_error(400, 54011, "Invalid TTL")
        if name in self.state.streams:
            return twilio_error(409, 54301, "Unique name already exists")
        resource = self._stream_resource(name, ttl)
        self.state.streams[name] = resource
        self.state.stream_creates.append((name, ttl))
        return web.json_response(resource, status=201)

    async def _update_stream(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._deny()
        stream = self._find_stream(request.match_info["stream"])
        if stream is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        form = await request.post()
        ttl = int(str(form.get("Ttl", "0")))
        self.state.ttl_updates.append((stream["unique_name"], ttl))
        return web.json_response(stream)

    async def _delete_stream(self, request: web.Request) -> web.Response:
        stream = self._find_stream(request.match_info["stream"])
        if stream is not None:
            del self.state.streams[stream["unique_name"]]
        return web.Response(status=204)

    def vanish(self, name: str) -> None:
        self.state.streams.pop(name, None)

    async def _publish(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._deny()
        key = request.match_info["stream"]
        state = self.state
        now = time.monotonic()
        state.attempts.append((key, now))
        if state.sync_delay_s:
            await asyncio.sleep(state.sync_delay_s)
        if state.sync_faults:
            fault = state.sync_faults.popleft()
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return twilio_error(fault.status, fault.code, fault.message, headers)
        if state.random_429_rate and self._rng.random() < state.random_429_rate:
            return twilio_error(429, 54009, "Rate limit exceeded")
        if state.random_500_rate and self._rng.random() < state.random_500_rate:
            return twilio_error(500, 20500, "Internal Server Error")
        stream = self._find_stream(key)
        if stream is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        form = await request.post()
        raw = str(form.get("Data", ""))
        if len(raw.encode()) > 4096:
            return twilio_error(400, 54006, "Request entity too large")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return twilio_error(400, 54008, "Invalid data: not a JSON object")
        if state.enforce_rate_limit:
            name = stream["unique_name"]
            recent = [m for m in state.messages[-40:] if m.stream == name and now - m.at < 1.0]
            if len(recent) >= 30:
                state.rate_limit_hits += 1
                return twilio_error(429, 54009, "Rate limit exceeded")
        sid = self._sid("TZ")
        state.messages.append(SyncMessage(stream["unique_name"], data, raw, time.monotonic(), sid))
        return web.json_response({"sid": sid, "data": data}, status=201)

    # ------------------------------------------------------------------ IAM

    async def _validate_token(self, request: web.Request) -> web.Response:
        state = self.state
        state.iam_requests += 1
        if state.iam_down:
            return twilio_error(503, 20503, "Service Unavailable")
        if not self._authorized(request) or request.match_info["account"] != state.account_sid:
            return self._deny()
        if not request.content_type.startswith("application/json"):
            return twilio_error(400, 20001, "Expected a JSON body")
        body = await request.json()
        token = body.get("token") if isinstance(body, dict) else None
        verdict = state.flex_tokens.get(token) if isinstance(token, str) else None
        if verdict is None:
            return web.json_response(
                {"valid": False, "code": 20151, "message": "Invalid token", "expiration": None},
                status=state.iam_invalid_status,
            )
        return web.json_response(verdict)

    def add_agent(self, token: str, identity: str, roles: list[str] | None = None, *, valid: bool = True) -> None:
        verdict: dict[str, Any] = {
            "valid": valid,
            "code": 0 if valid else 20104,
            "message": None if valid else "Access Token expired or expiration date invalid",
            "expiration": "2030-01-01T00:00:00.000Z",
            "realm_user_id": identity.replace("_40", "@"),
            "identity": identity,
            "roles": roles or ["agent"],
            "worker_sid": self._sid("WK"),
        }
        self.state.flex_tokens[token] = verdict

    # ------------------------------------------------------------------ Voice: Streams

    async def _start_media_stream(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._deny()
        form = {k: str(v) for k, v in (await request.post()).items()}
        call = request.match_info["call"]
        self.state.rest_calls.append(("create", call, form))
        if self.state.stream_create_delay_s:
            await asyncio.sleep(self.state.stream_create_delay_s)
        if self.state.api_faults:
            fault = self.state.api_faults.popleft()
            return twilio_error(fault.status, fault.code, fault.message)
        status = self.state.calls.get(call)
        if status is None:
            return twilio_error(
                404,
                20404,
                f"The requested resource /2010-04-01/Accounts/"
                f"{self.state.account_sid}/Calls/{call}/Streams.json was not found",
            )
        if status != "in-progress":
            return twilio_error(400, 21220, "Call is not in-progress. Cannot create a Stream.")
        if "Url" not in form:
            return twilio_error(400, 21201, "Missing required parameter Url")
        name = form.get("Name")
        if name and any(
            s["name"] == name and s["call_sid"] == call and s["status"] == "in-progress"
            for s in self.state.media_streams.values()
        ):
            return twilio_error(400, 31941, "Stream with this name already exists")
        sid = self._sid("MZ")
        resource = {
            "sid": sid,
            "account_sid": self.state.account_sid,
            "call_sid": call,
            "name": name,
            "status": "in-progress",
            "date_updated": formatdate(usegmt=True),
            "uri": f"/2010-04-01/Accounts/{self.state.account_sid}/Calls/{call}/Streams/{sid}.json",
        }
        self.state.media_streams[sid] = resource
        if self.state.dialer is not None:
            self.state.dialer.dial(resource, form)
        return web.json_response(resource, status=201)

    async def _update_media_stream(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._deny()
        form = {k: str(v) for k, v in (await request.post()).items()}
        call, key = request.match_info["call"], request.match_info["stream"]
        self.state.rest_calls.append(("update", call, {"stream": key, **form}))
        if self.state.api_faults:
            fault = self.state.api_faults.popleft()
            return twilio_error(fault.status, fault.code, fault.message)
        stream = self.state.media_streams.get(key) or next(
            (
                s
                for s in self.state.media_streams.values()
                if s["name"] == key and s["call_sid"] == call and s["status"] == "in-progress"
            ),
            None,
        )
        if stream is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        if form.get("Status") != "stopped":
            return twilio_error(400, 21218, "Invalid Status")
        stream["status"] = "stopped"
        stream["date_updated"] = formatdate(usegmt=True)
        if self.state.dialer is not None:
            self.state.dialer.stop(stream["sid"])
        return web.json_response(stream)

    def end_call(self, call_sid: str) -> None:
        """The caller hangs up: the call completes and its streams stop (`stop` on the socket)."""
        self.state.calls[call_sid] = "completed"
        for stream in self.state.media_streams.values():
            if stream["call_sid"] == call_sid and stream["status"] == "in-progress":
                stream["status"] = "stopped"
                if self.state.dialer is not None:
                    self.state.dialer.stop(stream["sid"])

    # ------------------------------------------------------------------ TaskRouter: Tasks

    def add_task(self, attributes: dict[str, Any], *, sid: str | None = None, status: str = "assigned") -> str:
        sid = sid or self._sid("WT")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ws = self.state.workspace_sid
        self.state.tasks[sid] = {
            "account_sid": self.state.account_sid,
            "age": 25,
            "assignment_status": status,
            "attributes": json.dumps(attributes),
            "date_created": now,
            "date_updated": now,
            "task_queue_entered_date": now,
            "priority": 0,
            "reason": None,
            "sid": sid,
            "task_queue_sid": "WQ" + "5" * 32,
            "task_channel_sid": "TC" + "6" * 32,
            "task_channel_unique_name": "voice",
            "timeout": 86400,
            "workflow_sid": "WW" + "7" * 32,
            "workflow_friendly_name": "Assign to Anyone",
            "workspace_sid": ws,
            "url": f"https://taskrouter.twilio.com/v1/Workspaces/{ws}/Tasks/{sid}",
            "links": {"reservations": f"https://taskrouter.twilio.com/v1/Workspaces/{ws}/Tasks/{sid}/Reservations"},
        }
        self.state.task_versions[sid] = 0
        return sid

    def task_attributes(self, sid: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.state.tasks[sid]["attributes"])
        return value

    def _task_or_error(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        if not self._authorized(request):
            return None, self._deny()
        if self.state.task_faults:
            fault = self.state.task_faults.popleft()
            return None, twilio_error(fault.status, fault.code, fault.message)
        task = self.state.tasks.get(request.match_info["task"])
        if task is None or request.match_info["workspace"] != self.state.workspace_sid:
            return None, twilio_error(404, 20404, "The requested resource was not found")
        return task, None

    def _etag(self, sid: str) -> dict[str, str]:
        return {"ETag": str(self.state.task_versions[sid])}

    async def _fetch_task(self, request: web.Request) -> web.Response:
        self.state.task_requests.append(("GET", request.match_info["task"], {}))
        task, error = self._task_or_error(request)
        if task is None:
            assert error is not None
            return error
        sid = task["sid"]
        response = web.json_response(task, headers=self._etag(sid))
        if self.state.concurrent_edits > 0:  # someone else writes right after our read
            self.state.concurrent_edits -= 1
            attributes = json.loads(task["attributes"])
            attributes["edited_by_someone_else"] = attributes.get("edited_by_someone_else", 0) + 1
            task["attributes"] = json.dumps(attributes)
            self.state.task_versions[sid] += 1
        return response

    async def _update_task(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if_match = request.headers.get("If-Match")
        self.state.task_requests.append(("POST", request.match_info["task"], {**form, "If-Match": if_match or ""}))
        task, error = self._task_or_error(request)
        if task is None:
            assert error is not None
            return error
        sid = task["sid"]
        if if_match is not None and if_match != str(self.state.task_versions[sid]):
            return twilio_error(412, 20412, "Precondition failed: the Task has been modified")
        if "Attributes" in form:
            try:
                json.loads(form["Attributes"])
            except json.JSONDecodeError:
                return twilio_error(400, 20001, "Attributes must be valid JSON")
            task["attributes"] = form["Attributes"]
        if "AssignmentStatus" in form:
            task["assignment_status"] = form["AssignmentStatus"]
        task["date_updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.state.task_versions[sid] += 1
        return web.json_response(task, headers=self._etag(sid))

    # ------------------------------------------------------------------ TaskRouter: Workers

    def add_worker(self, attributes: dict[str, Any], *, name: str = "alice@example.com") -> str:
        sid = self._sid("WK")
        ws = self.state.workspace_sid
        self.state.workers[sid] = {
            "account_sid": self.state.account_sid,
            "activity_name": "Available",
            "activity_sid": "WA" + "8" * 32,
            "attributes": json.dumps(attributes),
            "available": True,
            "date_created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "date_status_changed": None,
            "date_updated": None,
            "friendly_name": name,
            "sid": sid,
            "workspace_sid": ws,
            "url": f"https://taskrouter.twilio.com/v1/Workspaces/{ws}/Workers/{sid}",
            "links": {},
        }
        return sid

    async def _fetch_worker(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._deny()
        self.state.task_requests.append(("GET", request.match_info["worker"], {}))
        worker = self.state.workers.get(request.match_info["worker"])
        if worker is None or request.match_info["workspace"] != self.state.workspace_sid:
            return twilio_error(404, 20404, "The requested resource was not found")
        return web.json_response(worker)

    # ------------------------------------------------------------------ Voice: Conference participants

    def add_conference(self, legs: dict[str, str]) -> str:
        """A conference whose participants are `{label: CallSid}` (Flex labels `customer`, `worker`)."""
        sid = self._sid("CF")
        self.state.conferences[sid] = [
            {
                "account_sid": self.state.account_sid,
                "call_sid": call,
                "conference_sid": sid,
                "label": label,
                "status": "connected",
                "muted": False,
                "hold": False,
                "coaching": False,
                "end_conference_on_exit": label == "customer",
                "start_conference_on_enter": True,
                "date_created": formatdate(usegmt=True),
                "date_updated": formatdate(usegmt=True),
                "uri": f"/2010-04-01/Accounts/{self.state.account_sid}/Conferences/{sid}/Participants/{call}.json",
            }
            for label, call in legs.items()
        ]
        return sid

    async def _participants(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._deny()
        conference = request.match_info["conference"]
        self.state.rest_calls.append(("participants", conference, {}))
        participants = self.state.conferences.get(conference)
        if participants is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        uri = f"/2010-04-01/Accounts/{self.state.account_sid}/Conferences/{conference}/Participants.json"
        return web.json_response(
            {
                "participants": participants,
                "first_page_uri": uri + "?PageSize=50&Page=0",
                "next_page_uri": None,
                "previous_page_uri": None,
                "page": 0,
                "page_size": 50,
                "uri": uri + "?PageSize=50&Page=0",
                "end": len(participants) - 1,
                "start": 0,
            }
        )


async def _main(port: int) -> None:
    fake = FakeTwilio()
    fake.state.auth_token = "load-test-auth-token"
    fake.state.api_keys["SK" + "3" * 32] = "load-test-api-secret"
    await fake.start(port=port)

    async def stats(_: web.Request) -> web.Response:
        state = fake.state
        return web.json_response(
            {
                "messages": len(state.messages),
                "attempts": len(state.attempts),
                "rate_limit_hits": state.rate_limit_hits,
                "streams": len(state.streams),
            }
        )

    from tests.fakes.tooling import serve_forever_with_stats

    await serve_forever_with_stats("fake twilio", port, [web.get("/stats", stats)])


if __name__ == "__main__":
    import argparse

    from tests.fakes.tooling import run_standalone

    parser = argparse.ArgumentParser(description="fake Twilio (load tests)")
    parser.add_argument("--port", type=int, required=True)
    run_standalone(_main(parser.parse_args().port))
