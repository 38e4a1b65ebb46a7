"""Shared fixtures: loopback fakes, settings pointing at them, and a running relay."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.audio.dsp import ulaw_encode
from relay.cli.simulator import sign_upgrade
from relay.settings import Settings
from relay.web.app import create_app
from relay.web.state import RELAY, RelayState
from tests.fakes.postgres import PostgresServer, find_bin_dir
from tests.fakes.realtime_server import Behaviour, FakeRealtimeServer, Turn
from tests.fakes.redis import RedisServer, find_redis_server
from tests.fakes.twilio_server import FakeTwilio

PUBLIC_URL = "https://relay.example.test"
OPENAI_KEY = "sk-test-" + "k" * 40
TWILIO_TOKEN = "twilio-auth-token-" + "t" * 20
API_KEY_SID = "SK" + "3" * 32
API_SECRET = "api-secret-" + "s" * 24

# Where real time cannot be avoided (subprocesses, browsers), every timeout is multiplied by
# this one factor: raise it on a slow or loaded machine instead of editing tests.
TIME_SCALE = float(os.environ.get("TEST_TIME_SCALE", "1"))

# Call records (SQLite files, audio) of every relay a test starts go under one folder per session.
_DATA_ROOT = Path(tempfile.mkdtemp(prefix="relay-test-data-"))
atexit.register(shutil.rmtree, _DATA_ROOT, True)


def fresh_data_dir() -> Path:
    """A fresh RELAY_DATA_DIR (never the working folder's ./data)."""
    return Path(tempfile.mkdtemp(dir=_DATA_ROOT))


def process_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a relay run as a process: a PATH, a HOME, its own data folder, and
    `extra`; nothing else from the machine."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "RELAY_DATA_DIR": str(fresh_data_dir()),
    }
    return {**base, **(extra or {})}


QUESTION_ANSWER = '{"question": "Can I get a refund?", "answer": "Yes, within 30 days of purchase."}'


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure the relay explicitly; nothing leaks in from the machine."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "TWILIO_", "RELAY_")):
            monkeypatch.delenv(name, raising=False)


