"""What an assisted call costs: a 60-minute synthetic call billed the way the Realtime API bills,
with and without a truncation bound, on each Realtime model, at the bundled list prices.

    .venv/bin/python bench/cost_bench.py [--minutes 60] [--max-context 16000] [--retention 0.5]

The call (relay.usage.billing.CallShape): customer turns of 5–10 s, agent turns of 4–12 s,
1 s gaps; server VAD answers every customer turn in text; 40% of turns are questions (a
knowledge search, ~550 tokens of passages, then a ~110-token answer), the rest get `{}`; the
agent's words are added as "Agent said:" text; both tracks are transcribed (gpt-transcribe,
billed per minute). Token rates: user audio 10 tokens/s, assistant audio 20 tokens/s (OpenAI's
Realtime cost guide). Every usage goes through `CallUsage` (the accumulator the relay uses),
so the figures are what the summary line would say.

"Without the bound" is the session default (`auto`), modelled as truncating at the model's
limit and dropping only what does not fit — the API does not document how much `auto` keeps,
so that row is the worst case for the cache. "Cost per assisted minute" = the call's cost /
its minutes. Answer quality cannot be measured here: more kept context may answer better.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.usage import (  # noqa: E402
    MODEL_INPUT_LIMITS,
    CallShape,
    CallUsage,
    PriceTable,
    SimulatedCall,
    Truncation,
    read_prices,
    simulate_call,
)

MODELS = ("gpt-realtime-1.5", "gpt-realtime-2.1", "gpt-realtime-2.1-mini")
TRANSCRIPTION_MODEL = "gpt-transcribe"
SAMPLE_MINUTES = (1, 5, 10, 20, 30, 45, 60)
GRID_LIMITS = (8_000, 12_000, 16_000, 20_000, 24_000, 28_000)
GRID_RATIOS = (0.3, 0.5, 0.7, 0.8, 0.9)


@dataclasses.dataclass(frozen=True)
class Result:
    label: str
    call: SimulatedCall
    usage: CallUsage
    realtime_usd: float
    transcription_usd: float
    minutes: float

    @property
    def total_usd(self) -> float:
        return self.realtime_usd + self.transcription_usd

    @property
    def per_minute(self) -> float:
        return self.total_usd / self.minutes


def default_bound(model: str, shape: CallShape) -> Truncation:
    return Truncation(MODEL_INPUT_LIMITS[model] - shape.instructions_tokens, 1.0)


def run(model: str, shape: CallShape, bound: Truncation | None, prices: PriceTable, label: str) -> Result:
    call = simulate_call(shape, bound or default_bound(model, shape))
    usage = CallUsage(model)
    for _, bill in call.responses:
        usage.add_response(bill.usage_payload())
    for seconds in call.transcriptions_s:
        usage.add_transcription({"type": "duration", "seconds": seconds}, TRANSCRIPTION_MODEL)
    assert usage.refused_total == 0 and usage.tokens() == call.tokens
    realtime = prices.token_cost(model, usage.tokens())
    transcription = prices.transcription_cost(TRANSCRIPTION_MODEL, usage.transcription())
    assert realtime is not None and transcription is not None, "a model here has no price"
    return Result(label, call, usage, realtime, transcription, shape.minutes)


def tokens_per_minute(call: SimulatedCall, shape: CallShape) -> float:
    """How fast the conversation grows: everything added, read off the unbounded bills."""
    last = call.responses[-1][1]
    return (last.conversation_tokens + last.usage.output_tokens) / shape.minutes


def print_samples(a: Result, b: Result) -> None:
    print(f"\nInput tokens per response over the call ({a.usage.model}): total / cached")
    print(f"{'minute':>7} | {a.label:>26} | {b.label:>26}")
    for minute in SAMPLE_MINUTES:
        row = [f"{minute:>7}"]
        for result in (a, b):
            bills = [bill for t, bill in result.call.responses if t <= minute * 60]
            if not bills:
                row.append(f"{'-':>26}")
                continue
            u = bills[-1].usage
            row.append(f"{u.input_tokens:>14,} / {u.cached_tokens:>9,}")
        print(" | ".join(row))


def print_summary(results: list[Result]) -> None:
    print(
        f"\n{'config':<42} {'responses':>9} {'input tok':>11} {'cached':>7} {'trunc':>5} "
        f"{'realtime $':>10} {'transcr. $':>10} {'call $':>8} {'$/min':>7}"
    )
    for r in results:
        t = r.call.tokens
        print(
            f"{r.label:<42} {len(r.call.responses):>9} {t.input_tokens:>11,} {r.call.cached_share:>7.1%} "
            f"{r.call.truncations:>5} {r.realtime_usd:>10.3f} {r.transcription_usd:>10.3f} "
            f"{r.total_usd:>8.3f} {r.per_minute:>7.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--max-context", type=int, default=16_000, help="post_instructions tokens")
    parser.add_argument("--retention", type=float, default=0.5, help="retention_ratio")
    parser.add_argument("--reasoning", type=int, default=200, help="reasoning tokens per response (2.x what-if)")
    args = parser.parse_args()

    prices = read_prices()
    shape = CallShape(minutes=args.minutes)
    bound = Truncation(args.max_context, args.retention)
    bound_label = f"bound {args.max_context:,} × {args.retention}"
    print(f"Prices: list prices taken {prices.taken} ({prices.source}); transcription {TRANSCRIPTION_MODEL}.")
    print(
        f"Call: {shape.minutes:g} min, customer {shape.customer_turn_s} s, agent {shape.agent_turn_s} s, "
        f"questions {shape.question_share:.0%}, instructions {shape.instructions_tokens} tokens, "
        f"tool output {shape.tool_output_tokens}, answer {shape.answer_tokens}; audio in 10 tokens/s."
    )

    # 1. The default model with and without the bound.
    model = MODELS[0]
    unbounded = run(model, shape, None, prices, f"no bound (auto at {MODEL_INPUT_LIMITS[model]:,})")
    bounded = run(model, shape, bound, prices, bound_label)
    c = unbounded.call
    growth = tokens_per_minute(run(model, shape, Truncation(10**9), prices, "").call, shape)
    print(
        f"\nOne call: {len(c.responses)} responses, customer audio {c.customer_audio_s / 60:.1f} min, "
        f"agent audio {c.agent_audio_s / 60:.1f} min, transcribed {sum(c.transcriptions_s) / 60:.1f} min; "
        f"the conversation grows ~{growth:,.0f} tokens/min."
    )
    print_samples(unbounded, bounded)
    print_summary([unbounded, bounded])

    # 2. The models at the same token model.
    print("\nModels at the same call (cost per assisted minute, USD):")
    print(f"{'model':<24} {'no bound':>9} {'bound':>9} {'bound, +' + str(args.reasoning) + ' reasoning/resp':>28}")
    rows: list[Result] = []
    for name in MODELS:
        free = run(name, shape, None, prices, f"{name}, no bound")
        capped = run(name, shape, bound, prices, f"{name}, {bound_label}")
        thinking = run(name, dataclasses.replace(shape, reasoning_tokens=args.reasoning), bound, prices, "")
        rows += [free, capped]
        print(f"{name:<24} {free.per_minute:>9.4f} {capped.per_minute:>9.4f} {thinking.per_minute:>28.4f}")
    print_summary(rows)

    # 3. The bound's two knobs on the default model.
    print(
        f"\n{model}: $/assisted min · cached share · truncations per call, by post_instructions (rows) and "
        f"retention_ratio (columns); 'kept' = minutes of conversation left after a truncation (r × L at "
        f"{growth:,.0f} tokens/min)"
    )
    print(f"{'L':>7} " + " ".join(f"{'r=' + str(r):>25}" for r in GRID_RATIOS))
    for limit in GRID_LIMITS:
        cells = []
        for ratio in GRID_RATIOS:
            if limit > MODEL_INPUT_LIMITS[model] - shape.instructions_tokens:
                cells.append(f"{'over the model limit':>25}")
                continue
            r = run(model, shape, Truncation(limit, ratio), prices, "")
            kept = limit * ratio / growth
            cells.append(f"{r.per_minute:.4f} {r.call.cached_share:4.0%} {r.call.truncations:3d} {kept:4.1f}m")
        print(f"{limit:>7,} " + " ".join(f"{cell:>25}" for cell in cells))

    # 4. A what-if outside the relay today: drop the tool's output once it was answered.
    lean = run(model, dataclasses.replace(shape, keep_tool_output=False), bound, prices, "bound, tool output deleted")
    print_summary([bounded, lean])


if __name__ == "__main__":
    main()
