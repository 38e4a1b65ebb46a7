"""Scale-out scenarios on the loopback topology (bench/topology.py), shared by the test
(tests/test_topology.py, small counts, asserts) and the benchmark (bench/scaleout_bench.py,
larger counts, prints figures).

- `place_calls`: start calls through the balancer and learn which relay holds each.
- `kill_one`: kill -9 the relay holding calls; Twilio's stream-error callbacks reach the
  survivors through the balancer, which restart the streams. Time from the kill to the first
  audio at the model for each recovered call.
- `rolling_restart`: SIGTERM each relay in turn while calls keep arriving, start it again,
  count calls cut (a stream the relay side closed before the caller hung up).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.topology import RelayProcess, Topology
from relay.cli.simulator import new_sid
from tests.fakes.media_dialer import DialedStream


async def owner_of(topo: Topology, call_sid: str) -> str | None:
    """The replica holding the call, from the shared state (Redis)."""
    owner = await topo.redis_client().get(f"relay:call:{call_sid}:owner")
    return str(owner).partition(" ")[0] if owner else None


async def until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate() if callable(predicate) else predicate
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


def streams_of(topo: Topology, call_sid: str) -> list[DialedStream]:
    assert topo.dialer is not None
    return [s for s in topo.dialer.streams.values() if s.call_sid == call_sid]


async def place_calls(topo: Topology, n: int, *, timeout_s: float = 30) -> dict[str, str]:
    """Start `n` calls (the plugin's request through the balancer) and wait until each one's
    stream is feeding a model session; returns call → replica."""
    calls = [new_sid("CA") for _ in range(n)]
    sessions_before = len(topo.realtime.sessions)
    statuses = await asyncio.gather(*(topo.start_call(c, {"TaskSid": "WT" + c[2:]}) for c in calls))
    if any(status != 200 for status in statuses):
        raise AssertionError(f"assist requests refused: {statuses}")
    assert topo.dialer is not None
    await until(lambda: sum(1 for s in topo.dialer.streams.values() if s.opened_at) >= n, timeout_s, "streams open")
    owners: dict[str, str] = {}
    for call in calls:
        owner = None
        deadline = time.monotonic() + timeout_s
        while owner is None and time.monotonic() < deadline:
            owner = await owner_of(topo, call)
            if owner is None:
                await asyncio.sleep(0.05)
        if owner is None:
            raise AssertionError(f"{call} never reached a relay")
        owners[call] = owner
    # A claim comes at the stream's `start`; its model session opens just after. Callers count
    # sessions, so return only once every call's session is open.
    await until(lambda: len(topo.realtime.sessions) >= sessions_before + n, timeout_s, "model sessions open")
    return owners


@dataclass
class KillReport:
    victim: str
    calls_on_victim: int
    calls_elsewhere: int
    recovered: int
    recovery_s: list[float] = field(default_factory=list)  # kill → first audio at the model, per call
    other_streams_cut: int = 0
    seeded: int = 0  # new sessions that received the call's recent lines

    def summary(self) -> str:
        r = sorted(self.recovery_s)
        pct = (lambda q: r[min(len(r) - 1, int(q * len(r)))]) if r else (lambda q: float("nan"))
        return (
            f"killed {self.victim}: {self.calls_on_victim} calls on it, {self.calls_elsewhere} elsewhere; "
            f"recovered {self.recovered}/{self.calls_on_victim} "
            f"(kill → first audio at the model: p50 {pct(0.5):.2f} s, p95 {pct(0.95):.2f} s, max {pct(1.0):.2f} s); "
            f"seeded with context {self.seeded}; other calls' streams cut: {self.other_streams_cut}"
        )


async def kill_one(topo: Topology, owners: dict[str, str], *, timeout_s: float = 30) -> KillReport:
    """kill -9 the relay holding the most calls and wait for its calls to come back."""
    by_relay: dict[str, list[str]] = {}
    for call, owner in owners.items():
        by_relay.setdefault(owner, []).append(call)
    victim_name = max(by_relay, key=lambda name: len(by_relay[name]))
    victim = next(r for r in topo.relays if r.name == victim_name)
    victims = set(by_relay[victim_name])
    sessions_before = len(topo.realtime.sessions)
    killed_at = topo.kill(victim)
    report = KillReport(victim_name, len(victims), len(owners) - len(victims), 0)

    def recovered() -> list[str]:
        return [c for c in victims if any(s.opened_at > killed_at and s.ended_at is None for s in streams_of(topo, c))]

    with contextlib.suppress(AssertionError):
        await until(lambda: len(recovered()) == len(victims), timeout_s, "victim calls restarted")
    # Each new session (opened after the kill) belongs to one of the victim's calls.
    await until(
        lambda: (
            all(s.append_times for s in topo.realtime.sessions[sessions_before:])
            and len(topo.realtime.sessions) - sessions_before >= len(recovered())
        ),
        timeout_s,
        "audio at the new sessions",
    )
    new_sessions = topo.realtime.sessions[sessions_before:]
    report.recovered = len(recovered())
    report.recovery_s = [s.append_times[0][0] - killed_at for s in new_sessions if s.append_times]
    report.seeded = sum(1 for s in new_sessions if s.context_items)
    report.other_streams_cut = sum(
        1 for c, o in owners.items() if o != victim_name for s in streams_of(topo, c) if s.end == "error"
    )
    await topo.start_relay(victim)  # back for whatever runs next
    if topo.haproxy is not None:
        await topo.wait_servers(up={r.name for r in topo.relays})
    return report


@dataclass
class RollingReport:
    calls: int = 0
    cut: int = 0  # the relay side closed the stream before the caller hung up
    refused: int = 0  # a stream that never reached a relay, or an assist request refused
    restarted: int = 0  # streams started again after a cut (counted in `cut` too)
    per_relay_s: list[float] = field(default_factory=list)  # SIGTERM → the relay exited
    refusals: Counter[int] = field(default_factory=Counter)  # assist requests answered other than 200

    def summary(self) -> str:
        drain = statistics.mean(self.per_relay_s) if self.per_relay_s else float("nan")
        return (
            f"rolling restart: {self.calls} calls, {self.cut} cut, {self.refused} refused; "
            f"SIGTERM → exit {drain:.1f} s per relay on average"
            + (f"; assist requests refused: {dict(self.refusals)}" if self.refusals else "")
        )


async def rolling_restart(topo: Topology, *, call_s: float, every_s: float, settle_s: float = 1.0) -> RollingReport:
    """Calls of `call_s` seconds arrive every `every_s` while each relay in turn is sent
    SIGTERM, drains, exits and is started again."""
    report = RollingReport()
    stop = asyncio.Event()
    started: list[str] = []
    hangups: set[asyncio.Task[None]] = set()

    async def caller() -> None:
        while not stop.is_set():
            call = new_sid("CA")
            started.append(call)
            status = await topo.start_call(call)
            if status != 200:
                report.refusals[status] += 1
            else:
                task = asyncio.create_task(_hang_up_after(topo, call, call_s))
                hangups.add(task)
                task.add_done_callback(hangups.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    traffic = asyncio.create_task(caller())
    await asyncio.sleep(call_s)  # every relay holds calls
    for relay in topo.relays:
        report.per_relay_s.append(await _restart(topo, relay))
        await asyncio.sleep(settle_s)
    stop.set()
    await traffic
    if hangups:
        await asyncio.wait(list(hangups))
    await asyncio.sleep(1.0)  # the last callbacks
    assert topo.dialer is not None
    report.calls = len(started)
    for call in started:
        streams = streams_of(topo, call)
        if not streams or not any(s.opened_at for s in streams):
            report.refused += 1
        cut = [s for s in streams if s.end in ("error", "refused")]
        if cut:
            report.cut += 1
            report.restarted += len(streams) > 1
    return report


async def _hang_up_after(topo: Topology, call: str, seconds: float) -> None:
    await asyncio.sleep(seconds)
    topo.end_call(call)


async def _restart(topo: Topology, relay: RelayProcess) -> float:
    sent = time.monotonic()
    await topo.terminate(relay)
    took = time.monotonic() - sent
    await topo.start_relay(relay)
    if topo.haproxy is not None:
        await topo.wait_servers(up={r.name for r in topo.relays})
    return took
