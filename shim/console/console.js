// ticketserve console: six pages over the public /api/v1 routes, no build step, no libraries.
// The API key lives in sessionStorage (this tab, until it closes). Every error the API answers is
// shown as the API words it. All text from the API goes into the page as text, never as HTML.
"use strict";

const KEY = "ticketserve.apiKey";
const PAGES = ["data", "train", "models", "try", "monitoring", "connectors"];
const TRAIN_FIELDS = ["epochs", "max_length", "seed"];
const POLL_MS = 1000;
const SEPARATOR = /^\s*---\s*$/m;

// -- small helpers ------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...nodes(children));
  return el;
}

// Nodes of `children`: nested arrays flattened; null, undefined and false skipped; text as text.
function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

// Replace what `el` holds with `children`.
function fill(el, ...children) {
  el.replaceChildren(...nodes(children));
}

const $ = (id) => document.getElementById(id);
const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
const num = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

function table(headers, rows, numeric = []) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map((t, i) =>
        h("th", { scope: "col", class: numeric.includes(i) ? "num" : null, text: t })))),
      h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell, i) =>
        h("td", { class: numeric.includes(i) ? "num" : null }, cell)))))));
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}`, text });
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function say(message) {
  $("status").textContent = message;
}

// Bars in [0, max] as a small SVG, with each value in its title (hover) and the chart's label.
function bars(values, labels, { max = 1, label = "", color = "#1f5fbf" } = {}) {
  const width = Math.max(160, values.length * 22), height = 70, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 14}`);
  svg.setAttribute("width", width);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const step = width / Math.max(values.length, 1);
  values.forEach((value, i) => {
    const v = value === null || value === undefined ? 0 : Math.min(value / max, 1);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", i * step + 2);
    rect.setAttribute("width", Math.max(step - 4, 2));
    rect.setAttribute("y", height - v * height);
    rect.setAttribute("height", Math.max(v * height, value === null ? 0 : 1));
    rect.setAttribute("fill", value === null || value === undefined ? "#ccd" : color);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${labels[i]}: ${value === null || value === undefined ? "no data" : num(value)}`;
    rect.append(title);
    svg.append(rect);
  });
  const base = document.createElementNS(ns, "line");
  Object.entries({ x1: 0, x2: width, y1: height, y2: height, stroke: "#889" })
    .forEach(([k, v]) => base.setAttribute(k, v));
  svg.append(base);
  return svg;
}

// -- the API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, { json, body, contentType, blob = false } = {}) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (exc) {
    throw new ApiError(`the service does not answer (${exc.message})`, 0, "network");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`, code = null;
    try {
      const answer = await response.json();
      if (answer && answer.error) ({ message, code } = answer.error);
    } catch (_) { /* not JSON: keep the status line */ }
    throw new ApiError(message, response.status, code);
  }
  return blob ? response.blob() : response.json();
}

// Run an action; an API error is shown as the API words it.
async function guarded(action) {
  try {
    showError("");
    return await action();
  } catch (exc) {
    showError(exc instanceof ApiError ? exc.message : `unexpected: ${exc.message}`);
    return undefined;
  }
}

// -- Data ---------------------------------------------------------------------------------------

const CONTENT_TYPES = { csv: "text/csv", json: "application/json", jsonl: "application/x-ndjson", ndjson: "application/x-ndjson" };

function contentTypeOf(file) {
  const ext = file.name.split(".").pop().toLowerCase();
  return CONTENT_TYPES[ext] || file.type || "text/csv";
}

