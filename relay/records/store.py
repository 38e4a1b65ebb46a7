"""Call records: what is written (typed rows), how it is searched, and the one interface the
two engines implement (SQLite by default, PostgreSQL by URL: `relay/records/sqlite.py`,
`relay/records/postgres.py`).

Every row a call produces carries `(call_sid, n)`, a per-call sequence number given when the
row is made, and the stores insert with "on conflict do nothing": a batch retried after an
unknown outcome (the connection died around the commit) never writes a row twice.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class CallStarted:
    call_sid: str
    stream_sid: str
    started_at: float  # Unix time
    prompt: str
    engine: str
    task_sid: str | None = None
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class LineRow:
    call_sid: str
    n: int
    at_s: float  # since the call started
    speaker: str
    text: str
    utterance_id: str


@dataclass(frozen=True, slots=True)
class SuggestionRow:
    call_sid: str
    n: int
    at_s: float
    suggestion_id: str
    question: str
    answer: str
    sources: tuple[dict[str, str], ...]
    latency_s: float | None


@dataclass(frozen=True, slots=True)
class EventRow:
    """A status change or an insight, kept as its Sync body."""

    call_sid: str
    n: int
    at_s: float
    kind: str  # "status", "insight" or "audio_masked"
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_sid: str
    ended_at: float
    end_reason: str
    summary: dict[str, Any]  # the call's summary counters (the summary log line)
    wrapup: dict[str, Any] | None = None
    disposition: str | None = None
    task_sid: str | None = None
    audio_path: str | None = None


Row = CallStarted | LineRow | SuggestionRow | EventRow | CallEnded


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str | None = None
    agent: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 20
    cursor: str | None = None


@dataclass(slots=True)
class SearchPage:
    calls: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


class CallStore(Protocol):
    """One database. Every method raises `StoreUnavailable` when the database cannot be reached."""

    engine: str

    async def migrate(self) -> int: ...

    async def write(self, rows: Sequence[Row]) -> None: ...

    async def search(self, query: SearchQuery) -> SearchPage: ...

    async def totals(self, query: SearchQuery) -> dict[str, Any]:
        """What the calls matching `query` (period, agent) cost, added up."""
        ...

    async def get(self, call_sid: str) -> dict[str, Any] | None: ...

    async def delete(self, call_sid: str) -> tuple[str, str | None] | None: ...

    async def expire(self, ended_before: float) -> list[tuple[str, str | None]]: ...

    async def close(self) -> None: ...


class StoreUnavailable(Exception):
    """The database could not do it now (down, locked, connection lost): try again later."""


def encode_cursor(started_at: float, call_sid: str) -> str:
    return base64.urlsafe_b64encode(f"{started_at!r}|{call_sid}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        started, call_sid = raw.split("|", 1)
        return float(started), call_sid
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc


# ---------------------------------------------------------------------------- shared by both stores


def page_of(rows: list[dict[str, Any]], limit: int) -> SearchPage:
    """A page from up to `limit + 1` rows, newest first: the extra row says there is more."""
    page = SearchPage(calls=rows[:limit])
    if len(rows) > limit:
        last = rows[limit - 1]
        page.next_cursor = encode_cursor(last["started_at"], last["call_sid"])
    return page


def attach_matches(page: SearchPage, matches: Iterable[Mapping[str, Any]]) -> None:
    """Each listed call gets the transcript lines that matched the search (`call_sid`,
    `at_s`, `speaker`, `text` rows)."""
    by_call: dict[str, list[dict[str, Any]]] = {}
    for m in matches:
        by_call.setdefault(m["call_sid"], []).append({"at_s": m["at_s"], "speaker": m["speaker"], "text": m["text"]})
    for call in page.calls:
        call["matches"] = by_call.get(call["call_sid"], [])


def assemble_record(
    call: dict[str, Any],
    lines: Iterable[Mapping[str, Any]],
    suggestions: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """One call's record as the API returns it, from its stored rows (JSON columns as text)."""
    record = dict(call)
    record["wrapup"] = json.loads(record["wrapup"]) if record.get("wrapup") else None
    record["counters"] = json.loads(record.pop("summary")) if record.get("summary") else None
    record["has_audio"] = bool(record.pop("audio_path", None))
    record["transcript"] = [dict(r) for r in lines]
    record["suggestions"] = [{**dict(r), "sources": json.loads(r["sources"] or "[]")} for r in suggestions]
    kept = [(e["kind"], {"at_s": e["at_s"], **json.loads(e["body"])}) for e in events]
    record["statuses"] = [body for kind, body in kept if kind == "status"]
    record["insights"] = [body for kind, body in kept if kind == "insight"]
    # Spans of the audio silenced because their words held a card number (every bridge's).
    record["audio_masked"] = [body for kind, body in kept if kind == "audio_masked"]
    return record
