"""Scale-out figures on loopback (run by hand; under 2 minutes on a 2-core machine; the
README's "Several relays behind HAProxy" section quotes them):

    .venv/bin/python bench/scaleout_bench.py [--calls 100] [--seconds 20] [--kill-calls 60]

1. The balancer's own cost: the same calls (real-time 20 ms frames from the fake Twilio's
   media side) to one relay directly, then through HAProxy to that one relay. Prints CPU
   time per received frame for the relay and for HAProxy (process accounting).
2. A relay killed under load (3 relays, Redis): kill -9 the busiest, time from the kill to
   the first audio at the model for each of its calls, calls recovered, other calls cut.
3. A rolling restart (3 relays): SIGTERM each in turn while calls arrive; calls cut.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scaleout import kill_one, place_calls, rolling_restart, until  # noqa: E402
from bench.topology import OPENAI_KEY, Topology, TopologyConfig, cpu_seconds  # noqa: E402
from tests.fakes.realtime_server import Behaviour, Turn  # noqa: E402


def _behaviour() -> Behaviour:
    # As in bench/load.py: the suite validates the relay's events; here it would load the generator.
    behaviour = Behaviour(api_key=OPENAI_KEY, validate_client_events=False, validate_own_events=False)
    behaviour.turns = [Turn(transcript=f"Where is my order number {i}?", answer="") for i in range(1000)]
    behaviour.turn_every_bytes = 48_000 * 3
    return behaviour


async def balancer_cost(calls: int, seconds: float, balancer: bool) -> dict[str, float]:
    config = TopologyConfig(relays=1, redis=False, balancer=balancer, log_level="WARNING", relay_cpus="0")
    async with Topology(config, _behaviour()) as topo:
        await asyncio.gather(*(topo.start_call(f"CA{i:032x}") for i in range(calls)))
        assert topo.dialer is not None
        dialer = topo.dialer
        await until(lambda: sum(1 for s in dialer.streams.values() if s.opened_at) >= calls, 60, "streams open")
        await asyncio.sleep(2)  # sessions set up
        relay = topo.relays[0]
        frames0 = sum(s.frames_sent for s in topo.dialer.streams.values())
        relay0 = cpu_seconds(relay.pid)
        lb0 = cpu_seconds(topo.haproxy.pid) if topo.haproxy is not None else 0.0
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        frames = sum(s.frames_sent for s in topo.dialer.streams.values()) - frames0
        relay_cpu = cpu_seconds(relay.pid) - relay0
        lb_cpu = (cpu_seconds(topo.haproxy.pid) - lb0) if topo.haproxy is not None else 0.0
        metrics = await topo.metrics(relay)
        for c in list(topo.twilio.state.calls):
            topo.end_call(c)
        return {
            "frames_per_s": frames / elapsed,
            "relay_us_per_frame": relay_cpu / frames * 1e6,
            "relay_core": relay_cpu / elapsed,
            "lb_us_per_frame": lb_cpu / frames * 1e6,
            "lb_core": lb_cpu / elapsed,
            "live": metrics.get("relay_active_calls", 0),
            "dropped": sum(v for k, v in metrics.items() if k.startswith("relay_frames_dropped")),
        }


async def main(args: argparse.Namespace) -> None:
    print(f"1. balancer cost: {args.calls} inbound calls for {args.seconds:.0f} s, relay pinned to CPU 0")
    for balancer in (False, True):
        r = await balancer_cost(args.calls, args.seconds, balancer)
        label = "through HAProxy" if balancer else "relay alone   "
        print(
            f"   {label}: {r['live']:.0f} calls held, {r['frames_per_s']:.0f} frames/s, relay "
            f"{r['relay_us_per_frame']:.1f} µs/frame ({r['relay_core']:.0%} of a core), HAProxy "
            f"{r['lb_us_per_frame']:.1f} µs/frame ({r['lb_core']:.0%}), frames dropped {r['dropped']:.0f}"
        )

    print(f"2. kill -9 under load: 3 relays, Redis, {args.kill_calls} calls")
    async with Topology(TopologyConfig(relays=3, log_level="WARNING"), _behaviour()) as topo:
        owners = await place_calls(topo, args.kill_calls, timeout_s=60)
        await asyncio.sleep(4)  # every call has said something
        report = await kill_one(topo, owners, timeout_s=60)
        print("   " + report.summary())
        for c in owners:
            topo.end_call(c)

    print("3. rolling restart: 3 relays, a 4 s call every 0.1 s")
    async with Topology(TopologyConfig(relays=3, log_level="WARNING", drain_deadline_s=30), _behaviour()) as topo:
        rolling = await rolling_restart(topo, call_s=4.0, every_s=0.1)
        print("   " + rolling.summary())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--kill-calls", type=int, default=60)
    asyncio.run(main(parser.parse_args()))
