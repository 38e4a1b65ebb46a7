"use strict";
const MODE = document.body.dataset.mode;
const STREAM_TEMPLATE = document.body.dataset.streamTemplate;
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
    p.el.classList.toggle("ended", m.state === "ended");
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
    card.innerHTML = '<div class="q"></div><div class="a"></div><div class="src"></div>';
    card.querySelector(".q").textContent = m.question;
    card.querySelector(".a").textContent = answer;
    renderSources(card.querySelector(".src"), Array.isArray(m.sources) ? m.sources : []);
    p.body.append(card);
  } else if (m.type === "insight") {
    renderInsight(p, m);
  } else if (m.type === "summary") {
    const whole = joinSummary(p, m);
    if (whole) renderWrapUp(p, whole);
  }
  p.body.scrollTop = p.body.scrollHeight;
}

// ---------------------------------------------------------------- a card's sources: file › heading, click to read

const passages = new Map();  // passage id → Promise of the passage (or null)

function passageOf(id) {
  if (!passages.has(id)) {
    passages.set(id, fetch("/knowledge/passage?id=" + encodeURIComponent(id), { headers: recordsHeaders() })
      .then(r => { if (!r.ok) { passages.delete(id); return null; } return r.json(); })
      .catch(() => { passages.delete(id); return null; }));
  }
  return passages.get(id);
}

function whereOf(p) { return p.file + (p.heading ? " › " + p.heading : ", line " + p.line); }

function renderSources(box, sources) {
  box.replaceChildren();
  if (!sources.length) return;
  box.append("Source: ");
  sources.forEach((s, i) => {
    if (i) box.append(" · ");
    const link = document.createElement("button");
    link.type = "button"; link.className = "source"; link.dataset.id = s.id; link.title = "Read the passage";
    link.textContent = String(s.id).split("#")[0];  // the file, until the passage says its heading
    passageOf(s.id).then(p => { if (p) link.textContent = whereOf(p); });
    link.addEventListener("click", () => togglePassage(box.parentElement, s.id));
    box.append(link);
  });
}

async function togglePassage(card, id) {
  const open = Array.from(card.querySelectorAll(".passage")).find(el => el.dataset.id === id);
  if (open) { open.remove(); return; }
  const box = document.createElement("div");
  box.className = "passage"; box.dataset.id = id;
  card.append(box);
  const p = await passageOf(id);
  if (!p) { box.textContent = "This passage is not in the knowledge in force."; return; }
  const where = document.createElement("div");
  where.className = "where"; where.textContent = whereOf(p);
  box.append(where, p.text);
}

function renderInsight(p, m) {
  // A later insight with the same id updates it (a question becomes answered).
  let el = p.el.querySelector('.insight[data-id="' + CSS.escape(m.id || "") + '"]');
  if (!el) {
    el = document.createElement("div");
    el.dataset.id = m.id || "";
    p.body.append(el);
  }
  el.className = "insight " + m.kind + (m.answered ? " answered" : "");
  const label = { question: m.answered ? "Question ✓" : "Question", action_item: "Action", follow_up: "Follow-up" }[m.kind] || m.kind;
  const due = m.due ? " (due " + m.due + ")" : "";
  el.textContent = label + ": " + m.text + due;
}

function joinSummary(p, m) {
  // A long wrap-up arrives in parts: the summary text and each list are concatenated in order.
  if (!m.parts) return m;
  const got = p.parts.get("summary") || []; got[m.part - 1] = m; p.parts.set("summary", got);
  if (got.filter(x => x !== undefined).length < m.parts) return null;
  const whole = Object.assign({}, got[0], { summary: got.map(x => x.summary || "").join("") });
  for (const name of ["questions", "action_items", "follow_ups", "topics"]) whole[name] = got.flatMap(x => x[name] || []);
  return whole;
}

function renderWrapUp(p, w) {
  const box = document.createElement("div");
  box.className = "wrapup " + w.status;
  const add = (cls, text) => { const d = document.createElement("div"); d.className = cls; d.textContent = text; box.append(d); return d; };
  add("title", "Wrap-up" + (w.disposition ? " · " + w.disposition : ""));
  if (w.status !== "ok") { add("reason", "Not available: " + (w.reason || "unknown")); p.body.append(box); return; }
  add("text", w.summary || "");
  for (const q of w.questions || []) add("item question" + (q.answered ? " answered" : ""), (q.answered ? "✓ " : "○ ") + q.text);
  for (const a of w.action_items || []) add("item action", "Action (" + a.owner + "): " + a.text + (a.due ? " — due " + a.due : ""));
  for (const f of w.follow_ups || []) add("item follow-up", "Follow-up: " + f);
  const mood = w.sentiment ? "Sentiment " + w.sentiment.start + " → " + w.sentiment.end : "";
  add("meta", [(w.topics || []).length ? "Topics: " + w.topics.join(", ") : "", mood].filter(Boolean).join(" · "));
  p.body.append(box);
}

