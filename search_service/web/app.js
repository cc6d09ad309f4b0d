// gpnas web page: plain JS and SVG so the page needs nothing from a CDN.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const PLOT = { width: 720, height: 420, left: 76, right: 16, top: 16, bottom: 48 };
const state = {
  spaces: [], points: [], budget: null, chosen: null,
  queryTimer: null, querySeq: 0, loadSeq: 0,
};

// ---- The standard normal distribution ------------------------------------------------------------

const SQRT_2PI = Math.sqrt(2 * Math.PI);

/** Phi(x) for x <= 0 with a relative error of about 1e-14 (series near 0, continued fraction beyond). */
function normalLowerTail(x) {
  const t = -x;
  if (t < 2) {
    // Marsaglia: Phi(-t) = 1/2 - phi(t) (t + t^3/3 + t^5/(3*5) + ...).
    let term = t, sum = t;
    for (let k = 1; k < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); k++) {
      term *= (t * t) / (2 * k + 1);
      sum += term;
    }
    return 0.5 - (Math.exp(-0.5 * t * t) / SQRT_2PI) * sum;
  }
  // Laplace: Phi(-t) = phi(t) / (t + 1/(t + 2/(t + 3/(t + ...)))).
  let fraction = t;
  for (let k = 200; k >= 1; k--) fraction = t + k / fraction;
  return Math.exp(-0.5 * t * t) / SQRT_2PI / fraction;
}

/** The standard normal CDF Phi(x). */
function normalCdf(x) {
  if (Number.isNaN(x)) return NaN;
  return x <= 0 ? normalLowerTail(x) : 1 - normalLowerTail(-x);
}

/**
 * The standard normal quantile Phi^{-1}(p): Acklam's rational approximation (relative error
 * 1.15e-9) polished by one Halley step on an accurate Phi, which leaves it within a few 1e-15 of
 * scipy's ndtri (what the server uses) over the whole range.
 */
function normalQuantile(p) {
  if (Number.isNaN(p) || p < 0 || p > 1) return NaN;
  if (p === 0) return -Infinity;
  if (p === 1) return Infinity;
  if (p === 0.5) return 0;
  // Solve in the lower tail, where q = min(p, 1 - p) keeps its relative precision.
  const q = p < 0.5 ? p : 1 - p;
  const a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
    1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00];
  const b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
    6.680131188771972e+01, -1.328068155288572e+01];
  const c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
    -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00];
  const d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
    3.754408661907416e+00];
  let x;
  if (q < 0.02425) {
    const r = Math.sqrt(-2 * Math.log(q));
    x = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) /
      ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1);
  } else {
    const u = q - 0.5, r = u * u;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * u /
      (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  // Halley: x <- x - u / (1 + x u / 2), u = (Phi(x) - q) / phi(x).
  const e = normalLowerTail(x) - q;
  const u = e * SQRT_2PI * Math.exp(0.5 * x * x);
  x -= u / (1 + (x * u) / 2);
  return p < 0.5 ? x : -x;
}

// ---- Budgets -------------------------------------------------------------------------------------

/**
 * The smallest budget a point meets at confidence c, as the server's /v1/query decides it:
 * P(latency <= b) >= c  <=>  mean + z_c * std <= b (a zero std: mean <= b).
 */
function budgetOf(point, z) {
  return point.latency_std > 0 ? point.latency_ms + z * point.latency_std : point.latency_ms;
}

/**
 * ``budget`` nudged up by one part in 1e9, so that a last-digit difference between this page's
 * z_c and the server's cannot make a point infeasible at its own budget; invisible at any display
 * precision.
 */
function reachable(budget) {
  return budget + Math.abs(budget) * 1e-9;
}

function confidence() { return Number($("confidence").value); }

/** [smallest, largest] budget over a front's points (the plotted one's) at the chosen confidence. */
function budgetRange(points = state.points) {
  const z = normalQuantile(confidence());
  const budgets = points.map((p) => budgetOf(p, z));
  return [Math.min(...budgets), Math.max(...budgets)];
}

/** Four significant digits, without trailing zeros: 0.001, 2.345, 123.5. */
function formatMs(value) {
  return String(Number(value.toPrecision(4)));
}

/** A count (parameters, MACs) with three significant digits and a k/M/G suffix; "?" if unknown. */
function formatCount(value) {
  if (value === null || value === undefined) return "?";
  for (const [size, suffix] of [[1e9, " G"], [1e6, " M"], [1e3, " k"]]) {
    if (Math.abs(value) >= size) return `${Number((value / size).toPrecision(3))}${suffix}`;
  }
  return String(value);
}

// ---- Talking to the server -----------------------------------------------------------------------

/** An error answer of the service, with its message written as sentences. */
class ApiError extends Error {
  constructor(status, detail, statusText) {
    super(describeDetail(status, detail, statusText));
    this.status = status;
    this.detail = detail;
  }
}

function capitalise(text) { return text ? text[0].toUpperCase() + text.slice(1) : text; }

function sentence(text) {
  const t = capitalise(String(text).trim());
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

/** Where a field error lies, without FastAPI's "body"/"query"/"path" prefix: "latency_budget_ms". */
function fieldOf(loc) {
  const parts = Array.isArray(loc) ? loc.slice() : [];
  if (["body", "query", "path", "header", "cookie"].includes(parts[0])) parts.shift();
  return parts.join(".");
}

/**
 * Plain sentences for an error ``detail``: FastAPI's list of {loc, msg, type}, this service's
 * string, or anything else (then only the HTTP status is described, never the raw body).
 */
function describeDetail(status, detail, statusText) {
  if (typeof detail === "string" && detail.trim()) return sentence(detail);
  if (Array.isArray(detail) && detail.length) {
    return detail.map((item) => {
      const msg = item && typeof item.msg === "string" ? item.msg : "is not valid";
      const field = item ? fieldOf(item.loc) : "";
      // A field name keeps its spelling ("latency_budget_ms: Input should be greater than 0.").
      return field ? `${field}: ${sentence(msg)}` : sentence(msg);
    }).join(" ");
  }
  return sentence(`The server answered ${status}${statusText ? ` ${statusText}` : ""}`);
}

/** A sentence for anything thrown while talking to the server. */
function describeError(error) {
  if (error instanceof ApiError) return error.message;
  return sentence(`Could not reach the server (${error && error.message ? error.message : error})`);
}

async function request(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body && body.detail, response.statusText);
  return body;
}

const getJSON = (url) => request(url);

// ---- Page state ----------------------------------------------------------------------------------

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
  updateDeploymentTasks();
}

