// gpnas web page: plain JS and SVG so the page needs nothing from a CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const PLOT = { width: 720, height: 420, left: 64, right: 16, top: 16, bottom: 48 };
const state = { spaces: [], points: [], queryTimer: null, querySeq: 0 };

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ? JSON.stringify(body.detail) : response.statusText);
  return body;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function fillSelect(select, values, preferred) {
  const previous = preferred ?? select.value;
  select.replaceChildren(...values.map((v) => new Option(v, v)));
  if (values.includes(previous)) select.value = previous;
}

async function loadChoices() {
  const [spaces, devices] = await Promise.all([getJSON("/v1/spaces"), getJSON("/v1/devices")]);
  state.spaces = spaces;
  const params = new URLSearchParams(location.search);
  fillSelect($("space"), state.spaces.map((s) => s.name), params.get("space") || "ufo-track2");
  fillSelect($("device"), devices.map((d) => d.name), params.get("device"));
  updateTasks(params.get("task"));
}

function updateTasks(preferred) {
  const space = state.spaces.find((s) => s.name === $("space").value);
  fillSelect($("task"), space ? space.tasks : [], preferred);
}

async function loadFront() {
  const space = $("space").value, task = $("task").value, device = $("device").value;
  state.points = [];
  drawPlot();
  if (!space || !task || !device) { setStatus("Choose a space, a task and a device."); return; }
  setStatus("Loading the front…");
  try {
    let offset = 0;
    for (;;) {
      const query = new URLSearchParams({ space, task, device, offset, limit: 500 });
      const page = await getJSON(`/v1/pareto?${query}`);
      state.points.push(...page.points);
      offset += page.points.length;
      if (!page.points.length || offset >= page.total) break;
    }
  } catch (error) {
    setStatus(`No front for this choice: ${error.message}`, true);
    $("budget").disabled = true;
    return;
  }
  setStatus(`${state.points.length} Pareto-optimal subnets.`);
  const latencies = state.points.map((p) => p.latency_ms);
  const slider = $("budget");
  slider.min = Math.min(...latencies) * 0.9;
  slider.max = Math.max(...latencies) * 1.1;
  slider.step = (slider.max - slider.min) / 200; // keyboard and drag move in 0.5% steps
  slider.value = slider.max;
  slider.disabled = false;
  drawPlot();
  scheduleQuery();
}

function scale(domain, range) {
  const [d0, d1] = domain[0] === domain[1] ? [domain[0] - 1, domain[1] + 1] : domain;
  return (v) => range[0] + ((v - d0) / (d1 - d0)) * (range[1] - range[0]);
}

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawPlot(chosenArch) {
  const svg = $("front-plot");
  svg.replaceChildren();
  const pts = state.points;
  if (!pts.length) return;
  const lat = pts.flatMap((p) => [p.latency_ms - p.latency_std, p.latency_ms + p.latency_std]);
  const sc = pts.flatMap((p) => [p.score - p.score_std, p.score + p.score_std]);
  const x = scale([Math.min(...lat), Math.max(...lat)], [PLOT.left, PLOT.width - PLOT.right]);
  const y = scale([Math.min(...sc), Math.max(...sc)], [PLOT.height - PLOT.bottom, PLOT.top]);

  const axes = svgEl("g", { class: "axis" });
  axes.append(svgEl("line", { x1: PLOT.left, y1: PLOT.height - PLOT.bottom, x2: PLOT.width - PLOT.right,
    y2: PLOT.height - PLOT.bottom }));
  axes.append(svgEl("line", { x1: PLOT.left, y1: PLOT.top, x2: PLOT.left, y2: PLOT.height - PLOT.bottom }));
  for (let i = 0; i <= 4; i++) {
    const lv = Math.min(...lat) + (i / 4) * (Math.max(...lat) - Math.min(...lat));
    const sv = Math.min(...sc) + (i / 4) * (Math.max(...sc) - Math.min(...sc));
    axes.append(svgEl("text", { x: x(lv), y: PLOT.height - PLOT.bottom + 16, "text-anchor": "middle" },
      lv.toPrecision(3)));
    axes.append(svgEl("text", { x: PLOT.left - 6, y: y(sv) + 4, "text-anchor": "end" }, sv.toPrecision(3)));
  }
  axes.append(svgEl("text", { x: (PLOT.left + PLOT.width) / 2, y: PLOT.height - 8, "text-anchor": "middle" },
    "predicted latency (ms)"));
  axes.append(svgEl("text", { x: 14, y: PLOT.height / 2, transform: `rotate(-90 14 ${PLOT.height / 2})`,
    "text-anchor": "middle" }, "predicted score"));
  svg.append(axes);

  const budget = Number($("budget").value);
  if (!$("budget").disabled) {
    svg.append(svgEl("line", { class: "budget-line", x1: x(budget), x2: x(budget), y1: PLOT.top,
      y2: PLOT.height - PLOT.bottom }));
  }
  svg.append(svgEl("polyline", { class: "front",
    points: pts.map((p) => `${x(p.latency_ms)},${y(p.score)}`).join(" ") }));
  for (const p of pts) {
    const cx = x(p.latency_ms), cy = y(p.score);
    svg.append(svgEl("line", { class: "bar", x1: x(p.latency_ms - p.latency_std), x2: x(p.latency_ms + p.latency_std),
      y1: cy, y2: cy }));
    svg.append(svgEl("line", { class: "bar", x1: cx, x2: cx, y1: y(p.score - p.score_std),
      y2: y(p.score + p.score_std) }));
  }
  for (const p of pts) {
    const classes = ["point"];
    if (p.measured) classes.push("measured");
    if (p.arch === chosenArch) classes.push("chosen");
    const circle = svgEl("circle", { class: classes.join(" "), cx: x(p.latency_ms), cy: y(p.score), r: 4,
      "data-arch": p.arch });
    circle.append(svgEl("title", {}, `${p.arch}\nscore ${p.score.toFixed(3)} ± ${p.score_std.toFixed(3)}\n` +
      `latency ${p.latency_ms.toFixed(2)} ± ${p.latency_std.toFixed(2)} ms${p.measured ? " (measured)" : ""}`));
    circle.addEventListener("click", () => { $("budget").value = p.latency_ms + 2 * p.latency_std; scheduleQuery(); });
    svg.append(circle);
  }
}

