"""Per-call state beyond one socket: the in-memory directory (one relay) and the Redis one
(several relays), held to the same contract, against a real Redis server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from relay.cluster.directory import SEQ_BLOCK, CallDirectory, LocalDirectory, RedisDirectory
from tests.conftest import require_debian_package, wait_until
from tests.fakes.redis import RedisServer, find_redis_server
from tests.fakes.tooling import free_port

CALL = "CA" + "1" * 32


@pytest.fixture(params=["local", "redis"])
async def directory(request: pytest.FixtureRequest) -> AsyncIterator[CallDirectory]:
    made: CallDirectory
    if request.param == "local":
        made = LocalDirectory("replica-a")
    else:
        made = RedisDirectory(request.getfixturevalue("redis_url"), replica_id="replica-a")
    await made.open(lambda call_sid, owner: None)
    yield made
    await made.aclose()


async def test_each_bridge_of_a_call_gets_the_next_incarnation(directory: CallDirectory) -> None:
    assert [await directory.claim(CALL, f"MZ{i}") for i in range(3)] == [0, 1, 2]
    assert await directory.claim("CA" + "2" * 32, "MZx") == 0
    assert await directory.owner_stream(CALL) == "MZ2"


async def test_wanted_streams_keep_their_parameters_until_unwanted(directory: CallDirectory) -> None:
    assert await directory.wanted(CALL) is None
    await directory.want(CALL, {"TaskSid": "WT1", "WorkerIdentity": "alice"})
    assert await directory.wanted(CALL) == {"TaskSid": "WT1", "WorkerIdentity": "alice"}
    await directory.unwant(CALL)
    assert await directory.wanted(CALL) is None


async def test_a_streams_seq_only_increases(directory: CallDirectory) -> None:
    first, again = directory.seq_source("assist_" + CALL), directory.seq_source("assist_" + CALL)
    values = [await first() for _ in range(5)] + [await again() for _ in range(5)]
    assert values == sorted(values) and len(set(values)) == 10


async def test_recent_context_keeps_the_last_lines(redis_url: str) -> None:
    directory = RedisDirectory(redis_url, replica_id="a", context_lines=3)
    await directory.open(lambda c, o: None)
    for i in range(5):
        directory.add_context(CALL, f"Customer: line {i}")
    await wait_until(lambda: not directory.context_pending)
    assert await directory.recent_context(CALL) == ["Customer: line 2", "Customer: line 3", "Customer: line 4"]
    await directory.aclose()


async def _pair(redis_url: str, seen: dict[str, list[tuple[str, str]]]) -> tuple[RedisDirectory, RedisDirectory]:
    def recorder(name: str) -> Callable[[str, str], None]:
        return lambda call_sid, owner: seen.setdefault(name, []).append((call_sid, owner))

    a, b = RedisDirectory(redis_url, replica_id="a"), RedisDirectory(redis_url, replica_id="b")
    await a.open(recorder("a"))
    await b.open(recorder("b"))
    return a, b


async def test_a_claim_elsewhere_tells_the_previous_owner_to_let_go(redis_url: str) -> None:
    seen: dict[str, list[tuple[str, str]]] = {}
    a, b = await _pair(redis_url, seen)
    try:
        assert await a.claim(CALL, "MZ1") == 0
        assert await a.claim(CALL, "MZ2") == 1  # the same replica again: nobody to tell
        assert await b.claim(CALL, "MZ3") == 2
        await wait_until(lambda: bool(seen.get("a")))
        assert seen == {"a": [(CALL, "b")]}
        assert await a.owner_stream(CALL) == "MZ3"
        await a.release(CALL)  # not the owner any more: b keeps its claim
        assert await b.owner_stream(CALL) == "MZ3"
        await b.release(CALL)
        assert await a.owner_stream(CALL) is None
    finally:
        await a.aclose()
        await b.aclose()


async def test_seq_keeps_increasing_when_another_replica_publishes(redis_url: str) -> None:
    a, b = await _pair(redis_url, {})
    try:
        stream = "assist_" + CALL
        on_a = [await a.seq_source(stream)() for _ in range(3)]
        on_b = [await b.seq_source(stream)() for _ in range(SEQ_BLOCK + 2)]  # crosses a block
        back_on_a = [await RedisDirectory.seq_source(a, "other")() for _ in range(1)]
        assert on_a == [1, 2, 3]
        assert on_b[0] > on_a[-1] and on_b == sorted(on_b) and len(set(on_b)) == len(on_b)
        assert back_on_a == [1]  # streams do not share a counter
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_going_away_never_raises_into_a_call() -> None:
    """Every operation falls back to this process's view, counted, when Redis is gone."""
    binary = find_redis_server()
    require_debian_package(binary, "redis-server", "Redis", "the in-memory directory is still tested")
    assert binary is not None
    server = RedisServer(binary, port=free_port())
    server.start()
    directory = RedisDirectory(server.url, replica_id="a", timeout_s=0.3)
    await directory.open(lambda c, o: None)
    seq = directory.seq_source("assist_" + CALL)
    assert await seq() == 1
    server.stop()
    try:
        # This process numbers the call on its own, past any number Redis handed out.
        assert await directory.claim(CALL, "MZ1") == 1000
        assert await directory.claim(CALL, "MZ2") == 1001
        await directory.want(CALL, {"k": "v"})
        assert await directory.wanted(CALL) == {"k": "v"}  # this process's copy
        values = [await seq() for _ in range(SEQ_BLOCK + 5)]
        assert values == sorted(values) and values[0] == 2
        directory.add_context(CALL, "Customer: hello")
        assert await directory.recent_context(CALL) == ["Customer: hello"]
        assert directory.errors["claim"] >= 1 and directory.errors["seq"] >= 1
    finally:
        await asyncio.wait_for(directory.aclose(), 5)
        server.close()


async def test_an_unreachable_redis_stops_startup_with_its_url_named() -> None:
    directory = RedisDirectory(f"redis://127.0.0.1:{free_port()}/0", replica_id="a", timeout_s=0.3)
    with pytest.raises(Exception):  # noqa: B017 - the client's ConnectionError; the app words it
        await directory.open(lambda c, o: None)
    await directory.aclose()
