// The task force console: a site view in the site's metric frame, the breach log (newest
// first, filtered, paged and followed live), device states, and an event's drill-down
// with the device's path drawn on the site. Plain JavaScript served by the API itself:
// nothing is fetched from anywhere else. The token stays in this tab (sessionStorage)
// and travels only in the Authorization header, never in a URL.
"use strict";

const state = {
  token: "",
  filters: { site: "", supplier: "", device: "", kinds: [], since: "", until: "" },
  mapSite: "",       // the site drawn
  mapVersion: null,  // a version asked for by a drill-down (null: the newest)
  map: null,
  track: null,       // the drilled-down event's track (GET /events/{id} `track`)
  stream: null,
  more: false,       // older events exist beyond the log's last row
  generation: 0,     // bumped on every reload: answers to an older one are dropped
};
const $ = (id) => document.getElementById(id);
const PAGE = 50;
const MAX_ROWS = 500;

function headers() {
  return { Authorization: `Bearer ${state.token}` };
}

async function api(path) {
  const reply = await fetch(path, { headers: headers() });
  if (!reply.ok) {
    let detail = await reply.text();
    try {
      const body = JSON.parse(detail);
      if (typeof body.detail === "string") detail = body.detail;
      else if (Array.isArray(body.detail)) detail = body.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
    } catch (_) { /* not JSON: keep the text */ }
    throw new Error(`${reply.status} ${detail}`);
  }
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

// ------------------------------------------------------------------ filters
function isoUtc(local) {
  // a datetime-local value, read as UTC: "2026-06-01T09:00" or with seconds
  if (!local) return "";
  return `${local.length === 16 ? `${local}:00` : local}Z`;
}

function readFilters() {
  const f = {
    site: $("site").value,
    supplier: $("f-supplier").value.trim(),
    device: $("f-device").value.trim(),
    kinds: [...document.querySelectorAll('#f-kinds input[name="kind"]:checked')].map((c) => c.value),
    since: isoUtc($("f-since").value),
    until: isoUtc($("f-until").value),
  };
  const problems = [];
  for (const id of ["f-since", "f-until"]) {
    const input = $(id);
    const bad = !input.validity.valid;
    input.setAttribute("aria-invalid", String(bad));
    if (bad) problems.push(`${input.parentElement.firstChild.textContent.trim()} is not a time from 1970 to 9999`);
  }
  const backwards = f.since && f.until && Date.parse(f.until) <= Date.parse(f.since);
  $("f-until").setAttribute("aria-invalid", String(Boolean(backwards) || !$("f-until").validity.valid));
  if (backwards) problems.push("Until must be after From");
  return { filters: f, problems };
}

function filterParams(f) {
  const params = new URLSearchParams();
  for (const key of ["site", "supplier", "device", "since", "until"]) if (f[key]) params.set(key, f[key]);
  for (const kind of f.kinds) params.append("kind", kind);
  return params;
}

function showFilterError(text) {
  $("filter-error").textContent = text;
}

async function applyFilters() {
  const { filters, problems } = readFilters();
  if (problems.length) {
    showFilterError(problems.join("; "));
    return;
  }
  showFilterError("");
  const siteChanged = filters.site !== state.filters.site;
  state.filters = filters;
  if (siteChanged && filters.site) {
    state.mapSite = filters.site;
    state.mapVersion = null;
    $("map-site").value = filters.site;
    loadMap().catch(() => {});
  }
  await reloadLog();
}

function clearFilters() {
  $("site").value = "";
  $("f-supplier").value = "";
  $("f-device").value = "";
  for (const c of document.querySelectorAll('#f-kinds input[name="kind"]')) c.checked = false;
  $("f-since").value = "";
  $("f-until").value = "";
  applyFilters();
}

// ------------------------------------------------------------------ site view
const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function titled(node, text) {
  const title = el("title", {});
  title.textContent = text;
  node.append(title);
  return node;
}

function trackShown() {
  const t = state.track, m = state.map;
  return t && m && t.site_id === m.site_id && t.version === m.version ? t : null;
}

function drawMap() {
  const svg = $("map");
  svg.replaceChildren();
  const m = state.map;
  if (!m) return;
  const track = trackShown();
  const xs = [], ys = [];
  for (const a of m.areas) for (const r of a.rings) for (const [x, y] of r) { xs.push(x); ys.push(y); }
  for (const d of m.devices) { xs.push(d.x_m); ys.push(d.y_m); }
  if (track) for (const p of track.points) { xs.push(p.x_m); ys.push(p.y_m); }
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
  // safe zones beneath, then exclusions, then danger zones on top of both
  const rank = { safe_zone: 0, exclusion: 1, danger_zone: 2 };
  const areas = [...m.areas].sort((a, b) => (rank[a.kind] ?? 1) - (rank[b.kind] ?? 1));
  for (const a of areas) {
    const kind = style[a.kind] ? a.kind : "exclusion";
    const s = style[kind];
    for (const ring of a.rings) {
      world.append(titled(el("polygon", { points: ring.map((p) => p.join(",")).join(" "), fill: s.fill,
        "fill-opacity": 0.7, stroke: s.stroke, "stroke-width": 2 * width, class: `area ${kind}`,
        "data-kind": kind }), `${a.name} (${kind.replace("_", " ")})`));
    }
  }
  for (const line of m.lines) {
    world.append(titled(el("polyline", { points: line.points.map((p) => p.join(",")).join(" "), fill: "none",
      stroke: "#b8b8b8", "stroke-width": 1.5 * width, "stroke-dasharray": `${6 * width} ${4 * width}`,
      class: "rail" }), `${line.name}${line.open ? " (open)" : ""}`));
  }
  if (track) drawTrack(world, track, width);
  const colour = { SAFE: "#3ddc84", WARNING: "#ffd23f", BREACH: "#ff4d4d", LOST: "#c792ea" };
  for (const d of m.devices) {
    if (d.accuracy_m) {
      world.append(el("circle", { cx: d.x_m, cy: d.y_m, r: d.accuracy_m, fill: "none",
        stroke: colour[d.state] || "#fff", "stroke-width": width, "stroke-opacity": 0.6 }));
    }
    world.append(titled(el("circle", { cx: d.x_m, cy: d.y_m, r: 5 * width, fill: colour[d.state] || "#fff",
      class: "device" }), `${d.device_id}: ${d.state}, ${d.seconds_since_fix} s since its last fix`));
  }
  svg.append(world);
  svg.setAttribute("aria-label", track
    ? `Site map of ${m.site_id}: fences, tracks and the device's path around the event (${track.points.length} fixes)`
    : `Site map of ${m.site_id}: fences, tracks and devices`);
}

function drawTrack(world, track, width) {
  // the device's fixes around the event, oldest to newest; the event's own fix ringed
  const colour = { SAFE: "#3ddc84", WARNING: "#ffd23f", BREACH: "#ff4d4d", LOST: "#c792ea" };
  const group = el("g", { class: "event-track" });
  group.append(el("polyline", { points: track.points.map((p) => `${p.x_m},${p.y_m}`).join(" "),
    fill: "none", stroke: "#4dc3ff", "stroke-width": 2 * width, "stroke-linejoin": "round", class: "track-path" }));
  for (const p of track.points) {
    group.append(titled(el("circle", { cx: p.x_m, cy: p.y_m, r: 2.5 * width, fill: colour[p.state] || "#fff",
      class: "track-fix" }), `${utc(p.fix_ms)}: ${p.state}`));
  }
  const hit = track.points.find((p) => p.event);
  if (hit) {
    group.append(titled(el("circle", { cx: hit.x_m, cy: hit.y_m, r: 8 * width, fill: "none", stroke: "#ffffff",
      "stroke-width": 2.5 * width, class: "track-event" }), `the event's fix, ${utc(hit.fix_ms)}: ${hit.state}`));
  }
  world.append(group);
}

async function loadMap() {
  if (!state.mapSite) {
    state.map = null;
    drawMap();
    return;
  }
  const site = state.mapSite, version = state.mapVersion;
  const query = version ? `?version=${version}` : "";
  const map = await api(`/sites/${encodeURIComponent(site)}/map${query}`);
  if (site !== state.mapSite || version !== state.mapVersion) return;  // asked for another meanwhile
  state.map = map;
  $("site-name").textContent = `version ${map.version}`;
  drawMap();
}

async function loadSites() {
  const sites = await api("/sites?include_retired=true");
  const ids = sites.map((s) => s.site_id);
  const option = (s) => new Option(`${s.site_id}${s.retired ? " (retired)" : ""}`, s.site_id);
  const filter = $("site");
  const chosen = filter.value;
  filter.replaceChildren(new Option("All sites", ""), ...sites.map(option));
  filter.value = ids.includes(chosen) ? chosen : "";
  const drawn = $("map-site");
  drawn.replaceChildren(...sites.map(option));
  if (!ids.includes(state.mapSite)) {
    state.mapSite = filter.value || ids[0] || "";
    state.mapVersion = null;
  }
  drawn.value = state.mapSite;
  state.filters.site = filter.value;
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
  // the filters suggest what is there (any text may still be typed)
  const suppliers = [...new Set(rows.map((d) => d.supplier))].sort();
  $("supplier-list").replaceChildren(...suppliers.map((s) => new Option(s)));
  $("device-list").replaceChildren(...rows.map((d) => new Option(d.device_id)));
}

// ------------------------------------------------------------------ the log
function eventRow(e, fresh) {
  const tr = document.createElement("tr");
  tr.className = `event ${fresh ? "fresh" : ""}`;
  tr.dataset.id = e.id;
  tr.dataset.ms = String(e.event_ms);
  tr.tabIndex = 0;
  tr.setAttribute("aria-label", `${e.kind} on ${e.device_id} at ${utc(e.event_ms)}: show its detail`);
  const distance = e.distance_m === null ? "" : `${e.distance_m.toFixed(2)} m`;
  for (const [text, cls] of [[utc(e.event_ms), ""], [e.device_id, ""], [e.kind.toUpperCase(), e.kind],
    [e.site || "", ""], [distance, ""]]) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.append(td);
  }
  tr.addEventListener("click", () => showDetail(e, tr));
  tr.addEventListener("keydown", (k) => { if (k.key === "Enter" || k.key === " ") { k.preventDefault(); showDetail(e, tr); } });
  return tr;
}

