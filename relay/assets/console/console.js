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
