"""What a call costs: the model usage it billed, counted per call and per model, and the
list prices that turn it into dollars.

Owns: reading `response.done` and transcription usage objects (`counts`), the per-call
accumulator and the summary line's `"usage"` (`accumulator`), the price table and its
bundled file (`prices`, `prices.toml`, read by `price_file`), a model of how the
Realtime API bills a conversation with and without a truncation bound (`billing`), and a
call's cost as the records keep and total it (`stored`).

Pure: imports the standard library and pydantic only, never the rest of the relay; the only
I/O is in `price_file` (`read_prices`, and `prices_at`, which reads each path once). The live
call (model link, summary line, metrics, records, budget) uses this package; this package
knows nothing of it.
"""

from .accumulator import CallUsage
from .billing import (
    ASSISTANT_AUDIO_TOKENS_PER_S,
    MODEL_INPUT_LIMITS,
    USER_AUDIO_TOKENS_PER_S,
    CallShape,
    ConversationLedger,
    ResponseBill,
    SimulatedCall,
    Truncation,
    simulate_call,
)
from .counts import KINDS, Refused, TokenCounts, TranscriptionCounts, parse_response_usage, parse_transcription_usage
from .price_file import prices_at, read_prices, startup_prices
from .prices import PriceFileError, PriceTable, RealtimePrice, TranscriptionPrice, load_prices, round_usd
from .stored import merge_usage, stored_usage, usage_totals

__all__ = [
    "ASSISTANT_AUDIO_TOKENS_PER_S",
    "KINDS",
    "MODEL_INPUT_LIMITS",
    "USER_AUDIO_TOKENS_PER_S",
    "CallShape",
    "CallUsage",
    "ConversationLedger",
    "PriceFileError",
    "PriceTable",
    "RealtimePrice",
    "Refused",
    "ResponseBill",
    "SimulatedCall",
    "TokenCounts",
    "TranscriptionCounts",
    "TranscriptionPrice",
    "Truncation",
    "load_prices",
    "merge_usage",
    "parse_response_usage",
    "parse_transcription_usage",
    "prices_at",
    "read_prices",
    "round_usd",
    "simulate_call",
    "startup_prices",
    "stored_usage",
    "usage_totals",
]
