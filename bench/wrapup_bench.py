"""Wrap-up: latency from call end to `summary` on Sync, and the token budget on a long call.

    .venv/bin/python bench/wrapup_bench.py [--calls 10] [--rounds 4] [--model-ms 800]

1. Calls through the relay (OpenAI engine) against the loopback fakes; the fake Responses
   endpoint takes a fixed `--model-ms` per request. Latency = from the caller sending `stop`
   to the `summary` message accepted by the fake Sync, p50/p95 over every call; what is left
   after the model's time is the relay's share (links closing, the request, Sync).
2. A synthetic 60-minute call (both speakers, a line every 2 s) summarised with the default
   token budget: how many chunks and requests, the largest request, tokens in total.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestServer  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

from relay.cli.simulator import CallSpec, sign_upgrade, stream_call  # noqa: E402
from relay.web.app import create_app  # noqa: E402
from relay.wrapup.call_record import Line  # noqa: E402
from relay.wrapup.schema import Dispositions, Usage, WrapUpRequest, estimate_tokens, render_line  # noqa: E402
from relay.wrapup.summarizers import OpenAISummarizer  # noqa: E402
from tests.conftest import (  # noqa: E402
    API_KEY_SID,
    API_SECRET,
    OPENAI_KEY,
    PUBLIC_URL,
    QUESTION_ANSWER,
    TWILIO_TOKEN,
    relay_settings,
    speech_like_ulaw,
)
from tests.fakes.realtime_server import Behaviour, FakeRealtimeServer, Turn  # noqa: E402
from tests.fakes.twilio_server import FakeTwilio  # noqa: E402


async def call_end_to_summary(calls: int, rounds: int, model_ms: float) -> list[float]:
    fake_realtime, fake_twilio = FakeRealtimeServer(Behaviour(api_key=OPENAI_KEY)), FakeTwilio()
    fake_twilio.state.auth_token = TWILIO_TOKEN
    fake_twilio.state.api_keys[API_KEY_SID] = API_SECRET
    await fake_realtime.start()
    await fake_twilio.start()
    fake_realtime.behaviour.turns = [Turn("Can I get a refund for my jacket?", QUESTION_ANSWER)]
    fake_realtime.behaviour.turn_every_bytes = 48_000
    fake_realtime.behaviour.repeat_turns = True
    fake_realtime.responses.model_time_s = model_ms / 1000
    server = TestServer(create_app(relay_settings(fake_realtime, fake_twilio)), host="127.0.0.1")
    await server.start_server()
    url = f"ws://127.0.0.1:{server.port}/media"
    headers = {"X-Twilio-Signature": sign_upgrade(TWILIO_TOKEN, PUBLIC_URL.replace("https", "wss") + "/media")}
    latencies: list[float] = []
    try:
        for _ in range(rounds):
            specs = [
                CallSpec(audio={"inbound": speech_like_ulaw(2.5, seed=i)}, pace=1.0, record_send_times=True)
                for i in range(calls)
            ]
            results = await asyncio.gather(*(stream_call(url, spec, headers=headers) for spec in specs))
            deadline = time.monotonic() + 60
            for spec, result in zip(specs, results, strict=True):
                stream = f"FLEX_ASSIST_{spec.call_sid}"
                while time.monotonic() < deadline:
                    summary = [
                        m for m in fake_twilio.state.messages if m.stream == stream and m.data["type"] == "summary"
                    ]
                    if summary:
                        latencies.append(summary[0].at - result.send_times[-1])
                        break
                    await asyncio.sleep(0.02)
        return latencies
    finally:
        await server.close()
        await fake_realtime.stop()
        await fake_twilio.stop()


_CUSTOMER = [
    "I ordered a jacket last week and it still has not arrived, where is my order?",
    "Can I change the delivery address to my office instead?",
    "How long does a refund take once you get the return?",
    "I also cannot sign in, how do I reset my password?",
    "Okay, and will I get an email when it ships?",
]
_AGENT = [
    "Let me check that for you, one moment please while I open the order.",
    "I can see the order here; it left our warehouse yesterday and should arrive on Friday.",
    "I'll email you the return label today so you can send the old one back.",
    "Refunds go back to your card within five to seven business days after we receive it.",
    "We'll call you back tomorrow once the replacement is booked.",
]


def sixty_minute_call() -> WrapUpRequest:
    rng = random.Random(7)
    lines = []
    for i in range(1800):  # a line every 2 s for an hour
        speaker = "customer" if i % 2 == 0 else "agent"
        text = rng.choice(_CUSTOMER if speaker == "customer" else _AGENT)
        lines.append(Line(i * 2.0, speaker, f"{text} (turn {i})", f"item_{i}"))
    codes = Dispositions.parse({"codes": ["resolved", "follow_up_required", "order_issue", "refund_or_return"]})
    return WrapUpRequest("CA" + "6" * 32, tuple(lines), (), codes)


async def token_budget(budget: int, model_ms: float) -> dict[str, object]:
    fake = FakeRealtimeServer(Behaviour(api_key=OPENAI_KEY))
    fake.responses.model_time_s = model_ms / 1000
    await fake.start()
    client = AsyncOpenAI(api_key=OPENAI_KEY, base_url=fake.base_url)
    try:
        request = sixty_minute_call()
        summarizer = OpenAISummarizer(
            client, model="gpt-5-mini", instructions="Write the wrap-up.", token_budget=budget
        )
        usage = Usage()
        started = time.monotonic()
        result = await summarizer.summarize(request, usage)
        elapsed = time.monotonic() - started
        sizes = [
            estimate_tokens((r.body.get("instructions") or "") + r.text + json.dumps(r.body["text"]))
            for r in fake.responses.requests
        ]
        read = "\n".join(r.text for r in fake.responses.requests)
        return {
            "status": result.status,
            "transcript_tokens": estimate_tokens("\n".join(render_line(line) for line in request.lines)),
            "chunks": result.chunks,
            "requests": usage.requests,
            "largest_request_tokens": max(sizes),
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "lines_read": sum(f"(turn {i})" in read for i in range(len(request.lines))),
            "lines": len(request.lines),
            "elapsed_s": round(elapsed, 2),
        }
    finally:
        await client.close()
        await fake.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--model-ms", type=float, default=800.0)
    parser.add_argument("--budget", type=int, default=12_000)
    args = parser.parse_args()
    latencies = sorted(asyncio.run(call_end_to_summary(args.calls, args.rounds, args.model_ms)))
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1000
    print(
        f"call end → summary on Sync: {len(latencies)} calls ({args.calls} at a time), "
        f"fake model {args.model_ms:.0f} ms"
    )
    print(
        f"  p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {latencies[-1] * 1000:.0f} ms "
        f"(p50 − model {p50 - args.model_ms:.0f} ms)"
    )
    figures = asyncio.run(token_budget(args.budget, args.model_ms))
    print(f"60-minute call, budget {args.budget} tokens/request, fake model {args.model_ms:.0f} ms/request:")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
