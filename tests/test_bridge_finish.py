"""A call's end is cleanup: whatever fails on the way (here the model session's close), the
call's channel is closed after its `ended` status, its end row is written and its audio
file is closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.assist.bridge import BridgeConfig, CallBridge
from relay.model.link import LinkConfig
from relay.model.session import RealtimeSession, SessionConfig
from relay.records import recorder as audio_recorder
from relay.records.service import Records
from relay.records.sqlite import SqliteStore
from relay.twilio.media import Media, Start
from relay.web.local_hub import LocalHub
from tests.test_model_link import ScriptedConnector, ScriptedSession

CALL = "CA" + "e" * 32


class BrokenClose(ScriptedSession):
    """A session whose close fails (an SDK raising on a socket already gone)."""

    async def close(self) -> None:
        await super().close()
        raise RuntimeError("close failed")


class BrokenCloseConnector(ScriptedConnector):
    async def open(self, config: SessionConfig) -> RealtimeSession:
        self.attempts += 1
        session = BrokenClose()
        self.sessions.append(session)
        return session


async def test_a_failure_while_finishing_still_closes_the_channel_the_record_and_the_audio(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "relay.db"))
    records = Records(store, audio_dir=tmp_path, retention_days=0)
    records.start()
    try:
        await _finish_with_a_broken_session(records, store)
    finally:  # the store's thread must not outlive a failed test
        await records.close(5.0)
        await store.close()


async def _finish_with_a_broken_session(records: Records, store: SqliteStore) -> None:
    recorder = records.recorder(CALL)
    hub = LocalHub()
    bridge = CallBridge(
        Start(CALL, "MZ" + "e" * 32, "AC" + "0" * 32, ("inbound",)),
        connector=BrokenCloseConnector(),
        session_config=SessionConfig(instructions="", audio_format="pcm24k", transcription_model="t"),
        channel=hub.open(CALL),
        config=BridgeConfig(audio_format="pcm24k", append_batch_ms=100, link=LinkConfig(buffer_max_bytes=480_000)),
        prompt_name="default",
        recorder=recorder,
    )
    for i in range(150):  # 3 s of audio
        bridge.on_media(Media("inbound", b"\x7f" * 160, i * 20))
    audio_path = records.audio_path(CALL)

    with pytest.raises(RuntimeError, match="close failed"):
        await bridge.finish("stop")

    # The channel said `ended` and is closed (the hub no longer lists the call as live).
    last = hub.history(CALL)[-1]
    assert last["type"] == "status" and last["state"] == "ended"
    assert CALL not in hub.active_calls
    # The audio file was closed (nothing left open for it), and the end row written.
    assert str(audio_path) not in audio_recorder._OPEN
    assert await records.writer.idle()
    record = await store.get(CALL)
    assert record is not None and record["ended_at"] is not None and record["has_audio"]
    assert record["counters"]["finish_errors"] == ["finish: RuntimeError"]
