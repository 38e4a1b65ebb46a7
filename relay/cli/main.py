"""`relay` console script.

- `relay serve`: the service, with settings from the environment.
- `relay simulate FILE`: stream a recording to a relay exactly as Twilio would.
- `relay demo`: the whole thing on one machine, no credentials: the relay on the offline
  engine, the bundled sample call, transcripts and suggestions printed as they happen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Coroutine
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
from aiohttp import web

from relay.errors import ConfigurationError
from relay.settings import Settings, SettingsError, load_settings

log = logging.getLogger("relay")

DISTRIBUTION = "twilio-flex-assist-relay"

# `relay simulate --fast`: this many times real time, not "as fast as the socket takes it".
# A relay reads every frame at once and queues it for the model (RELAY_AUDIO_BUFFER_MAX_MS,
# 10 s by default); nothing on the Media Streams socket tells a sender to slow down, and the
# queue only fills while the model session connects (afterwards it drains faster than this).
# At 4× real time the default queue absorbs a connect of up to 2.5 s; unbounded, a 25 s file
# arrives in well under a second and the queue overflows whenever connecting takes longer
# than that (`buffer_overflow`).
FAST_SPEED = 4.0


def _version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


async def _start_site(runner: web.AppRunner, host: str, port: int) -> None:
    """Listen, or say in one line why not (exit 2 via ConfigurationError)."""
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(f"port {port} on {host} is already in use (set RELAY_PORT or --port)") from exc
        if exc.errno == errno.EACCES:
            raise ConfigurationError(f"not allowed to listen on {host}:{port} (ports below 1024 need root)") from exc
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


# ---------------------------------------------------------------------------- serve


async def serve(settings: Settings) -> int:
    from relay.web.app import create_app, drain, reload_knowledge
    from relay.web.state import RELAY

    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await _start_site(runner, settings.host, settings.port)
    state = app[RELAY]
    if settings.gc_freeze:
        # Everything alive now (imported modules, SDK schemas, the app) lives for the whole
        # process. Freezing it keeps the cyclic GC from rescanning it: unfrozen, one gen-2
        # pass over this heap stalls the loop for ~150 ms under load (measured).
        gc.collect()
        gc.freeze()
    # Per-frame garbage is acyclic (freed by reference counting); collecting every 700
    # allocations mostly wastes passes and advances the expensive full collections.
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(settings.gc_gen0_threshold, gen1, gen2)
    stop = asyncio.Event()
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.info("shutdown requested", extra={"signal_count": received})
            stop.set()  # drain() below turns readiness to 503 on the loop's next turn
        else:
            log.warning("second shutdown signal: exiting now")
            os._exit(1)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    # SIGHUP: reload the knowledge folder (the previous knowledge stays if the new one is broken).
    loop.add_signal_handler(signal.SIGHUP, lambda: state.spawn(reload_knowledge(state), name="knowledge-reload"))
    # Only now: a SIGTERM sent as soon as this line appears drains instead of killing.
    port = runner.addresses[0][1] if runner.addresses else settings.port
    log.info("relay listening", extra={"host": settings.host, "port": port, "version": _version()})
    await stop.wait()
    await drain(state, settings.drain_deadline_s)
    await runner.cleanup()
    log.info("relay stopped")
    return 0


# ---------------------------------------------------------------------------- simulate


def _clear_line() -> str:
    return "\r\033[K" if sys.stdout.isatty() else ""


def _format(message: dict[str, Any]) -> str | None:
    kind = message.get("type")
    if kind == "transcript" and message.get("final"):
        return f"  {message.get('speaker', '?'):>8}: {message.get('text')}"
    if kind == "suggestion":
        sources = ", ".join(str(s.get("id")) for s in message.get("sources") or [] if isinstance(s, dict))
        cited = f"\n                [source: {sources}]" if sources else ""
        return f"  → suggestion: {message.get('question')}\n                {message.get('answer')}{cited}"
    if kind == "status":
        return f"  [{message.get('state')}] {message.get('reason')}"
    if kind == "insight":
        flag = " (answered)" if message.get("answered") else ""
        if message.get("answered") and message.get("kind") == "question":
            return f"  ✓ answered: {message.get('text')}"
        return f"  • {str(message.get('kind', '')).replace('_', ' ')}: {message.get('text')}{flag}"
    if kind == "summary":
        return _format_summary(message)
    return None


def _format_summary(message: dict[str, Any]) -> str:
    if message.get("status") != "ok":
        return f"  wrap-up failed: {message.get('reason')}"
    lines = ["  ── wrap-up ──", f"  {message.get('summary')}"]
    for question in message.get("questions") or []:
        mark = "answered" if question.get("answered") else "open"
        lines.append(f"    question ({mark}): {question.get('text')}")
    for item in message.get("action_items") or []:
        due = f" (due {item['due']})" if item.get("due") else ""
        lines.append(f"    action ({item.get('owner')}): {item.get('text')}{due}")
    for follow_up in message.get("follow_ups") or []:
        lines.append(f"    follow-up: {follow_up}")
    sentiment = message.get("sentiment") or {}
    lines.append(
        f"    topics: {', '.join(message.get('topics') or []) or '-'}; sentiment {sentiment.get('start')} → "
        f"{sentiment.get('end')}; disposition {message.get('disposition')}"
    )
    return "\n".join(lines)


async def _watch_console(
    http_base: str, call_sid: str, out: list[dict[str, Any]], console_token: str | None = None
) -> None:
    """Print what the relay publishes for the call (hub mode's SSE feed), as it happens.
    Returns at the call's `ended` status (its last message), or when there is no feed.
    `console_token`: an opened console's credential (RELAY_CONSOLE_TOKEN), sent as a bearer."""
    url = f"{http_base}/console/events?call_sid={call_sid}"
    auth = {"Authorization": f"Bearer {console_token}"} if console_token else {}
    with contextlib.suppress(aiohttp.ClientError):
        async with aiohttp.ClientSession() as session, session.get(url, headers=auth) as response:
            if response.status != 200:
                return
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                message = orjson.loads(line[6:])
                out.append(message)
                text = _format(message)
                if text:
                    print(_clear_line() + text, flush=True)
                if message.get("type") == "status" and message.get("state") == "ended":
                    return


def call_sid_in_path(path: str) -> str | None:
    """The CallSid of a `/ws/{CallSid}` media URL (behind any path prefix), else None."""
    _, sep, sid = path.rstrip("/").rpartition("/ws/")
    return unquote(sid) if sep and sid and "/" not in sid else None


async def simulate(args: argparse.Namespace, settings: Settings) -> int:
    from relay.audio.callfile import CallFileError, load_call_audio
    from relay.cli.simulator import CallResult, CallSpec, new_sid, sign_upgrade, stream_call

    path = urlsplit(args.url).path
    # The relay refuses a stream whose callSid differs from the one its URL names.
    in_path = call_sid_in_path(path)
    if args.call_sid and in_path and args.call_sid != in_path:
        print(f"relay simulate: --call-sid {args.call_sid} differs from the URL's {in_path}", file=sys.stderr)
        return 2
    try:
        audio = load_call_audio(Path(args.file))
    except (OSError, CallFileError) as exc:
        print(f"relay simulate: {exc}", file=sys.stderr)
        return 2
    if args.track == "inbound":
        audio = {"inbound": audio["inbound"]}
    params = dict(p.split("=", 1) for p in args.param)
    spec = CallSpec(
        audio=audio,
        call_sid=args.call_sid or in_path or new_sid("CA"),
        custom_parameters=params,
        minimal=args.minimal,
        pace=FAST_SPEED if args.fast else args.speed,
    )
    headers: dict[str, str] = {}
    if settings.twilio_auth_token is not None and settings.public_url is not None:
        public = settings.media_ws_public_url(path)
        assert public is not None
        headers["X-Twilio-Signature"] = sign_upgrade(settings.twilio_auth_token.get_secret_value(), public)
    if settings.media_api_key is not None and args.minimal:
        headers[settings.media_api_key_header] = settings.media_api_key.get_secret_value()
    parts = urlsplit(args.url)
    http_base = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
    seconds = max(len(a) for a in audio.values()) / 8000
    print(f"calling {args.url} as {spec.call_sid}: {seconds:.1f} s, tracks {', '.join(audio)}", flush=True)
    published: list[dict[str, Any]] = []
    token = settings.console_token.get_secret_value() if settings.console_token is not None else None
    watcher = asyncio.create_task(_watch_console(http_base, spec.call_sid, published, token))

    def progress(elapsed: float, result: CallResult) -> None:
        if not sys.stdout.isatty():
            return
        print(
            f"\r\033[K  {elapsed:6.1f} s | {result.frames_sent} frames sent | {len(published)} messages back",
            end="",
            flush=True,
        )

    try:
        result = await stream_call(args.url, spec, headers=headers, on_progress=progress)
    except aiohttp.WSServerHandshakeError as exc:
        print(f"\nrelay refused the stream: HTTP {exc.status}", file=sys.stderr)
        watcher.cancel()
        return 1
    except aiohttp.ClientError as exc:
        print(f"\ncould not reach the relay: {exc}", file=sys.stderr)
        watcher.cancel()
        return 1
    # The relay flushes the call's last answers after the stream closes: wait for its `ended`.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(watcher), timeout=args.linger)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    print(
        f"{_clear_line()}call ended: close {result.close_code} {result.close_reason!r}, {result.frames_sent} frames, "
        f"{sum(m.get('type') == 'suggestion' for m in published)} suggestions, "
        f"{sum(m.get('type') == 'transcript' and bool(m.get('final')) for m in published)} transcripts",
        flush=True,
    )
    return 0 if result.close_code in (1000, None) else 1


