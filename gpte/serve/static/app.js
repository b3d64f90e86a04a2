// The gpte web page: a search playground (POST /search, POST /rerank), a results board (GET /ui/results) and an
// embedding map (GET /ui/maps/NAME). Plain DOM and SVG, no library: every text from the server or the user goes
// into the page as a text node (textContent), never as HTML.
"use strict";

const KEY_STORAGE = "gpte-api-key"; // sessionStorage: the key lives as long as the tab, never in a cookie
const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const NO_LABEL_COLOUR = "#888888";
const SNIPPET_CHARS = 280;
const loaded = {}; // tab -> true once its data is shown (reset when the key changes)
let indexModes = {};

const $ = (selector) => document.querySelector(selector);

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function svgElement(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function setStatus(message, isError = false) {
  const status = $("#status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

// ------------------------------------------------------------------ requests

async function api(path, body) {
  const headers = {};
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = `Bearer ${key}`;
  const options = { headers };
  if (body !== undefined) {
    options.method = "POST";
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = data && data.detail !== undefined ? data.detail : response.statusText;
    const text = typeof detail === "string" ? detail : JSON.stringify(detail);
    throw new Error(response.status === 401 ? `${text} (type the server's API key above)` : `${response.status}: ${text}`);
  }
  return data;
}

// ------------------------------------------------------------------ tabs

function showTab(name) {
  if (!document.getElementById(name)) name = "search";
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== name;
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  setStatus("");
  if (!loaded[name]) {
    loaded[name] = true;
    LOADERS[name]().catch((error) => {
      loaded[name] = false;
      setStatus(error.message, true);
    });
  }
}

// ------------------------------------------------------------------ search

async function loadSearch() {
  const health = await api("/health");
  fillSelect($("#search-index"), health.indexes);
  fillSelect($("#search-reranker"), health.rerankers);
  const canRerank = health.rerankers.length > 0;
  $("#search-rerank").disabled = !canRerank;
  $("#search-reranker").disabled = !canRerank;
  indexModes = await api("/ui/indexes");
  updateModes();
  setStatus(health.indexes.length ? "" : "no index is served: start gpte serve with --index NAME=DIR", !health.indexes.length);
}

function fillSelect(select, names) {
  select.replaceChildren(...names.map((name) => element("option", name, { value: name })));
}

function updateModes() {
  const modes = indexModes[$("#search-index").value];
  const select = $("#search-mode");
  fillSelect(select, modes ? modes.modes : []);
  if (modes) select.value = modes.default_mode;
}

function parseFilters(text) {
  // "a=1, b=x, c=[1, 2]": split at the commas that start a new key=; a value is JSON when it parses, else text
  const filters = {};
  for (const part of text.split(/,\s*(?=[^=,[\]"]+=)/)) {
    if (!part.trim()) continue;
    const at = part.indexOf("=");
    if (at < 1) throw new Error(`filter ${JSON.stringify(part.trim())} is not key=value`);
    const raw = part.slice(at + 1).trim();
    let value;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    filters[part.slice(0, at).trim()] = value;
  }
  return filters;
}

async function runSearch(event) {
  event.preventDefault();
  const query = $("#search-query").value;
  const k = Number($("#search-k").value);
  const rerank = $("#search-rerank").checked;
  const body = { query, index: $("#search-index").value, k, mode: $("#search-mode").value || null };
  try {
    const filters = parseFilters($("#search-filters").value);
    if (Object.keys(filters).length) body.filters = filters;
    if (rerank) body.k = Math.max(k, Number($("#search-candidates").value));
    setStatus("searching…");
    const started = performance.now();
    let { hits } = await api("/search", body);
    if (rerank && hits.length) hits = await rerankHits(query, hits, k);
    showHits(hits, query);
    const what = rerank ? `reranked by ${$("#search-reranker").value}` : body.mode;
    setStatus(`${hits.length} hits (${what}) in ${Math.round(performance.now() - started)} ms`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function rerankHits(query, hits, k) {
  // the hits' texts rescored by the served reranker (POST /rerank, activated scores), best k first
  const texts = hits.map((hit) => hit.text);
  const ranking = await api("/rerank", { query, texts, model: $("#search-reranker").value, truncate: true });
  return ranking.slice(0, k).map((row) => ({ ...hits[row.index], score: row.score }));
}

function queryPattern(query) {
  const terms = [...new Set((query.match(/[\p{L}\p{N}]+/gu) || []).filter((term) => term.length > 1))];
  if (!terms.length) return null;
  terms.sort((a, b) => b.length - a.length); // the longest term wins where terms overlap
  const alternatives = terms.map((term) => term.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
  return new RegExp(`(?<![\\p{L}\\p{N}])(${alternatives})(?![\\p{L}\\p{N}])`, "giu"); // whole words only
}

function snippet(text, pattern) {
  // a window of the text around its first query term, with the terms in <mark>: text nodes only
  let start = 0;
  if (pattern && text.length > SNIPPET_CHARS) {
    pattern.lastIndex = 0;
    const first = pattern.exec(text);
    if (first) start = Math.max(0, first.index - Math.floor(SNIPPET_CHARS / 4));
  }
  const piece = text.slice(start, start + SNIPPET_CHARS);
  const paragraph = element("p", null, { class: "snippet" });
  if (start > 0) paragraph.append("…");
  const parts = pattern ? piece.split(pattern) : [piece];
  parts.forEach((part, i) => paragraph.append(i % 2 ? element("mark", part) : part)); // split puts matches at odd places
  if (start + SNIPPET_CHARS < text.length) paragraph.append("…");
  return paragraph;
}

function showHits(hits, query) {
  const pattern = queryPattern(query);
  const items = hits.map((hit, i) => {
    const item = element("li", null, { class: "hit" });
    const head = element("div", null, { class: "hit-head" });
    head.append(
      element("span", i + 1, { class: "rank" }),
      element("span", hit.doc_id, { class: "doc-id" }),
      element("span", hit.score.toFixed(4), { class: "score", title: String(hit.score) }),
    );
    item.append(head, snippet(hit.text, pattern));
    if (hit.metadata && Object.keys(hit.metadata).length) {
      item.append(element("p", JSON.stringify(hit.metadata), { class: "metadata" }));
    }
    return item;
  });
  $("#hits").replaceChildren(...items);
}

// ------------------------------------------------------------------ results board

let board = null;
let sortKey = { column: "task", descending: false };

async function loadResults() {
  board = await api("/ui/results");
  drawBoard();
  drawChart();
}

function averageKeys() {
  const keys = new Set(board.columns.flatMap((column) => Object.keys(board.averages[column])));
  return [...keys].sort((a, b) => (a === "overall") - (b === "overall") || a.localeCompare(b));
}

function percent(value) {
  return value === null || value === undefined ? "–" : (100 * value).toFixed(2);
}

function sortedTasks() {
  const { column, descending } = sortKey;
  const value = (row) => (column === "task" || column === "task_type" ? row[column] : row.scores[column]);
  const rows = [...board.tasks];
  rows.sort((a, b) => {
    const x = value(a);
    const y = value(b);
    if (x === null || y === null) return (x === null) - (y === null); // missing scores last either way
    const order = typeof x === "string" ? x.localeCompare(y) : x - y;
    return descending ? -order : order;
  });
  return rows;
}

function drawBoard() {
  const headers = [["task", "task"], ["task_type", "type"], ...board.columns.map((column) => [column, column])];
  const headRow = element("tr");
  for (const [key, title] of headers) {
    const arrow = sortKey.column === key ? (sortKey.descending ? " ▼" : " ▲") : "";
    const cell = element("th", title + arrow, { "data-column": key, class: key === "task" || key === "task_type" ? "" : "model" });
    cell.addEventListener("click", () => {
      sortKey = { column: key, descending: sortKey.column === key ? !sortKey.descending : key !== "task" && key !== "task_type" };
      drawBoard();
    });
    headRow.append(cell);
  }
  $("#board thead").replaceChildren(headRow);
  $("#board tbody").replaceChildren(
    ...sortedTasks().map((row) => {
      const tr = element("tr", null, { "data-task": row.task });
      tr.append(element("td", row.task), element("td", row.task_type, { title: row.main_score }));
      for (const column of board.columns) tr.append(element("td", percent(row.scores[column]), { class: "number" }));
      return tr;
    }),
  );
  $("#board tfoot").replaceChildren(
    ...averageKeys().map((key) => {
      const tr = element("tr", null, { "data-average": key });
      tr.append(element("th", key === "overall" ? "mean over tasks" : `mean ${key}`, { colspan: 2 }));
      for (const column of board.columns) tr.append(element("td", percent(board.averages[column][key]), { class: "number" }));
      return tr;
    }),
  );
}

function drawChart() {
  // grouped bars: one group per task type (and overall), one bar per column
  const keys = averageKeys();
  const columns = board.columns;
  const values = columns.flatMap((column) => keys.map((key) => 100 * (board.averages[column][key] ?? 0)));
  const top = Math.max(1, ...values);
  const bottom = Math.min(0, ...values);
  const [width, height, left, plotTop, plotBottom] = [Math.max(480, keys.length * (columns.length * 22 + 30) + 60), 300, 48, 16, 230];
  const y = (value) => plotTop + ((top - value) / (top - bottom)) * (plotBottom - plotTop);
  const chart = $("#chart");
  chart.setAttribute("viewBox", `0 0 ${width} ${height + columns.length * 18}`);
  chart.setAttribute("width", width);
  const nodes = [svgElement("line", { x1: left, x2: width, y1: y(0), y2: y(0), class: "axis" })];
  for (const tick of [bottom, (top + bottom) / 2, top]) {
    nodes.push(svgElement("text", { x: left - 6, y: y(tick) + 4, class: "tick", "text-anchor": "end" }, tick.toFixed(1)));
  }
  const group = (width - left) / keys.length;
  const bar = Math.min(22, (group - 10) / columns.length);
  keys.forEach((key, i) => {
    const x0 = left + i * group + (group - bar * columns.length) / 2;
    columns.forEach((column, j) => {
      const value = 100 * (board.averages[column][key] ?? 0);
      const rect = svgElement("rect", {
        x: x0 + j * bar, y: Math.min(y(value), y(0)), width: bar - 2, height: Math.abs(y(value) - y(0)),
        fill: PALETTE[j % PALETTE.length], class: "bar", "data-column": column, "data-key": key,
      });
      rect.append(svgElement("title", {}, `${column} · ${key}: ${value.toFixed(2)}`));
      nodes.push(rect);
    });
    nodes.push(svgElement("text", { x: left + (i + 0.5) * group, y: plotBottom + 18, class: "tick", "text-anchor": "middle" }, key));
  });
  columns.forEach((column, j) => {
    const rowY = height + j * 18;
    nodes.push(svgElement("rect", { x: left, y: rowY - 10, width: 12, height: 12, fill: PALETTE[j % PALETTE.length] }));
    nodes.push(svgElement("text", { x: left + 18, y: rowY, class: "tick" }, column));
  });
  chart.replaceChildren(...nodes);
}

// ------------------------------------------------------------------ embedding map

async function loadMaps() {
  const { maps } = await api("/ui/maps");
  fillSelect($("#map-name"), maps);
  if (maps.length) await drawMap(maps[0]);
  else setStatus("no map is served: start gpte serve with --map NAME=DIR (a gpte analyze output)", true);
}

async function drawMap(name) {
  const projection = await api(`/ui/maps/${encodeURIComponent(name)}`);
  const points = projection.points;
  const labels = [...new Set(points.map((point) => point.label ?? null))];
  const colour = (label) => (label === null ? NO_LABEL_COLOUR : PALETTE[labels.filter((l) => l !== null).indexOf(label) % PALETTE.length]);
  const [size, pad] = [600, 16];
  const [xMin, xMax] = extent(points.map((point) => point.x));
  const [yMin, yMax] = extent(points.map((point) => point.y));
  const scale = (size - 2 * pad) / Math.max(xMax - xMin, yMax - yMin, 1e-12); // one scale: distances stay true
  const scatter = $("#scatter");
  scatter.setAttribute("viewBox", `0 0 ${size} ${size}`);
  scatter.replaceChildren(
    ...points.map((point, i) =>
      svgElement("circle", {
        cx: pad + (point.x - xMin) * scale,
        cy: size - pad - (point.y - yMin) * scale, // y up, as in a plot
        r: 5,
        fill: colour(point.label ?? null),
        class: "point",
        "data-index": i,
      }),
    ),
  );
  scatter.onmousemove = (event) => hover(event, points);
  scatter.onmouseleave = () => ($("#tooltip").hidden = true);
  $("#map-caption").textContent = `${projection.model} · ${projection.method} · ${points.length} points`;
  $("#legend").replaceChildren(
    ...labels.map((label) => {
      const item = element("li", ` ${label ?? "(no label)"} (${points.filter((p) => (p.label ?? null) === label).length})`);
      item.prepend(element("span", null, { class: "swatch", style: `background:${colour(label)}` }));
      return item;
    }),
  );
}

function extent(values) {
  // a loop, not Math.min(...values): spreading a large map's coordinates overflows the call stack
  return values.reduce(([low, high], value) => [Math.min(low, value), Math.max(high, value)], [Infinity, -Infinity]);
}

function hover(event, points) {
  const tooltip = $("#tooltip");
  const index = event.target.dataset ? event.target.dataset.index : undefined;
  if (index === undefined) {
    tooltip.hidden = true;
    return;
  }
  const point = points[Number(index)];
  tooltip.replaceChildren(element("strong", point.label ?? "(no label)"), element("p", point.text));
  const frame = $(".map-frame").getBoundingClientRect();
  tooltip.style.left = `${event.clientX - frame.left + 12}px`;
  tooltip.style.top = `${event.clientY - frame.top + 12}px`;
  tooltip.hidden = false;
}

// ------------------------------------------------------------------ start

const LOADERS = { search: loadSearch, results: loadResults, map: loadMaps };

function useKey(event) {
  event.preventDefault();
  const key = $("#api-key").value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  for (const name of Object.keys(loaded)) loaded[name] = false;
  showTab(location.hash.slice(1));
  setStatus(key ? "key set" : "key cleared");
}

document.addEventListener("DOMContentLoaded", () => {
  $("#api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  $("#key-form").addEventListener("submit", useKey);
  $("#search-form").addEventListener("submit", runSearch);
  $("#search-index").addEventListener("change", updateModes);
  $("#map-name").addEventListener("change", (event) => drawMap(event.target.value).catch((error) => setStatus(error.message, true)));
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));
  showTab(location.hash.slice(1));
});
