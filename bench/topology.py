"""Several relays behind HAProxy on loopback, as production runs them: the scale-out topology
the tests (tests/test_topology.py) and the benchmark (bench/scaleout_bench.py) use.

    .venv/bin/python bench/topology.py up [--relays 3] [--no-redis]   # until Ctrl-C or SIGTERM

Starts: Redis (Debian's redis-server, unless --no-redis), N relays (`relay serve`, each its own
process, port and replica id), HAProxy (Debian's haproxy) with deploy/haproxy/haproxy.cfg plus
this topology's `server` lines, and, in this process, the fake OpenAI Realtime server and the
fake Twilio whose media side dials the streams the relays start (tests/fakes/media_dialer.py),
through the balancer, exactly as Twilio would reach it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.media_dialer import MediaDialer  # noqa: E402
from tests.fakes.realtime_server import Behaviour, FakeRealtimeServer  # noqa: E402
from tests.fakes.redis import RedisServer, find_redis_server  # noqa: E402
from tests.fakes.tooling import free_port  # noqa: E402
from tests.fakes.twilio_server import FakeTwilio  # noqa: E402

HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
PUBLIC_URL = "https://relay.topology.test"
AUTH_TOKEN = "topology-auth-token"
OPENAI_KEY = "sk-topology-" + "k" * 30
API_KEY_SID = "SK" + "3" * 32
API_SECRET = "topology-api-secret"
FLEX_TOKEN = "flex-token-topology"
TICKS = os.sysconf("SC_CLK_TCK")


def find_haproxy() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def haproxy_config(servers: list[tuple[str, int]], stats_port: int) -> str:
    """The shared file plus this topology's servers (and a stats listener to read their state)."""
    lines = [HAPROXY_CFG.read_text().rstrip("\n")]
    lines += [f"    server {name} 127.0.0.1:{port} check" for name, port in servers]
    lines += ["", "listen stats", f"    bind 127.0.0.1:{stats_port}", "    stats enable", "    stats uri /stats", ""]
    return "\n".join(lines)


@dataclass
class RelayProcess:
    name: str
    port: int
    proc: asyncio.subprocess.Process | None = None
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@dataclass
class TopologyConfig:
    relays: int = 3
    redis: bool = True
    balancer: bool = True
    drain_deadline_s: float = 20.0
    env: dict[str, str] = field(default_factory=dict)
    relay_cpus: str | None = None  # taskset list for the relays, e.g. "0"
    log_level: str = "INFO"


