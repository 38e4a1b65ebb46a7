"""Sync publisher benchmark: a burst across many streams against the fake Twilio.

Run by hand:  .venv/bin/python bench/sync_bench.py [--messages 1000] [--streams 50] [--p429 0.1]

Publishes the burst through the real twilio SDK transport to the loopback fake (which
enforces 30 msg/s per stream and answers random 429s with code 54009), then prints the
highest sends-per-second any stream saw, publish→accepted delay p50/p99, retries, drops.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sync_publisher import PublisherConfig, SyncPublisher, messages
from sync_publisher.twilio_transport import TwilioSyncTransport, make_twilio_client
from tests.fakes.twilio_server import FakeTwilio


async def run(total: int, streams: int, p429: float, latency_s: float) -> None:
    fake = FakeTwilio()
    fake.state.random_429_rate = p429
    fake.state.sync_delay_s = latency_s
    await fake.start()
    client = make_twilio_client(
        account_sid=fake.state.account_sid, auth_token=fake.state.auth_token, sync_base_url=fake.base_url
    )
    transport = TwilioSyncTransport(client, fake.state.sync_service_sid)
    publisher = SyncPublisher(transport, PublisherConfig(), lambda sid: f"FLEX_ASSIST_{sid}")
    calls = [f"CA{i:032x}" for i in range(streams)]
    channels = [publisher.open(c) for c in calls]
    published_at: dict[str, float] = {}
    start = time.monotonic()
    for i in range(total):
        uid = f"m{i}"
        published_at[uid] = time.monotonic()
        channels[i % streams].publish(messages.transcript("customer", f"text {i}", final=True, utterance_id=uid))
    publish_cost = time.monotonic() - start
    reports = await asyncio.gather(*(ch.close(deadline_s=120) for ch in channels))
    elapsed = time.monotonic() - start

    delays = sorted(m.at - published_at[m.data["id"]] for m in fake.state.messages)
    max_rate = max(fake.max_in_window(f"FLEX_ASSIST_{c}", accepted_only=False) for c in calls)
    retried = sum(r.retried for r in reports)
    dropped = sum(sum(r.dropped.values()) for r in reports)
    in_order = all(
        [m["seq"] for m in fake.messages_for(f"FLEX_ASSIST_{c}")]
        == sorted(m["seq"] for m in fake.messages_for(f"FLEX_ASSIST_{c}"))
        for c in calls
    )

    def pct(p: float) -> float:
        return delays[min(len(delays) - 1, int(p * len(delays)))] if delays else float("nan")

    print(
        f"{total} messages over {streams} streams, random 429 rate {p429:.0%}, fake latency {latency_s * 1000:.0f} ms"
    )
    print(f"  publish() calls took          {publish_cost * 1e6 / total:.1f} µs each (never blocks)")
    print(
        f"  accepted                      {len(fake.state.messages)} / {total}  (in seq order per stream: {in_order})"
    )
    print(
        f"  max sends in any 1 s, 1 stream {max_rate}  (limit 30; server 429s from rate: {fake.state.rate_limit_hits})"
    )
    print(f"  publish→accepted p50 / p99    {pct(0.5) * 1000:.0f} ms / {pct(0.99) * 1000:.0f} ms")
    print(f"  retries                       {retried}")
    print(f"  dropped                       {dropped}")
    print(f"  wall time                     {elapsed:.2f} s")
    await publisher.aclose()
    await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--p429", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.streams, args.p429, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