// ---------------------------------------------------------------- hub mode: access

// A console reachable from other machines needs its token. `/console#token=…` trades it for a
// session cookie at once (a fragment never reaches the server or a proxy's logs) and drops it
// from the address bar; otherwise the page asks for it when the relay answers 401.
async function openSession(token) {
  const r = await fetch("/console/session", { method: "POST", headers: { Authorization: "Bearer " + token } });
  return r.ok;
}

async function hubAccess() {
  if (location.hash.startsWith("#token=")) {
    const token = decodeURIComponent(location.hash.slice(7));
    history.replaceState(null, "", location.pathname + location.search);
    await openSession(token);
  }
  const r = await fetch("/console/calls");
  if (r.status !== 401 && r.status !== 403) return true;
  const form = document.getElementById("console-login");
  form.hidden = false;
  document.getElementById("calls").hidden = true;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (await openSession(document.getElementById("console-token").value.trim())) location.reload();
    else form.querySelector(".why").textContent = "Token refused.";
  });
  return false;
}

if (MODE === "hub") {
  // A token link opened in a tab already showing the console changes only the fragment.
  window.addEventListener("hashchange", () => { if (location.hash.startsWith("#token=")) location.reload(); });
  hubAccess().then((allowed) => {
    if (!allowed) return;
    const events = new EventSource("/console/events");
    events.onmessage = (e) => render(JSON.parse(e.data));
    window.addEventListener("hashchange", showTab);
    showTab();
  });
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
    s.src = document.body.dataset.syncSdk; s.onload = resolve; s.onerror = reject;
    document.head.append(s);
  });
}

// ---------------------------------------------------------------- history: call records

function recordsBase() { return MODE === "hub" ? "/console/records" : "/calls"; }

function recordsHeaders() {
  const token = document.getElementById("flex-token")?.value.trim();
  return MODE === "hub" || !token ? {} : { Authorization: "Bearer " + token };
}

function showTab() {
  const history = location.hash === "#history";
  document.getElementById("history").hidden = !history;
  document.getElementById("calls").hidden = history;
  if (history && !document.getElementById("history-results").dataset.loaded) searchRecords();
}

async function searchRecords() {
  const params = new URLSearchParams();
  const q = document.getElementById("history-q").value.trim();
  const agent = document.getElementById("history-agent").value.trim();
  if (q) params.set("q", q);
  if (agent) params.set("agent", agent);
  const results = document.getElementById("history-results");
  results.dataset.loaded = "1";
  const r = await fetch(recordsBase() + "?" + params, { headers: recordsHeaders() });
  if (!r.ok) { results.textContent = "Records unavailable: " + r.status; return; }
  const page = await r.json();
  results.replaceChildren();
  if (!page.calls.length) { results.textContent = "No calls found."; return; }
  if (!q) showTotals(results, params);
  for (const call of page.calls) {
    const row = document.createElement("div");
    row.className = "record";
    row.dataset.callSid = call.call_sid;
    const when = call.started_at ? new Date(call.started_at * 1000).toLocaleString() : "";
    row.innerHTML = '<div class="head"></div><div class="facts"></div><div class="sum"></div><div class="hits"></div>';
    row.querySelector(".head").textContent = [when, call.call_sid].filter(Boolean).join(" · ");
    const duration = call.ended_at && call.started_at ? formatDuration(call.ended_at - call.started_at) : "not ended";
    fact(row, "duration", "Duration", duration);
    fact(row, "agent", "Agent", call.worker || "—");
    fact(row, "disposition", "Disposition", call.disposition || "—");
    fact(row, "cost", "Cost", formatCost(call.cost_usd));
    row.querySelector(".sum").textContent = call.summary || "";
    row.querySelector(".hits").textContent = (call.matches || []).map(m => "“" + m.text + "”").join("  ");
    row.addEventListener("click", () => openRecord(call.call_sid));
    results.append(row);
  }
}

function fact(row, cls, label, value) {
  const span = document.createElement("span");
  span.className = cls;
  span.innerHTML = '<span class="label"></span><span class="value"></span>';
  span.querySelector(".label").textContent = label;
  span.querySelector(".value").textContent = value;
  row.querySelector(".facts").append(span);
}

// What the listed calls cost together (GET …?totals=true over the same agent); shown above them.
async function showTotals(results, params) {
  params.set("totals", "true");
  const r = await fetch(recordsBase() + "?" + params, { headers: recordsHeaders() });
  if (!r.ok) return;
  const t = (await r.json()).totals;
  const line = document.createElement("div");
  line.className = "totals";
  line.textContent = t.calls + (t.calls === 1 ? " call" : " calls") + " · " + formatCost(t.cost_usd) +
    (t.calls_priced < t.calls ? " (" + (t.calls - t.calls_priced) + " without a price)" : "");
  results.prepend(line);
}

