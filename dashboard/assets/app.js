// Proteus dashboard. Every value shown comes from the agent's API, and much of it from
// attackers (paths, headers, EVE signatures, file names): it is only ever put on the page as
// text (textContent, createTextNode), never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const FEED_MAX = 200;

// el builds an element whose content is text only.
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { "Accept": "application/json" } });
  if (r.status === 401) { document.title = "Proteus: not logged in"; throw new Error("not logged in (run `proteus dashboard` for a login link)"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

function age(s) {
  if (s < 90) return Math.round(s) + "s";
  if (s < 5400) return Math.round(s / 60) + "m";
  return (s / 3600).toFixed(1) + "h";
}

function fmtTime(t) { return t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "-"; }
function dash(v) { return v === undefined || v === null || v === "" ? "-" : v; }
function num(v, d) { return typeof v === "number" ? v.toFixed(d) : "-"; }

// Executors.
async function refreshStatus() {
  let st;
  try { st = await api("/api/v1/status"); } catch (e) { $("summary").textContent = e.message; return; }
  $("summary").textContent = st.executors.length + " executors, c* = " + st.cstar +
    ", defense success β_y = " + num(st.defense_success, 3) + (st.vigilance ? ", vigilance " + st.vigilance.level : "");
  const tb = $("executors").tBodies[0];
  clear(tb);
  for (const x of st.executors) {
    const tr = el("tr");
    tr.dataset.id = x.id;
    const q = x.state === "quarantined";
    if (q) tr.className = "quarantined";
    const v = x.vote || null;
    for (const c of [x.id, x.variant, x.address, age(x.age_s), x.state, v ? num(v.trust, 3) : "-",
      v ? v.requests : "-", v ? v.dissents : "-", q ? "yes" : "no"]) tr.appendChild(el("td", c));
    tb.appendChild(tr);
  }
}

// Decisions list.
function filterQuery() {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData($("filters"))) if (v) p.set(k, v);
  p.set("limit", "200");
  return p.toString();
}

async function refreshDecisions() {
  let ds;
  try { ds = (await api("/api/v1/decisions?" + filterQuery())).decisions; $("filter-error").textContent = ""; }
  catch (e) { $("filter-error").textContent = e.message; return; }
  const tb = $("decisions").tBodies[0];
  clear(tb);
  for (const d of ds.slice().reverse()) {
    const tr = el("tr");
    tr.dataset.id = d.id;
    const t = el("td");
    const a = el("a", fmtTime(d.time));
    a.href = "#/decision/" + encodeURIComponent(d.id);
    t.appendChild(a);
    tr.appendChild(t);
    tr.appendChild(el("td", d.asset));
    tr.appendChild(el("td", dash(d.source)));
    tr.appendChild(el("td", d.verdict, "verdict-" + d.verdict));
    for (const c of [num(d.probability, 3), d.stage_id ? d.stage + " (" + d.stage_id + ")" : "-", dash(d.strategy), dash(d.signal),
      (d.countermeasures || []).map((c) => c.kind + (c.target ? " " + c.target : "") + (c.error ? " (failed)" : "")).join(", ") || "-",
      (d.evidence || []).length]) tr.appendChild(el("td", c));
    tb.appendChild(tr);
  }
}

// Timeline of the last day's decisions by verdict (stacked bars) with their countermeasures
// (a line), and the top sources; drawn as SVG by this script, no library.
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

async function refreshTimeline() {
  let tl;
  try { tl = await api("/api/v1/timeline?since=24h&buckets=48&top=10"); } catch (e) { $("timeline-span").textContent = e.message; return; }
  $("timeline-span").textContent = "last 24 h, " + Math.round(tl.bucket_s / 60) + " min per bar";
  const W = 720, H = 150, L = 36, B = 22, T = 8, R = 8;
  const bs = tl.buckets || [];
  let max = 1;
  for (const b of bs) max = Math.max(max, b.act + b.defer + b.ignore, b.countermeasures);
  const x = (i) => L + (W - L - R) * i / Math.max(1, bs.length);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const bw = Math.max(1, (W - L - R) / Math.max(1, bs.length) - 1);
  const g = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", "aria-label": "decisions over time" });
  g.appendChild(svg("line", { x1: L, y1: y(0), x2: W - R, y2: y(0), class: "axis" }));
  g.appendChild(svg("text", { x: L - 4, y: y(max) + 4, "text-anchor": "end", class: "tick" }, max));
  g.appendChild(svg("text", { x: L - 4, y: y(0), "text-anchor": "end", class: "tick" }, 0));
  if (bs.length) {
    g.appendChild(svg("text", { x: L, y: H - 6, class: "tick" }, fmtTime(bs[0].start)));
    g.appendChild(svg("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "tick" }, fmtTime(tl.until)));
  }
  const line = [];
  bs.forEach((b, i) => {
    let base = 0;
    for (const [k, v] of [["act", b.act], ["defer", b.defer], ["ignore", b.ignore]]) {
      if (!v) continue;
      const r = svg("rect", { x: x(i), y: y(base + v), width: bw, height: y(base) - y(base + v), class: "bar-" + k });
      r.appendChild(svg("title", {}, fmtTime(b.start) + ": " + v + " " + k));
      g.appendChild(r);
      base += v;
    }
    line.push((x(i) + bw / 2).toFixed(1) + "," + y(b.countermeasures).toFixed(1));
  });
  if (line.length) g.appendChild(svg("polyline", { points: line.join(" "), class: "line-countermeasures" }));
  let lx = L + 6;
  for (const [k, label] of [["act", "act"], ["defer", "defer"], ["ignore", "ignore"], ["countermeasures", "countermeasures"]]) {
    g.appendChild(svg("rect", { x: lx, y: T, width: 10, height: 10, class: k === "countermeasures" ? "key-countermeasures" : "bar-" + k }));
    g.appendChild(svg("text", { x: lx + 14, y: T + 9, class: "tick" }, label));
    lx += 24 + label.length * 7;
  }
  const box = $("timeline");
  clear(box);
  box.appendChild(g);
  const tb = $("top-sources").tBodies[0];
  clear(tb);
  if (!(tl.top_sources || []).length) { const tr = el("tr"); tr.appendChild(el("td", "none in the last 24 h")); tb.appendChild(tr); }
  for (const s of tl.top_sources || []) {
    const tr = el("tr");
    tr.dataset.source = s.source;
    const td = el("td");
    const a = el("a", s.source);
    a.href = "#/";
    a.addEventListener("click", (e) => { e.preventDefault(); $("filters").elements.source.value = s.source; refreshDecisions(); });
    td.appendChild(a);
    tr.appendChild(td);
    for (const c of [s.decisions, s.acts, fmtTime(s.last)]) tr.appendChild(el("td", c));
    tb.appendChild(tr);
  }
}

// One decision: the same story as `proteus decisions show ID`.
function fact(dl, k, v) { dl.appendChild(el("dt", k)); dl.appendChild(el("dd", v)); }

async function showDecision(id) {
  $("overview").hidden = true;
  $("decision").hidden = false;
  const facts = $("decision-facts"), cms = $("decision-countermeasures"), evs = $("decision-evidence"), sol = $("decision-solution");
  for (const n of [facts, cms, evs]) clear(n);
  sol.textContent = "";
  let d;
  try { d = await api("/api/v1/decisions/" + encodeURIComponent(id)); }
  catch (e) { $("decision-title").textContent = "decision " + id + ": " + e.message; return; }
  $("decision-title").textContent = "decision " + d.id + " at " + fmtTime(d.time);
  fact(facts, "asset", d.asset);
  fact(facts, "source", dash(d.source));
  fact(facts, "verdict", "Pr(attack) = " + num(d.probability, 4) + "; thresholds α = " + num(d.alpha, 4) + ", β = " + num(d.beta, 4) + " → " + d.verdict);
  fact(facts, "stage", d.stage + " (" + dash(d.stage_id) + "), observed attack " + dash(d.attack));
  fact(facts, "strategy", dash(d.strategy) + ", signal " + dash(d.signal));
  const det = d.detail || {};
  if (d.detail) {
    fact(facts, "rule", dash(det.rule) + " (event " + det.events + " of this source and asset; " + num(det.observed_rate_per_minute, 2) + " events/min)");
    if (det.transition) fact(facts, "stage change", dash(det.transition.from) + " → " + det.transition.to + " (η-path probability " + num(det.transition.path_probability, 3) + ")");
    const l = det.live || {};
    fact(facts, "live parameters", l.cstar > 0 ? "c* = " + l.cstar + ", reconfiguration rate a = " + num(l.rate, 2) + ", attack intensity π = " + num(l.intensity, 2) : "none (the model's own)");
    if (det.reading) fact(facts, "model reading", "signal cost " + dash(det.reading.signal_cost) + ", deception cost " + dash(det.reading.deception_cost));
    const c = det.choice;
    if (c) fact(facts, "game", "defender type " + c.defender_type + " plays " + c.defense + " with signal " + c.signal + " against " +
      c.predicted_attack + "; gains defense " + num(c.defense_gain, 1) + ", attack " + num(c.attack_gain, 1));
    if (det.unmapped_strategy) fact(facts, "note", "the strategy has no countermeasures in engine.strategies: vigilance raised instead");
    if (det.peer_only) fact(facts, "note", "Pr(attack) reached α on peer sightings only: the act became a defer");
  }
  if (!(d.countermeasures || []).length) cms.appendChild(el("li", "none"));
  let active = null; // IDs of the active countermeasures; null when the agent runs none
  try { active = new Set((await api("/api/v1/actions")).map((a) => a.id)); } catch (e) { active = null; }
  for (const c of d.countermeasures || []) {
    const li = el("li");
    li.appendChild(el("span", c.kind + " " + dash(c.target) + (c.expires ? " until " + fmtTime(c.expires) : "") + (c.error ? " FAILED: " + c.error : "")));
    li.dataset.action = dash(c.id);
    for (const r of d.reverts || []) {
      if (r.action === c.id) li.appendChild(el("span", " reverted early at " + fmtTime(r.time) + " by " + r.by, "reverted"));
    }
    if (c.id && active && active.has(c.id)) {
      const b = el("button", "revert now", "revert");
      b.type = "button";
      b.addEventListener("click", () => revert(d.id, c.id, b));
      li.appendChild(b);
    }
    cms.appendChild(li);
  }
  for (const e of d.evidence || []) {
    const li = el("li");
    li.appendChild(el("div", fmtTime(e.time) + " " + e.sensor + " " + dash(e.kind) + ": " + e.summary));
    if (e.excerpt) li.appendChild(el("div", e.excerpt, "excerpt"));
    evs.appendChild(li);
  }
  sol.textContent = det.solution ? JSON.stringify(det.solution, null, 2) : "none";
}

// revert asks the agent to revert one countermeasure of a decision now: a state change, so it
// carries the header the agent's CSRF check asks for (the browser adds the Origin).
async function revert(id, action, button) {
  button.disabled = true;
  const r = await fetch("/api/v1/decisions/" + encodeURIComponent(id) + "/revert?action=" + encodeURIComponent(action),
    { method: "POST", credentials: "same-origin", headers: { "X-Proteus-Dashboard": "1", "Accept": "application/json" } });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    button.parentNode.appendChild(el("span", " revert failed: " + (body.error || "HTTP " + r.status), "error"));
    return;
  }
  showDecision(id);
}

function route() {
  const m = location.hash.match(/^#\/decision\/(.+)$/);
  if (m) { showDecision(decodeURIComponent(m[1])); return; }
  $("decision").hidden = true;
  $("overview").hidden = false;
  refreshDecisions();
  refreshTimeline();
}

// Live feed through the agent's event stream.
function feedLine(ev) {
  const a = ev.attrs || {};
  const parts = [];
  for (const k of Object.keys(a).slice(0, 8)) {
    let v = a[k];
    if (typeof v === "object") v = JSON.stringify(v);
    parts.push(k + "=" + String(v).slice(0, 160));
  }
  return fmtTime(ev.time) + " " + dash(ev.kind) + " " + (ev.subject || "") + " " + parts.join(" ");
}

let pending = null;
function soon(fn) { if (!pending) pending = setTimeout(() => { pending = null; fn(); }, 300); }

// The stream is asked for unnamed events (/api/v1/events?unnamed=1), so every kind the agent emits, today's
// and tomorrow's, arrives at onmessage and is shown; the kind is in the event's data.
function follow() {
  const es = new EventSource("/api/v1/events?unnamed=1");
  es.onopen = () => { $("stream").textContent = "stream: live"; $("stream").className = "badge up"; };
  es.onerror = () => { $("stream").textContent = "stream: reconnecting"; $("stream").className = "badge"; };
  es.onmessage = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (e) { return; }
    if (!ev || typeof ev !== "object") return;
    const k = String(ev.kind || "unknown");
    const feed = $("feed");
    const li = el("li", feedLine(ev), "kind-" + k.split(".")[0].replace(/[^a-z0-9-]/gi, ""));
    li.dataset.kind = k;
    feed.insertBefore(li, feed.firstChild);
    while (feed.childNodes.length > FEED_MAX) feed.removeChild(feed.lastChild);
    if (k.startsWith("executor.") || k.startsWith("gateway.")) soon(refreshStatus);
    if (k === "engine.decision" && !$("overview").hidden) { refreshDecisions(); refreshTimeline(); }
  };
}

// Logging out is a state change: it carries the header the agent's CSRF check asks for (the
// browser adds the Origin).
async function logout() {
  const r = await fetch("/logout", { method: "POST", credentials: "same-origin", headers: { "X-Proteus-Dashboard": "1" } });
  if (!r.ok) { $("summary").textContent = "log out failed: HTTP " + r.status; return; }
  document.body.textContent = "Logged out. Run `proteus dashboard` for a new login link.";
}

document.addEventListener("DOMContentLoaded", () => {
  $("logout").addEventListener("click", logout);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); refreshDecisions(); });
  window.addEventListener("hashchange", route);
  refreshStatus();
  setInterval(refreshStatus, 5000);
  setInterval(() => { if (!$("overview").hidden) refreshTimeline(); }, 30000);
  route();
  follow();
});
