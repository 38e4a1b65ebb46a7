"""Sync message shapes (DESIGN.md §4) and the 4 KiB size rule. Pure.

Every message is one JSON object with `v`, `type`, `call_sid` and `seq`. `seq` is given
when the message is first sent, so it follows send order even after coalescing.

`suggestion` also carries `transcript`: a string holding `{"question", "answer"}` JSON,
the one field the existing voice-assist Flex plugin parses. `transcript` messages also carry
`track` (`inbound`/`outbound`) and `isFinal`, which another voice-assist tab reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson

MAX_MESSAGE_BYTES: Final = 4096
SCHEMA_VERSION: Final = 1


class Kind(enum.Enum):
    SUGGESTION = "suggestion"
    TRANSCRIPT = "transcript"
    STATUS = "status"
    INSIGHT = "insight"
    SUMMARY = "summary"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message waiting for its `seq`. `key` groups partials of one utterance."""

    kind: Kind
    body: dict[str, Any]
    final: bool = True
    key: str | None = None
    # Set on parts of a split message, so they are never coalesced away.
    part: tuple[int, int] | None = field(default=None)

    def with_seq(self, call_sid: str, seq: int) -> dict[str, Any]:
        message: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "type": self.kind.value,
            "call_sid": call_sid,
            "seq": seq,
        }
        message.update(self.body)
        if self.part is not None:
            message["part"], message["parts"] = self.part
        return message


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


def suggestion(question: str, answer: str, suggestion_id: str, **extra: Any) -> Outgoing:
    body: dict[str, Any] = {"id": suggestion_id, "question": question, "answer": answer}
    body.update(extra)
    body["transcript"] = _legacy_transcript(question, answer)
    return Outgoing(Kind.SUGGESTION, body, final=True, key=suggestion_id)


_TRACK_BY_SPEAKER: Final = {"customer": "inbound", "agent": "outbound"}


def transcript(speaker: str, text: str, *, final: bool, utterance_id: str, **extra: Any) -> Outgoing:
    body: dict[str, Any] = {"id": utterance_id, "speaker": speaker, "text": text, "final": final}
    # The same facts under the names another public Flex voice-assist tab reads from
    # FLEX_ASSIST_* streams (`data.text`, `data.isFinal`, `data.track`).
    body["track"] = _TRACK_BY_SPEAKER.get(speaker, speaker)
    body["isFinal"] = final
    body.update(extra)
    return Outgoing(Kind.TRANSCRIPT, body, final=final, key=f"{speaker}:{utterance_id}")


def status(state: str, reason: str, **extra: Any) -> Outgoing:
    body: dict[str, Any] = {"state": state, "reason": reason}
    body.update(extra)
    return Outgoing(Kind.STATUS, body, final=True)


def insight(kind: str, text: str, *, speaker: str, utterance_id: str, **extra: Any) -> Outgoing:
    """A live insight: the customer's question (with `answered`), an action item or a
    follow-up. A later insight with the same `id` updates it (a question becomes answered)."""
    body: dict[str, Any] = {"kind": kind, "text": text, "speaker": speaker, "utterance_id": utterance_id}
    body.update({k: v for k, v in extra.items() if v is not None})
    return Outgoing(Kind.INSIGHT, body, final=True)


def summary(body: dict[str, Any]) -> Outgoing:
    """The call's wrap-up (`status`, `summary`, `questions`, `action_items`, …)."""
    return Outgoing(Kind.SUMMARY, dict(body), final=True)


def _legacy_transcript(question: str, answer: str) -> str:
    return orjson.dumps({"question": question, "answer": answer}).decode()


# ---------------------------------------------------------------------------- splitting

_SPLIT_FIELD: Final = {
    Kind.SUGGESTION: "answer",
    Kind.TRANSCRIPT: "text",
    Kind.STATUS: "reason",
    Kind.INSIGHT: "text",
    Kind.SUMMARY: "summary",
}
# A summary's lists are shared out over its parts: joining parts concatenates each list.
_SUMMARY_LISTS: Final = ("questions", "action_items", "follow_ups", "topics")
# Worst case for seq/part/parts digits, so a part measured now still fits once numbered.
_PLACEHOLDER_SEQ: Final = 10**12
_PLACEHOLDER_PART: Final = (999, 999)


