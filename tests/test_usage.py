"""What a call costs (relay.usage): usage objects counted per kind and per model, hostile ones
refused and counted, costs against hand-computed figures, the bundled price file, and the
billing model's cache behaviour with and without a truncation bound."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from relay.usage import (
    KINDS,
    MODEL_INPUT_LIMITS,
    CallShape,
    CallUsage,
    ConversationLedger,
    PriceFileError,
    Refused,
    TokenCounts,
    TranscriptionCounts,
    Truncation,
    load_prices,
    parse_response_usage,
    parse_transcription_usage,
    prices_at,
    read_prices,
    simulate_call,
    startup_prices,
)

ROOT = Path(__file__).resolve().parent.parent

# A response.done usage as the API sends it (shape from the SDK's RealtimeResponseUsage).
USAGE: dict[str, Any] = {
    "total_tokens": 821,
    "input_tokens": 789,
    "output_tokens": 32,
    "input_token_details": {
        "text_tokens": 313,
        "audio_tokens": 476,
        "image_tokens": 0,
        "cached_tokens": 640,
        "cached_tokens_details": {"text_tokens": 256, "audio_tokens": 384},
    },
    "output_token_details": {"text_tokens": 9, "audio_tokens": 23},
}
USAGE_COUNTS = TokenCounts(audio_in=92, audio_in_cached=384, text_in=57, text_in_cached=256, text_out=9, audio_out=23)


def changed(path: str, value: object) -> dict[str, Any]:
    """USAGE with one field (dotted path) replaced, or removed when `value` is `...`."""
    copy: dict[str, Any] = {
        **USAGE,
        "input_token_details": {
            **USAGE["input_token_details"],
            "cached_tokens_details": dict(USAGE["input_token_details"]["cached_tokens_details"]),
        },
        "output_token_details": dict(USAGE["output_token_details"]),
    }
    *parents, leaf = path.split(".")
    node = copy
    for key in parents:
        node = node[key]
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return copy


RESPONSE_CASES: list[tuple[str, object, TokenCounts | str]] = [
    ("the API's example", USAGE, USAGE_COUNTS),
    ("nothing billed, no details", {"input_tokens": 0, "output_tokens": 0}, TokenCounts()),
    (
        "no cache yet",
        {
            "input_tokens": 30,
            "output_tokens": 4,
            "input_token_details": {"text_tokens": 10, "audio_tokens": 20},
            "output_token_details": {"text_tokens": 4, "audio_tokens": 0},
        },
        TokenCounts(audio_in=20, text_in=10, text_out=4),
    ),
    ("cached total absent, details given", changed("input_token_details.cached_tokens", ...), USAGE_COUNTS),
    ("cached image tokens on top", changed("input_token_details.cached_tokens", 700), USAGE_COUNTS),
    ("null optional field", changed("input_token_details.image_tokens", None), USAGE_COUNTS),
    ("not an object: None", None, "not_object"),
    ("not an object: list", [USAGE], "not_object"),
    ("not an object: string", "789", "not_object"),
    ("details not an object", changed("input_token_details", [1, 2]), "not_object"),
    ("negative input", changed("input_tokens", -1), "negative"),
    ("negative cached audio", changed("input_token_details.cached_tokens_details.audio_tokens", -5), "negative"),
    ("negative output text", changed("output_token_details.text_tokens", -9), "negative"),
    ("float count", changed("input_token_details.text_tokens", 313.0), "not_int"),
    ("string count", changed("output_tokens", "32"), "not_int"),
    ("bool count", changed("input_token_details.audio_tokens", True), "not_int"),
    ("missing input_tokens", changed("input_tokens", ...), "missing_field"),
    ("missing output_tokens", changed("output_tokens", ...), "missing_field"),
    ("missing text_tokens", changed("input_token_details.text_tokens", ...), "missing_field"),
    ("input without details", changed("input_token_details", ...), "missing_details"),
    ("output without details", changed("output_token_details", ...), "missing_details"),
    ("cached without its split", changed("input_token_details.cached_tokens_details", ...), "missing_details"),
    (
        "more cached text than text",
        changed("input_token_details.cached_tokens_details.text_tokens", 314),
        "inconsistent",
    ),
    (
        "more cached audio than audio",
        {
            "input_tokens": 30,
            "output_tokens": 0,
            "input_token_details": {
                "text_tokens": 10,
                "audio_tokens": 20,
                "cached_tokens_details": {"audio_tokens": 21},
            },
        },
        "inconsistent",
    ),
    ("split larger than cached total", changed("input_token_details.cached_tokens", 600), "inconsistent"),
]


@pytest.mark.parametrize(("usage", "expected"), [c[1:] for c in RESPONSE_CASES], ids=[c[0] for c in RESPONSE_CASES])
def test_response_usage_is_read_or_refused_whole(usage: object, expected: TokenCounts | str) -> None:
    parsed = parse_response_usage(usage)
    if isinstance(expected, str):
        assert parsed == Refused(expected)
    else:
        assert parsed == expected


TRANSCRIPTION_CASES: list[tuple[str, object, TranscriptionCounts | str]] = [
    ("duration", {"type": "duration", "seconds": 7.5}, TranscriptionCounts(seconds=7.5, requests=1)),
    ("duration as int", {"type": "duration", "seconds": 3}, TranscriptionCounts(seconds=3.0, requests=1)),
    (
        "tokens",
        {
            "type": "tokens",
            "input_tokens": 80,
            "output_tokens": 12,
            "total_tokens": 92,
            "input_token_details": {"audio_tokens": 75, "text_tokens": 5},
        },
        TranscriptionCounts(input_tokens=80, output_tokens=12, requests=1),
    ),
    ("not an object", ["duration", 7.5], "not_object"),
    ("no type", {"seconds": 7.5}, "unknown_type"),
    ("unknown type", {"type": "minutes", "seconds": 7.5}, "unknown_type"),
    ("missing seconds", {"type": "duration"}, "missing_field"),
    ("negative seconds", {"type": "duration", "seconds": -1.0}, "negative"),
    ("NaN seconds", {"type": "duration", "seconds": math.nan}, "negative"),
    ("infinite seconds", {"type": "duration", "seconds": math.inf}, "negative"),
    ("bool seconds", {"type": "duration", "seconds": True}, "not_number"),
    ("string seconds", {"type": "duration", "seconds": "7.5"}, "not_number"),
    ("negative tokens", {"type": "tokens", "input_tokens": -80, "output_tokens": 12}, "negative"),
    ("missing output tokens", {"type": "tokens", "input_tokens": 80}, "missing_field"),
]


@pytest.mark.parametrize(
    ("usage", "expected"), [c[1:] for c in TRANSCRIPTION_CASES], ids=[c[0] for c in TRANSCRIPTION_CASES]
)
def test_transcription_usage_is_read_or_refused(usage: object, expected: TranscriptionCounts | str) -> None:
    parsed = parse_transcription_usage(usage)
    assert parsed == (Refused(expected) if isinstance(expected, str) else expected)


def test_a_call_sums_per_model_and_counts_what_it_refuses() -> None:
    usage = CallUsage("gpt-realtime-1.5")
    assert usage.add_response(USAGE) == USAGE_COUNTS  # the delta, for the metrics
    assert usage.add_response(USAGE) == USAGE_COUNTS
    assert usage.add_response(USAGE, model="gpt-realtime-2.1") == USAGE_COUNTS
    for hostile in (None, -3, changed("input_tokens", -1), changed("output_tokens", 1.5), {"input_tokens": 1}):
        assert usage.add_response(hostile) is None
    assert usage.add_response(USAGE, model="") is None
    assert usage.add_transcription({"type": "duration", "seconds": 2.25}, "gpt-transcribe") is not None
    assert usage.add_transcription({"type": "duration", "seconds": 1.5}, "gpt-transcribe") is not None
    assert usage.add_transcription({"type": "tokens", "input_tokens": 40, "output_tokens": 6}, "gpt-4o-transcribe")
    assert usage.add_transcription({"type": "duration", "seconds": -2}, "gpt-transcribe") is None
    assert usage.add_transcription({"type": "duration", "seconds": 2}, 42) is None  # type: ignore[arg-type]

    assert usage.responses == 3
    assert usage.tokens("gpt-realtime-1.5") == USAGE_COUNTS + USAGE_COUNTS
    assert usage.tokens("gpt-realtime-2.1") == USAGE_COUNTS
    assert usage.tokens() == USAGE_COUNTS + USAGE_COUNTS + USAGE_COUNTS
    assert usage.tokens("gpt-realtime-2.1-mini") == TokenCounts()
    assert usage.realtime_models() == ("gpt-realtime-1.5", "gpt-realtime-2.1")
    assert usage.transcription("gpt-transcribe") == TranscriptionCounts(seconds=3.75, requests=2)
    assert usage.transcription() == TranscriptionCounts(seconds=3.75, input_tokens=40, output_tokens=6, requests=3)
    assert dict(usage.refused) == {
        "not_object": 2,
        "negative": 2,
        "not_int": 1,
        "missing_field": 1,
        "bad_model": 2,
    }
    assert usage.refused_total == 8


PRICES = """
taken = "2026-12-05"
source = "https://example.test/pricing"
currency = "USD"

