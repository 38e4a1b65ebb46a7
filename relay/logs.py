"""Structured JSON logs, one object per line, bound to the call by context variables.

Every line logged inside a call's handler task (and tasks it starts) carries `call_sid`
and `stream_sid`. As a safety net, configured secret values are scrubbed from each
formatted line; the code itself never logs secrets or, unless the operator opts in,
transcripts.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

call_sid_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_sid", default=None)
stream_sid_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("stream_sid", default=None)

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Only values long enough to be secrets; short strings would scrub ordinary text.
        self._secrets = tuple(s for s in secrets if s and len(s) >= 8)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_sid = call_sid_var.get()
        if call_sid is not None:
            entry["call_sid"] = call_sid
            entry["stream_sid"] = stream_sid_var.get()
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, "[redacted]")
        return line


def configure_logging(level: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party request logs can carry URLs with tokens, and database drivers' debug logs
    # the statements' parameters (aiosqlite: every transcript line written); keep them quiet.
    for noisy in (
        "aiohttp.access",
        "twilio.http_client",
        "twilio.async_http_client",
        "websockets",
        "openai",
        "httpx",
        "aiosqlite",
        "asyncpg",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