function logBody() {
  return $("log").querySelector("tbody");
}

function updateLogFooter() {
  const n = logBody().children.length;
  $("log-count").textContent = n ? `${n} event${n === 1 ? "" : "s"} shown${state.more ? ", older ones beyond" : ""}`
    : "no events match";
  $("older").hidden = !state.more;
}

function appendPage(events) {
  // a page, newest first, below what is shown
  const body = logBody();
  for (const e of events) {
    if (!body.querySelector(`tr[data-id="${CSS.escape(e.id)}"]`)) body.append(eventRow(e, false));
  }
}

function addLive(e) {
  // a live event in its place by time (one written late is older than the newest shown)
  const body = logBody();
  if (body.querySelector(`tr[data-id="${CSS.escape(e.id)}"]`)) return;
  const after = [...body.children].find((tr) => Number(tr.dataset.ms) < e.event_ms);
  if (!after && state.more) return;  // older than every row shown: its page will bring it
  body.insertBefore(eventRow(e, true), after || null);
  while (body.children.length > MAX_ROWS) {
    body.lastChild.remove();
    state.more = true;  // the oldest rows dropped: "Older events" brings them back
  }
  updateLogFooter();
}

async function reloadLog() {
  const generation = ++state.generation;
  if (state.stream) state.stream.abort();
  logBody().replaceChildren();
  state.more = false;
  updateLogFooter();
  const params = filterParams(state.filters);
  params.set("order", "newest");
  params.set("limit", String(PAGE));
  try {
    const page = await api(`/events?${params}`);
    if (generation !== state.generation) return;
    appendPage(page.events);
    state.more = page.next_cursor !== null;
    updateLogFooter();
  } catch (error) {
    if (generation !== state.generation) return;
    showFilterError(`The breach log refused these filters: ${error.message}`);
    setStatus("not connected", false);
    return;
  }
  follow(generation);
}