function currentSpace() { return state.spaces.find((s) => s.name === $("space").value); }

function scoreLabel() {
  const space = currentSpace();
  return space && space.score_label ? space.score_label : "score (higher is better)";
}

function updateTasks(preferred) {
  const space = currentSpace();
  fillSelect($("task"), space ? space.tasks : [], preferred);
}

function showChoice(arch, text, isError = false) {
  state.chosen = arch;
  offerDownload("subnet", null);
  $("chosen-arch").textContent = arch ?? "–";
  $("chosen-predicted").textContent = text;
  $("chosen-predicted").classList.toggle("error", isError);
  if (arch === null || isError) {
    $("config-table").tHead.replaceChildren();
    $("config-table").tBodies[0].replaceChildren();
  }
}

/** Every point of the front of ``task`` on ``device``, page by page. */
async function fetchFront(space, task, device) {
  const points = [];
  let offset = 0;
  for (;;) {
    const query = new URLSearchParams({ space, task, device, offset, limit: 500 });
    const page = await getJSON(`/v1/pareto?${query}`);
    points.push(...page.points);
    offset += page.points.length;
    if (!page.points.length || offset >= page.total) break;
  }
  return points;
}

async function loadFront() {
  const seq = ++state.loadSeq;
  const space = $("space").value, task = $("task").value, device = $("device").value;
  state.points = [];
  state.budget = null;
  state.querySeq++; // answers to queries on the previous front are stale
  clearTimeout(state.queryTimer);
  $("budget").disabled = true;
  $("budget-value").textContent = "–";
  $("budget-range").textContent = "";
  showChoice(null, "");
  drawPlot();
  if (!space || !task || !device) { setStatus("Choose a space, a task and a device."); return; }
  setStatus("Loading the front…");
  let points;
  try {
    points = await fetchFront(space, task, device);
  } catch (error) {
    if (seq !== state.loadSeq) return;
    setStatus(`No front for this choice. ${describeError(error)}`, true);
    return;
  }
  if (seq !== state.loadSeq) return; // another space, task or device was chosen meanwhile
  state.points = points;
  if (!points.length) { setStatus("The front of this choice is empty.", true); return; }
  setStatus(`${points.length} Pareto-optimal subnets.`);
  updateBudgetRange(true);
  drawPlot();
  scheduleQuery();
}

/**
 * Span the slider over the budgets the front meets at the chosen confidence: from the cheapest
 * point's mean + z_c std to the dearest one's. ``reset`` puts the budget in the middle of that
 * range (a subnet is always chosen there); otherwise the budget is kept, clamped into the range.
 */