async function upload(file) {
  const replace = $("upload-replace").checked;
  const features = $("upload-features").value.trim();
  const query = `replace=${replace}` + (features ? `&feature_columns=${encodeURIComponent(features)}` : "");
  say(`uploading ${file.name}…`);
  const report = await guarded(() => api("POST", `/api/v1/train-data?${query}`,
    { body: file, contentType: contentTypeOf(file) }));
  say("");
  if (!report) return;
  const out = $("upload-report");
  fill(out,
    h("h3", { text: `Upload of ${file.name}` }),
    facts([
      ["rows read", report.rows_read],
      ["accepted", report.rows_accepted],
      ["rejected", report.rows_rejected],
      ["duplicates dropped", report.duplicates_dropped],
      ["stored now", `${report.stored_rows} rows in ${report.stored_datasets} upload(s)`],
    ]),
    report.duplicate ? h("p", { class: "hint", text: "This exact upload was already stored: nothing was added." }) : null,
    report.rejected.length ? [h("h4", { text: "Rejected rows" }),
      table(["row", "reason"], report.rejected.map((r) => [r.row, r.reason]), [0])] : null,
    [...report.warnings, ...report.conflicts].map((w) => h("p", { class: "hint", text: w })),
    labelCounts(report.label_counts));
  await loadData();
}

function labelCounts(counts) {
  return Object.entries(counts || {}).map(([head, labels]) => [
    h("h4", { text: `${head} labels` }),
    table(["label", "tickets"], Object.entries(labels).map(([l, n]) => [l, n]), [1]),
  ]);
}

async function loadData() {
  const summary = await guarded(() => api("GET", "/api/v1/train-data"));
  if (!summary) return;
  fill($("stored"),
    facts([["tickets", summary.rows], ["heads", summary.heads.join(", ") || "–"]]),
    summary.datasets.length ? table(["upload", "format", "rows", "stored at"],
      summary.datasets.map((d) => [d.id, d.format, d.rows, when(d.created_at)]), [2]) : null,
    labelCounts(summary.label_counts));
}

function setUpUpload() {
  const zone = $("drop-zone"), input = $("upload-file");
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  zone.tabIndex = 0;
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) upload(file);
  });
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.files[0]) upload(input.files[0]);
    else showError("choose a file first");
  });
}

// -- Train --------------------------------------------------------------------------------------

let pollTimer = null;

// The bounds of the training settings, as the API's own OpenAPI schema states them.
async function applyBounds() {
  const spec = await guarded(() => api("GET", "/openapi.json"));
  const props = spec?.components?.schemas?.TrainRequest?.properties || {};
  for (const name of TRAIN_FIELDS) {
    const prop = props[name] || {};
    const typed = (prop.anyOf || [prop]).find((p) => p.type === "integer" || p.type === "number") || {};
    const input = document.querySelector(`#train-form [name="${name}"]`);
    if (typed.minimum !== undefined) input.min = typed.minimum;
    if (typed.maximum !== undefined) input.max = typed.maximum;
    input.placeholder = typed.minimum !== undefined ? `${typed.minimum}–${typed.maximum}` : "";
    if (prop.description) input.title = prop.description;
  }
}

function showJob(job) {
  const progress = job.progress;
  const running = job.status === "queued" || job.status === "running";
  const summary = job.metrics || {};
  fill($("job"),
    h("h3", { text: `Job ${job.job_id}` }),
    facts([
      ["status", badge(job.status, { succeeded: "good", failed: "bad", cancelled: "warn" }[job.status] || "")],
      ["phase", job.phase],
      ["started by", job.trigger],
      ["mode", job.mode || "–"],
      ["tickets", job.data_rows ?? "–"],
      ["ETA", job.eta_s === null ? "–" : `${Math.round(job.eta_s)} s`],
    ]),
    progress ? [
      h("progress", { max: progress.total_steps || 1, value: progress.step, "aria-label": "training progress" }),
      h("p", { class: "hint", text:
        `${progress.stage}: epoch ${progress.epoch}/${progress.epochs}, step ${progress.step}/${progress.total_steps}` +
        (progress.loss !== null ? `, loss ${num(progress.loss)}` : "") +
        `, ${Math.round(progress.elapsed_s)} s elapsed` }),
    ] : null,
    running ? h("div", { class: "actions" },
      h("button", { type: "button", class: "danger", id: "cancel-job", onclick: () => cancelJob(job.job_id), text: "Cancel" })) : null,
    job.status === "succeeded" ? facts([
      ["new version", job.model_version],
      ["default", job.is_default ? "yes" : "no"],
      ["why", job.note || "–"],
      ["validation macro-F1", num(summary.validation_macro_f1)],
      ["test macro-F1", num(summary.test_macro_f1)],
    ]) : null,
    job.error ? h("p", { class: "hint", text: `error: ${job.error}` }) : null);
  $("train-button").disabled = running;
  clearTimeout(pollTimer);
  if (running) pollTimer = setTimeout(() => followJob(job.job_id), POLL_MS);
}