# ---------------------------------------------------------------------------- demo


async def demo(args: argparse.Namespace, settings: Settings) -> int:
    from relay.web.app import create_app

    # The demo is the offline showcase: the offline engine unless `--engine openai` asks otherwise.
    if args.engine == "openai" and settings.openai_api_key is None:
        raise ConfigurationError("relay demo --engine openai needs OPENAI_API_KEY")
    update: dict[str, Any] = {"host": "127.0.0.1", "port": args.port, "engine": args.engine}
    scratch = None
    if "data_dir" not in settings.model_fields_set:
        # The demo writes nothing into the user's folder: its call record (shown in the
        # console's History with --hold) lives in a temporary folder unless RELAY_DATA_DIR is set.
        scratch = tempfile.mkdtemp(prefix="relay-demo-")
        update["data_dir"] = Path(scratch)
    settings = settings.model_copy(update=update)
    if settings.effective_engine == "local":
        from relay.engines.whisper import describe_recognizer

        recognizer = describe_recognizer(settings.offline_recognizer, settings.whisper_model)
        engine = f"offline engine: {recognizer} + knowledge base"
    else:
        engine = f"OpenAI engine: {settings.realtime_model} at {urlsplit(settings.openai_base_url).netloc}"
    print(f"relay {_version()}: starting ({engine})…", flush=True)
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await _start_site(runner, "127.0.0.1", args.port)
    port = runner.addresses[0][1]
    console = f"http://127.0.0.1:{port}/console"
    if args.hold:
        print(f"console: {console}  (stays up after the call: --hold)", flush=True)
    else:
        print(f"console: {console}  (open it to watch; it closes when the demo ends, --hold keeps it)", flush=True)
    try:
        sim_args = argparse.Namespace(
            file=args.file,
            url=f"ws://127.0.0.1:{port}/media",
            call_sid=None,
            param=[],
            minimal=False,
            fast=args.fast,
            speed=1.0,
            track="both",
            # Bounds the wait for the call's `ended` (the flush deadlines, plus slack).
            linger=2 * settings.sync_flush_deadline_s + 5,
        )
        code = await simulate(sim_args, settings)
        if args.hold:
            print(f"holding the relay open: {console}  (Ctrl-C to stop)", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        return code
    finally:
        await runner.cleanup()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------- entry point


def _run(coro: Coroutine[Any, Any, int], settings: Settings) -> int:
    if settings.use_uvloop:
        try:
            import uvloop

            return uvloop.run(coro)
        except ImportError:
            log.warning("uvloop not installed; using asyncio's default loop")
    return asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay", description="Twilio Flex agent-assist relay")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the relay with settings from the environment")

    sim = sub.add_parser("simulate", help="stream an audio file to a relay exactly as Twilio would")
    sim.add_argument("file", help="WAV (any rate; stereo = customer left, agent right) or raw μ-law (.ulaw)")
    sim.add_argument("--url", default="ws://127.0.0.1:8080/media", help="the relay's media WebSocket URL")
    sim.add_argument("--call-sid", help="CallSid to use (default: the one a /ws/{CallSid} URL names, else random)")
    sim.add_argument("--param", action="append", default=[], help="custom parameter name=value (repeatable)")
    sim.add_argument("--track", choices=["both", "inbound"], default="both", help="stereo files give both tracks")
    sim.add_argument("--minimal", action="store_true", help="send only start{callSid} and media{payload}")
    pace = sim.add_mutually_exclusive_group()
    pace.add_argument(
        "--fast",
        action="store_true",
        help=f"send at {FAST_SPEED:g}x real time, as fast as a relay's default audio buffer absorbs",
    )
    pace.add_argument(
        "--speed", type=float, default=1.0, help="pace relative to real time (default 1.0; 0: unpaced, may drop audio)"
    )
    sim.add_argument(
        "--linger", type=float, default=10.0, help="at most this long after the call, wait for its last messages"
    )

    dem = sub.add_parser("demo", help="run the relay offline and play the bundled sample call")
    dem.add_argument("--file", help="call recording to play (default: the bundled sample call)")
    dem.add_argument(
        "--engine", choices=["local", "openai"], default="local", help="offline engine (default) or OpenAI"
    )
    dem.add_argument("--port", type=int, default=8080, help="port for the relay and its console (0: any)")
    dem.add_argument("--fast", action="store_true", help="play the call faster than real time")
    dem.add_argument("--hold", action="store_true", help="keep the relay and its console running after the call")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2

    from relay.logs import configure_logging, secrets_from_settings

    level = {"serve": settings.log_level, "simulate": "WARNING"}.get(args.command, "ERROR")
    configure_logging(level, secrets_from_settings(settings))
    try:
        if args.command == "demo" and args.file is None:
            from relay.bundled import bundled_sample_call

            args.file = str(bundled_sample_call())
        if args.command == "serve":
            return _run(serve(settings), settings)
        if args.command == "simulate":
            return _run(simulate(args, settings), settings)
        return _run(demo(args, settings), settings)
    except ConfigurationError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
