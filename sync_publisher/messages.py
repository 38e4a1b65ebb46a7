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


def _legacy_transcript(question: str, answer: str) -> str:
    return orjson.dumps({"question": question, "answer": answer}).decode()


# ---------------------------------------------------------------------------- splitting

_SPLIT_FIELD: Final = {Kind.SUGGESTION: "answer", Kind.TRANSCRIPT: "text", Kind.STATUS: "reason"}
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
    field_name = _SPLIT_FIELD[item.kind]
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
