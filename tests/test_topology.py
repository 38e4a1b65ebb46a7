"""The scale-out topology, for real: Redis, three relay processes and HAProxy (Debian's
packages) on loopback, the fake Twilio dialling the streams the relays start through the
balancer. Bounded: a dozen calls, seconds of audio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.scaleout import kill_one, owner_of, place_calls, rolling_restart, streams_of, until
from bench.topology import Topology, TopologyConfig, find_haproxy
from relay.cli.simulator import CallSpec, new_sid, sign_upgrade, stream_call
from tests.conftest import require_debian_package
from tests.fakes.realtime_server import Behaviour, Turn
from tests.fakes.redis import find_redis_server


@pytest.fixture
async def topology() -> AsyncIterator[Topology]:
    require_debian_package(find_haproxy(), "haproxy", "HAProxy", "the single-relay suites still run")
    require_debian_package(find_redis_server(), "redis-server", "Redis", "the single-relay suites still run")
    behaviour = Behaviour(api_key="sk-topology-" + "k" * 30)
    behaviour.turns = [Turn(transcript=f"Where is my order number {i}?", answer="") for i in range(50)]
    behaviour.turn_every_bytes = 48_000  # a customer line every second of audio
    async with Topology(TopologyConfig(relays=3, drain_deadline_s=15, log_level="INFO"), behaviour) as topo:
        yield topo
        # Shown by pytest only when the test failed: what each relay and the balancer said.
        for relay in topo.relays:
            print(f"--- {relay.name} (port {relay.port}) ---\n{topo.log_tail(relay, 30)}")
        print(f"--- haproxy ---\n{topo.haproxy_log_tail(30)}")


async def test_a_calls_streams_stay_on_one_relay_and_a_killed_relay_costs_seconds_not_calls(
    topology: Topology,
) -> None:
    owners = await place_calls(topology, 12)
    assert len(set(owners.values())) >= 2  # spread over the relays by the CallSid's hash

    # Two streams of one call (a Studio fork and a re-dial, say) hash to the same relay, which
    # hands the call to the newer one: no takeover between relays, one model session.
    call = new_sid("CA")
    path = f"/ws/{call}"
    url = f"ws://127.0.0.1:{topology.lb_port}{path}"
    headers = {"X-Twilio-Signature": sign_upgrade("topology-auth-token", f"wss://relay.topology.test{path}")}
    sessions = len(topology.realtime.sessions)
    first = asyncio.create_task(
        stream_call(url, CallSpec(audio={"inbound": b"\xff" * 16000}, call_sid=call, send_stop=False), headers=headers)
    )
    await until(lambda: owner_of(topology, call), 10, "first stream placed")
    held_by = await owner_of(topology, call)
    second = await stream_call(url, CallSpec(audio={"inbound": b"\xff" * 4000}, call_sid=call), headers=headers)
    assert (await first).close_code == 4409 and second.close_code == 1000
    assert await owner_of(topology, call) in (held_by, None)  # ended by its `stop`: released
    assert len(topology.realtime.sessions) == sessions + 1
    for relay in topology.relays:
        assert (await topology.metrics(relay)).get('relay_calls_ended_total{reason="taken_over"}', 0) == 0

    await asyncio.sleep(3)  # the model hears a customer line a second: every call has context
    report = kill_one(topology, owners)
    killed = await report
    print(killed.summary())
    assert killed.calls_on_victim >= 1
    assert killed.recovered == killed.calls_on_victim  # every call of the dead relay came back
    assert killed.other_streams_cut == 0  # and no other call noticed
    assert killed.seeded == killed.recovered  # each resumed with the call's recent lines
    assert max(killed.recovery_s) < 10

    for c in owners:
        topology.end_call(c)
    await until(lambda: all(s.ended_at for c in owners for s in streams_of(topology, c)), 20, "calls ended")
    for c in owners:
        published = topology.twilio.messages_for(f"FLEX_ASSIST_{c}")
        seqs = [m["seq"] for m in published]
        shown = [(m["seq"], m["type"], m.get("state")) for m in published]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), (c, shown)  # one `seq` across relays
    assert topology.realtime.violations == []


async def test_a_rolling_restart_cuts_no_call(topology: Topology) -> None:
    report = await rolling_restart(topology, call_s=2.0, every_s=0.3)
    print(report.summary())
    assert report.calls >= 20
    assert report.refused == 0
    assert report.cut == 0


async def test_new_call_sids_spread_over_every_relay(topology: Topology) -> None:
    """Consistent hashing spreads calls (a new CallSid is random): no relay is left out."""
    owners = await place_calls(topology, 24)
    assert {r.name for r in topology.relays} == set(owners.values())
    for c in owners:
        topology.end_call(c)
    assert new_sid("CA") not in owners