class Topology:
    """`async with Topology(config) as topo:` everything up; torn down at the end."""

    def __init__(self, config: TopologyConfig | None = None, behaviour: Behaviour | None = None) -> None:
        self.config = config or TopologyConfig()
        self.root = Path(tempfile.mkdtemp(prefix="relay-topology-"))
        self.realtime = FakeRealtimeServer(behaviour or Behaviour(api_key=OPENAI_KEY))
        self.twilio = FakeTwilio()
        self.redis: RedisServer | None = None
        self.relays: list[RelayProcess] = []
        self.lb_port = free_port()
        self.stats_port = free_port()
        self.haproxy: asyncio.subprocess.Process | None = None
        self.dialer: MediaDialer | None = None
        self._http: aiohttp.ClientSession | None = None
        self._redis_client: Any = None  # one connection pool for every owner lookup

    def redis_client(self) -> Any:
        """A client of the topology's Redis (made once, closed with the topology)."""
        assert self.redis is not None
        if self._redis_client is None:
            import redis.asyncio as aioredis

            self._redis_client = aioredis.Redis.from_url(self.redis.url, decode_responses=True)
        return self._redis_client

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Topology:
        try:
            await self._start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _start(self) -> None:
        config = self.config
        await self.realtime.start()
        self.twilio.state.auth_token = AUTH_TOKEN
        self.twilio.state.api_keys[API_KEY_SID] = API_SECRET
        self.twilio.add_agent(FLEX_TOKEN, "agent_topology", ["agent"])
        await self.twilio.start()
        entry = self.lb_port if config.balancer else None
        if config.redis:
            binary = find_redis_server()
            if binary is None:
                raise RuntimeError("redis-server is not installed (Debian package redis-server)")
            self.redis = RedisServer(binary)
            self.redis.start()
        self.relays = [RelayProcess(f"relay{i + 1}", free_port()) for i in range(config.relays)]
        if entry is None:
            entry = self.relays[0].port
        self.dialer = MediaDialer(AUTH_TOKEN, f"ws://127.0.0.1:{entry}", f"http://127.0.0.1:{entry}")
        self.twilio.state.dialer = self.dialer
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        await asyncio.gather(*(self.start_relay(r) for r in self.relays))
        if config.balancer:
            await self._start_haproxy()

    async def aclose(self) -> None:
        """Stop everything this topology started, each step whatever the one before raised:
        the fake media side (its streams end with a `stop`, as callers hanging up), the
        processes (they would outlive this one), the in-process servers, the temp folder."""
        try:
            if self.dialer is not None:
                await self.dialer.aclose()
        finally:
            try:
                await self._stop_processes()
            finally:
                try:
                    await self._stop_in_process()
                finally:
                    shutil.rmtree(self.root, ignore_errors=True)

    async def _stop_processes(self) -> None:
        procs = [r.proc for r in self.relays if r.proc is not None]
        if self.haproxy is not None:
            procs.append(self.haproxy)
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # exited since, not reaped yet
                    proc.kill()
        try:
            for proc in procs:
                await proc.wait()  # reaped: no zombie left behind either
        finally:
            if self.redis is not None:
                self.redis.close()  # its own temp folder too

    async def _stop_in_process(self) -> None:
        try:
            if self._redis_client is not None:
                await self._redis_client.aclose()
            if self._http is not None:
                await self._http.close()
        finally:
            try:
                await self.twilio.stop()
            finally:
                await self.realtime.stop()

    def relay_env(self, relay: RelayProcess) -> dict[str, str]:
        tw = self.twilio.base_url
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "OPENAI_API_KEY": OPENAI_KEY,
            "OPENAI_BASE_URL": self.realtime.base_url,
            "TWILIO_ACCOUNT_SID": self.twilio.state.account_sid,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_KEY": API_KEY_SID,
            "TWILIO_API_SECRET": API_SECRET,
            "TWILIO_SYNC_SERVICE_SID": self.twilio.state.sync_service_sid,
            "TWILIO_API_BASE_URL": tw,
            "TWILIO_SYNC_BASE_URL": tw,
            "TWILIO_IAM_BASE_URL": tw,
            "TWILIO_TASKROUTER_BASE_URL": tw,
            "RELAY_PUBLIC_URL": PUBLIC_URL,
            "RELAY_HOST": "127.0.0.1",
            "RELAY_PORT": str(relay.port),
            "RELAY_REPLICA_ID": relay.name,
            "RELAY_DATA_DIR": str(self.root / relay.name),
            "RELAY_LOG_LEVEL": self.config.log_level,
            "RELAY_DRAIN_DEADLINE_S": str(self.config.drain_deadline_s),
            "RELAY_MAX_CALLS": "2000",
        }
        if self.redis is not None:
            env["RELAY_REDIS_URL"] = self.redis.url
        env.update(self.config.env)
        return env

    async def start_relay(self, relay: RelayProcess) -> None:
        relay.log_path = self.root / f"{relay.name}.log"
        command = [sys.executable, "-m", "relay.cli.main", "serve"]
        if self.config.relay_cpus is not None and shutil.which("taskset"):
            command = ["taskset", "-c", self.config.relay_cpus, *command]
        with relay.log_path.open("ab") as log:
            relay.proc = await asyncio.create_subprocess_exec(
                *command, env=self.relay_env(relay), stdout=log, stderr=log, cwd=str(ROOT)
            )
        await self._until_ready(relay)

    async def _until_ready(self, relay: RelayProcess, timeout_s: float = 60) -> None:
        assert self._http is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not relay.running:
                raise RuntimeError(f"{relay.name} exited: {self.log_tail(relay)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self._http.get(f"http://127.0.0.1:{relay.port}/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{relay.name} not ready in {timeout_s} s: {self.log_tail(relay)}")

    def log_tail(self, relay: RelayProcess, lines: int = 20) -> str:
        if relay.log_path is None or not relay.log_path.exists():
            return ""
        return "\n".join(relay.log_path.read_text(errors="replace").splitlines()[-lines:])

    def haproxy_log_tail(self, lines: int = 20) -> str:
        path = self.root / "haproxy.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def _start_haproxy(self) -> None:
        binary = find_haproxy()
        if binary is None:
            raise RuntimeError("haproxy is not installed (Debian package haproxy)")
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(haproxy_config([(r.name, r.port) for r in self.relays], self.stats_port))
        env = {
            "PATH": os.environ.get("PATH", ""),
            "RELAY_LB_BIND": f"127.0.0.1:{self.lb_port}",
            "RELAY_LB_MAXCONN": "8000",  # fits the usual 20,000 descriptors of a test machine
        }
        with (self.root / "haproxy.log").open("ab") as log:
            self.haproxy = await asyncio.create_subprocess_exec(
                binary, "-db", "-f", str(cfg), env=env, stdout=log, stderr=log
            )
        await self.wait_servers(up={r.name for r in self.relays})

    # ------------------------------------------------------------------ the balancer's view

    async def server_states(self) -> dict[str, str]:
        """HAProxy's view of each relay: UP, DOWN, … (its stats CSV)."""
        assert self._http is not None
        async with self._http.get(f"http://127.0.0.1:{self.stats_port}/stats;csv") as r:
            text = await r.text()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "relays" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    async def wait_servers(self, up: set[str], timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                states = await self.server_states()
                if {name for name, status in states.items() if status.startswith("UP")} == up:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the balancer never saw exactly {sorted(up)} up")
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ calls and faults

    @property
    def entry_url(self) -> str:
        port = self.lb_port if self.config.balancer else self.relays[0].port
        return f"http://127.0.0.1:{port}"

    async def start_call(self, call_sid: str, parameters: dict[str, str] | None = None) -> int:
        """A call is in progress and its agent turns assist on (the plugin's request, through
        the balancer): the relay that gets it asks the fake Twilio to start the stream, whose
        media side dials it back through the balancer."""
        assert self._http is not None
        self.twilio.state.calls[call_sid] = "in-progress"
        async with self._http.post(
            f"{self.entry_url}/calls/{call_sid}/assist",
            headers={"Authorization": f"Bearer {FLEX_TOKEN}"},
            json=parameters or {},
        ) as r:
            return r.status

    def end_call(self, call_sid: str) -> None:
        self.twilio.end_call(call_sid)

    async def metrics(self, relay: RelayProcess) -> dict[str, float]:
        assert self._http is not None
        async with self._http.get(f"http://127.0.0.1:{relay.port}/metrics") as r:
            text = await r.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values

    async def live_calls(self, relay: RelayProcess) -> int:
        return int((await self.metrics(relay)).get("relay_active_calls", 0))

    def kill(self, relay: RelayProcess) -> float:
        """kill -9: returns when it was sent (monotonic)."""
        assert relay.proc is not None
        relay.proc.send_signal(signal.SIGKILL)
        return time.monotonic()

    async def terminate(self, relay: RelayProcess, timeout_s: float = 120) -> int:
        """SIGTERM and wait for the drain to finish; returns the exit status."""
        assert relay.proc is not None
        relay.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(relay.proc.wait(), timeout_s)


async def _up(args: argparse.Namespace) -> None:
    """Until SIGTERM or SIGINT, then everything started is stopped and the temp folder removed.

    Without its own handlers SIGTERM would end this process at once, leaving Redis, the relays
    and HAProxy running and the temp folder behind. A signal during startup stops it too.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    received: list[str] = []

    def stop(signum: int) -> None:
        if not received:  # a second signal must not cut the teardown short
            received.append(signal.Signals(signum).name)
            main.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    config = TopologyConfig(relays=args.relays, redis=not args.no_redis)
    try:
        async with Topology(config) as topo:
            print(f"temp folder: {topo.root}")
            print(f"balancer: {topo.entry_url}  (stats http://127.0.0.1:{topo.stats_port}/stats)")
            if topo.haproxy is not None:
                print(f"haproxy: pid {topo.haproxy.pid}  log {topo.root / 'haproxy.log'}")
            for relay in topo.relays:
                print(f"{relay.name}: http://127.0.0.1:{relay.port}  pid {relay.pid}  log {relay.log_path}")
            if topo.redis is not None:
                print(f"redis: {topo.redis.url}")
            print(f"fake realtime: {topo.realtime.base_url}  fake twilio: {topo.twilio.base_url}")
            print("up; Ctrl-C or SIGTERM stops everything", flush=True)
            await asyncio.Event().wait()
    except asyncio.CancelledError:
        if not received:
            raise
    print(f"{received[0]}: stopped, temp folder removed", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the topology and keep it up until Ctrl-C or SIGTERM")
    up.add_argument("--relays", type=int, default=3)
    up.add_argument("--no-redis", action="store_true")
    asyncio.run(_up(parser.parse_args()))