[realtime.rt]
audio_in = 32.0
audio_in_cached = 0.4
text_in = 4.0
text_in_cached = 0.4
text_out = 16.0
audio_out = 64.0

[realtime.rt-mini]
audio_in = 10.0
audio_in_cached = 0.3
text_in = 0.6
text_in_cached = 0.06
text_out = 2.4
audio_out = 20.0

[transcription.per-minute]
per_minute = 0.006

[transcription.per-token]
input_per_1m = 2.5
output_per_1m = 10.0
"""


def test_costs_match_hand_computed_figures() -> None:
    prices = load_prices(PRICES)
    # 92×32 + 384×0.4 + 57×4 + 256×0.4 + 9×16 + 23×64 = 5,044 USD per 1M → 0.005044
    assert prices.token_cost("rt", USAGE_COUNTS) == pytest.approx(0.005044)
    # 92×10 + 384×0.3 + 57×0.6 + 256×0.06 + 9×2.4 + 23×20 = 1,566.36 → 0.00156636
    assert prices.token_cost("rt-mini", USAGE_COUNTS) == pytest.approx(0.00156636)
    assert prices.token_cost("rt-2026-01-31", USAGE_COUNTS) == pytest.approx(0.005044)  # snapshot → alias
    assert prices.token_cost("rt-large", USAGE_COUNTS) is None
    # 90 s at 0.006/min = 0.009; 1,000 in + 200 out tokens at 2.5/10 per 1M = 0.0045
    assert prices.transcription_cost("per-minute", TranscriptionCounts(seconds=90.0)) == pytest.approx(0.009)
    tokens = TranscriptionCounts(input_tokens=1000, output_tokens=200)
    assert prices.transcription_cost("per-token", tokens) == pytest.approx(0.0045)
    # Usage in a unit the price does not cover has no price, rather than a wrong one.
    assert prices.transcription_cost("per-minute", tokens) is None
    assert prices.transcription_cost("per-token", TranscriptionCounts(seconds=5.0)) is None
    assert prices.unknown(["rt", "gpt-x"], ["per-minute", "gpt-y"]) == ["gpt-x", "gpt-y"]


def test_the_summary_line_carries_the_contract_fields() -> None:
    prices = load_prices(PRICES)
    usage = CallUsage("rt")
    usage.add_response(USAGE)
    usage.add_transcription({"type": "duration", "seconds": 90.0}, "per-minute")
    summary = usage.to_summary(prices)
    assert list(summary) == ["model", *KINDS, "transcription_s", "cost_usd"]
    assert summary == {
        "model": "rt",
        "audio_in": 92,
        "audio_in_cached": 384,
        "text_in": 57,
        "text_in_cached": 256,
        "text_out": 9,
        "audio_out": 23,
        "transcription_s": 90.0,
        "cost_usd": 0.014044,  # 0.005044 + 0.009
    }
    assert CallUsage("rt").to_summary(prices)["cost_usd"] == 0.0


@pytest.mark.parametrize(
    ("model", "transcription_model"),
    [("rt-large", "per-minute"), ("rt", "whisper-9"), ("rt", "per-token")],  # the last: seconds on a token price
)
def test_a_model_without_a_price_costs_null(model: str, transcription_model: str) -> None:
    prices = load_prices(PRICES)
    usage = CallUsage(model)
    usage.add_response(USAGE)
    usage.add_transcription({"type": "duration", "seconds": 4.0}, transcription_model)
    assert usage.cost_usd(prices) is None
    assert usage.to_summary(prices)["cost_usd"] is None


def test_the_bundled_price_file_prices_every_kind_of_every_model() -> None:
    prices = read_prices()
    assert prices.taken == "2026-12-05" and prices.source.startswith("https://")
    for name in ("gpt-realtime-1.5", "gpt-realtime-2.1", "gpt-realtime-2.1-mini"):
        assert prices.realtime_price(name) is not None, name
    for name in ("gpt-transcribe", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "whisper-1"):
        assert prices.transcription_price(name) is not None, name
    for name, price in prices.realtime.items():
        assert price.source.startswith("https://"), name
        for kind in KINDS:
            assert getattr(price, kind) > 0, (name, kind)
        assert price.audio_in_cached < price.audio_in and price.text_in_cached < price.text_in, name
    for name, tprice in prices.transcription.items():
        assert tprice.source.startswith("https://"), name
        assert tprice.per_minute or (tprice.input_per_1m and tprice.output_per_1m), name
    # The list price the summary of a default call uses.
    one = TokenCounts(1, 1, 1, 1, 1, 1)
    assert prices.token_cost("gpt-realtime-1.5", one) == pytest.approx((32 + 0.4 + 4 + 0.4 + 16 + 64) / 1e6)


BAD_FILES = [
    ("not TOML", "taken = ", "not TOML"),
    ("a kind missing", PRICES.replace("audio_out = 64.0\n", ""), "realtime.rt.audio_out"),
    ("a negative price", PRICES.replace("text_in = 4.0", "text_in = -4.0"), "realtime.rt.text_in"),
    ("an infinite price", PRICES.replace("text_in = 4.0", "text_in = inf"), "realtime.rt.text_in"),
    ("an unknown kind", PRICES.replace("text_in = 4.0", "text_in = 4.0\nimage_in = 5.0"), "realtime.rt.image_in"),
    ("half a token price", PRICES.replace("output_per_1m = 10.0\n", ""), "transcription.per-token"),
    ("no unit", PRICES.replace("per_minute = 0.006\n", ""), "transcription.per-minute"),
    ("no date", PRICES.replace('taken = "2026-12-05"\n', ""), "taken"),
    ("another currency", PRICES.replace('"USD"', '"EUR"'), "currency"),
    ("no models", 'taken = "2026-12-05"\nsource = "x"\ncurrency = "USD"\n', "no models"),
]


@pytest.mark.parametrize(("text", "where"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_a_bad_price_file_fails_naming_the_place(text: str, where: str) -> None:
    with pytest.raises(PriceFileError) as caught:
        load_prices(text, origin="ops.toml")
    assert str(caught.value).startswith("ops.toml: ") and where in str(caught.value)


def test_an_operator_price_file_replaces_the_bundled_one(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    assert list(read_prices(path).realtime) == ["rt", "rt-mini"]
    with pytest.raises(PriceFileError, match="cannot read"):
        read_prices(tmp_path / "missing.toml")


def test_costs_by_model_leave_out_the_models_without_a_price() -> None:
    prices = load_prices(PRICES)
    usage = CallUsage("rt")
    usage.add_response(USAGE)
    usage.add_response(USAGE, model="rt-large")  # no price
    usage.add_transcription({"type": "duration", "seconds": 90.0}, "per-minute")
    assert usage.costs_by_model(prices) == {"rt": pytest.approx(0.005044), "per-minute": pytest.approx(0.009)}
    assert usage.cost_usd(prices) is None  # the call's whole cost is unknown


def test_prices_are_read_once_per_path_and_the_startup_check_names_what_lacks_a_price(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    with caplog.at_level("WARNING", logger="relay.usage"):
        table = startup_prices(path, realtime=["rt", "gpt-x"], transcription=["per-minute", "gpt-y"])
        startup_prices(path, realtime=["rt"], transcription=["per-minute"])
    assert [r.models for r in caplog.records] == [["gpt-x", "gpt-y"]]  # type: ignore[attr-defined]
    path.write_text("not toml at all [")
    assert prices_at(path) is table  # read once: a file edited later needs a restart
    with pytest.raises(PriceFileError, match="cannot read"):
        startup_prices(tmp_path / "missing.toml")


# ---------------------------------------------------------------------- the billing model


def test_each_response_bills_the_conversation_with_the_earlier_part_cached() -> None:
    ledger = ConversationLedger(instructions_tokens=100)
    ledger.add_user_audio(2.0)  # 20 audio tokens
    first = ledger.respond(10)
    assert first.usage == TokenCounts(audio_in=20, text_in=100, text_out=10)
    ledger.add_user_audio(3.0)
    second = ledger.respond(5)
    # Cached: the instructions and the first turn; new: the first answer (10) and the turn (30).
    assert second.usage == TokenCounts(audio_in=30, audio_in_cached=20, text_in=10, text_in_cached=100, text_out=5)
    ledger.add_text(40)
    third = ledger.respond(0)
    assert third.usage == TokenCounts(audio_in_cached=50, text_in=5 + 40, text_in_cached=110)
    assert third.conversation_tokens == 20 + 10 + 30 + 5 + 40
    # What the fake server would send reads back to the same counts.
    assert parse_response_usage(third.usage_payload()) == third.usage


def test_truncation_drops_the_oldest_items_and_the_cache_after_the_instructions() -> None:
    ledger = ConversationLedger(instructions_tokens=100, truncation=Truncation(100, 0.5))
    for _ in range(4):
        ledger.add_user_audio(2.0)  # 4 × 20
        ledger.respond(0)
    assert ledger.truncations == 0 and ledger.conversation_tokens == 80
    ledger.add_user_audio(3.0)  # 110 > 100: keep at most 50
    bill = ledger.respond(0)
    assert bill.truncated and ledger.truncations == 1
    assert bill.conversation_tokens == 50  # 20 + 30
    assert bill.usage == TokenCounts(audio_in=50, text_in_cached=100)  # only the instructions cached
    ledger.add_user_audio(1.0)
    after = ledger.respond(0)
    assert not after.truncated and after.usage == TokenCounts(audio_in=10, audio_in_cached=50, text_in_cached=100)


def test_deleting_the_last_items_keeps_the_cache_before_them() -> None:
    ledger = ConversationLedger(instructions_tokens=10)
    ledger.add_user_audio(1.0)
    ledger.respond(3)  # a function call
    ledger.add_text(50)  # the tool's output
    ledger.respond(7)  # the answer
    ledger.delete_item(-2)
    ledger.add_user_audio(1.0)
    bill = ledger.respond(0)
    assert bill.usage == TokenCounts(audio_in=10, audio_in_cached=10, text_in=7, text_in_cached=10 + 3)


def test_the_session_truncation_field_both_ways() -> None:
    bound = Truncation(16_000, 0.5)
    field = bound.session_field()
    assert field == {"type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"post_instructions": 16_000}}
    assert Truncation.from_session_field(field, model_limit=28_224) == bound
    assert Truncation.from_session_field("auto", model_limit=28_224) == Truncation(28_224, 1.0)
    assert Truncation.from_session_field(None, model_limit=28_224) == Truncation(28_224, 1.0)
    assert Truncation.from_session_field("disabled", model_limit=28_224) is None
    over = {"type": "retention_ratio", "retention_ratio": 0.8, "token_limits": {"post_instructions": 10**9}}
    assert Truncation.from_session_field(over, model_limit=28_224) == Truncation(28_224, 0.8)
    hostile = {"type": "retention_ratio", "retention_ratio": 7, "token_limits": {"post_instructions": -1}}
    assert Truncation.from_session_field(hostile, model_limit=28_224) == Truncation(28_224, 1.0)
    with pytest.raises(ValueError):
        Truncation(0, 0.5)


SHAPE = CallShape(minutes=60.0)
LIMIT_15 = MODEL_INPUT_LIMITS["gpt-realtime-1.5"] - SHAPE.instructions_tokens


def test_an_hour_unbounded_rereads_everything_and_the_bound_caps_it() -> None:
    free = simulate_call(SHAPE, None)
    bounded = simulate_call(SHAPE, Truncation(16_000, 0.5))
    assert len(free.responses) == len(bounded.responses) > 200
    # Without a bound the input per response only grows; with it, it stays under the bound.
    free_inputs = [bill.usage.input_tokens for _, bill in free.responses]
    assert free_inputs == sorted(free_inputs) and free_inputs[-1] > 60_000
    largest_item = SHAPE.tool_output_tokens
    assert max(b.conversation_tokens for _, b in bounded.responses) <= 16_000 + largest_item
    assert bounded.tokens.input_tokens < free.tokens.input_tokens / 3
    # Never truncated, everything but the newest items is cached.
    assert free.truncations == 0 and free.cached_share > 0.99
    assert 0 < bounded.truncations < 20 and bounded.cached_share > 0.9


def test_keeping_more_at_each_truncation_truncates_more_often_and_caches_less() -> None:
    shares = []
    for ratio in (0.3, 0.5, 0.7, 0.9, 1.0):
        call = simulate_call(SHAPE, Truncation(16_000, ratio))
        shares.append((call.cached_share, -call.truncations))
    assert shares == sorted(shares, reverse=True)
    # Truncating at the model's limit, dropping only what does not fit, busts the cache on
    # about every other response once the conversation is full.
    at_limit = simulate_call(SHAPE, Truncation(LIMIT_15, 1.0))
    assert at_limit.truncations > 100 and at_limit.cached_share < 0.6


def test_the_package_imports_the_standard_library_and_pydantic_only() -> None:
    allowed = set(sys.stdlib_module_names) | {"pydantic", "__future__"}
    for path in sorted((ROOT / "relay" / "usage").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert names <= allowed, (path.name, names - allowed)
