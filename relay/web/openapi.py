"""OpenAPI 3.1 description of the relay's HTTP surface, served at `/openapi.json`.

A test keeps it equal to the app's routes (paths and methods), so it cannot drift.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


_TOTALS: dict[str, Any] = {
    "type": "object",
    "required": ["calls", "calls_priced", "cost_usd", "tokens", "transcription_s"],
    "properties": {
        "calls": {"type": "integer"},
        "calls_priced": {"type": "integer", "description": "calls with a cost (a model with a price)"},
        "cost_usd": {"type": "number"},
        "tokens": {
            "type": "object",
            "properties": {
                k: {"type": "integer"}
                for k in ("audio_in", "audio_in_cached", "text_in", "text_in_cached", "text_out", "audio_out")
            },
        },
        "transcription_s": {"type": "number"},
    },
}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": description}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request",
        401: "Missing or invalid Flex token",
        403: "Role not allowed / bad Twilio signature",
        404: "Unknown call",
        409: "Call not in progress",
        421: "The call is live on another relay (`owner_stream` names its stream)",
        502: "Twilio failed",
        503: "Token service or configuration unavailable",
    }
    return {str(c): _json(_ERROR, text[c]) for c in codes}


_FLEX_TOKEN: list[dict[str, list[str]]] = [{"bearerFlexToken": []}, {}]
_STREAM_BODY = {
    "type": "object",
    "required": ["action", "callSid"],
    "properties": {
        "action": {"enum": ["start", "stop"]},
        "callSid": {"type": "string", "pattern": "^CA[0-9a-fA-F]{32}$"},
        "Token": {"type": "string", "description": "Flex SSO token (or Authorization: Bearer)"},
        "taskSid": {
            "type": "string",
            "pattern": "^WT[0-9a-fA-F]{32}$",
            "description": "start: the call's TaskRouter task; its wrap-up is written to the task's attributes",
        },
        "workspaceSid": {
            "type": "string",
            "pattern": "^WS[0-9a-fA-F]{32}$",
            "description": "start: the task's workspace (default TWILIO_TASKROUTER_WORKSPACE_SID)",
        },
    },
}
_RESULT = {"type": "object", "properties": {"result": {"const": True}}, "required": ["result"]}
# Hub mode's data routes: open to this machine's own browser, else RELAY_CONSOLE_TOKEN (bearer or
# the session cookie) or a supervisor's Flex token (relay/web/console.py).
_CONSOLE: list[dict[str, list[str]]] = [{"bearerConsoleToken": []}, {"consoleSession": []}, {"bearerFlexToken": []}, {}]
_CONSOLE_ERRORS: dict[str, Any] = {
    "401": _json(_ERROR, "reachable from other machines and no valid credential"),
    "403": _json(_ERROR, "Flex role not allowed"),
    "404": _json(_ERROR, "Sync mode (or no such record)"),
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Flex assist relay",
        "version": "1",
        "description": "Media Streams in, OpenAI Realtime, suggestions out over Twilio Sync.",
    },
    "paths": {
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"}, "alive")}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: accepting calls, not draining, below the call limit",
                "responses": {"200": _json({"type": "object"}, "ready"), "503": _json({"type": "object"}, "not ready")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text exposition", "content": {"text/plain": {}}}},
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json({"type": "object"}, "")}}},
        "/token": {
            method: {
                "summary": "Sync access token for a validated Flex agent",
                "security": _FLEX_TOKEN,
                "parameters": [
                    {"name": "Token", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "identity",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "Legacy shared identity (only when RELAY_LEGACY_TOKEN_IDENTITY is set)",
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["token", "identity", "ttl"],
                            "properties": {
                                "token": {"type": "string"},
                                "identity": {"type": "string"},
                                "ttl": {"type": "integer"},
                            },
                        },
                        "Sync JWT",
                    ),
                    **_errors(401, 403, 503),
                },
            }
            for method in ("get", "post")
        },
        "/stream": {
            "post": {
                "summary": "Start or stop assist on a call (voice-assist plugin shape)",
                "security": _FLEX_TOKEN,
                "requestBody": {
                    "content": {
                        "application/json": {"schema": _STREAM_BODY},
                        "application/x-www-form-urlencoded": {"schema": _STREAM_BODY},
                    }
                },
                "responses": {"200": _json(_RESULT, "done"), **_errors(400, 401, 403, 404, 409, 502, 503)},
            }
        },
        "/calls/{callSid}/assist": {
            method: {
                "summary": summary,
                "security": _FLEX_TOKEN,
                "parameters": [{"name": "callSid", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(_RESULT, "done"), **_errors(400, 401, 403, 404, 409, 502, 503)},
            }
            for method, summary in (("post", "Start assist on a call"), ("delete", "Stop assist on a call"))
        },
        **{
            f"/calls/{{callSid}}/{action}": {
                "post": {
                    "summary": summary,
                    "description": "While paused: no audio to the model (frames dropped as `paused`), no "
                    "transcripts, silence in the recording; Sync `status` `paused`/`resumed`. A pause ends "
                    "by itself after RELAY_PAUSE_MAX_S. The call's agent or a supervisor (RELAY_RECORDS_ROLES).",
                    "security": _FLEX_TOKEN,
                    "parameters": [_path("callSid")],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "result": {"const": True},
                                    "paused": {"type": "boolean"},
                                    "changed": {"type": "boolean", "description": "false: it already was"},
                                },
                                "required": ["result", "paused", "changed"],
                            },
                            "done",
                        ),
                        **_errors(400, 401, 403, 404, 421, 503),
                    },
                }
            }
            for action, summary in (
                ("pause", "Pause a live call for a payment"),
                ("resume", "Resume a paused call"),
            )
        },
        "/twilio/stream-status": {
            "post": {
                "summary": "Twilio stream status callback (signed)",
                "responses": {"204": {"description": "recorded"}, **_errors(400, 403)},
            }
        },
        "/twilio/taskrouter": {
            "post": {
                "summary": "TaskRouter Event Callback (form) or Event Streams webhook (CloudEvents array); signed",
                "description": "Starts assist on reservation.accepted for tasks the policy selects; stops it "
                "and triggers the wrap-up on task.wrapup/completed/canceled/deleted. Answers at once; "
                "the work runs in the background.",
                "responses": {"204": {"description": "accepted for processing"}, **_errors(400, 403, 503)},
            }
        },
        "/console": {
            "get": {
                "summary": "Live console page (transcripts and suggestion cards)",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/console/assets/{name}": {
            "get": {
                "summary": "The console page's script and style sheet",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "JavaScript or CSS"}, "404": {"description": "no such file"}},
            }
        },
        "/calls": {
            "get": {
                "summary": "Search call records (newest first, each with its cost_usd), or total what the calls "
                "of a period cost (totals=true); Flex token with a supervisor or admin role",
                "security": [{"bearerFlexToken": []}],
                "parameters": [
                    _query("q", "words in the transcript (full-text search)"),
                    _query("agent", "the worker (identity or WorkerSid) the call was with"),
                    _query("from", "calls started at or after (ISO 8601 or Unix seconds)"),
                    _query("to", "calls started before (ISO 8601 or Unix seconds)"),
                    _query("limit", "page size, 1-100 (default 20)"),
                    _query("cursor", "next_cursor of the previous page"),
                    _query(
                        "totals",
                        "true: instead of a page, what the calls that started in the period (from, to, agent) "
                        "cost: calls, calls_priced, cost_usd, tokens by kind, transcription_s",
                    ),
                ],
                "responses": {
                    "200": _json(
                        {
                            "oneOf": [
                                {"type": "object", "required": ["calls", "next_cursor"]},
                                {"type": "object", "required": ["totals"], "properties": {"totals": _TOTALS}},
                            ]
                        },
                        "a page of calls, or the period's totals",
                    ),
                    **_errors(400, 401, 403, 503),
                },
            }
        },
        "/calls/{callSid}": {
            "get": {
                "summary": "One call's record: transcript, suggestions, insights, wrap-up, statuses, counters",
                "security": [{"bearerFlexToken": []}],
                "parameters": [_path("callSid")],
                "responses": {"200": _json({"type": "object"}, "the record"), **_errors(400, 401, 403, 404, 503)},
            },
            "delete": {
                "summary": "Delete one call's record and every part of its audio",
                "security": [{"bearerFlexToken": []}],
                "parameters": [_path("callSid")],
                "responses": {"204": {"description": "deleted"}, **_errors(400, 401, 403, 404, 503)},
            },
        },
        "/calls/{callSid}/audio": {
            "get": {
                "summary": "The call's audio: FLAC, 8 kHz, customer left, agent right (HTTP range requests)",
                "security": [{"bearerFlexToken": []}],
                "parameters": [_path("callSid")],
                "responses": {
                    "200": {"description": "FLAC", "content": {"audio/flac": {}}},
                    "206": {"description": "the requested byte range", "content": {"audio/flac": {}}},
                    **_errors(400, 401, 403, 404),
                },
            }
        },
        "/calls/{callSid}/audio/{part}": {
            "get": {
                "summary": "One part of the call's audio (a call continued by another bridge has several; "
                "the record's audio_parts lists them)",
                "security": [{"bearerFlexToken": []}],
                "parameters": [_path("callSid"), _path("part")],
                "responses": {
                    "200": {"description": "FLAC", "content": {"audio/flac": {}}},
                    "206": {"description": "the requested byte range", "content": {"audio/flac": {}}},
                    **_errors(400, 401, 403, 404),
                },
            }
        },
        "/console/records": {
            "get": {
                "summary": "Hub mode only: the console's copy of GET /calls (no Twilio configured)",
                "security": _CONSOLE,
                "responses": {"200": _json({"type": "object"}, "a page of calls"), **_CONSOLE_ERRORS},
            }
        },
        "/console/records/{callSid}": {
            "get": {
                "summary": "Hub mode only: the console's copy of GET /calls/{callSid}",
                "security": _CONSOLE,
                "parameters": [_path("callSid")],
                "responses": {"200": _json({"type": "object"}, "the record"), **_CONSOLE_ERRORS},
            }
        },
        "/console/records/{callSid}/audio": {
            "get": {
                "summary": "Hub mode only: the console's copy of GET /calls/{callSid}/audio",
                "security": _CONSOLE,
                "parameters": [_path("callSid")],
                "responses": {"200": {"description": "FLAC"}, **_CONSOLE_ERRORS},
            }
        },
        "/console/records/{callSid}/audio/{part}": {
            "get": {
                "summary": "Hub mode only: the console's copy of GET /calls/{callSid}/audio/{part}",
                "security": _CONSOLE,
                "parameters": [_path("callSid"), _path("part")],
                "responses": {"200": {"description": "FLAC"}, **_CONSOLE_ERRORS},
            }
        },
        "/console/calls": {
            "get": {
                "summary": "Calls kept by the in-process hub (hub mode only)",
                "security": _CONSOLE,
                "responses": {"200": _json({"type": "object"}, "calls"), **_CONSOLE_ERRORS},
            }
        },
        "/console/events": {
            "get": {
                "summary": "Server-Sent Events of every published message (hub mode only)",
                "security": _CONSOLE,
                "parameters": [{"name": "call_sid", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "event stream", "content": {"text/event-stream": {}}},
                    **_CONSOLE_ERRORS,
                },
            }
        },
        "/console/session": {
            "post": {
                "summary": "Hub mode only: trade RELAY_CONSOLE_TOKEN (bearer) for the console's session cookie",
                "security": [{"bearerConsoleToken": []}],
                "responses": {"204": {"description": "cookie set"}, **_CONSOLE_ERRORS},
            }
        },
        "/calls/{callSid}/wrapup": {
            "get": {
                "summary": "The call's wrap-up as the record holds it, and the operator's disposition codes",
                "security": _FLEX_TOKEN,
                "parameters": [_path("callSid")],
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["wrapup", "dispositions", "default"]},
                        "the wrap-up (null before the call ends) and the codes",
                    ),
                    **_errors(400, 401, 403, 404, 503),
                },
            },
            "put": {
                "summary": "Save the agent's edited wrap-up: redacted, written to the record and to the task "
                "(If-Match); 409 when the task kept changing (the record is saved)",
                "security": _FLEX_TOKEN,
                "parameters": [_path("callSid")],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["summary", "disposition"],
                                "properties": {
                                    "summary": {"type": "string", "maxLength": 4000},
                                    "disposition": {"type": "string", "description": "one of the operator's codes"},
                                    "action_items": {
                                        "type": "array",
                                        "maxItems": 50,
                                        "items": {
                                            "type": "object",
                                            "required": ["owner", "text"],
                                            "properties": {
                                                "owner": {"enum": ["agent", "customer", "other"]},
                                                "text": {"type": "string", "maxLength": 500},
                                                "due": {"type": ["string", "null"], "maxLength": 100},
                                            },
                                        },
                                    },
                                    "workspace_sid": {"type": "string", "description": "the task's workspace"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json({"type": "object", "required": ["wrapup", "task"]}, "saved"),
                    **_errors(400, 401, 403, 404, 409, 502, 503),
                },
            },
        },
        "/knowledge/passage": {
            "get": {
                "summary": "One passage of the knowledge in force (a suggestion's source): file, heading, text. "
                "Flex token with Sync; the console's credential in hub mode",
                "security": [{"bearerFlexToken": []}, *_CONSOLE],
                "parameters": [{"name": "id", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json({"type": "object", "required": ["id", "file", "heading", "text"]}, "the passage"),
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
        "/media": {
            "get": {
                "summary": "Twilio Media Streams WebSocket (signed upgrade, or API key for minimal clients)",
                "responses": {
                    "101": {"description": "upgraded"},
                    "403": {"description": "bad signature"},
                    "503": {"description": "draining or full"},
                },
            }
        },
        "/ws/{callSid}": {
            "get": {
                "summary": "Media Streams WebSocket at the URL the /stream endpoint gives Twilio",
                "parameters": [{"name": "callSid", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "101": {"description": "upgraded"},
                    "403": {"description": "bad signature"},
                    "503": {"description": "draining or full"},
                },
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearerFlexToken": {"type": "http", "scheme": "bearer", "description": "Flex SSO token"},
            "bearerConsoleToken": {"type": "http", "scheme": "bearer", "description": "RELAY_CONSOLE_TOKEN"},
            "consoleSession": {"type": "apiKey", "in": "cookie", "name": "relay_console"},
        },
        "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}}},
    },
}