async function followJob(id) {
  try {
    showJob(await api("GET", `/api/v1/train/${encodeURIComponent(id)}`));
  } catch (exc) {
    showError(exc.message);
    pollTimer = setTimeout(() => followJob(id), 5 * POLL_MS);
  }
}

async function cancelJob(id) {
  if (!window.confirm(`Cancel training job ${id}?`)) return;
  const job = await guarded(() => api("POST", `/api/v1/train/${encodeURIComponent(id)}/cancel`));
  if (job) showJob(job);
}

async function loadTrain() {
  await applyBounds();
  try {
    showJob(await api("GET", "/api/v1/train"));
  } catch (exc) {
    if (exc.status === 404) fill($("job"), h("p", { class: "hint", text: "No training job yet." }));
    else showError(exc.message);
  }
}

function setUpTrain() {
  $("train-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target), params = {};
    for (const [name, value] of form.entries()) {
      if (value === "") continue;
      params[name] = TRAIN_FIELDS.includes(name) ? Number(value)
        : name === "feature_columns" ? value.split(",").map((c) => c.trim()) : value;
    }
    const job = await guarded(() => api("POST", "/api/v1/train", { json: params }));
    if (job) showJob(job);
  });
}

// -- Models -------------------------------------------------------------------------------------

async function showFigures(version, heads, target) {
  const images = await Promise.all(heads.flatMap((head) => ["confusion", "reliability"].map(async (kind) => {
    try {
      const blob = await api("GET", `/api/v1/models/${version}/figures/${kind}_${head}.png`, { blob: true });
      return h("img", { src: URL.createObjectURL(blob), alt: `${kind === "confusion" ? "Confusion matrix" : "Reliability diagram"} of ${head}, version ${version}` });
    } catch (exc) {
      return h("p", { class: "hint", text: `${kind} ${head}: ${exc.message}` });
    }
  })));
  fill(target, ...images);
}

function versionCard(v) {
  const test = v.metrics.test || {};
  const heads = Object.keys(test);
  const figures = h("div", { class: "figures" });
  const rows = heads.map((head) => {
    const m = test[head], gate = m.gate || {};
    return [head, num(m.accuracy), num(m.macro_f1), num(m.ece),
      gate.coverage === undefined ? "–" : `${pct(gate.coverage)} at ${num(gate.target_precision, 2)}`];
  });
  return h("article", { class: "card", "data-version": v.version },
    h("h3", {}, `Version ${v.version} `, v.is_default ? badge("default", "good") : null,
      v.loaded ? badge("loaded") : null),
    facts([
      ["created", when(v.created_at)],
      ["tickets", v.data_rows],
      ["validation macro-F1", num(v.validation_macro_f1)],
      ["test macro-F1", num(v.test_macro_f1)],
      ["mode", v.metrics.mode || "–"],
    ]),
    rows.length ? table(["head", "accuracy", "macro-F1", "ECE", "auto-routed (precision)"], rows, [1, 2, 3]) : null,
    gatesPart(v.gates || {}),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => showFigures(v.version, heads, figures), text: "Pictures" }),
      h("button", { type: "button", class: "secondary", onclick: () => showLabelIssues(v, heads, figures), text: "Label issues" }),
      v.is_default ? null : h("button", { type: "button", onclick: () => activate(v.version), text: "Make default" }),
      v.is_default ? null : h("button", { type: "button", class: "danger", onclick: () => remove(v.version), text: "Delete" })),
    figures);
}

