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
    const sources = Array.isArray(m.sources) ? m.sources : [];
    card.querySelector(".src").textContent = sources.length ? "Source: " + sources.map(s => (s.title || s.id) + " (" + String(s.id).split("#")[0] + ")").join(" · ") : "";
    card.querySelector(".src").title = sources.map(s => s.id).join("\n");
    p.body.append(card);
  } else if (m.type === "insight") {
    renderInsight(p, m);
  } else if (m.type === "summary") {
    const whole = joinSummary(p, m);
    if (whole) renderWrapUp(p, whole);
  }
  p.body.scrollTop = p.body.scrollHeight;
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
  for (const call of page.calls) {
    const row = document.createElement("div");
    row.className = "record";
    row.dataset.callSid = call.call_sid;
    const when = call.started_at ? new Date(call.started_at * 1000).toLocaleString() : "";
    row.innerHTML = '<div class="head"></div><div class="sum"></div><div class="hits"></div>';
    row.querySelector(".head").textContent = [when, call.call_sid, call.worker || "", call.disposition || ""].filter(Boolean).join(" · ");
    row.querySelector(".sum").textContent = call.summary || "";
    row.querySelector(".hits").textContent = (call.matches || []).map(m => "“" + m.text + "”").join("  ");
    row.addEventListener("click", () => openRecord(call.call_sid));
    results.append(row);
  }
}

async function openRecord(callSid) {
  const box = document.getElementById("history-call");
  const r = await fetch(recordsBase() + "/" + callSid, { headers: recordsHeaders() });
  if (!r.ok) { box.hidden = false; box.textContent = "Record unavailable: " + r.status; return; }
  const rec = await r.json();
  box.hidden = false;
  box.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = callSid;
  box.append(title);
  let audio = null;
  if (rec.has_audio) {
    audio = document.createElement("audio");
    audio.controls = true;
    audio.className = "record-audio";
    if (MODE === "hub") audio.src = recordsBase() + "/" + callSid + "/audio";
    else fetch(recordsBase() + "/" + callSid + "/audio", { headers: recordsHeaders() })
      .then(a => a.blob()).then(b => { audio.src = URL.createObjectURL(b); });
    box.append(audio);
  }
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
      card.querySelector(".src").textContent = (s.sources || []).length ? "Source: " + s.sources.map(x => x.title || x.id).join(" · ") : "";
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
window.addEventListener("hashchange", showTab);
showTab();