function scheduleQuery() {
  $("budget-value").textContent = Number($("budget").value).toFixed(2);
  clearTimeout(state.queryTimer);
  state.queryTimer = setTimeout(runQuery, 120);
}

async function runQuery() {
  const seq = ++state.querySeq;
  const body = {
    space: $("space").value, task: $("task").value, device: $("device").value,
    latency_budget_ms: Number($("budget").value), confidence: Number($("confidence").value),
  };
  const response = await fetch("/v1/query", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const result = await response.json().catch(() => ({}));
  if (seq !== state.querySeq) return; // a newer slider position has been asked for
  if (!response.ok) {
    $("chosen-arch").textContent = "nothing fits";
    $("chosen-predicted").textContent = typeof result.detail === "string" ? result.detail : JSON.stringify(result.detail);
    $("config-table").tBodies[0].replaceChildren();
    drawPlot();
    return;
  }
  const p = result.predicted;
  $("chosen-arch").textContent = result.arch;
  $("chosen-predicted").textContent =
    `score ${p.score.toFixed(3)} ± ${p.score_std.toFixed(3)}, latency ${p.latency_ms.toFixed(2)} ± ` +
    `${p.latency_std.toFixed(2)} ms, P(latency ≤ budget) = ${p.p_feasible.toFixed(3)}`;
  renderConfig(result.config);
  drawPlot(result.arch);
}

function renderConfig(config) {
  const layers = config.layers || [];
  const keys = layers.length ? Object.keys(layers[0]) : [];
  const table = $("config-table");
  table.tHead.replaceChildren(rowOf("th", ["layer", ...keys]));
  table.tBodies[0].replaceChildren(...layers.map((layer, i) => rowOf("td", [i, ...keys.map((k) => layer[k])])));
}

function rowOf(cell, values) {
  const tr = document.createElement("tr");
  for (const v of values) { const c = document.createElement(cell); c.textContent = v; tr.append(c); }
  return tr;
}

$("space").addEventListener("change", () => { updateTasks(); loadFront(); });
$("task").addEventListener("change", loadFront);
$("device").addEventListener("change", loadFront);
$("confidence").addEventListener("change", scheduleQuery);
$("budget").addEventListener("input", () => { drawPlot($("chosen-arch").textContent); scheduleQuery(); });

loadChoices().then(loadFront).catch((error) => setStatus(`Could not load: ${error.message}`, true));