// A version's suspected label errors per head, each with a one-click relabel to the suggested
// label (or another): a correction of the stored row, which the next training learns.
async function showLabelIssues(v, heads, box) {
  const parts = [];
  // The labels a row can take: the stored training data's (a correction is checked against them).
  const stored = await guarded(() => api("GET", "/api/v1/train-data"));
  if (!stored) return;
  for (const head of heads) {
    const page = await guarded(() => api("GET",
      `/api/v1/models/${v.version}/label-issues?head=${encodeURIComponent(head)}&limit=20`));
    if (!page) return;
    parts.push(h("h4", { text: `${head}: suspected label errors` }));
    if (!page.available) { parts.push(h("p", { class: "hint", text: page.reason })); continue; }
    parts.push(h("p", { class: "hint", text: `${page.flagged} of ${page.rows_scored} rows flagged; ` +
      Object.entries(page.per_class).map(([l, n]) => `${l} ${n}`).join(" · ") }));
    const names = Object.keys(stored.label_counts[head] || {}).sort();
    parts.push(table(["row", "text", "given", "score", "relabel"], page.issues.map((issue) =>
      [issue.row_id, issue.text, issue.given, num(issue.score), relabelForm(head, issue, names)]), [3]));
  }
  fill(box, parts);
}

function relabelForm(head, issue, names) {
  if (!issue.row_id.match(/:[0-9]+$/)) return h("span", { class: "hint", text: "a correction" });
  const select = h("select", { name: head, "aria-label": `relabel row ${issue.row_id}` },
    (names.length ? names : [issue.suggested]).map((l) => h("option", { value: l, text: l })));
  select.value = issue.suggested;
  const result = h("span", { class: "hint" });
  const form = h("form", { class: "actions relabel", "data-row": issue.row_id }, select,
    h("button", { type: "submit", class: "secondary", text: "Relabel" }), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const saved = await guarded(() => api("POST", "/api/v1/feedback",
      { json: { row_id: issue.row_id, [head]: select.value } }));
    if (saved) result.textContent = `${saved.replaced ? "correction replaced" : "correction saved"}: ${head} ${saved.labels[head]}`;
  });
  return form;
}

// One sentence per head on what its auto-routing gate promises (GatePublic).
function gateSentence(head, g) {
  if (g.rule === "class" && g.status === "open") {
    const never = g.unreachable || [];
    return h("p", { class: "gate" }, badge(`${head}: gate per class`, "good"),
      ` each answer at its class's threshold: about ${pct(g.expected_coverage)} of tickets are routed, ` +
      `right at least ${pct(g.precision_lower_bound)} of the time (${pct(g.confidence_level)} confidence; ` +
      `target ${pct(g.target_precision)})` + (never.length ? `; never routed: ${never.join(", ")}` : ""));
  }
  if (g.status === "open") {
    return h("p", { class: "gate" }, badge(`${head}: gate open`, "good"),
      ` confidence ≥ ${num(g.threshold)}: about ${pct(g.expected_coverage)} of tickets are routed, ` +
      `right at least ${pct(g.precision_lower_bound)} of the time (${pct(g.confidence_level)} confidence; ` +
      `target ${pct(g.target_precision)})`);
  }
  if (g.status === "closed") {
    const best = g.best_reachable;
    return h("p", { class: "gate" }, badge(`${head}: gate closed`, "warn"),
      ` no ticket is routed automatically: no threshold reaches ${pct(g.target_precision)} precision ` +
      `with ${pct(g.confidence_level)} confidence.` + (best ? ` Best reachable: at least ` +
      `${pct(best.precision_lower_bound)} on ${pct(best.coverage)} of tickets (confidence ≥ ${num(best.threshold)}).` : ""));
  }
  return h("p", { class: "gate" }, badge(`${head}: threshold set on the service`),
    ` confidence ≥ ${num(g.threshold)}` + (g.expected_coverage === undefined || g.expected_coverage === null ? "" :
      `: about ${pct(g.expected_coverage)} of tickets, precision ${pct(g.precision)} when trained`));
}

function gatesPart(gates) {
  const heads = Object.entries(gates);
  return heads.length ? h("div", { class: "gates" }, heads.map(([head, g]) => gateSentence(head, g))) : null;
}

async function loadModels() {
  const list = await guarded(() => api("GET", "/api/v1/models"));
  if (!list) return;
  fill($("models"), list.versions.length
    ? h("div", { class: "cards" }, [...list.versions].reverse().map(versionCard))
    : h("p", { class: "hint", text: "No model yet: upload data and train." }));
}

