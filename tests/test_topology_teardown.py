"""`bench/topology.py up` run as a user runs it, stopped by SIGTERM (a supervisor, `kill`) or
SIGINT (Ctrl-C): nothing it started may outlive it, no port stays taken, no temp folder stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.topology import find_haproxy
from tests.conftest import TIME_SCALE, require_debian_package
from tests.fakes.redis import find_redis_server

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgrp: int
    state: str
    start: int  # clock ticks after boot: tells a PID reused since from the same process
    cmdline: str


def processes() -> dict[int, Proc]:
    """Every process on the machine, from /proc."""
    found: dict[int, Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited while listed
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = Proc(
            int(entry.name), int(fields[1]), int(fields[2]), fields[0], int(fields[19]), cmdline
        )
    return found


def descendants(pid: int) -> list[Proc]:
    table = processes()
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def survivors(started: list[Proc], pgrp: int) -> list[Proc]:
    """The processes started that still exist (the same process, not a reused PID), and
    anything else still in the topology's process group, zombies included: a child not
    reaped is a leak too."""
    table = processes()
    same = [table[p.pid] for p in started if p.pid in table and table[p.pid].start == p.start]
    in_group = [p for p in table.values() if p.pgrp == pgrp and p not in same]
    return same + in_group


def folders_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_stops_everything_the_topology_started(signum: signal.Signals, tmp_path: Path) -> None:
    require_debian_package(find_haproxy(), "haproxy", "HAProxy", "the single-relay suites still run")
    require_debian_package(find_redis_server(), "redis-server", "Redis", "the single-relay suites still run")
    temp = tmp_path / "tmp"  # TMPDIR of the topology: its folder and Redis's are made here
    temp.mkdir()
    stderr = (tmp_path / "stderr.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "bench/topology.py", "up", "--relays", "2",
        cwd=str(ROOT),
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "TMPDIR": str(temp)},
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,  # its own process group, as under a shell's job control
    )  # fmt: skip
    assert proc.stdout is not None
    started: list[Proc] = []
    try:
        printed: list[str] = []
        while not printed or not printed[-1].startswith("up;"):
            line = await asyncio.wait_for(proc.stdout.readline(), 90 * TIME_SCALE)
            assert line, f"exited before it was up: {(tmp_path / 'stderr.log').read_text()[-2000:]}"
            printed.append(line.decode().strip())
        text = "\n".join(printed)

        started = descendants(proc.pid)
        commands = " | ".join(p.cmdline for p in started)
        assert sum("relay.cli.main serve" in p.cmdline for p in started) == 2, commands
        assert any("redis-server" in p.cmdline for p in started), commands
        assert any("haproxy" in p.cmdline for p in started), commands
        assert all(p.pgrp == proc.pid for p in started), commands  # so the group check below sees them
        ports = {int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", text)}
        assert len(ports) >= 6, text  # balancer, stats, two relays, Redis, the fakes
        assert all(listening(port) for port in ports), text
        folder = Path(re.findall(r"temp folder: (\S+)", text)[0])
        made = folders_in(temp)
        assert folder.parent == temp and folder.name in made and len(made) == 2, made  # and Redis's

        proc.send_signal(signum)
        out, _ = await asyncio.wait_for(proc.communicate(), 60 * TIME_SCALE)
        assert survivors(started, proc.pid) == []
        assert [port for port in ports if listening(port)] == []
        assert folders_in(temp) == []
        assert proc.returncode == 0, (tmp_path / "stderr.log").read_text()[-2000:]  # a stop, not a crash
        assert f"{signum.name}: stopped" in out.decode()
    finally:
        stderr.close()
        # Only what this test started: the topology's process group and its children by PID.
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        for leftover in survivors(started, proc.pid):
            if leftover.state != "Z":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leftover.pid, signal.SIGKILL)
