"""A freshly booted machine: the monotonic clock starts near zero, and nothing may read a
small clock value as "long ago" (or "never" as a number compared with it)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson

from relay.assist.bridge import COVERED_FOR_S, BridgeConfig, CallBridge
from relay.bundled import bundled_prompts_dir
from relay.knowledge.base import KnowledgeBase
from relay.knowledge.retrieval import Retriever
from relay.model.events import (
    ResponseDone,
    ResponseStarted,
    ResponseTextDone,
    SpeechStarted,
    SpeechStopped,
    TranscriptCompleted,
)
from relay.model.link import LinkConfig
from relay.model.session import SessionConfig
from relay.twilio.media import Start
from relay.web.local_hub import LocalHub
from tests.conftest import TIME_SCALE, process_env
from tests.test_model_link import ScriptedConnector

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "sample_call.wav"
CALL = "CA" + "f" * 32
WHERE = "orders.md#where-is-my-order"
REFUND = "refunds.md#how-long-does-a-refund-take"


class Clock:
    """Seconds since this machine booted, as a fresh VM's monotonic clock reads them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _bridge(clock: Clock, hub: LocalHub) -> CallBridge:
    knowledge = KnowledgeBase.load(bundled_prompts_dir() / "knowledge")
    return CallBridge(
        Start(CALL, "MZ" + "f" * 32, "AC" + "0" * 32, ("inbound", "outbound")),
        connector=ScriptedConnector(),
        session_config=SessionConfig(instructions="", audio_format="pcm24k", transcription_model="t"),
        channel=hub.open(CALL),
        config=BridgeConfig(audio_format="pcm24k", append_batch_ms=100, link=LinkConfig(buffer_max_bytes=480_000)),
        prompt_name="default",
        retriever=Retriever(knowledge),
        clock=clock,
    )


def _turn(bridge: CallBridge, n: int, question: str, source: str) -> None:
    item, response = f"item_{n}", f"resp_{n}"
    answer = orjson.dumps({"question": question, "answer": "From the knowledge.", "sources": [source]}).decode()
    for event in (
        SpeechStarted(item),
        SpeechStopped(item),
        ResponseStarted(response),
        TranscriptCompleted(item, question),
        ResponseTextDone(response, f"out_{n}", answer),
        ResponseDone(response, "completed", None),
    ):
        bridge.on_model_event(event)


def _cards(hub: LocalHub) -> list[str]:
    return [str(m["question"]) for m in hub.history(CALL) if m["type"] == "suggestion"]


async def test_a_bridge_whose_clock_starts_at_zero_publishes_every_grounded_suggestion() -> None:
    clock, hub = Clock(), LocalHub()
    bridge = _bridge(clock, hub)
    _turn(bridge, 1, "Where is my order?", WHERE)
    clock.now = 2.0
    _turn(bridge, 2, "How long does a refund take?", REFUND)
    summary = await bridge.finish("stop")
    assert _cards(hub) == ["Where is my order?", "How long does a refund take?"]
    assert summary["suggestions"] == 2 and summary["suggestions_suppressed"] == 0


async def test_a_passage_the_agent_covered_at_time_zero_is_held_back_for_its_window_only() -> None:
    clock, hub = Clock(), LocalHub()
    bridge = _bridge(clock, hub)
    bridge.on_transcription_event(
        TranscriptCompleted("agent_1", "i can share the tracking link for your order"), "agent"
    )
    clock.now = 10.0
    _turn(bridge, 1, "Where is my order?", WHERE)  # the agent has just said it
    clock.now = COVERED_FOR_S + 1
    _turn(bridge, 2, "Where is my order?", WHERE)  # long after: worth showing again
    summary = await bridge.finish("stop")
    assert _cards(hub) == ["Where is my order?"]
    assert summary["suggestions"] == 1 and summary["suggestions_suppressed"] == 1


# Runs before the relay's modules are imported: from here on the process's monotonic clock
# reads as a machine booted a second ago (asyncio's loop time included).
_FRESH_BOOT = """
import os, time

_real = time.monotonic
_origin = _real() - 1.0


def monotonic() -> float:
    return _real() - _origin


time.monotonic = monotonic
with open(os.environ["FRESH_BOOT_MARK"], "w") as mark:
    mark.write(str(time.monotonic()))
"""


async def test_a_relay_process_on_a_freshly_booted_machine_publishes_every_grounded_suggestion(
    tmp_path: Path,
) -> None:
    (tmp_path / "sitecustomize.py").write_text(_FRESH_BOOT)
    mark = tmp_path / "mark"
    env = {"PYTHONPATH": str(tmp_path), "FRESH_BOOT_MARK": str(mark), "OPENAI_API_KEY": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli.main",
        "demo",
        "--fast",
        "--port",
        "0",
        env=process_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120 * TIME_SCALE)
    assert proc.returncode == 0, err.decode()
    assert float(mark.read_text()) < 2.0  # the process did start with a near-zero clock
    shown = [line for line in out.decode().splitlines() if "→ suggestion:" in line]
    # Every question of the sample call has its card (sample_call.txt: four grounded answers).
    assert len(shown) == 4, out.decode()
    assert "4 suggestions" in out.decode()
