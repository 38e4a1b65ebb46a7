"""`relay` console script: `relay serve` runs the service with settings from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from aiohttp import web

from .settings import Settings, SettingsError, load_settings

log = logging.getLogger("relay")


def _secrets(settings: Settings) -> list[str]:
    values = [
        settings.openai_api_key,
        settings.twilio_auth_token,
        settings.twilio_api_secret,
        settings.media_api_key,
    ]
    return [v.get_secret_value() for v in values if v is not None]


async def serve(settings: Settings) -> int:
    from .app import RELAY, create_app, drain

    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    state = app[RELAY]
    log.info("relay listening", extra={"host": settings.host, "port": settings.port})

    stop = asyncio.Event()
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            # Readiness flips at once; the drain itself runs below.
            state.draining = True
            log.info("shutdown requested: draining", extra={"deadline_s": settings.drain_deadline_s})
            stop.set()
        else:
            log.warning("second shutdown signal: exiting now")
            os._exit(1)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    await drain(state, settings.drain_deadline_s)
    await runner.cleanup()
    log.info("relay stopped")
    return 0


def _run(coro_factory: object, settings: Settings) -> int:
    if settings.use_uvloop:
        try:
            import uvloop

            return uvloop.run(coro_factory)  # type: ignore[arg-type]
        except ImportError:
            log.warning("uvloop not installed; using asyncio's default loop")
    return asyncio.run(coro_factory)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay", description="Twilio Flex agent-assist relay")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the relay with settings from the environment")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2

    from .logs import configure_logging

    configure_logging(settings.log_level, _secrets(settings))
    if args.command == "serve":
        return _run(serve(settings), settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
