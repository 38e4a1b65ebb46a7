"""Knowledge reloads without a restart (SIGHUP): a good folder replaces what is in force, a
broken one is refused with its path and line while the previous knowledge stays, and the
metrics count both."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from relay.engines.local import LocalConnector
from relay.knowledge.base import KnowledgeBase
from relay.knowledge.retrieval import Retriever
from relay.web.app import reload_knowledge
from tests.conftest import TIME_SCALE, StartRelay, read_line, relay_process
from tests.fakes.tooling import scrape_metrics

FAQ = "Q: Where is my order?\nA: Check the tracking link.\n"


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "faq.md").write_text(FAQ)
    return folder


async def test_a_reload_replaces_the_knowledge_and_a_broken_one_keeps_it(
    start_relay: StartRelay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder(tmp_path)
    relay = await start_relay(knowledge_dir=folder)
    state = relay.state
    assert [p.id for p in state.knowledge.passages] == ["faq.md#where-is-my-order"]

    (folder / "returns.md").write_text("# Returning an item\n\nThirty days, unused.\n")
    assert await reload_knowledge(state)
    assert {p.id for p in state.knowledge.passages} == {"faq.md#where-is-my-order", "returns.md#returning-an-item"}

    (folder / "broken.md").write_text("Q: dangling question?\n")
    in_force = state.knowledge
    assert not await reload_knowledge(state)
    assert state.knowledge is in_force  # the previous knowledge stays
    (record,) = [r for r in caplog.records if r.getMessage().startswith("knowledge reload failed")]
    assert "broken.md:1: questions without an answer" in record.error  # type: ignore[attr-defined]

    async with aiohttp.ClientSession() as session:
        metrics = await scrape_metrics(session, relay.http_url("/metrics"))
    assert metrics['relay_knowledge_reloads_total{outcome="ok"}'] == 1
    assert metrics['relay_knowledge_reloads_total{outcome="error"}'] == 1
    assert metrics["relay_knowledge_passages"] == 2


async def test_the_offline_engine_answers_from_reloaded_knowledge(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    engine = await asyncio.get_running_loop().run_in_executor(
        None, LocalConnector, Retriever(KnowledgeBase.load(folder))
    )
    try:
        assert engine.retriever.search("how do i return an item", min_score=engine.min_score) == []
        (folder / "returns.md").write_text("# How do I return an item?\n\nThirty days, unused.\n")
        await engine.use_knowledge(Retriever(KnowledgeBase.load(folder)))
        hits = engine.retriever.search("how do i return an item", min_score=engine.min_score)
        assert hits and hits[0].passage.id == "returns.md#how-do-i-return-an-item"
        assert "return" in engine.recognizer.vocabulary_words
    finally:
        await engine.aclose()


async def test_sighup_reloads_a_running_relay(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    env = {
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": "0",
        "RELAY_ENGINE": "openai",  # no engine start-up cost; the knowledge still loads
        "OPENAI_API_KEY": "sk-test-unused",
        "RELAY_KNOWLEDGE_DIR": str(folder),
    }
    async with relay_process("serve", env=env) as proc:
        await read_line(proc.stderr, "relay listening")
        (folder / "returns.md").write_text("# Returning an item\n\nThirty days.\n")
        proc.send_signal(signal.SIGHUP)
        assert '"passages":2' in await read_line(proc.stderr, "knowledge reloaded")
        (folder / "broken.md").write_text("A: an answer without a question\n")
        proc.send_signal(signal.SIGHUP)
        assert "broken.md:1: an answer without a question" in await read_line(proc.stderr, "knowledge reload failed")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=30 * TIME_SCALE)
        assert proc.returncode == 0