async function activate(version) {
  if (!window.confirm(`Make version ${version} the default? New tickets will be classified by it.`)) return;
  say(`activating version ${version}…`);
  const done = await guarded(() => api("POST", `/api/v1/models/${version}/activate`));
  say(done ? `version ${version} is the default` : "");
  await loadModels();
}

async function remove(version) {
  if (!window.confirm(`Delete version ${version}? Its model and archive are removed.`)) return;
  const done = await guarded(() => api("DELETE", `/api/v1/models/${version}`));
  say(done ? `version ${version} deleted` : "");
  await loadModels();
}

// -- Try ----------------------------------------------------------------------------------------

let knownLabels = {};

function headCell(p) {
  if (!p) return "–";
  const route = p.auto_route ? badge("auto-route", "good") : badge("review", "warn");
  return h("div", {},
    h("strong", { text: p.label }), ` ${pct(p.confidence)} `, route,
    h("div", { class: "hint", text: p.top_k.map(([l, q]) => `${l} ${pct(q)}`).join(" · ") }));
}

const SIMILAR_SHOWN = 3;

function similarPart(similar) {
  if (!similar || !similar.length) return null;
  return h("div", { class: "similar" },
    h("h4", { text: "Similar stored tickets" }),
    table(["ticket", "labels", "similarity", "text"], similar.map((s) => [
      s.id, Object.values(s.labels).join(", "), pct(s.similarity), s.text]), [2]));
}

function correction(answer) {
  const heads = Object.keys(knownLabels).filter((head) => answer[head]);
  const selects = heads.map((head) => {
    const select = h("select", { name: head, "aria-label": `correct ${head}` },
      Object.keys(knownLabels[head]).map((label) => h("option", { value: label, text: label })));
    select.value = answer[head].model_label;
    return h("label", {}, `${head} `, select);
  });
  const result = h("span", { class: "hint" });
  const form = h("form", { class: "actions correction" }, selects,
    h("button", { type: "submit", class: "secondary", text: "Send correction" }), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { prediction_id: answer.prediction_id };
    for (const select of form.querySelectorAll("select")) body[select.name] = select.value;
    const saved = await guarded(() => api("POST", "/api/v1/feedback", { json: body }));
    if (saved) result.textContent = saved.replaced ? "correction replaced" : "correction saved";
  });
  return heads.length ? form : null;
}

// "type=Incident, channel=email" -> {type: "Incident", channel: "email"}; null when empty.
function parseFields(text) {
  const pairs = text.split(",").map((p) => p.trim()).filter(Boolean);
  if (!pairs.length) return null;
  return Object.fromEntries(pairs.map((p) => {
    const at = p.indexOf("=");
    return at < 0 ? [p, null] : [p.slice(0, at).trim(), p.slice(at + 1).trim()];
  }));
}

async function classify(text, fieldsText) {
  const tickets = text.split(SEPARATOR).map((t) => t.trim()).filter(Boolean);
  if (!tickets.length) return showError("type a ticket first");
  const fields = parseFields(fieldsText);
  const answer = await guarded(() => api("POST", "/api/v1/classify", { json: {
    tickets: tickets.map((t) => (fields ? { ticket_data: t, fields } : { ticket_data: t })),
    similar: SIMILAR_SHOWN } }));
  if (!answer) return;
  const summary = await guarded(() => api("GET", "/api/v1/train-data"));
  knownLabels = summary ? summary.label_counts : {};
  fill($("answers"), ...answer.predictions.map((p, i) => h("div", { class: "answer" },
    h("p", { class: "ticket", text: tickets[i].length > 400 ? `${tickets[i].slice(0, 400)}…` : tickets[i] }),
    table([...p.heads, "version"], [[...p.heads.map((head) => headCell(p[head])), p.model_version]]),
    similarPart(p.similar),
    correction(p))));
}

function setUpTry() {
  $("try-form").addEventListener("submit", (event) => {
    event.preventDefault();
    classify($("try-text").value, $("try-fields").value);
  });
}

