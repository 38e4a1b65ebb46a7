"""Structured JSON logs, one object per line, bound to the call by context variables.

Every line logged inside a call's handler task (and tasks it starts) carries `call_sid`
and `stream_sid`. As a safety net, configured secret values are scrubbed from each
formatted line: every secret setting and every password in a URL setting
(`secrets_from_settings`), and the password of any URL written `scheme://user:pass@host`.
The code itself never logs secrets or, unless the operator opts in, transcripts.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from pydantic import BaseModel, SecretStr

call_sid_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_sid", default=None)
stream_sid_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("stream_sid", default=None)

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# The password part of `scheme://user:password@`, whatever the URL (a driver's error message).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\"]*:)[^@\s/\"]+@")


def secrets_from_settings(settings: BaseModel) -> list[str]:
    """What to scrub, derived from the settings: the value of every secret field, and the
    password of every field holding a URL with credentials (`postgresql://user:pass@…`)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
            found.append(text)
        elif isinstance(value, str):
            text = value
        else:
            continue
        if "://" in text:
            try:
                password = urlsplit(text).password
            except ValueError:
                password = None
            if password:
                found.extend({password, unquote(password)})
    return [s for s in found if s]


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
        if "://" in line and "@" in line:
            line = _URL_PASSWORD.sub(r"\1[redacted]@", line)
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
