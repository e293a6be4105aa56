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

// linePlot draws series of [x, y] points as an SVG line plot with axes, a legend and a
// title per line (all text via textContent). opts: ymax (else the data's), yfmt, xfmt, label.
function linePlot(series, opts) {
  const W = 720, H = opts.height || 170, L = 44, B = 22, T = 22, R = 8;
  let x0 = Infinity, x1 = -Infinity, max = opts.ymax || 0;
  for (const s of series) for (const [x, y] of s.points) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); if (!opts.ymax) max = Math.max(max, y); }
  if (!(max > 0)) max = 1;
  if (!isFinite(x0)) { x0 = 0; x1 = 1; }
  if (x1 <= x0) x1 = x0 + 1;
  const x = (v) => L + (W - L - R) * (v - x0) / (x1 - x0);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const yf = opts.yfmt || ((v) => String(Math.round(v * 100) / 100));
  const xf = opts.xfmt || ((v) => String(Math.round(v * 100) / 100));
  const g = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", "aria-label": opts.label });
  g.appendChild(svg("line", { x1: L, y1: y(0), x2: W - R, y2: y(0), class: "axis" }));
  g.appendChild(svg("line", { x1: L, y1: y(0), x2: L, y2: y(max), class: "axis" }));
  for (const v of [0, max / 2, max]) {
    g.appendChild(svg("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), class: "grid" }));
    g.appendChild(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end", class: "tick" }, yf(v)));
  }
  g.appendChild(svg("text", { x: L, y: H - 6, class: "tick" }, xf(x0)));
  g.appendChild(svg("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "tick" }, xf(x1)));
  if (opts.xlabel) g.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "tick" }, opts.xlabel));
  let lx = L + 4;
  series.forEach((s, i) => {
    const cls = "series s" + (i % 8) + (s.dashed ? " dashed" : "");
    if (s.points.length) {
      const d = s.points.map(([px, py], k) => (k ? "L" : "M") + x(px).toFixed(1) + "," + y(Math.min(py, max)).toFixed(1)).join("");
      const p = svg("path", { d: d, class: cls });
      p.dataset.series = s.name;
      p.dataset.points = s.points.length;
      p.dataset.max = Math.max(...s.points.map(([, py]) => py));
      p.appendChild(svg("title", {}, s.name));
      g.appendChild(p);
    }
    g.appendChild(svg("line", { x1: lx, y1: 10, x2: lx + 14, y2: 10, class: cls }));
    g.appendChild(svg("text", { x: lx + 18, y: 14, class: "tick" }, s.name));
    lx += 30 + String(s.name).length * 6;
  });
  return g;
}

function hhmmss(ms) { return new Date(ms).toISOString().slice(11, 19); }

// Requests and dissent rates over time: the agent samples the voting front's counters.
let trafficEvery = 10000;
async function refreshTraffic() {
  let tr;
  try { tr = await api("/api/v1/traffic?points=240"); }
  catch (e) { $("traffic-span").textContent = e.message; return; }
  trafficEvery = Math.min(10000, Math.max(1000, tr.interval_s * 1000));
  const ps = tr.points || [];
  const last = tr.last;
  $("traffic-span").textContent = "per second, sampled every " + tr.interval_s + " s, the last " + age((Date.parse(tr.until) - (ps.length ? Math.max(Date.parse(tr.since), Date.parse(ps[0].time) - tr.interval_s * 1000) : Date.parse(tr.since))) / 1000) +
    (last ? "; totals: " + last.requests + " requests, " + last.dissents + " dissents, " + last.no_consensus + " without consensus, " + last.blocked + " blocked" : "");
  const pts = (k) => ps.map((p) => [Date.parse(p.time), p[k]]);
  const box = $("traffic");
  clear(box);
  box.appendChild(linePlot([
    { name: "requests/s", points: pts("requests_per_s") },
    { name: "dissents/s", points: pts("dissents_per_s") },
    { name: "no consensus/s", points: pts("no_consensus_per_s"), dashed: true },
    { name: "blocked/s", points: pts("blocked_per_s"), dashed: true },
  ], { label: "requests and dissent rates over time", xfmt: hhmmss, xlabel: "time (UTC)" }));
}

// Assets: each one's stage, the signal it sends and the game's choice; the evolution plot of
// the selected asset's stage game.
let selectedAsset = "";
async function refreshAssets() {
  let as;
  try { as = (await api("/api/v1/assets")).assets; }
  catch (e) {
    const tb = $("assets").tBodies[0];
    clear(tb);
    const tr = el("tr");
    tr.appendChild(el("td", e.message));
    tb.appendChild(tr);
    return;
  }
  const tb = $("assets").tBodies[0];
  clear(tb);
  if (!as.some((a) => a.asset === selectedAsset)) selectedAsset = as.length ? as[0].asset : "";
  for (const a of as) {
    const tr = el("tr");
    tr.dataset.asset = a.asset;
    if (a.asset === selectedAsset) tr.className = "selected";
    const td = el("td");
    const link = el("a", a.asset);
    link.href = "#/";
    link.addEventListener("click", (e) => { e.preventDefault(); selectedAsset = a.asset; refreshAssets(); });
    td.appendChild(link);
    tr.appendChild(td);
    const c = a.choice || {};
    for (const v of [a.stage ? a.stage_id + " (" + a.stage + ")" : "none", dash(a.signal), dash(c.defender_type), dash(c.defense),
      dash(c.predicted_attack), a.choice ? num(c.defense_gain, 1) + ", " + num(c.attack_gain, 1) : "-",
      a.decided_at ? fmtTime(a.decided_at) + " in stage " + a.decided_in_stage : "none"]) tr.appendChild(el("td", v));
    tb.appendChild(tr);
  }
  if (selectedAsset) refreshEvolution(selectedAsset);
}

async function refreshEvolution(name) {
  let ev;
  try { ev = await api("/api/v1/assets/" + encodeURIComponent(name) + "/evolution"); }
  catch (e) { $("evolution-title").textContent = e.message; return; }
  $("evolution-title").textContent = ev.asset + ", stage " + ev.stage_id + " (" + ev.stage + ")" + (ev.current ? "" : ", the first: the asset is in no stage now") +
    ": defender " + ev.defender_type + " sending " + ev.signal + " chooses " + ev.defense + " against " + ev.predicted_attack +
    "; proportions from uniform mixes over time (replicator dynamics)";
  const t = ev.t || [];
  const ser = (list, dashed) => (list || []).map((s) => ({ name: s.id, dashed: dashed, points: s.p.map((p, i) => [t[i], p]) }));
  const box = $("evolution");
  clear(box);
  box.dataset.asset = ev.asset;
  box.dataset.stage = ev.stage_id;
  box.appendChild(linePlot(ser(ev.attacks, false).concat(ser(ev.defenses, true)),
    { label: "evolution of the stage game", ymax: 1, height: 200,
      xlabel: "time (stage game normalised to payoff range 1); solid: attacks, dashed: defenses" }));
}

// Enclave peers and the trust this agent puts in their reports.
async function refreshPeers() {
  let pa;
  const tb = $("peers").tBodies[0], box = $("peers-plot");
  try { pa = await api("/api/v1/enclave/peers"); }
  catch (e) { $("peers-note").textContent = e.message; clear(tb); clear(box); return; }
  $("peers-note").textContent = "this node " + pa.self + ", " + pa.peers.length + " peers";
  clear(tb);
  clear(box);
  const ps = pa.peers.slice().sort((a, b) => a.trust - b.trust);
  const rowH = 16, W = 720, L = 150, H = Math.max(1, ps.length) * rowH + 20;
  const g = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", "aria-label": "trust in each enclave peer" });
  ps.forEach((p, i) => {
    const yy = 4 + i * rowH;
    g.appendChild(svg("text", { x: L - 4, y: yy + 11, "text-anchor": "end", class: "tick" }, p.id.slice(-16)));
    const r = svg("rect", { x: L, y: yy, width: Math.max(1, (W - L - 50) * Math.max(0, Math.min(1, p.trust))), height: rowH - 4,
      class: "trust " + (p.trust < 0.5 ? "low" : "ok") });
    r.dataset.peer = p.id;
    r.appendChild(svg("title", {}, p.id + ": trust " + p.trust));
    g.appendChild(r);
    g.appendChild(svg("text", { x: W - 46, y: yy + 11, class: "tick" }, num(p.trust, 3)));
  });
  g.appendChild(svg("line", { x1: L, y1: H - 14, x2: W - 50, y2: H - 14, class: "axis" }));
  g.appendChild(svg("text", { x: L, y: H - 2, class: "tick" }, "0"));
  g.appendChild(svg("text", { x: W - 50, y: H - 2, "text-anchor": "end", class: "tick" }, "trust 1"));
  if (ps.length) box.appendChild(g);
  for (const p of pa.peers) {
    const tr = el("tr");
    tr.dataset.peer = p.id;
    for (const v of [p.id, p.membership, p.connected ? "yes" : "no", p.in_topic ? "yes" : "no", num(p.trust, 3),
      typeof p.score === "number" ? num(p.score, 2) : "-"]) tr.appendChild(el("td", v));
    tb.appendChild(tr);
  }
  if (!pa.peers.length) { const tr = el("tr"); tr.appendChild(el("td", "no peers")); tb.appendChild(tr); }
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
  refreshTraffic();
  refreshAssets();
  refreshPeers();
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
// Debounced refreshes, one timer each, so a burst of events costs one request per view.
function debounce(fn, ms) { let t = null; return () => { if (!t) t = setTimeout(() => { t = null; fn(); }, ms); }; }
const soonAssets = debounce(refreshAssets, 500), soonPeers = debounce(refreshPeers, 1000);

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
    if (k === "engine.decision" && !$("overview").hidden) { refreshDecisions(); refreshTimeline(); soonAssets(); }
    if (k === "engine.signal" && !$("overview").hidden) soonAssets();
    if (k.startsWith("enclave.") && !$("overview").hidden) soonPeers();
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
  setInterval(() => { if (!$("overview").hidden) { refreshAssets(); refreshPeers(); } }, 15000);
  (function tick() { setTimeout(() => { if (!$("overview").hidden) refreshTraffic(); tick(); }, trafficEvery); })();
  route();
  follow();
});
