"""A fake OpenAI Responses endpoint (`POST /v1/responses`), mounted beside the fake Realtime
server (the relay derives both from one `OPENAI_BASE_URL`).

- Each request body is validated with the SDK's own `ResponseCreateParamsNonStreaming`
  (plus a check for keys the type does not declare), and a `json_schema` text format must
  follow the strict-mode rules the API enforces (every object closed with
  `additionalProperties: false`, every property required).
- Each answer is built as the API's `Response` shape and validated with the SDK's `Response`
  model before it is sent. Errors use the API's error body and status codes.
- Scriptable, one outcome per request (then `default`): a valid answer generated from the
  request's own schema (or a given payload), a refusal, an incomplete answer
  (`max_output_tokens`, text cut mid-JSON), text that breaks the schema, an HTTP error
  (429 `rate_limit_exceeded`, 500 …), and a fixed model time per request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, get_type_hints

from aiohttp import web
from openai.types.responses import Response
from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming
from pydantic import TypeAdapter, ValidationError

REQUEST: TypeAdapter[Any] = TypeAdapter(ResponseCreateParamsNonStreaming)
_KNOWN_KEYS = set(get_type_hints(ResponseCreateParamsNonStreaming))

OutcomeKind = Literal["ok", "refusal", "incomplete", "invalid", "http_error"]


@dataclass
class Outcome:
    kind: OutcomeKind = "ok"
    payload: dict[str, Any] | None = None  # "ok": this object instead of one made from the schema
    status: int = 429  # "http_error"
    code: str = "rate_limit_exceeded"
    delay_s: float = 0.0


@dataclass
class ResponsesRequest:
    body: dict[str, Any]
    at: float
    violations: list[str]

    @property
    def text(self) -> str:
        value = self.body.get("input", "")
        return value if isinstance(value, str) else json.dumps(value)


@dataclass
class FakeResponses:
    api_key: str | None = None
    script: deque[Outcome] = field(default_factory=deque)
    default: Outcome = field(default_factory=Outcome)
    model_time_s: float = 0.0  # added to every request (a fixed model time)
    requests: list[ResponsesRequest] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/responses", self._handle)

    @property
    def violations(self) -> list[str]:
        return [v for r in self.requests for v in r.violations]

    async def _handle(self, request: web.Request) -> web.Response:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_api_key", "Incorrect API key provided.", "invalid_request_error")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid_json", "We could not parse the JSON body of your request.")
        except ConnectionResetError:  # the relay was killed mid-request (kill and restart tests)
            raise web.HTTPBadRequest() from None
        violations = check_request(body)
        self.requests.append(ResponsesRequest(body, time.monotonic(), violations))
        if violations:
            return _error(400, "invalid_request", "; ".join(violations)[:500])
        outcome = self.script.popleft() if self.script else self.default
        await asyncio.sleep(self.model_time_s + outcome.delay_s)
        if outcome.kind == "http_error":
            kind = "requests" if outcome.status == 429 else "server_error"
            return _error(outcome.status, outcome.code, f"scripted {outcome.status}", kind)
        schema = body["text"]["format"]["schema"]
        response = self._response(body, outcome, schema)
        try:  # the fake never sends a shape the SDK would not read
            Response.model_validate(response)
        except ValidationError as exc:
            self.requests[-1].violations.append(f"fake built an invalid Response: {exc}")
            return _error(500, "fake_invalid_response", "the fake built an invalid Response", "server_error")
        return web.json_response(response)

    def _response(self, body: dict[str, Any], outcome: Outcome, schema: dict[str, Any]) -> dict[str, Any]:
        n = next(self._ids)
        text_in = (body.get("instructions") or "") + json.dumps(body.get("input"))
        status, incomplete = "completed", None
        content: dict[str, Any]
        if outcome.kind == "refusal":
            content = {"type": "refusal", "refusal": "I'm sorry, I can't help with that."}
        else:
            payload = outcome.payload if outcome.payload is not None else instance_of(schema, schema)
            text = json.dumps(payload)
            if outcome.kind == "incomplete":
                status, incomplete = "incomplete", {"reason": "max_output_tokens"}
                text = text[: max(1, len(text) // 2)]
            elif outcome.kind == "invalid":
                text = json.dumps({"summary": "missing everything else"})
            content = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        output_tokens = max(1, len(json.dumps(content)) // 4)
        return {
            "id": f"resp_{n:024x}",
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"],
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{n:024x}",
                    "status": "completed" if status == "completed" else "incomplete",
                    "role": "assistant",
                    "content": [content],
                }
            ],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": 1.0,
            "text": body["text"],
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": {
                "input_tokens": max(1, len(text_in) // 4),
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": max(1, len(text_in) // 4) + output_tokens,
            },
            "user": None,
            "metadata": {},
        }


def check_request(body: object) -> list[str]:
    """What the API would refuse in this request body (empty when it is accepted)."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    problems = []
    try:
        REQUEST.validate_python(body)
    except ValidationError as exc:
        problems.append(f"invalid request: {exc.error_count()} errors ({exc.errors()[0]['loc']})")
    unknown = set(body) - _KNOWN_KEYS
    if unknown:
        problems.append(f"unknown parameters: {sorted(unknown)}")
    if body.get("stream"):
        problems.append("the fake answers non-streaming requests only")
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        problems.append("text.format must be a json_schema (structured output)")
    else:
        if fmt.get("strict") is not True:
            problems.append("text.format.strict must be true")
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            problems.append("text.format.schema must be an object")
        else:
            problems.extend(strict_schema_problems(schema, schema, "$"))
    return problems


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        return dict(target)
    return node


def strict_schema_problems(node: dict[str, Any], root: dict[str, Any], path: str) -> list[str]:
    node = _resolve(node, root)
    problems = []
    if node.get("type") == "object":
        properties = node.get("properties", {})
        if node.get("additionalProperties") is not False:
            problems.append(f"{path}: objects must set additionalProperties: false")
        if set(node.get("required", [])) != set(properties):
            problems.append(f"{path}: every property must be required")
        for name, child in properties.items():
            problems.extend(strict_schema_problems(child, root, f"{path}.{name}"))
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        problems.extend(strict_schema_problems(node["items"], root, f"{path}[]"))
    for option in node.get("anyOf", []):
        problems.extend(strict_schema_problems(option, root, path))
    return problems


def instance_of(node: dict[str, Any], root: dict[str, Any]) -> Any:
    """A value that matches the schema node: what a model answering under it could say."""
    node = _resolve(node, root)
    if "enum" in node:
        return node["enum"][0]
    if "const" in node:
        return node["const"]
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if _resolve(o, root).get("type") != "null"]
        return instance_of(options[0], root) if options else None
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: instance_of(child, root) for name, child in node.get("properties", {}).items()}
    if kind == "array":
        return [instance_of(node["items"], root)] if isinstance(node.get("items"), dict) else []
    if kind == "string":
        return "text"
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return 1
    return None


def _error(status: int, code: str, message: str, kind: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers={"x-request-id": f"req_{int(time.time() * 1000)}"})
