// bms-gateway live status page: polls /api/status once a second and redraws the tables.
// Plain JavaScript, no dependencies: it works on a site network without internet.
"use strict";

const REFRESH_MS = 1000;
const MANY_POINTS = 3000; // above this, the table starts with one rack (the filter shows the others)
let rackChosen = false;
const OLD_S = 60; // a reading older than this is marked: the point is not refreshed any more
let updates = 0;
let lastRacks = "";

function esc(v) {
  if (v === null || v === undefined) return "";
  return String(v).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number" && !Number.isInteger(v)) return v.toFixed(Math.abs(v) < 10 ? 3 : 1);
  return String(v);
}

function cls(prefix, v) {
  return prefix + String(v || "").replace(/[^a-z0-9_]/gi, "_").toLowerCase();
}

function rows(tbody, html, cols, emptyText) {
  tbody.innerHTML = html || `<tr><td colspan="${cols}" class="empty">${esc(emptyText)}</td></tr>`;
}

function drawRacks(doc) {
  const html = doc.racks.map((r) =>
    `<tr data-rack="${esc(r.rack)}"><td>${esc(r.rack)}</td><td>${esc(r.device)}</td>` +
    `<td class="${cls("state-", r.state)}" title="${esc(r.reason)}">${esc(r.state)}</td>` +
    `<td class="num">${fmt(r.soc)}</td><td class="num">${fmt(r.rack_voltage)}</td>` +
    `<td class="num">${fmt(r.rack_current)}</td><td class="num">${fmt(r.cell_voltage_min)}</td>` +
    `<td class="num">${fmt(r.cell_voltage_max)}</td><td class="num">${fmt(r.cell_temperature_max)}</td>` +
    `<td class="num">${r.alarms}</td><td class="num">${fmt(r.age_s)}</td></tr>`).join("");
  rows(document.querySelector("#racks tbody"), html, 11, "no rack has reported yet");
  const names = doc.racks.map((r) => r.rack).join("|");
  if (names !== lastRacks) {
    lastRacks = names;
    const sel = document.getElementById("rack-filter");
    const keep = sel.value;
    sel.innerHTML = `<option value="">all</option>` +
      doc.racks.map((r) => `<option value="${esc(r.rack)}">${esc(r.rack)}</option>`).join("");
    sel.value = keep;
  }
}

function since(ns) {
  if (typeof ns !== "number") return "";
  return new Date(ns / 1e6).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function drawAlarms(doc) {
  const known = ["rack", "name", "alarm_id", "id", "severity", "state", "since", "message"];
  const html = doc.alarms.map((a) => {
    const rest = Object.entries(a).filter(([k]) => !known.includes(k))
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
    const message = [a.message, rest].filter(Boolean).join(" ");
    return `<tr class="${cls("sev-", a.severity)}" data-alarm="${esc(a.alarm_id || a.id || a.name)}">` +
      `<td>${esc(a.rack)}</td><td>${esc(a.alarm_id || a.name || a.id)}</td><td>${esc(a.severity)}</td>` +
      `<td>${esc(a.state)}</td><td>${esc(since(a.since))}</td><td>${esc(message)}</td></tr>`;
  }).join("");
  rows(document.querySelector("#alarms tbody"), html, 6, "no active alarm");
}

function drawSinks(doc) {
  const html = doc.sinks.map((s) =>
    `<tr><td>${esc(s.name)}</td><td class="${s.connected ? "state-online" : "state-offline"}">${s.connected ? "yes" : "no"}</td>` +
    `<td class="num">${s.delivered}</td><td class="num">${s.pending}</td><td class="num">${fmt(s.lag_s)}</td>` +
    `<td class="num">${s.suppressed ?? 0}</td><td>${esc(s.last_error)}</td></tr>`).join("");
  rows(document.querySelector("#sinks tbody"), html, 7, "no sink configured: data stays in the local store");
}

function drawClocks(doc) {
  const clock = doc.clock;
  if (!clock) return;
  const h = clock.host;
  const err = h.synchronized === null ? "" : ` · estimated error ${fmt(h.est_error_s)} s, max ${fmt(h.max_error_s)} s`;
  const host = document.getElementById("host-clock");
  host.textContent = `Host clock: ${h.state}${err}${h.alarm ? " · ALARM" : ""}`;
  host.className = "filters " + (h.synchronized ? "state-online" : "state-degraded");
  const html = clock.devices.map((d) =>
    `<tr><td>${esc(d.device)}</td><td class="num${d.alarm ? " state-offline" : ""}">${fmt(d.offset_s)}</td>` +
    `<td class="num">${d.points}</td><td>${d.alarm ? "yes" : "no"}</td><td class="num">${fmt(d.age_s)}</td></tr>`).join("");
  rows(document.querySelector("#clocks tbody"), html, 5, "no device reports its own time");
}

function drawPoints(doc) {
  const needle = document.getElementById("text-filter").value.trim().toLowerCase();
  const rack = document.getElementById("rack-filter").value;
  const shown = doc.points.filter((p) => !rack || p[0] === rack).filter((p) => !needle || `${p[1]} m${p[2] ?? ""} c${p[3] ?? ""} ${p[2] ?? ""} ${p[3] ?? ""}`.toLowerCase().includes(needle));
  const html = shown.map((p) =>
    `<tr data-key="${esc(p[0])}|${esc(p[1])}|${p[2] ?? ""}|${p[3] ?? ""}"><td>${esc(p[0])}</td><td>${esc(p[1])}</td>` +
    `<td class="num">${p[2] ?? ""}</td><td class="num">${p[3] ?? ""}</td><td class="num value">${esc(fmt(p[4]))}</td>` +
    `<td>${esc(p[5])}</td><td class="${cls("q-", p[6])}">${esc(p[6])}</td><td class="num${p[7] > OLD_S ? " old" : ""}">${fmt(p[7])}</td></tr>`).join("");
  rows(document.querySelector("#points tbody"), html, 8, "no point yet");
  document.getElementById("point-count").textContent = `${shown.length} of ${doc.points.length} points`;
}

function drawSummary(doc) {
  document.getElementById("site").textContent = doc.site;
  document.getElementById("version").textContent = `v${doc.version} · up ${Math.round(doc.uptime_s)} s`;
  const text = `${doc.ready ? "ready" : "not ready: " + doc.problems.join("; ")} · ${doc.racks_summary} · ` +
    `${doc.alarms.length} active alarms · ${doc.samples_seen} samples stored`;
  const el = document.getElementById("summary");
  el.textContent = text;
  el.className = "summary " + (doc.ready ? "state-online" : "state-degraded");
}

async function refresh() {
  const rack = document.getElementById("rack-filter").value;
  const conn = document.getElementById("conn");
  try {
    const resp = await fetch("/api/status" + (rack ? "?rack=" + encodeURIComponent(rack) : ""), {cache: "no-store"});
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const doc = await resp.json();
    drawSummary(doc);
    drawRacks(doc);
    drawAlarms(doc);
    drawSinks(doc);
    drawClocks(doc);
    if (!rack && !rackChosen && doc.points.length > MANY_POINTS && doc.racks.length > 1) {
      document.getElementById("rack-filter").value = doc.racks[0].rack; // large site: one rack at a time
    }
    drawPoints(doc);
    updates += 1;
    document.body.dataset.updates = String(updates);
    conn.textContent = "updated " + new Date().toLocaleTimeString();
    conn.className = "conn";
  } catch (err) {
    conn.textContent = "gateway unreachable (" + err.message + "), retrying";
    conn.className = "conn lost";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

document.getElementById("rack-filter").addEventListener("change", () => { rackChosen = true; });
refresh();