def require_debian_package(found: object, package: str, what: str, without: str) -> None:
    """Fail in CI (where .ci/run installs the package), else skip with how to get it."""
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{what} (Debian package {package}) is required in CI; .ci/run installs it")
        pytest.skip(f"{what} is not installed (apt-get install {package}); {without}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    require_debian_package(bin_dir, "postgresql", "PostgreSQL", "the SQLite suite still runs")
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = find_redis_server()
    require_debian_package(binary, "redis-server", "Redis", "single-process suites still run")
    assert binary is not None
    server = RedisServer(binary)
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A Redis emptied for this test."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture
async def fake_realtime() -> AsyncIterator[FakeRealtimeServer]:
    server = FakeRealtimeServer(Behaviour(api_key=OPENAI_KEY))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    server = FakeTwilio()
    server.state.auth_token = TWILIO_TOKEN
    server.state.api_keys[API_KEY_SID] = API_SECRET
    await server.start()
    yield server
    await server.stop()


def relay_settings(fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_api_key": OPENAI_KEY,
        "openai_base_url": fake_realtime.base_url,
        "twilio_account_sid": fake_twilio.state.account_sid,
        "twilio_auth_token": TWILIO_TOKEN,
        "twilio_api_key": API_KEY_SID,
        "twilio_api_secret": API_SECRET,
        "twilio_sync_service_sid": fake_twilio.state.sync_service_sid,
        "twilio_api_base_url": fake_twilio.base_url,
        "twilio_sync_base_url": fake_twilio.base_url,
        "twilio_iam_base_url": fake_twilio.base_url,
        "twilio_taskrouter_base_url": fake_twilio.base_url,
        "public_url": PUBLIC_URL,
        "use_uvloop": False,
        "reconnect_initial_delay_s": 0.05,
        "reconnect_max_delay_s": 0.3,
        "sync_flush_deadline_s": 5.0,
        "data_dir": fresh_data_dir(),
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningRelay:
    server: TestServer
    settings: Settings

    @property
    def state(self) -> RelayState:
        return self.server.app[RELAY]

    def ws_url(self, path: str = "/media") -> str:
        return f"ws://127.0.0.1:{self.server.port}{path}"

    def http_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def signed_headers(self, path: str = "/media") -> dict[str, str]:
        token = self.settings.twilio_auth_token
        assert token is not None
        return {"X-Twilio-Signature": sign_upgrade(token.get_secret_value(), f"wss://relay.example.test{path}")}


StartRelay = Callable[..., Awaitable[RunningRelay]]


@pytest.fixture
async def start_relay(fake_realtime: FakeRealtimeServer, fake_twilio: FakeTwilio) -> AsyncIterator[StartRelay]:
    servers: list[TestServer] = []

    async def start(app: web.Application | None = None, **overrides: Any) -> RunningRelay:
        settings = relay_settings(fake_realtime, fake_twilio, **overrides)
        server = TestServer(app or create_app(settings), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return RunningRelay(server, settings)

    yield start
    for server in servers:
        await server.close()


@contextlib.asynccontextmanager
async def relay_process(*args: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m relay.cli ARGS` as a real process with piped output, killed if it is still
    running when the block ends (a failed assertion must not leave it behind)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli.main",
        *args,
        env=process_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_line(
    stream: asyncio.StreamReader | None, marker: str, timeout_s: float = 60, seen: list[str] | None = None
) -> str:
    """The next line of a process's output containing `marker`; the lines read on the way
    are appended to `seen` when given."""
    assert stream is not None
    async with asyncio.timeout(timeout_s * TIME_SCALE):
        async for raw in stream:
            line = raw.decode()
            if seen is not None:
                seen.append(line)
            if marker in line:
                return line
    raise AssertionError(f"the process ended without printing {marker!r}")


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.02) -> None:
    """Poll a condition the relay exposes; fail (never hang) when it does not come true."""
    loop = asyncio.get_running_loop()
    timeout_s *= TIME_SCALE
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


def expected_pcm(ulaw: bytes, batch_bytes: int = 800) -> bytes:
    """What the relay sends the model for `ulaw`: 100 ms batches through one transcoder."""
    from relay.audio.dsp import PcmTranscoder

    transcoder = PcmTranscoder(24000)
    parts = [transcoder.process(ulaw[i : i + batch_bytes]) for i in range(0, len(ulaw), batch_bytes)]
    return b"".join(parts) + transcoder.flush()


def coverage(expected: bytes, pieces: list[bytes]) -> tuple[int, int]:
    """(bytes of `expected` no piece covers, bytes covered twice). Each piece must be a
    contiguous slice of `expected` (in order, unaltered), or the assertion fails."""
    intervals = []
    for piece in pieces:
        if not piece:
            continue
        start = expected.find(piece[:4800])
        assert start >= 0 and expected[start : start + len(piece)] == piece, "audio altered or out of order"
        intervals.append((start, start + len(piece)))
    intervals.sort()
    covered, end = 0, 0
    for lo, hi in intervals:
        if hi > end:
            covered += hi - max(lo, end)
            end = hi
    return len(expected) - covered, sum(hi - lo for lo, hi in intervals) - covered


def tone_ulaw(freq: float = 1000.0, seconds: float = 1.0, level_dbfs: float = -6.0) -> bytes:
    n = int(8000 * seconds)
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    return ulaw_encode(amplitude * np.sin(2 * np.pi * freq * np.arange(n) / 8000))


def speech_like_ulaw(seconds: float, seed: int = 1) -> bytes:
    """Band-limited noise with a syllable-rate envelope: exercises the whole path."""
    rng = np.random.default_rng(seed)
    n = int(8000 * seconds)
    t = np.arange(n) / 8000
    noise = rng.standard_normal(n)
    kernel = np.hanning(9)
    voiced = np.convolve(noise, kernel / kernel.sum(), mode="same")
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return ulaw_encode(6000 * voiced * envelope)


def qa_turns(n: int = 3) -> list[Turn]:
    return [Turn(transcript=f"Question number {i} about my refund please", answer=QUESTION_ANSWER) for i in range(n)]
