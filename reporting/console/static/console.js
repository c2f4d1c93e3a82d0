// The task force console: a site view in the site's metric frame, the live breach log,
// device states, and an event's drill-down. Plain JavaScript served by the API itself:
// nothing is fetched from anywhere else. The token stays in this tab (sessionStorage)
// and travels only in the Authorization header, never in a URL.
"use strict";

const state = { token: "", site: "", map: null, trajectory: null, stream: null };
const $ = (id) => document.getElementById(id);

function headers() {
  return { Authorization: `Bearer ${state.token}` };
}

async function api(path) {
  const reply = await fetch(path, { headers: headers() });
  if (!reply.ok) throw new Error(`${path}: ${reply.status} ${await reply.text()}`);
  return reply.json();
}

function setStatus(text, on) {
  const el = $("status");
  el.textContent = text;
  el.className = `status ${on ? "on" : "off"}`;
}

function utc(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

// ------------------------------------------------------------------ site view
const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function drawMap() {
  const svg = $("map");
  svg.replaceChildren();
  const m = state.map;
  if (!m) return;
  const xs = [], ys = [];
  for (const a of m.areas) for (const r of a.rings) for (const [x, y] of r) { xs.push(x); ys.push(y); }
  for (const d of m.devices) { xs.push(d.x_m); ys.push(d.y_m); }
  if (!xs.length) return;
  const pad = 10;
  const [x0, x1, y0, y1] = [Math.min(...xs) - pad, Math.max(...xs) + pad, Math.min(...ys) - pad, Math.max(...ys) + pad];
  // metres in, north up: flip y so the site is drawn as it lies
  svg.setAttribute("viewBox", `${x0} ${-y1} ${x1 - x0} ${y1 - y0}`);
  const world = el("g", { transform: "scale(1,-1)" });
  const width = Math.max(x1 - x0, y1 - y0) / 400;  // about one pixel at any size
  const style = {
    safe_zone: { fill: "#0e3b22", stroke: "#3ddc84" },
    danger_zone: { fill: "#4a0c0c", stroke: "#ff4d4d" },
    exclusion: { fill: "#2b2b2b", stroke: "#b8b8b8" },
  };
  for (const a of m.areas) {
    for (const ring of a.rings) {
      const s = style[a.kind] || style.exclusion;
      world.append(el("polygon", { points: ring.map((p) => p.join(",")).join(" "), fill: s.fill,
        "fill-opacity": 0.7, stroke: s.stroke, "stroke-width": 2 * width }));
    }
  }
  for (const line of m.lines) {
    world.append(el("polyline", { points: line.points.map((p) => p.join(",")).join(" "), fill: "none",
      stroke: "#b8b8b8", "stroke-width": 1.5 * width, "stroke-dasharray": `${6 * width} ${4 * width}` }));
  }
  if (state.trajectory) {
    world.append(el("polyline", { points: state.trajectory.map((p) => p.join(",")).join(" "), fill: "none",
      stroke: "#ffd23f", "stroke-width": 2 * width }));
  }
  const colour = { SAFE: "#3ddc84", WARNING: "#ffd23f", BREACH: "#ff4d4d", LOST: "#c792ea" };
  for (const d of m.devices) {
    if (d.accuracy_m) {
      world.append(el("circle", { cx: d.x_m, cy: d.y_m, r: d.accuracy_m, fill: "none",
        stroke: colour[d.state] || "#fff", "stroke-width": width, "stroke-opacity": 0.6 }));
    }
    const dot = el("circle", { cx: d.x_m, cy: d.y_m, r: 5 * width, fill: colour[d.state] || "#fff" });
    const title = el("title", {});
    title.textContent = `${d.device_id}: ${d.state}, ${d.seconds_since_fix} s since its last fix`;
    dot.append(title);
    world.append(dot);
  }
  svg.append(world);
}

async function loadMap() {
  if (!state.site) return;
  state.map = await api(`/sites/${encodeURIComponent(state.site)}/map`);
  $("site-name").textContent = `${state.map.site_id} (version ${state.map.version})`;
  drawMap();
}

// ------------------------------------------------------------------ devices
async function loadDevices() {
  const rows = await api("/devices");
  const body = $("devices").querySelector("tbody");
  body.replaceChildren(...rows.map((d) => {
    const tr = document.createElement("tr");
    for (const [text, cls] of [[d.device_id, ""], [d.state, d.state], [`${d.seconds_since_fix} s`, ""],
      [d.site || "", ""], [d.firmware || "", ""]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  }));
}

// ------------------------------------------------------------------ the live log
function addEvent(e, fresh) {
  const body = $("log").querySelector("tbody");
  if (body.querySelector(`tr[data-id="${CSS.escape(e.id)}"]`)) return;
  const tr = document.createElement("tr");
  tr.className = `event ${fresh ? "fresh" : ""}`;
  tr.dataset.id = e.id;
  tr.tabIndex = 0;
  const distance = e.distance_m === null ? "" : `${e.distance_m.toFixed(2)} m`;
  for (const [text, cls] of [[utc(e.event_ms), ""], [e.device_id, ""], [e.kind.toUpperCase(), e.kind],
    [e.site || "", ""], [distance, ""]]) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.append(td);
  }
  tr.addEventListener("click", () => showDetail(e));
  tr.addEventListener("keydown", (k) => { if (k.key === "Enter") showDetail(e); });
  body.prepend(tr);
  while (body.children.length > 200) body.lastChild.remove();
}

async function follow() {
  // Server-Sent Events read through fetch, so the token goes in a header, not the URL
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  const params = new URLSearchParams();
  if (state.site) params.set("site", state.site);
  try {
    const reply = await fetch(`/events/stream?${params}`, { headers: headers(), signal: controller.signal });
    if (!reply.ok) throw new Error(`live stream: ${reply.status}`);
    setStatus("live", true);
    const reader = reply.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const message = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = message.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) {
          addEvent(JSON.parse(data), true);
          loadDevices().catch(() => {});
          loadMap().catch(() => {});
        }
      }
    }
    setStatus("stream ended", false);
  } catch (error) {
    if (controller.signal.aborted) return;
    setStatus(`not connected: ${error.message}`, false);
  }
  setTimeout(() => { if (state.stream === controller) follow(); }, 3000);
}