// USD as billed at the price table; "—" when the call has no cost (a model without a price,
// the offline engine, a call recorded before costs were kept).
function formatCost(usd) {
  if (usd === null || usd === undefined) return "—";
  return "$" + (usd < 0.1 ? usd.toFixed(4) : usd.toFixed(2));
}

function renderUsage(box, usage) {
  const el = document.createElement("div");
  el.className = "usage";
  const n = (v) => Number(v || 0).toLocaleString("en-US");
  const parts = ["Cost " + formatCost(usage.cost_usd), usage.model,
    n(usage.audio_in + usage.audio_in_cached) + " audio tokens in (" + n(usage.audio_in_cached) + " cached)",
    n(usage.text_in + usage.text_in_cached) + " text tokens in (" + n(usage.text_in_cached) + " cached)",
    n(usage.text_out) + " out", Number(usage.transcription_s || 0).toFixed(0) + " s transcribed"];
  el.textContent = parts.join(" · ");
  box.append(el);
}

function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
  return h ? h + ":" + String(m).padStart(2, "0") + ":" + r : m + ":" + r;
}

async function openRecord(callSid) {
  const box = document.getElementById("history-call");
  const base = recordsBase() + "/" + encodeURIComponent(callSid);
  const r = await fetch(base, { headers: recordsHeaders() });
  if (!r.ok) { box.hidden = false; box.textContent = "Record unavailable: " + r.status; return; }
  const rec = await r.json();
  box.hidden = false;
  box.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = callSid;
  box.append(title);
  if (rec.usage) renderUsage(box, rec.usage);
  // One player per part: a call continued by another bridge (replica) has several files.
  const parts = Array.isArray(rec.audio_parts) ? rec.audio_parts : (rec.has_audio ? [{ part: 0 }] : []);
  const players = [];
  for (const [i, part] of parts.entries()) {
    if (parts.length > 1) {
      const label = document.createElement("div");
      label.className = "part-label"; label.textContent = "Part " + (i + 1) + " of " + parts.length;
      box.append(label);
    }
    const player = document.createElement("audio");
    player.controls = true;
    player.className = "record-audio";
    player.dataset.part = part.part;
    const url = base + "/audio/" + part.part;
    if (MODE === "hub") player.src = url;  // the session cookie, if any, goes along
    else fetch(url, { headers: recordsHeaders() }).then(a => a.blob()).then(b => { player.src = URL.createObjectURL(b); });
    box.append(player);
    players.push(player);
  }
  if (!parts.length) {
    const note = document.createElement("div");
    note.className = "no-audio";
    note.textContent = rec.audio_recording === false
      ? "Audio was not recorded: call recording is off on this relay (RELAY_RECORD_AUDIO=false)."
      : "No audio was kept for this call.";
    box.append(note);
  }
  const audio = players[0] || null;
  // One timeline: lines and suggestion cards in time order; a line click seeks the audio.
  const items = rec.transcript.map(l => ({ at: l.at_s, line: l }))
    .concat(rec.suggestions.map(s => ({ at: s.at_s, suggestion: s })))
    .sort((a, b) => a.at - b.at);
  const timeline = document.createElement("div");
  timeline.className = "timeline";
  for (const item of items) {
    if (item.line) {
      const line = document.createElement("div");
      line.className = "line " + item.line.speaker;
      line.dataset.at = item.at;
      line.innerHTML = '<span class="when"></span><span class="who"></span><span class="text"></span>';
      line.querySelector(".when").textContent = formatAt(item.at);
      line.querySelector(".who").textContent = item.line.speaker === "agent" ? "Agent" : "Customer";
      line.querySelector(".text").textContent = item.line.text;
      line.addEventListener("click", () => { if (audio) { audio.currentTime = item.at; audio.play().catch(() => {}); } });
      timeline.append(line);
    } else {
      const s = item.suggestion;
      const card = document.createElement("div");
      card.className = "suggestion";
      card.innerHTML = '<div class="q"></div><div class="a"></div><div class="src"></div>';
      card.querySelector(".q").textContent = s.question;
      card.querySelector(".a").textContent = s.answer;
      renderSources(card.querySelector(".src"), Array.isArray(s.sources) ? s.sources : []);
      timeline.append(card);
    }
  }
  box.append(timeline);
  if (rec.wrapup) {
    const holder = { body: box, el: box, parts: new Map() };
    renderWrapUp(holder, rec.wrapup);
  }
}

function formatAt(seconds) {
  const s = Math.floor(seconds);
  return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
}

document.getElementById("history-form").addEventListener("submit", (e) => { e.preventDefault(); searchRecords(); });
if (MODE !== "hub") {  // hub mode shows a tab once it knows it may (hubAccess above)
  window.addEventListener("hashchange", showTab);
  showTab();
}