// -- Monitoring ---------------------------------------------------------------------------------

function driftPart(drift) {
  const kind = { ok: "good", drifting: "bad", not_enough_data: "", no_reference: "" }[drift.status];
  const heads = Object.entries(drift.heads);
  return [
    h("h4", {}, "Drift ", badge(drift.status.replaceAll("_", " "), kind)),
    h("p", { class: "hint", text: `${drift.window} of ${drift.window_size} newest answers; ` +
      `threshold ${drift.threshold}; rare word pieces ${pct(drift.rare_token_share)} ` +
      `(training ${pct(drift.reference_rare_token_share)})` }),
    heads.length ? table(["head", "score", "labels", "confidence", "rare tokens"], heads.map(([head, d]) => [
      head, d.score === null ? "–" : h("span", {}, num(d.score), " ", d.drifting ? badge("drifting", "bad") : null),
      num(d.labels.distance), num(d.confidence.distance), num(drift.rare_tokens.distance)]), [1, 2, 3, 4]) : null,
    heads.map(([head, d]) => d.labels.bins.length ? h("figure", {},
      h("figcaption", { class: "hint", text: `${head}: predicted labels (blue) vs training (grey)` }),
      bars(d.labels.live, d.labels.bins, { label: `${head} predicted label shares` }),
      bars(d.labels.reference, d.labels.bins, { label: `${head} training label shares`, color: "#8a93a6" })) : null),
  ];
}

function qualityCard(v) {
  const trend = v.trend;
  const days = trend.map((d) => d.day);
  const primary = "queue" in v.auto_route ? "queue" : Object.keys(v.auto_route)[0];
  return h("article", { class: "card", "data-version": v.model_version },
    h("h3", { text: `Version ${v.model_version}` }),
    facts([
      ["feedback agreement", `${pct(v.feedback.share)} of ${v.feedback.total}`],
      ...Object.entries(v.feedback.heads).map(([head, a]) => [`  ${head}`, `${pct(a.share)} of ${a.total}`]),
      ...Object.entries(v.auto_route).map(([head, r]) => [`auto-routed, ${head}`, `${pct(r.share)} of ${r.answers}`]),
      ...Object.entries(v.auto_route_precision).map(([head, p]) => [`auto-routed right, ${head}`,
        p.feedback ? h("span", {}, `${pct(p.precision)} of ${p.feedback} (${pct(p.low)}–${pct(p.high)})`,
          p.below_target ? badge(`below target ${pct(p.target_precision)}`, "bad") : null) : "no feedback yet"]),
    ]),
    ...Object.values(v.auto_route_precision).filter((p) => p.warning).map((p) => h("p", { class: "warning", text: p.warning })),
    h("figure", {},
      h("figcaption", { class: "hint", text: `auto-routed share of the ${primary} per day (${days[0]} to ${days[days.length - 1]})` }),
      bars(trend.map((d) => d.auto_route[primary] ? d.auto_route[primary].share : null), days, { label: "daily auto-routed share" })),
    h("figure", {},
      h("figcaption", { class: "hint", text: "feedback agreement per day" }),
      bars(trend.map((d) => d.feedback.share), days, { label: "daily feedback agreement", color: "#1d7a46" })),
    driftPart(v.drift));
}

async function loadMonitoring() {
  const report = await guarded(() => api("GET", "/api/v1/monitoring?days=14"));
  if (!report) return;
  fill($("monitoring"), report.versions.length
    ? h("div", { class: "cards" }, [...report.versions].reverse().map(qualityCard))
    : h("p", { class: "hint", text: "No model yet." }));
}

// -- Connectors ---------------------------------------------------------------------------------

const importPath = (name) => `/api/v1/connectors/${encodeURIComponent(name)}/import`;

// A connector's latest import; null when it has none yet.
async function importState(name) {
  try {
    return await api("GET", importPath(name));
  } catch (exc) {
    if (exc instanceof ApiError && exc.code === "no_import") return null;
    showError(exc instanceof ApiError ? exc.message : `unexpected: ${exc.message}`);
    return undefined;
  }
}

