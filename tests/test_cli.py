"""The console script's commands, run as real processes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import StartRelay, wait_until

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "sample_call.wav"


async def _relay_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, str]:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli",
        *args,
        env={**base, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_demo_plays_the_sample_call_offline_and_exits_cleanly() -> None:
    code, out, err = await _relay_cli("demo", "--fast", "--port", "0")
    assert code == 0, err
    assert "console: http://127.0.0.1:" in out
    assert out.count("→ suggestion:") == 4
    for question in ("Where is my order?", "How long does a refund take?", "How do I reset my password?"):
        assert question in out
    assert "call ended: close 1000" in out and "4 suggestions, 6 transcripts" in out


async def test_simulate_signs_like_twilio_and_prints_what_came_back(start_relay: StartRelay) -> None:
    relay = await start_relay(twilio_sync_service_sid=None)  # hub mode: the console feed is served
    env = {
        "TWILIO_AUTH_TOKEN": relay.settings.twilio_auth_token.get_secret_value(),  # type: ignore[union-attr]
        "RELAY_PUBLIC_URL": "https://relay.example.test",
    }
    code, out, err = await _relay_cli(
        "simulate",
        str(SAMPLE),
        "--url",
        relay.ws_url(),
        "--fast",
        "--linger",
        "1",
        "--param",
        "prompt=billing",
        env=env,
    )
    assert code == 0, err
    assert "calling ws://127.0.0.1:" in out and "call ended: close 1000" in out
    assert "[started] assist listening" in out and "[ended] stop" in out
    await wait_until(lambda: bool(relay.state.recent_summaries))
    summary = relay.state.recent_summaries[-1]
    assert summary["prompt"] == "billing" and summary["frames_in"] == 1225


async def test_simulate_reports_a_refused_stream(start_relay: StartRelay) -> None:
    relay = await start_relay()
    env = {"TWILIO_AUTH_TOKEN": "not-the-relays-token-0123456789", "RELAY_PUBLIC_URL": "https://relay.example.test"}
    code, _, err = await _relay_cli("simulate", str(SAMPLE), "--url", relay.ws_url(), "--fast", env=env)
    assert code == 1 and "relay refused the stream: HTTP 403" in err


async def test_simulate_refuses_a_file_that_is_not_audio(tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("hello")
    code, _, err = await _relay_cli("simulate", str(bad), "--url", "ws://127.0.0.1:9/media")
    assert code == 2 and "not a PCM WAV" in err
