"""The console script's commands, run as real processes."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from tests.conftest import TIME_SCALE, StartRelay, process_env, read_line, relay_process, wait_until
from tests.fakes.realtime_server import FakeRealtimeServer
from tests.test_offline_flow import assert_times_are_audio_positions

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "sample_call.wav"


async def _relay_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli.main",
        *args,
        env=process_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout * TIME_SCALE)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_demo_plays_the_sample_call_offline_and_exits_cleanly(tmp_path: Path) -> None:
    # An OpenAI key in the environment does not switch the offline showcase to OpenAI.
    env = {"OPENAI_API_KEY": "sk-test-unused", "RELAY_DATA_DIR": str(tmp_path)}
    code, out, err = await _relay_cli("demo", "--fast", "--port", "0", env=env)
    assert code == 0, err
    assert "(offline engine: PocketSphinx (RELAY_OFFLINE_RECOGNIZER=pocketsphinx) + knowledge base)" in out
    assert "console: http://127.0.0.1:" in out and "--hold keeps it" in out
    # What matters is an answer to each of the sample's questions, not the recognizer's exact output.
    for question in ("Where is my order?", "How long does a refund take?", "How do I reset my password?"):
        assert f"→ suggestion: {question}" in out
    assert "call ended: close 1000" in out

    # Played faster than real time (`--fast`), the record still places each line at its
    # turn's onset in the audio and each card between its question and the next turn.
    from relay.records.sqlite import SqliteStore

    call_sid = out.split(" as ", 1)[1].split(":", 1)[0]
    store = SqliteStore(str(tmp_path / "relay.db"))
    try:
        record = await store.get(call_sid)
    finally:
        await store.close()
    assert record is not None
    assert_times_are_audio_positions(record)


async def test_demo_with_openai_asked_for_but_no_key_says_so() -> None:
    code, _, err = await _relay_cli("demo", "--engine", "openai", env={"OPENAI_API_KEY": ""})
    assert code == 2 and err.strip() == "relay: relay demo --engine openai needs OPENAI_API_KEY"


async def test_a_port_in_use_is_one_clear_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = await _relay_cli("serve", env={"RELAY_HOST": "127.0.0.1", "RELAY_PORT": str(port)})
        assert code == 2
        assert err.splitlines()[-1] == f"relay: port {port} on 127.0.0.1 is already in use (set RELAY_PORT or --port)"
        assert "Traceback" not in err
        code, _, err = await _relay_cli("demo", "--port", str(port))
        assert code == 2 and "already in use" in err and "Traceback" not in err


async def test_an_empty_openai_key_serves_on_the_offline_engine() -> None:
    # `set -a; . .env.example` exports OPENAI_API_KEY= (empty).
    env = {"OPENAI_API_KEY": "", "RELAY_HOST": "127.0.0.1", "RELAY_PORT": "0", "RELAY_LOG_LEVEL": "INFO"}
    seen: list[str] = []
    async with relay_process("serve", env=env) as proc:
        await read_line(proc.stderr, "relay listening", seen=seen)
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), timeout=60 * TIME_SCALE)
    log = "".join(seen) + rest.decode()
    assert proc.returncode == 0, log
    assert "offline engine ready" in log and "Traceback" not in log


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


async def test_simulate_fast_drops_nothing_at_a_relay_whose_model_connects_slowly(
    start_relay: StartRelay, fake_realtime: FakeRealtimeServer
) -> None:
    # Audio waits in the relay's buffer (10 s by default) until the model session answers;
    # unpaced, the whole 24.5 s sample would arrive before it does.
    fake_realtime.behaviour.delay_session_updated_s = 1.0
    relay = await start_relay()
    env = {
        "TWILIO_AUTH_TOKEN": relay.settings.twilio_auth_token.get_secret_value(),  # type: ignore[union-attr]
        "RELAY_PUBLIC_URL": "https://relay.example.test",
    }
    code, _, err = await _relay_cli(
        "simulate", str(SAMPLE), "--url", relay.ws_url(), "--fast", "--linger", "0", env=env
    )
    assert code == 0, err
    await wait_until(lambda: bool(relay.state.recent_summaries))
    summary = relay.state.recent_summaries[-1]
    assert summary["frames_in"] == 1225 and summary["frames_dropped"] == {}, summary["frames_dropped"]
    assert summary["frames_forwarded"] == 1225


async def test_simulate_takes_the_call_sid_from_a_ws_call_sid_url(start_relay: StartRelay) -> None:
    relay = await start_relay()
    call_sid = "CA" + "5" * 32
    env = {
        "TWILIO_AUTH_TOKEN": relay.settings.twilio_auth_token.get_secret_value(),  # type: ignore[union-attr]
        "RELAY_PUBLIC_URL": "https://relay.example.test",
    }
    url = relay.ws_url(f"/ws/{call_sid}")
    code, out, err = await _relay_cli("simulate", str(SAMPLE), "--url", url, "--speed", "0", "--linger", "0", env=env)
    assert code == 0, err
    assert f"as {call_sid}:" in out and "call ended: close 1000" in out
    await wait_until(lambda: bool(relay.state.recent_summaries))
    assert relay.state.recent_summaries[-1]["call_sid"] == call_sid
    # A --call-sid that contradicts the URL is refused before dialling.
    code, _, err = await _relay_cli("simulate", str(SAMPLE), "--url", url, "--call-sid", "CA" + "6" * 32, env=env)
    assert code == 2 and "differs from the URL's" in err


def test_a_call_sid_is_read_from_ws_urls_only() -> None:
    from relay.cli.main import call_sid_in_path

    assert call_sid_in_path("/ws/CA123") == "CA123"
    assert call_sid_in_path("/relay/ws/CA123/") == "CA123"
    assert call_sid_in_path("/media") is None
    assert call_sid_in_path("/ws/") is None


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


async def test_simulate_plays_a_float_wav(start_relay: StartRelay, tmp_path: Path) -> None:
    import numpy as np
    from scipy.io import wavfile

    relay = await start_relay(twilio_sync_service_sid=None)
    t = np.arange(48000) / 48000
    wavfile.write(tmp_path / "float.wav", 48000, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    env = {
        "TWILIO_AUTH_TOKEN": relay.settings.twilio_auth_token.get_secret_value(),  # type: ignore[union-attr]
        "RELAY_PUBLIC_URL": "https://relay.example.test",
    }
    code, out, err = await _relay_cli(
        "simulate", str(tmp_path / "float.wav"), "--url", relay.ws_url(), "--fast", env=env
    )
    assert code == 0, err
    assert "1.0 s, tracks inbound" in out and "call ended: close 1000" in out


async def test_version() -> None:
    from importlib.metadata import version

    code, out, _ = await _relay_cli("--version")
    assert code == 0 and out.strip() == f"relay {version('twilio-flex-assist-relay')}"


async def test_demo_hold_keeps_the_console_up_until_interrupted() -> None:
    async with relay_process("demo", "--fast", "--hold", "--port", "0", env={}) as proc:
        line = await read_line(proc.stdout, "holding the relay open: ", timeout_s=180)
        console = line.split()[4]
        assert console.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session, session.get(console) as response:
            assert response.status == 200  # still served after the call ended
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), timeout=30 * TIME_SCALE)
        assert proc.returncode == 0