function importPart(state) {
  if (!state) return h("p", { class: "hint", text: "No import yet." });
  return [
    facts([
      ["import", badge(state.status, { done: "good", failed: "bad" }[state.status] || "")],
      ["closed since", state.since],
      ["pages read", state.pages],
      ["imported", state.imported],
      ["imported before", state.duplicates],
      ["skipped", state.skipped],
      ["cursor", state.cursor ?? "–"],
      ["last page", when(state.updated_at)],
    ]),
    // The help desk does not say how many tickets there are: a bar without an end.
    state.status === "running" ? h("progress", { "aria-label": `${state.connector} import running` }) : null,
    state.error ? h("p", { class: "warning", text: `error: ${state.error}` }) : null,
    state.status === "failed" ? h("p", { class: "hint",
      text: "Start it again with the same day: it resumes at its cursor." }) : null,
  ];
}

// Show each connector's import; poll while one runs.
async function followImports(names) {
  clearTimeout(pollTimer);
  let running = false;
  for (const name of names) {
    const state = await importState(name);
    const box = $(`import-${name}`);
    if (!box || state === undefined) continue;
    fill(box, importPart(state));
    const busy = state?.status === "running";
    document.querySelector(`form[data-connector="${name}"] button`).disabled = busy;
    running ||= busy;
  }
  if (running && location.hash === "#connectors") pollTimer = setTimeout(() => followImports(names), POLL_MS);
}

function connectorCard(name, c, names) {
  const since = h("input", { type: "date", name: "since", required: true,
    max: new Date().toISOString().slice(0, 10), "aria-label": `${name}: import tickets closed since` });
  const form = h("form", { class: "actions import-form", "data-connector": name },
    h("label", {}, "closed since ", since),
    h("button", { type: "submit", text: "Import" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const started = await guarded(() => api("POST", importPath(name), { json: { since: since.value } }));
    if (!started) return;
    say(started.resumed ? `${name}: import resumed at its cursor` : `${name}: import started`);
    await followImports(names);
  });
  return h("article", { class: "card", "data-connector": name },
    h("h3", {}, `${name} `, c.problem ? badge("problem", "bad") : badge("reachable", "good")),
    facts([
      ["mode", c.mode],
      ["start-up check", c.problem || "ok"],
      ["last delivery", when(c.last_delivery)],
      ["outbox depth", `${c.pending} pending`],
      ["written back", c.done],
      ["failed", c.failed],
      ["last error", c.last_error || "–"],
    ]),
    h("h4", { text: "History import" }),
    form,
    h("div", { id: `import-${name}`, class: "import-state" }));
}

async function loadConnectors() {
  const report = await guarded(() => api("GET", "/api/v1/monitoring?days=1"));
  if (!report) return;
  const names = Object.keys(report.connectors);
  fill($("connectors"), names.length
    ? h("div", { class: "cards" }, names.map((name) => connectorCard(name, report.connectors[name], names)))
    : h("p", { class: "hint", text: "No help desk is connected (see the connectors documentation)." }));
  await followImports(names);
}

// -- pages and the key --------------------------------------------------------------------------

const LOADERS = {
  data: loadData, train: loadTrain, models: loadModels, try: async () => {}, monitoring: loadMonitoring,
  connectors: loadConnectors,
};

function route() {
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "data";
  for (const section of document.querySelectorAll("section[data-page]")) {
    section.hidden = section.dataset.page !== page;
  }
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearTimeout(pollTimer);
  showError("");
  say("");
  document.title = `ticketserve · ${page}`;
  LOADERS[page]();
}

function setUpKey() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY, key);
    $("api-key").value = "";
    $("api-key").placeholder = key ? "key set for this session" : "kept for this browser session";
    route();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("api-key").placeholder = "kept for this browser session";
    route();
  });
  if (sessionStorage.getItem(KEY)) $("api-key").placeholder = "key set for this session";
}

document.addEventListener("DOMContentLoaded", () => {
  setUpKey();
  setUpUpload();
  setUpTrain();
  setUpTry();
  window.addEventListener("hashchange", route);
  route();
});