async function loadOlder() {
  const last = logBody().lastElementChild;
  if (!last) return;
  const generation = state.generation;
  const params = filterParams(state.filters);
  params.set("order", "newest");
  params.set("limit", String(PAGE));
  params.set("cursor", last.dataset.id);  // an event's id is its place in the log
  $("older").disabled = true;
  try {
    const page = await api(`/events?${params}`);
    if (generation !== state.generation) return;
    appendPage(page.events);
    state.more = page.next_cursor !== null;
    updateLogFooter();
  } catch (error) {
    showFilterError(`Could not load older events: ${error.message}`);
  } finally {
    $("older").disabled = false;
  }
}

async function follow(generation) {
  // Server-Sent Events read through fetch, so the token goes in a header, not the URL;
  // the stream takes the same filters as the log
  if (generation !== state.generation) return;
  if (state.stream) state.stream.abort();
  if (state.filters.until && Date.parse(state.filters.until) <= Date.now()) {
    state.stream = null;
    setStatus("not live: the time range has ended", false);
    return;
  }
  const controller = new AbortController();
  state.stream = controller;
  const params = filterParams(state.filters);
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
        if (data && state.stream === controller) {
          addLive(JSON.parse(data));
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
  setTimeout(() => { if (state.stream === controller) follow(generation); }, 3000);
}

// ------------------------------------------------------------------ drill-down
async function showDetail(e, row) {
  for (const tr of logBody().querySelectorAll("tr[aria-current]")) tr.removeAttribute("aria-current");
  if (row) row.setAttribute("aria-current", "true");
  const d = await api(`/events/${encodeURIComponent(e.id)}`);
  $("detail-panel").hidden = false;
  $("detail-title").textContent = `${d.event.kind} on ${d.event.device_id} at ${utc(d.event.event_ms)}`;
  const h = d.hops;
  $("detail-hops").textContent = `device to ingest ${h.device_to_ingest_ms ?? "?"} ms, decision ${h.decision_ms ?? "?"} ms, ` +
    `alert published ${h.alert_publish_ms ?? "?"} ms later; ${d.fixes.length} fixes in the minute either side`;
  state.track = d.track;
  if (d.track) {
    $("detail-track").textContent = `Its path: ${d.track.points.length} fixes drawn on ${d.track.site_id} ` +
      `version ${d.track.version}, ${d.track.placed === "as decided" ? "where ingest placed them when it decided"
        : "from their reported positions (no version of the site reproduces the decisions)"}.`;
    // the map follows the event to its site, and to the fences it was decided against
    state.mapSite = d.track.site_id;
    state.mapVersion = d.track.version;
    const drawn = $("map-site");
    if (![...drawn.options].some((o) => o.value === d.track.site_id)) drawn.append(new Option(d.track.site_id, d.track.site_id));
    drawn.value = d.track.site_id;
    await loadMap();
  } else {
    $("detail-track").textContent = d.event.site
      ? `Its path cannot be drawn: the console keeps no drawing of site ${d.event.site}, or no fix there could be placed.`
      : "Its path cannot be drawn: the event has no site.";
    drawMap();
  }
}

// ------------------------------------------------------------------ start
async function start() {
  state.token = $("token").value.trim();
  sessionStorage.setItem("trackfence-token", state.token);
  try {
    await loadSites();
    await loadDevices();
    await loadMap();
    await applyFilters();
  } catch (error) {
    setStatus(`not connected: ${error.message}`, false);
  }
}

window.addEventListener("DOMContentLoaded", () => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) history.replaceState(null, "", location.pathname);  // not kept in history
  $("token").value = fromHash || sessionStorage.getItem("trackfence-token") || "";
  $("token").addEventListener("change", start);
  // a filter applies once changed (a text field: on Enter or on leaving it)
  for (const id of ["site", "f-supplier", "f-device", "f-since", "f-until"]) {
    $(id).addEventListener("change", () => applyFilters());
  }
  for (const c of document.querySelectorAll('#f-kinds input[name="kind"]')) {
    c.addEventListener("change", () => applyFilters());
  }
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); applyFilters(); });
  $("f-clear").addEventListener("click", clearFilters);
  $("older").addEventListener("click", loadOlder);
  $("map-site").addEventListener("change", () => {
    state.mapSite = $("map-site").value;
    state.mapVersion = null;
    loadMap().catch((error) => setStatus(`map: ${error.message}`, false));
  });
  setInterval(() => { if (state.token) loadDevices().catch(() => {}); }, 2000);
  if ($("token").value) start();
});
