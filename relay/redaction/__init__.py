"""Pure: the redaction stage. Every final text is passed through it before it leaves the call
(transcripts, suggestions, insights, records, logs, model items, wrap-up), and the recording
is silenced over the utterances it changed.

It owns: recognizing payment card numbers (Luhn, or any 13-19 digits near card words),
security codes and expiry dates near their cues, US SSNs, bank account and routing numbers,
phone numbers and e-mail addresses, written or spoken ("four one one one", "5 5 five five",
"oh", "double five", "forty one eleven", fillers between the digits); replacing each with a
typed mask (`[card ending 1111]`, `[ssn]`, `[security code]`, `[expiry]`, `[account
number]`, `[routing number]`, `[phone]`, `[email]`) and leaving every other character as it
was; and the policy for partial transcripts (`partial_is_safe`, `Redactor.redact_partial`).
Silencing the recorded audio over a masked utterance is the recorder's (`relay.records.recorder`).

It may import only the standard library and numpy: no I/O, no asyncio, no sockets, nothing
from the rest of the relay. The scan is linear in the text's length (one tokenization, one
pass over the tokens, bounded look-around; no backtracking regular expression), so a
transcript of any length or character set costs bounded time.
"""

from relay.redaction.redactor import (
    Carry,
    Entity,
    Redaction,
    RedactionConfig,
    RedactionSession,
    Redactor,
    partial_is_safe,
)
from relay.redaction.vocab import MASKS, EntityKind

__all__ = [
    "MASKS",
    "Carry",
    "Entity",
    "EntityKind",
    "Redaction",
    "RedactionConfig",
    "RedactionSession",
    "Redactor",
    "partial_is_safe",
]
