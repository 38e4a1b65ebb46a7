"""`/console`: watch calls live, like an agent's side panel.

Hub mode (Twilio Sync not configured: local evaluation): the page reads `/console/events`,
a Server-Sent Events feed of the in-process hub, and `/console/calls`. Those two exist only
in hub mode, so a production relay never serves transcripts without Flex authentication.
Sync mode: the page asks for a Flex token and a call SID, gets a Sync token from `/token`,
and subscribes to the call's real Sync stream with the official twilio-sync browser SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import web

from .app import RELAY

SYNC_SDK_URL = "https://cdn.jsdelivr.net/npm/twilio-sync@4.0.1/builds/twilio-sync.min.js"


async def console_page(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    mode = "sync" if state.sync is not None else "hub"
    html = PAGE.replace("__MODE__", mode).replace("__SYNC_SDK__", SYNC_SDK_URL)
    html = html.replace("__STREAM_TEMPLATE__", state.settings.sync_stream_name)
    return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})


async def console_calls(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    if state.sync is not None or state.hub is None:
        return web.json_response({"error": "the console feed is served only in hub mode"}, status=404)
    hub = state.hub
    calls = [{"call_sid": sid, "active": sid in hub.active_calls, "messages": hub.history(sid)} for sid in hub.calls()]
    return web.json_response({"calls": calls})


async def console_events(request: web.Request) -> web.StreamResponse:
    state = request.app[RELAY]
    if state.sync is not None or state.hub is None:
        return web.json_response({"error": "the console feed is served only in hub mode"}, status=404)
    only_call = request.query.get("call_sid")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    queue = state.hub.subscribe()
    try:
        # Replay what this call (or every kept call) has said so far, then go live.
        sids = [only_call] if only_call else state.hub.calls()
        for sid in sids:
            for message in state.hub.history(sid):
                await response.write(_sse(message))
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if only_call and message.get("call_sid") != only_call:
                continue
            await response.write(_sse(message))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        state.hub.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _sse(message: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(message) + b"\n\n"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console", console_page)
    app.router.add_get("/console/calls", console_calls)
    app.router.add_get("/console/events", console_events)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Agent assist console</title>
<style>
  :root { --bg:#f4f5f7; --card:#fff; --ink:#1f2430; --muted:#667; --accent:#0263e0; --ok:#14804a; --warn:#b25000; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--ink); }
  header { padding:12px 20px; background:#121c2d; color:#fff; display:flex; gap:16px; align-items:baseline; }
  header h1 { font-size:18px; margin:0; }
  header .mode { color:#9fb0c8; font-size:13px; }
  main { display:flex; flex-wrap:wrap; gap:16px; padding:16px; }
  .empty { color:var(--muted); padding:24px; }
  .call { background:var(--card); border-radius:10px; box-shadow:0 1px 3px rgba(0,0,0,.12); width:min(560px,100%);
          display:flex; flex-direction:column; max-height:85vh; }
  .call h2 { font-size:14px; margin:0; padding:10px 14px; border-bottom:1px solid #e3e6ea; display:flex; justify-content:space-between; }
  .state { font-weight:600; font-size:12px; text-transform:uppercase; }
  .state.started, .state.recovered { color:var(--ok); } .state.degraded { color:var(--warn); } .state.ended { color:var(--muted); }
  .body { overflow:auto; padding:10px 14px; display:flex; flex-direction:column; gap:8px; }
  .line { font-size:14px; } .line .who { font-weight:600; margin-right:6px; }
  .line.customer .who { color:var(--accent); } .line.agent .who { color:#6b3fa0; } .line.partial { color:var(--muted); font-style:italic; }
  .suggestion { border-left:4px solid var(--accent); background:#eef4fe; border-radius:6px; padding:8px 10px; }
  .suggestion .q { font-size:12px; color:var(--muted); margin-bottom:2px; }
  .suggestion .a { font-weight:500; }
  form { display:flex; gap:8px; padding:16px; flex-wrap:wrap; } form[hidden] { display:none; }
  input { padding:6px 8px; min-width:260px; }
</style>
</head>
<body>
<header><h1>Agent assist console</h1><span class="mode" id="mode">__MODE__ mode</span></header>
<form id="sync-form" hidden>
  <input id="flex-token" placeholder="Flex token" autocomplete="off">
  <input id="call-sid" placeholder="Call SID (CA…)">
  <button type="submit">Watch call</button>
</form>
<main id="calls"><div class="empty" id="empty">Waiting for calls…</div></main>
<script>
"use strict";
const MODE = "__MODE__";
const STREAM_TEMPLATE = "__STREAM_TEMPLATE__";
const panels = new Map();
const seen = new Map();

function panel(callSid) {
  let p = panels.get(callSid);
  if (p) return p;
  document.getElementById("empty")?.remove();
  const el = document.createElement("section");
  el.className = "call"; el.dataset.callSid = callSid;
  el.innerHTML = '<h2><span class="sid"></span><span class="state">…</span></h2><div class="body"></div>';
  el.querySelector(".sid").textContent = callSid;
  document.getElementById("calls").prepend(el);
  p = { el, body: el.querySelector(".body"), state: el.querySelector(".state"), partials: new Map(), parts: new Map() };
  panels.set(callSid, p);
  return p;
}

function render(m) {
  if (!m || !m.call_sid) return;
  const key = m.call_sid + ":" + m.seq;
  if (seen.has(key)) return;  // Sync may redeliver: seq de-duplicates
  seen.set(key, true);
  const p = panel(m.call_sid);
  if (m.type === "status") {
    p.state.textContent = m.state; p.state.className = "state " + m.state; p.state.title = m.reason || "";
  } else if (m.type === "transcript") {
    let line = p.partials.get(m.id);
    if (!line) {
      line = document.createElement("div");
      line.innerHTML = '<span class="who"></span><span class="text"></span>';
      p.body.append(line);
      p.partials.set(m.id, line);
    }
    line.className = "line " + m.speaker + (m.final ? "" : " partial");
    line.querySelector(".who").textContent = m.speaker === "agent" ? "Agent" : "Customer";
    line.querySelector(".text").textContent = m.text;
    if (m.final) p.partials.delete(m.id);
  } else if (m.type === "suggestion") {
    let answer = m.answer;
    if (m.parts) {  // long answers arrive in parts: join them in order
      const got = p.parts.get(m.id) || []; got[m.part - 1] = m.answer; p.parts.set(m.id, got);
      if (got.filter(x => x !== undefined).length < m.parts) return;
      answer = got.join("");
    }
    const card = document.createElement("div");
    card.className = "suggestion";
    card.innerHTML = '<div class="q"></div><div class="a"></div>';
    card.querySelector(".q").textContent = m.question;
    card.querySelector(".a").textContent = answer;
    p.body.append(card);
  }
  p.body.scrollTop = p.body.scrollHeight;
}

if (MODE === "hub") {
  const events = new EventSource("/console/events");
  events.onmessage = (e) => render(JSON.parse(e.data));
} else {
  const form = document.getElementById("sync-form");
  form.hidden = false;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const flexToken = document.getElementById("flex-token").value.trim();
    const callSid = document.getElementById("call-sid").value.trim();
    const r = await fetch("/token", { headers: { Authorization: "Bearer " + flexToken } });
    if (!r.ok) { alert("Token refused: " + r.status); return; }
    const { token } = await r.json();
    await loadSdk();
    const client = new Twilio.Sync.Client(token);
    client.on("tokenAboutToExpire", async () => {
      const again = await fetch("/token", { headers: { Authorization: "Bearer " + flexToken } });
      if (again.ok) client.updateToken((await again.json()).token);
    });
    const stream = await client.stream({ id: STREAM_TEMPLATE.replace("{call_sid}", callSid), mode: "open_or_create", ttl: 3600 });
    panel(callSid);
    stream.on("messagePublished", (ev) => render(ev.message.data));
  });
}

function loadSdk() {
  return new Promise((resolve, reject) => {
    if (window.Twilio && Twilio.Sync) return resolve();
    const s = document.createElement("script");
    s.src = "__SYNC_SDK__"; s.onload = resolve; s.onerror = reject;
    document.head.append(s);
  });
}
</script>
</body>
</html>
"""