// ------------------------------------------------------------------ drill-down
async function showDetail(e) {
  const d = await api(`/events/${encodeURIComponent(e.id)}`);
  $("detail-panel").hidden = false;
  $("detail-title").textContent = `${d.event.kind} on ${d.event.device_id} at ${utc(d.event.event_ms)}`;
  const h = d.hops;
  $("detail-hops").textContent = `device to ingest ${h.device_to_ingest_ms ?? "?"} ms, decision ${h.decision_ms ?? "?"} ms, ` +
    `alert published ${h.alert_publish_ms ?? "?"} ms later; ${d.fixes.length} fixes in the minute either side`;
  // the trajectory around the event, as ingest placed it in the site's metric frame
  state.trajectory = d.fixes.filter((f) => f.x_m !== null).map((f) => [f.x_m, f.y_m]);
  drawMap();
}

// ------------------------------------------------------------------ start
async function start() {
  state.token = $("token").value.trim();
  sessionStorage.setItem("trackfence-token", state.token);
  try {
    const sites = await api("/sites");
    const select = $("site");
    select.replaceChildren(...sites.map((s) => new Option(s.site_id, s.site_id)));
    state.site = select.value;
    const recent = await api(`/events?limit=50${state.site ? `&site=${encodeURIComponent(state.site)}` : ""}`);
    for (const e of recent.events) addEvent(e, false);
    await loadDevices();
    await loadMap();
    follow();
  } catch (error) {
    setStatus(`not connected: ${error.message}`, false);
  }
}

window.addEventListener("DOMContentLoaded", () => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) history.replaceState(null, "", location.pathname);  // not kept in history
  $("token").value = fromHash || sessionStorage.getItem("trackfence-token") || "";
  $("token").addEventListener("change", start);
  $("site").addEventListener("change", () => {
    state.site = $("site").value;
    $("log").querySelector("tbody").replaceChildren();
    start();
  });
  setInterval(() => { if (state.token) loadDevices().catch(() => {}); }, 2000);
  if ($("token").value) start();
});