function updateBudgetRange(reset) {
  if (!state.points.length) return;
  const [lo, hi] = budgetRange();
  const min = reachable(lo);
  const max = hi > min ? hi : min + Math.max(Math.abs(min) * 0.05, 1e-6);
  const slider = $("budget");
  slider.min = min;
  slider.max = max;
  slider.step = "any"; // arrow keys move 1% of the range, Page Up/Down 10%
  const budget = reset || state.budget === null ? (min + max) / 2 : Math.min(Math.max(state.budget, min), max);
  setBudget(budget);
  slider.disabled = false;
  $("budget-range").textContent = `The front's subnets meet budgets from ${formatMs(min)} to ` +
    `${formatMs(max)} ms with probability ${confidence()}.`;
}

function setBudget(budget) {
  state.budget = budget;
  $("budget").value = budget;
  $("budget-value").textContent = formatMs(budget);
}

// ---- The plot ------------------------------------------------------------------------------------

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

/** Break ``text`` into lines of at most ``width`` characters at spaces (each line keeps its space). */
function wrap(text, width) {
  const lines = [];
  let line = "";
  for (const word of text.split(/(?<= )/)) {
    if (line && (line + word).trimEnd().length > width) { lines.push(line); line = ""; }
    line += word;
  }
  if (line) lines.push(line);
  return lines;
}

