"""HTTP endpoints: health, readiness, metrics, and the Flex-facing API."""

from __future__ import annotations

from aiohttp import web

from .app import RELAY


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    body = {
        "ready": state.ready,
        "draining": state.draining,
        "active_calls": len(state.calls),
        "max_calls": state.settings.max_calls,
    }
    return web.json_response(body, status=200 if state.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    return web.Response(body=state.metrics.render(), content_type="text/plain", charset="utf-8")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
