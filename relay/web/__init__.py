"""The aiohttp shell: the app factory and its state, the media WebSocket, the HTTP API, the
console, the records and wrap-up APIs, OpenAPI, the in-process hub, metrics and the stall
monitor.

May import: every domain package; never relay.cli.
"""
