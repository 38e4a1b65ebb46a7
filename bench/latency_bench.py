"""Suggestion latency with and without the knowledge tool, against the loopback fakes.

    .venv/bin/python bench/latency_bench.py [--calls 20] [--rounds 3] [--model-ms 300]

From the customer's `speech_stopped` (as the relay receives it) to the suggestion handed to
Sync, p50/p95 over every answer, for the plain answer and for an answer that first calls
`search_knowledge` (one tool round trip). The fake model's own time is fixed (`--model-ms`
before each answer), so what is left is the relay's share plus loopback hops; the relay's
compute for one tool call (retrieval and the output JSON) is timed on its own as well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestServer  # noqa: E402

from relay.cli.simulator import CallSpec, sign_upgrade, stream_call  # noqa: E402
from relay.knowledge.base import KnowledgeBase  # noqa: E402
from relay.knowledge.retrieval import DEFAULT_MIN_SCORE, Retriever  # noqa: E402
from relay.model.events import ToolCall  # noqa: E402
from relay.model.knowledge_tool import answer_tool_call  # noqa: E402
from relay.web.app import create_app  # noqa: E402
from relay.web.state import RELAY  # noqa: E402
from tests.conftest import (  # noqa: E402
    API_KEY_SID,
    API_SECRET,
    OPENAI_KEY,
    PUBLIC_URL,
    TWILIO_TOKEN,
    relay_settings,
    speech_like_ulaw,
)
from tests.fakes.realtime_server import Behaviour, FakeRealtimeServer, Turn  # noqa: E402
from tests.fakes.twilio_server import FakeTwilio  # noqa: E402

ANSWER = json.dumps(
    {
        "question": "How long does a refund take?",
        "answer": "Refunds go back to the original payment method within five to seven business days.",
        "sources": ["refunds.md#how-long-does-a-refund-take"],
    }
)


async def measure(with_tool: bool, calls: int, rounds: int, model_ms: float) -> list[float]:
    fake_realtime, fake_twilio = FakeRealtimeServer(Behaviour(api_key=OPENAI_KEY)), FakeTwilio()
    fake_twilio.state.auth_token = TWILIO_TOKEN
    fake_twilio.state.api_keys[API_KEY_SID] = API_SECRET
    await fake_realtime.start()
    await fake_twilio.start()
    tool_calls = [("search_knowledge", '{"query": "how long does a refund take"}')] if with_tool else []
    fake_realtime.behaviour.turns = [Turn("how long does a refund take", ANSWER, tool_calls)] * 2
    fake_realtime.behaviour.turn_every_bytes = 48_000
    fake_realtime.behaviour.response_delay_s = model_ms / 1000
    settings = relay_settings(fake_realtime, fake_twilio, knowledge_dir=ROOT / "prompts" / "knowledge")
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    url = f"ws://127.0.0.1:{server.port}/media"
    headers = {"X-Twilio-Signature": sign_upgrade(TWILIO_TOKEN, PUBLIC_URL.replace("https", "wss") + "/media")}
    try:
        for _ in range(rounds):
            specs = [CallSpec(audio={"inbound": speech_like_ulaw(2.5, seed=i)}, pace=1.0) for i in range(calls)]
            await asyncio.gather(*(stream_call(url, spec, headers=headers) for spec in specs))
        state = server.app[RELAY]
        while not state.idle:  # noqa: ASYNC110 - the last calls flush
            await asyncio.sleep(0.05)
        ring = state.suggestion_latency
        qs = tuple(i / len(ring) for i in range(len(ring)))
        return ring.quantiles(qs) or []  # every recorded latency, sorted
    finally:
        await server.close()
        await fake_realtime.stop()
        await fake_twilio.stop()


def tool_compute_us(repeats: int = 2000) -> tuple[float, float]:
    retriever = Retriever(KnowledgeBase.load(ROOT / "prompts" / "knowledge"))
    call = ToolCall("resp", "call", "search_knowledge", '{"query": "how long does a refund take"}')
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer_tool_call(call, retriever, calls_this_turn=1, min_score=DEFAULT_MIN_SCORE)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.95)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-ms", type=float, default=300.0)
    args = parser.parse_args()
    print(f"{args.calls} concurrent calls × {args.rounds} rounds × 2 answers; fake model time {args.model_ms:.0f} ms")
    print(f"{'path':24} {'answers':>8} {'p50 ms':>8} {'p95 ms':>8} {'p50 − model ms':>15}")
    for with_tool in (False, True):
        latencies = sorted(asyncio.run(measure(with_tool, args.calls, args.rounds, args.model_ms)))
        p50 = statistics.median(latencies) * 1000
        p95 = latencies[int(len(latencies) * 0.95)] * 1000
        name = "with search_knowledge" if with_tool else "plain answer"
        print(f"{name:24} {len(latencies):8d} {p50:8.1f} {p95:8.1f} {p50 - args.model_ms:15.1f}")
    p50_us, p95_us = tool_compute_us()
    print(f"relay compute per tool call (retrieval + output JSON): p50 {p50_us:.0f} µs, p95 {p95_us:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