def fits(item: Outgoing, call_sid: str, limit: int = MAX_MESSAGE_BYTES) -> bool:
    probe = replace(item, part=item.part or None)
    return len(encode(probe.with_seq(call_sid, _PLACEHOLDER_SEQ))) <= limit


def split(item: Outgoing, call_sid: str, limit: int = MAX_MESSAGE_BYTES) -> list[Outgoing]:
    """Split an oversized message into parts that each fit in `limit` bytes once numbered.

    The long text field is cut into consecutive pieces (never mid-character); the other
    fields repeat on every part so each one is self-describing. Joining the pieces of
    parts 1..N in order restores the original text exactly. Suggestion parts carry a
    `transcript` with that part's piece, so the legacy plugin still shows every piece.
    """
    if fits(item, call_sid, limit):
        return [item]
    if item.kind is Kind.SUMMARY:
        return _split_summary(item, call_sid, limit)
    return _split_text(item, call_sid, limit, _SPLIT_FIELD[item.kind])


def _split_text(item: Outgoing, call_sid: str, limit: int, field_name: str) -> list[Outgoing]:
    if fits(item, call_sid, limit):
        return [item]
    text = str(item.body.get(field_name, ""))
    pieces: list[str] = []
    start = 0
    while start < len(text):
        lo, hi = start + 1, len(text)
        if not _piece_fits(item, call_sid, field_name, text[start:lo], limit):
            raise ValueError("message cannot be split to fit: its fixed fields are too large")
        while lo < hi:  # largest end such that text[start:end] fits
            mid = (lo + hi + 1) // 2
            if _piece_fits(item, call_sid, field_name, text[start:mid], limit):
                lo = mid
            else:
                hi = mid - 1
        pieces.append(text[start:lo])
        start = lo
    total = len(pieces)
    return [_part(item, field_name, piece, (i + 1, total)) for i, piece in enumerate(pieces)]


def _part(item: Outgoing, field_name: str, piece: str, part: tuple[int, int]) -> Outgoing:
    body = dict(item.body)
    body[field_name] = piece
    if item.kind is Kind.SUGGESTION:
        body["transcript"] = _legacy_transcript(str(body.get("question", "")), piece)
    return replace(item, body=body, part=part)


def _piece_fits(item: Outgoing, call_sid: str, field_name: str, piece: str, limit: int) -> bool:
    candidate = _part(item, field_name, piece, _PLACEHOLDER_PART)
    return len(encode(candidate.with_seq(call_sid, _PLACEHOLDER_SEQ))) <= limit


def _split_summary(item: Outgoing, call_sid: str, limit: int) -> list[Outgoing]:
    """A wrap-up too big for one message: the first parts carry the fixed fields and the
    `summary` text (cut like any text), the list items are packed into parts in order.
    Every part repeats the scalar fields (status, disposition, sentiment, …); a client joins
    the parts by concatenating `summary` and each list."""
    scalars = {k: v for k, v in item.body.items() if k not in _SUMMARY_LISTS and k != "summary"}
    empty_lists: dict[str, list[Any]] = {k: [] for k in _SUMMARY_LISTS if k in item.body}
    text_item = replace(item, body={**scalars, **empty_lists, "summary": str(item.body.get("summary", ""))})
    if _piece_fits(text_item, call_sid, "summary", text_item.body["summary"], limit):
        bodies = [dict(text_item.body)]
    else:
        bodies = [dict(p.body) for p in _split_text(text_item, call_sid, limit, "summary")]
    for body in bodies:  # each part gets lists of its own
        body.update({k: [] for k in empty_lists})
    current = bodies[-1]
    for name in _SUMMARY_LISTS:
        for value in item.body.get(name, []):
            current[name].append(value)
            probe = replace(item, body=current, part=_PLACEHOLDER_PART)
            if len(encode(probe.with_seq(call_sid, _PLACEHOLDER_SEQ))) <= limit:
                continue
            current[name].pop()
            current = {**scalars, **{k: [] for k in empty_lists}, "summary": ""}
            current[name].append(value)
            probe = replace(item, body=current, part=_PLACEHOLDER_PART)
            if len(encode(probe.with_seq(call_sid, _PLACEHOLDER_SEQ))) > limit:
                raise ValueError(f"one {name} entry of the summary does not fit in a message")
            bodies.append(current)
    total = len(bodies)
    return [replace(item, body=body, part=(i + 1, total)) for i, body in enumerate(bodies)]