function drawPlot() {
  const svg = $("front-plot");
  svg.replaceChildren();
  const label = scoreLabel();
  svg.setAttribute("aria-label", `Pareto front: predicted latency (ms) against predicted ${label}`);
  const pts = state.points;
  if (!pts.length) return;
  const z = normalQuantile(confidence());
  const lat = pts.flatMap((p) => [p.latency_ms - p.latency_std, p.latency_ms + p.latency_std]);
  if (!$("budget").disabled) lat.push(Number($("budget").min), Number($("budget").max));
  const sc = pts.flatMap((p) => [p.score - p.score_std, p.score + p.score_std]);
  const [latMin, latMax] = [Math.min(...lat), Math.max(...lat)];
  const [scMin, scMax] = [Math.min(...sc), Math.max(...sc)];
  const x = scale([latMin, latMax], [PLOT.left, PLOT.width - PLOT.right]);
  const y = scale([scMin, scMax], [PLOT.height - PLOT.bottom, PLOT.top]);

  const axes = svgEl("g", { class: "axis" });
  axes.append(svgEl("line", { x1: PLOT.left, y1: PLOT.height - PLOT.bottom, x2: PLOT.width - PLOT.right,
    y2: PLOT.height - PLOT.bottom }));
  axes.append(svgEl("line", { x1: PLOT.left, y1: PLOT.top, x2: PLOT.left, y2: PLOT.height - PLOT.bottom }));
  for (let i = 0; i <= 4; i++) {
    const lv = latMin + (i / 4) * (latMax - latMin);
    const sv = scMin + (i / 4) * (scMax - scMin);
    axes.append(svgEl("text", { x: x(lv), y: PLOT.height - PLOT.bottom + 16, "text-anchor": "middle" },
      lv.toPrecision(3)));
    axes.append(svgEl("text", { x: PLOT.left - 6, y: y(sv) + 4, "text-anchor": "end" }, sv.toPrecision(3)));
  }
  axes.append(svgEl("text", { id: "x-label", x: (PLOT.left + PLOT.width) / 2, y: PLOT.height - 8,
    "text-anchor": "middle" }, "predicted latency (ms)"));
  // The y label can be long ("predicted rank among the 500 track-2 subnets (0-499, ...)"): wrap it.
  const text = `predicted ${label}`, paren = text.indexOf(" (");
  const lines = text.length > 52 && paren > 0 && paren < 52 && text.length - paren <= 52
    ? [text.slice(0, paren + 1), text.slice(paren + 1)] // break before the parenthesis
    : wrap(text, 52);
  const middle = (PLOT.top + PLOT.height - PLOT.bottom) / 2;
  const yLabel = svgEl("text", { id: "y-label", class: "axis-label", "text-anchor": "middle",
    transform: `translate(${14} ${middle}) rotate(-90)` });
  lines.forEach((line, i) => yLabel.append(svgEl("tspan", { x: 0, dy: i ? "1.2em" : 0 }, line)));
  axes.append(yLabel);
  svg.append(axes);

  if (!$("budget").disabled && state.budget !== null && state.budget >= latMin && state.budget <= latMax) {
    svg.append(svgEl("line", { class: "budget-line", x1: x(state.budget), x2: x(state.budget), y1: PLOT.top,
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
  const conf = confidence();
  for (const p of pts) {
    const classes = ["point"];
    if (p.measured) classes.push("measured");
    if (p.arch === state.chosen) classes.push("chosen");
    const budget = budgetOf(p, z);
    const circle = svgEl("circle", { class: classes.join(" "), cx: x(p.latency_ms), cy: y(p.score), r: 4,
      "data-arch": p.arch, "data-budget": budget });
    circle.append(svgEl("title", {}, `${p.arch}${p.measured ? " (measured)" : ""}\n` +
      `predicted ${label}: ${p.score.toFixed(3)} ± ${p.score_std.toFixed(3)}\n` +
      `predicted latency: ${p.latency_ms.toFixed(2)} ± ${p.latency_std.toFixed(2)} ms\n` +
      `${formatCount(p.params)} parameters, ${formatCount(p.macs)} MACs\n` +
      `meets a budget of ${formatMs(budget)} ms with probability ${conf}; click to use that budget`));
    circle.addEventListener("click", () => {
      setBudget(reachable(budget));
      drawPlot();
      scheduleQuery();
    });
    svg.append(circle);
  }
}

// ---- Budget queries ------------------------------------------------------------------------------

function scheduleQuery() {
  clearTimeout(state.queryTimer);
  state.queryTimer = setTimeout(runQuery, 120);
}

/** True for /v1/query's 422 "no subnet meets the budget" (a value error on the budget field). */
function isNothingFits(error) {
  return error instanceof ApiError && error.status === 422 && Array.isArray(error.detail) &&
    error.detail.some((item) => item && item.type === "value_error" && fieldOf(item.loc) === "latency_budget_ms");
}

async function runQuery() {
  if (state.budget === null) return;
  const seq = ++state.querySeq;
  const budget = state.budget, conf = confidence();
  const body = {
    space: $("space").value, task: $("task").value, device: $("device").value,
    latency_budget_ms: budget, confidence: conf,
  };
  let result;
  try {
    result = await request("/v1/query", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (error) {
    if (seq !== state.querySeq) return; // a newer budget has been asked for
    if (isNothingFits(error)) {
      let text = `Nothing fits a budget of ${formatMs(budget)} ms at confidence ${conf}.`;
      if (state.points.length) {
        text += ` The cheapest budget this front meets at that confidence is ${formatMs(budgetRange()[0])} ms.`;
      }
      const server = error.detail.filter((item) => item && typeof item.msg === "string")
        .map((item) => sentence(item.msg)).join(" ");
      showChoice("nothing fits", `${text} ${server}`, true);
    } else {
      showChoice("no subnet chosen", `The query failed. ${describeError(error)}`, true);
    }
    drawPlot();
    return;
  }
  if (seq !== state.querySeq) return;
  const p = result.predicted;
  showChoice(result.arch,
    `predicted ${scoreLabel()}: ${p.score.toFixed(3)} ± ${p.score_std.toFixed(3)}; predicted latency: ` +
    `${p.latency_ms.toFixed(2)} ± ${p.latency_std.toFixed(2)} ms; P(latency ≤ ${formatMs(budget)} ms) = ` +
    `${p.p_feasible.toFixed(3)}, at least the required ${conf}; ${formatCount(result.params)} parameters, ` +
    `${formatCount(result.macs)} MACs`);
  renderConfig(result.config);
  offerDownload("subnet", result.artifact);
  drawPlot();
}

function renderConfig(config) {
  const layers = (config && config.layers) || [];
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

// ---- Deployments: several tasks on one chip ------------------------------------------------------

const DTYPE_BYTES = { float32: 4, float16: 2, bfloat16: 2, int8: 1 };
const MEMORY_STEPS = 100; // the memory slider's positions: 0..99 are caps, 100 is "no cap"
const deploy = {
  fronts: new Map(), // task -> {loading} | {points} | {error}, of frontKey's space and device
  frontKey: "",
  cap: null, // max_params asked for; null: no cap
  top: null, // parameters of the latest answer without a cap, for the chosen tasks
  timer: null, inFlight: false, again: false,
  shownKey: null, // the request (as JSON) whose answer, or lasting error, is shown
  shown: null, // [body, answer] shown
};

/** An exact count with thousands separators: 66,900,672. */
function formatInt(value) { return Math.round(value).toLocaleString("en-US"); }

function dtype() { return $("deploy-dtype").value; }

/** Megabytes (10^6 bytes) of ``params`` weights stored as the chosen dtype: "267.6 MB". */
function formatMB(params) { return `${Number((params * DTYPE_BYTES[dtype()] / 1e6).toPrecision(4))} MB`; }

function deployRows() { return [...$("deploy-tasks").tBodies[0].rows]; }
function chosenRows() { return deployRows().filter((row) => row.querySelector(".deploy-check").checked); }
function deployRowOf(task) { return deployRows().find((row) => row.dataset.task === task); }

function numberInput(className, label, attrs) {
  const input = document.createElement("input");
  Object.assign(input, { type: "number", className, min: 0, step: "any", ...attrs });
  input.setAttribute("aria-label", label);
  return input;
}

/** The row of ``task``: whether it is deployed, its latency budget (with its front's range) and weight. */
function deploymentRow(task) {
  const tr = document.createElement("tr");
  tr.dataset.task = task;
  const check = document.createElement("input");
  Object.assign(check, { type: "checkbox", className: "deploy-check", id: `deploy-${task}` });
  const name = document.createElement("label");
  name.htmlFor = check.id;
  name.textContent = task;
  const budget = numberInput("deploy-budget", `latency budget of ${task} (ms)`, { placeholder: "none" });
  const hint = document.createElement("span");
  hint.className = "front-hint hint";
  const weight = numberInput("deploy-weight", `weight of ${task}`, { value: 1, placeholder: "1" });
  const cells = [[check], [name], [budget, hint], [weight]];
  for (const children of cells) {
    const td = document.createElement("td");
    td.append(...children);
    tr.append(td);
  }
  return tr;
}

/** The deployment rows of the chosen space's tasks, none chosen. */
function updateDeploymentTasks() {
  const space = currentSpace();
  $("deploy-tasks").tBodies[0].replaceChildren(...(space ? space.tasks : []).map(deploymentRow));
  reloadDeploymentFronts();
}

/** Forget the fronts (another space or device), then load those of the chosen tasks again. */
function reloadDeploymentFronts() {
  deploy.fronts = new Map();
  deploy.frontKey = JSON.stringify([$("space").value, $("device").value]);
  deploy.cap = null;
  deploy.top = null;
  for (const row of deployRows()) {
    row.querySelector(".front-hint").textContent = "";
    if (!row.querySelector(".deploy-budget").dataset.touched) row.querySelector(".deploy-budget").value = "";
  }
  for (const row of chosenRows()) loadTaskFront(row.dataset.task);
  updateMemoryRange();
  scheduleDeployment();
}

/** Fetch the front of ``task`` (once per space and device): it gives the default budget and memory range. */
async function loadTaskFront(task) {
  if (deploy.fronts.has(task)) return;
  const key = deploy.frontKey, [space, device] = JSON.parse(key);
  deploy.fronts.set(task, { loading: true });
  let front;
  try {
    front = { points: await fetchFront(space, task, device) };
  } catch (error) {
    front = { error };
  }
  if (key !== deploy.frontKey) return; // another space or device was chosen meanwhile
  deploy.fronts.set(task, front);
  applyDefaultBudget(task);
  updateMemoryRange();
  scheduleDeployment();
}

/**
 * Show the budgets the front of ``task`` meets at the chosen confidence, and, unless the budget
 * was typed, set it to the middle of that range.
 */
function applyDefaultBudget(task) {
  const row = deployRowOf(task), front = deploy.fronts.get(task);
  if (!row || !front || front.loading) return;
  const hint = row.querySelector(".front-hint"), budget = row.querySelector(".deploy-budget");
  if (front.error || !front.points.length) {
    hint.textContent = "no front";
    hint.title = front.error ? describeError(front.error) : "The front of this task is empty.";
    return;
  }
  const [lo, hi] = budgetRange(front.points);
  hint.textContent = `front: ${formatMs(lo)}–${formatMs(hi)}`;
  hint.title = `The front's subnets of ${task} meet budgets from ${formatMs(lo)} to ${formatMs(hi)} ms ` +
    `with probability ${confidence()}.`;
  if (!budget.dataset.touched) budget.value = formatMs(reachable((lo + hi) / 2));
}

/**
 * [lowest, highest] cap of the memory slider, or null while a chosen task has no front: from the
 * largest of the chosen tasks' smallest front subnets (no deployment holds less) to the size of
 * the latest answer without a cap (before one: the tasks' largest front subnets side by side).
 */
function memoryBounds() {
  const rows = chosenRows();
  const params = rows.map((row) => {
    const front = deploy.fronts.get(row.dataset.task);
    return front && front.points ? front.points.map((p) => p.params).filter((n) => Number.isFinite(n)) : [];
  });
  if (!rows.length || params.some((list) => !list.length)) return null;
  const lo = Math.max(...params.map((list) => Math.min(...list)));
  let hi = deploy.top ?? params.reduce((sum, list) => sum + Math.max(...list), 0);
  if (hi <= lo) hi = lo + Math.max(1, Math.round(lo * 0.05));
  return [lo, hi];
}

function capAt(position, [lo, hi]) {
  return position >= MEMORY_STEPS ? null : Math.round(lo + ((hi - lo) * position) / (MEMORY_STEPS - 1));
}

function positionOf(cap, [lo, hi]) {
  if (cap === null) return MEMORY_STEPS;
  return Math.min(Math.max(Math.round(((cap - lo) / (hi - lo)) * (MEMORY_STEPS - 1)), 0), MEMORY_STEPS - 1);
}

function showCap() {
  const out = $("memory-value");
  out.dataset.cap = deploy.cap === null ? "none" : String(deploy.cap);
  out.textContent = deploy.cap === null ? "no cap"
    : `at most ${formatInt(deploy.cap)} parameters (${formatMB(deploy.cap)} as ${dtype()})`;
}

function updateMemoryRange() {
  const bounds = memoryBounds(), slider = $("memory");
  slider.disabled = bounds === null;
  if (bounds === null) {
    deploy.cap = null;
    slider.value = MEMORY_STEPS;
    const missing = chosenRows().map((row) => row.dataset.task).find((task) => {
      const front = deploy.fronts.get(task);
      return front && !front.loading && !(front.points || []).some((p) => Number.isFinite(p.params));
    });
    $("memory-range").textContent = missing !== undefined
      ? `No memory cap to choose: ${missing} has no front on this device to size one with.`
      : chosenRows().length ? "The memory cap waits for the chosen tasks' fronts." : "";
  } else {
    const [lo, hi] = bounds;
    slider.value = positionOf(deploy.cap, bounds);
    $("memory-range").textContent = `From ${formatInt(lo)} parameters (${formatMB(lo)}: the largest of the ` +
      `chosen tasks' smallest front subnets) to ${formatInt(hi)} (${formatMB(hi)}` +
      `${deploy.top === null ? "" : ": the deployment without a cap"}), then no cap.`;
  }
  showCap();
}

/** The request the controls describe: {body}, {empty} (no task chosen) or {problem} (a sentence). */
function deploymentBody() {
  const rows = chosenRows();
  if (!rows.length) return { empty: true };
  const tasks = [];
  for (const row of rows) {
    const task = row.dataset.task, item = { task };
    for (const [field, input, what] of [["weight", ".deploy-weight", "weight"],
      ["latency_budget_ms", ".deploy-budget", "latency budget"]]) {
      const el = row.querySelector(input), text = el.value.trim();
      if (el.validity.badInput || (text !== "" && !Number.isFinite(Number(text)))) {
        return { problem: `The ${what} of ${task} is not a number.` };
      }
      if (text !== "") item[field] = Number(text);
      else if (field === "weight") item.weight = 1;
    }
    tasks.push(item);
  }
  const body = { space: $("space").value, device: $("device").value, tasks, confidence: confidence(),
    input: $("deploy-input").value };
  if (deploy.cap !== null) body.max_params = deploy.cap;
  return { body };
}

function setDeployStatus(text, isError = false) {
  $("deploy-status").textContent = text;
  $("deploy-status").classList.toggle("error", isError);
}

function clearDeployment(state, cap) {
  deploy.shown = null;
  offerDownload("deployment", null);
  const result = $("deploy-result");
  result.dataset.state = state;
  result.dataset.cap = cap;
  result.classList.remove("stale");
  $("deploy-table").tHead.replaceChildren();
  $("deploy-table").tBodies[0].replaceChildren();
  $("deploy-summary").textContent = "";
  delete $("deploy-summary").dataset.params;
}

function showDeploymentError(text, body) {
  clearDeployment("error", body && body.max_params !== undefined ? String(body.max_params) : "none");
  setDeployStatus(text, true);
}

/** Plain sentences for a failed deployment query, naming a task where the API names its index. */
function describeDeploymentError(error, body) {
  if (!(error instanceof ApiError) || !Array.isArray(error.detail) || !error.detail.length) {
    return describeError(error);
  }
  return error.detail.map((item) => {
    const loc = (item && Array.isArray(item.loc) ? item.loc : []).slice();
    if (["body", "query", "path"].includes(loc[0])) loc.shift();
    const msg = item && typeof item.msg === "string" ? item.msg.replace(/^Value error, /, "") : "is not valid";
    let where = loc.join(".");
    if (loc[0] === "tasks" && Number.isInteger(loc[1]) && body.tasks[loc[1]]) {
      where = [`task ${body.tasks[loc[1]].task}`, ...loc.slice(2)].join(" ");
    } else if (item && item.type === "value_error" && ["tasks", "max_params", "max_weight_mb"].includes(where)) {
      where = ""; // "no deployment meets every budget ...": the message names what misses
    }
    return where ? `${where}: ${sentence(msg)}` : sentence(msg);
  }).join(" ");
}

function showDeployment(body, answer) {
  clearDeployment("answer", body.max_params !== undefined ? String(body.max_params) : "none");
  deploy.shown = [body, answer];
  const budgets = new Map(body.tasks.map((t) => [t.task, t.latency_budget_ms]));
  const table = $("deploy-table");
  table.tHead.replaceChildren(rowOf("th", ["task", "arch", "predicted score", "predicted latency (ms)",
    "P(latency ≤ budget)", "parameters alone"]));
  table.tHead.rows[0].cells[2].title = `predicted ${scoreLabel()} ± 1 std`;
  table.tBodies[0].replaceChildren(...answer.tasks.map((t) => {
    const p = t.predicted, budget = budgets.get(t.task);
    const tr = rowOf("td", [t.task, t.arch, `${p.score.toFixed(3)} ± ${p.score_std.toFixed(3)}`,
      `${p.latency_ms.toFixed(2)} ± ${p.latency_std.toFixed(2)}`,
      budget === undefined ? "1 (no budget)" : `${p.p_feasible.toFixed(3)} (≤ ${formatMs(budget)} ms)`,
      formatInt(t.params_alone)]);
    tr.dataset.task = t.task;
    tr.dataset.arch = t.arch;
    tr.cells[1].className = "arch";
    tr.cells[2].title = `normalised score ${p.normalised_score.toFixed(3)}`;
    return tr;
  }));
  const saved = answer.independent_params > 0 ? (1 - answer.params / answer.independent_params) * 100 : 0;
  const summary = $("deploy-summary");
  summary.dataset.params = String(answer.params);
  summary.textContent = `The deployment holds ${formatInt(answer.params)} parameters (${formatMB(answer.params)} ` +
    `as ${dtype()}) against ${formatInt(answer.independent_params)} (${formatMB(answer.independent_params)}) ` +
    `for the tasks' paths as separate models: ${saved.toFixed(1)}% saved. ` +
    `Objective (weighted sum of the normalised predicted scores): ${answer.objective.toFixed(3)}; ` +
    `method: ${answer.method}, ${formatInt(answer.evaluations)} deployments evaluated` +
    `${answer.input === "shared" ? "; one shared image, each task waiting for the joint forward" : ""}.`;
  offerDownload("deployment", answer.artifact);
  setDeployStatus(`The best deployment found of ${answer.tasks.length} task${answer.tasks.length === 1 ? "" : "s"} ` +
    `on ${answer.device} at confidence ${body.confidence}` +
    `${body.max_params === undefined ? ", without a memory cap" : `, within ${formatInt(body.max_params)} parameters`}:`);
}

function scheduleDeployment() {
  clearTimeout(deploy.timer);
  if (!chosenRows().length) runDeployment(); // nothing to ask: say so at once
  else deploy.timer = setTimeout(runDeployment, 250);
}

/**
 * Ask for the deployment the controls describe. One request at a time: one asked for meanwhile
 * waits for it, and an answer is shown only while the controls still describe its request (so a
 * stale answer never replaces a newer one).
 */
async function runDeployment() {
  clearTimeout(deploy.timer);
  if (deploy.inFlight) { deploy.again = true; return; }
  const built = deploymentBody();
  if (built.empty || built.problem) {
    deploy.shownKey = null;
    if (built.empty) { clearDeployment("none", "none"); setDeployStatus("Choose one or more tasks to deploy together."); }
    else showDeploymentError(built.problem, null);
    return;
  }
  const body = built.body;
  if (body.tasks.some((t) => (deploy.fronts.get(t.task) || {}).loading)) {
    setDeployStatus("Loading the chosen tasks' fronts…");
    return; // each front schedules the query again when it arrives
  }
  const key = JSON.stringify(body);
  if (key === deploy.shownKey) return;
  deploy.inFlight = true;
  $("deploy-result").classList.add("stale");
  setDeployStatus("Searching for the best deployment…");
  let answer = null, failure = null;
  try {
    answer = await request("/v1/deployments/query", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: key,
    });
  } catch (error) {
    failure = error;
  }
  deploy.inFlight = false;
  const now = deploymentBody();
  if (now.body && JSON.stringify(now.body) === key) {
    if (answer) {
      showDeployment(body, answer);
      if (body.max_params === undefined && deploy.top !== answer.params) {
        deploy.top = answer.params;
        updateMemoryRange();
      }
    } else {
      showDeploymentError(describeDeploymentError(failure, body), body);
    }
    // Errors that may pass (no worker free, a refit pending, no connection) are asked again.
    const lasting = answer || (failure instanceof ApiError && [404, 422].includes(failure.status));
    deploy.shownKey = lasting ? key : null;
  }
  if (deploy.again) { deploy.again = false; runDeployment(); }
}

$("deploy-tasks").addEventListener("change", (event) => {
  const row = event.target.closest("tr");
  if (!row || !event.target.classList.contains("deploy-check")) return;
  deploy.cap = null; // another set of tasks: the memory range changes
  deploy.top = null;
  if (event.target.checked) loadTaskFront(row.dataset.task);
  updateMemoryRange();
  scheduleDeployment();
});
$("deploy-tasks").addEventListener("input", (event) => {
  if (event.target.classList.contains("deploy-budget")) event.target.dataset.touched = "yes";
  if (event.target.type === "number") scheduleDeployment();
});
$("deploy-input").addEventListener("change", scheduleDeployment);
$("deploy-dtype").addEventListener("change", () => {
  updateMemoryRange();
  // The answer is in parameters: only its megabytes change, so it is not asked for again.
  if (deploy.shown && $("deploy-result").dataset.state === "answer") showDeployment(...deploy.shown);
});
$("memory").addEventListener("input", () => {
  const bounds = memoryBounds();
  if (bounds === null) return;
  deploy.cap = capAt(Number($("memory").value), bounds);
  showCap();
  scheduleDeployment();
});

// ---- Downloads -----------------------------------------------------------------------------------

/** The artifact request of the answer shown, per kind ("subnet", "deployment"): what it posts. */
const downloads = { subnet: null, deployment: null };

function offerDownload(kind, body) {
  downloads[kind] = body || null;
  $(`download-${kind}`).disabled = !body;
  $(`download-${kind}-status`).textContent = "";
  $(`download-${kind}-status`).classList.remove("error");
}

function describeWeights(weights) {
  return weights.supernet_version !== null && weights.supernet_version !== undefined
    ? `supernet version ${weights.supernet_version}` : `random weights (seed ${weights.random_seed})`;
}

/**
 * Have the server build (or find) the file of the answer shown, exactly as the answer's
 * ``artifact`` says (POST /v1/artifacts), then download it from its URL.
 */
async function download(kind) {
  const body = downloads[kind];
  if (!body) return;
  const status = $(`download-${kind}-status`);
  status.classList.remove("error");
  status.textContent = "Building the file on the server…";
  const headers = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const artifact = await request("/v1/artifacts", { method: "POST", headers, body: JSON.stringify(body) });
    if (downloads[kind] !== body) return; // another answer is shown now
    status.textContent = `${artifact.format} ${artifact.precision}, ${formatInt(artifact.size_bytes)} bytes, ` +
      `${describeWeights(artifact.weights)}, sha256 ${artifact.digest}.`;
    const link = document.createElement("a");
    link.href = artifact.url;
    link.download = `${artifact.digest}.onnx`;
    link.click();
  } catch (error) {
    if (downloads[kind] !== body) return;
    status.textContent = `The file could not be made. ${describeError(error)}`;
    status.classList.add("error");
  }
}

$("download-subnet").addEventListener("click", () => download("subnet"));
$("download-deployment").addEventListener("click", () => download("deployment"));

$("space").addEventListener("change", () => { updateTasks(); loadFront(); updateDeploymentTasks(); });
$("task").addEventListener("change", loadFront);
$("device").addEventListener("change", () => { loadFront(); reloadDeploymentFronts(); });
$("confidence").addEventListener("change", () => {
  updateBudgetRange(false); drawPlot(); scheduleQuery();
  for (const row of chosenRows()) applyDefaultBudget(row.dataset.task);
  scheduleDeployment();
});
$("budget").addEventListener("input", () => { setBudget(Number($("budget").value)); drawPlot(); scheduleQuery(); });

loadChoices().then(loadFront).catch((error) => setStatus(`Could not load the page. ${describeError(error)}`, true));
