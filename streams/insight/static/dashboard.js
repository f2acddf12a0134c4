// The dashboard page: polls /api/dashboard and draws it. A token, when the API needs one,
// comes in the page's address as #token=… and is sent as a bearer token.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token");
let windowName = "hour";
let chart = null;

function cell(text, field, destination, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (field) td.dataset.field = field;
  if (destination) td.dataset.destination = destination;
  if (cls) td.className = cls;
  return td;
}

function percent(rate) {
  return rate === null ? "-" : (rate * 100).toFixed(1) + "%";
}

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((c) => tr.appendChild(c));
  return tr;
}

// The window with the least room, as "used/cap window" ("-" for an uncapped destination).
function tightest(windows) {
  if (!windows || !windows.length) return "-";
  const [window, used, cap] = windows.reduce((a, b) => (b[2] - b[1]) / b[2] < (a[2] - a[1]) / a[2] ? b : a);
  return `${used}/${cap} ${window.split(" ")[0]}`;
}

function drawDestinations(data) {
  const body = document.querySelector("#destinations tbody");
  body.replaceChildren();
  const shown = data.windows[windowName];
  for (const name of data.destinations) {
    const s = shown[name];
    if (!s) continue;
    const circuit = (data.paused || {})[name]
      ? "paused"
      : (data.circuits[name] || { state: "closed" }).state;
    const cap = tightest((data.caps || {})[name]);
    const reasons = s.top_reasons.map(([r, n]) => `${r} (${n})`).join("; ");
    body.appendChild(row([
      cell(name, "destination", name, "text"),
      cell(s.attempts, "attempts", name),
      cell(s.accepted, "accepted", name),
      cell(percent(s.acceptance_rate), "acceptance_rate", name),
      cell(s.rejected, "rejected", name),
      cell(s.errors, "errors", name),
      cell(s.timeouts, "timeouts", name),
      cell(s.skipped, "skipped", name),
      cell(s.latency_p50_ms === null ? "-" : s.latency_p50_ms, "latency_p50_ms", name),
      cell(s.latency_p95_ms === null ? "-" : s.latency_p95_ms, "latency_p95_ms", name),
      cell(Number(s.revenue).toFixed(2), "revenue", name),
      cell(s.returned, "returned", name),
      cell(Number(s.net_revenue).toFixed(2), "net_revenue", name),
      cell(cap, "cap", name, "text"),
      cell(circuit, "circuit", name, "text " + circuit),
      cell(reasons, "top_reasons", name, "text"),
    ]));
  }
}

function drawDeadLetters(data) {
  const body = document.querySelector("#dead-letters tbody");
  body.replaceChildren();
  for (const [reason, n] of Object.entries(data.dead_letters[windowName] || {})) {
    body.appendChild(row([cell(reason, "reason", null, "text"), cell(n, "dead_letters")]));
  }
}

function drawLag(data) {
  // Records the delivery workers have yet to read, per topic (and partition).
  const body = document.querySelector("#lag tbody");
  body.replaceChildren();
  for (const [topic, lag] of Object.entries(data.lag || {})) {
    const parts = Object.entries(lag.partitions).map(([p, n]) => `${p}: ${n}`).join(", ");
    body.appendChild(row([cell(topic, "topic", null, "text"), cell(lag.total, "lag", topic),
                          cell(parts, "partitions", topic, "text")]));
  }
}

function drawTail(data) {
  const body = document.querySelector("#tail tbody");
  body.replaceChildren();
  for (const e of data.tail.slice().reverse()) {
    const at = new Date(e.at * 1000).toISOString().slice(11, 23);
    body.appendChild(row([
      cell(at, null, null, "text"), cell(e.lead_id, null, null, "text"),
      cell(e.destination, null, null, "text"), cell(e.attempt), cell(e.outcome, null, null, "text"),
      cell(e.reason, null, null, "text"), cell(e.http_status === null ? "-" : e.http_status),
      cell(Math.round(e.recipient_ms)),
    ]));
  }
}

function drawChart(data) {
  // One series per destination: attempts per minute over the last hour.
  const now = Math.floor(Date.now() / 60000) * 60;
  const minutes = Array.from({ length: 60 }, (_, i) => now - (59 - i) * 60);
  const names = Object.keys(data.per_minute);
  const series = names.map((name) => {
    const by = new Map(data.per_minute[name].map((m) => [m[0], m[1]]));
    return minutes.map((m) => by.get(m) || 0);
  });
  const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
  const options = {
    width: Math.min(960, window.innerWidth - 40), height: 220,
    series: [{}, ...names.map((name, i) => ({ label: name, stroke: palette[i % palette.length] }))],
    axes: [{}, { label: "attempts" }],
  };
  if (chart) chart.destroy();
  chart = new uPlot(options, [minutes, ...series], document.getElementById("chart"));
}

async function refresh() {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  try {
    const res = await fetch("/api/dashboard", { headers });
    const data = await res.json();
    if (!res.ok) throw new Error(data.error || res.status);
    drawDestinations(data);
    drawDeadLetters(data);
    drawLag(data);
    drawTail(data);
    drawChart(data);
    document.getElementById("updated").textContent =
      "updated " + new Date(data.generated_at * 1000).toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (err) {
    document.getElementById("updated").textContent = "cannot load: " + err.message;
  }
}

document.querySelectorAll(".windows button").forEach((b) => b.addEventListener("click", () => {
  windowName = b.dataset.window;
  document.querySelectorAll(".windows button").forEach((o) => o.setAttribute("aria-pressed", o === b));
  refresh();
}));
refresh();
setInterval(refresh, 2000);
