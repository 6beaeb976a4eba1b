// cadence's run page: the runs, one run, runs compared. Every string from a run is put in the page as
// text (text nodes, textContent), never as markup.
"use strict";

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#c026d3", "#65a30d",
                 "#475569", "#b45309"];
const main = document.getElementById("main");

// -- making the page -------------------------------------------------------------------------------

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function replace(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return node;
}

function number(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e9) return String(value);
  const a = Math.abs(value);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? value.toExponential(3) : String(Number(value.toPrecision(5)));
}

function when(seconds) {
  if (!seconds) return "–";
  const d = new Date(seconds * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function status(value) { return el("span", { className: `status ${value}`, "data-status": value }, value); }

function runLink(id) { return el("a", { href: `/runs/${encodeURIComponent(id)}`, className: "mono" }, id); }

function tagLinks(tags) { return tags.map((t) => el("a", { className: "tag", href: `/?tag=${encodeURIComponent(t)}` }, t)); }

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

function failed(error) { replace(main, el("p", { className: "error", id: "error" }, String(error.message || error))); }

function every(ms, work) {
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try { await work(); } catch (e) { console.warn(e); } finally { busy = false; }
  }, ms);
}

function flatten(config, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(config || {})) {
    if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
      flatten(value, `${prefix}${key}.`, out);
    } else {
      out[`${prefix}${key}`] = value;
    }
  }
  return out;
}

function shown(value) { return typeof value === "string" ? value : JSON.stringify(value); }

// -- charts ------------------------------------------------------------------------------------------

// One chart: x = step, a series per (run, key); `tables` are [steps, values] pairs, joined on the step.
class Chart {
  constructor(container, title, labels, log) {
    this.labels = labels;
    this.log = log;
    this.box = el("div", { className: "chart", "data-key": title }, el("div", { className: "title" }, title));
    container.append(this.box);
    this.plot = null;
  }

  set(tables) {
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const positive = (v) => (v === null || v === undefined || (this.log && v <= 0) ? null : v);
    const aligned = [Array.from(data[0]), ...data.slice(1).map((ys) => Array.from(ys, positive))];
    if (this.plot) { this.plot.setData(aligned); return; }
    const series = [{ label: "step" }, ...this.labels.map((label, i) => ({
      label, stroke: COLOURS[i % COLOURS.length], width: 1.25, spanGaps: true, points: { show: false },
      value: (u, v) => number(v),
    }))];
    this.plot = new uPlot({
      width: 470, height: 230, series, legend: { show: this.labels.length > 1 },
      scales: { x: { time: false }, y: { distr: this.log ? 3 : 1 } },
      axes: [{ label: "step", size: 36 }, { size: 60, values: (u, ticks) => ticks.map(number) }],
      cursor: { drag: { x: true, y: false } },
    }, aligned, this.box);
  }
}

function chartControls(state, redraw) {
  const smooth = el("input", { type: "number", min: 1, step: 1, id: "smooth", placeholder: "as recorded",
                               value: state.smooth || "", style: "width: 9em" });
  const log = el("input", { type: "checkbox", id: "log", checked: state.log });
  smooth.addEventListener("change", () => { state.smooth = smooth.value ? Number(smooth.value) : null; redraw(true); });
  log.addEventListener("change", () => { state.log = log.checked; redraw(true); });
  return el("div", { className: "controls" },
    el("label", {}, "smoothing (moving average of the last N) ", smooth),
    el("label", {}, log, " log scale"));
}

function phaseOf(key) { return key.split(".")[0]; }

// -- the runs ----------------------------------------------------------------------------------------

async function indexView() {
  const params = new URLSearchParams(location.search);
  const state = { name: params.get("name") || "", tag: params.get("tag") || "", status: params.get("status") || "",
                  sort: params.get("sort") || "-start", data: null, selected: new Set() };
  const name = el("input", { type: "search", id: "filter-name", placeholder: "name or id", value: state.name });
  const tag = el("input", { type: "search", id: "filter-tag", placeholder: "tag", value: state.tag });
  const statusSelect = el("select", { id: "filter-status" },
    ["", "running", "finished", "interrupted", "failed", "dead"].map((s) =>
      el("option", { value: s, selected: s === state.status }, s || "any status")));
  const compare = el("a", { id: "compare-selected", href: "#" }, "compare selected");
  const table = el("table", { id: "runs" });
  const count = el("span", { className: "quiet", id: "count" });
  replace(main, el("h1", {}, "Runs"), el("p", { className: "quiet", id: "runs-dir" }),
    el("div", { className: "filters" }, name, tag, statusSelect, compare, count), table);

  const update = () => {
    state.name = name.value; state.tag = tag.value; state.status = statusSelect.value;
    const query = new URLSearchParams();
    for (const key of ["name", "tag", "status"]) if (state[key]) query.set(key, state[key]);
    if (state.sort !== "-start") query.set("sort", state.sort);
    history.replaceState(null, "", query.toString() ? `/?${query}` : "/");
    draw();
  };
  for (const input of [name, tag]) input.addEventListener("input", update);
  statusSelect.addEventListener("change", update);
  compare.addEventListener("click", (e) => {
    e.preventDefault();
    if (state.selected.size) location.href = `/compare?runs=${[...state.selected].map(encodeURIComponent).join(",")}`;
  });

  const columns = (runs) => {
    const keys = new Set();
    for (const run of runs) for (const key of Object.keys(run.metrics)) {
      if (key.startsWith("valid.") && !key.startsWith("valid.time.")) keys.add(key);
    }
    if (runs.some((r) => "train.loss" in r.metrics)) keys.add("train.loss");
    return [...keys].sort().slice(0, 8);
  };

  const draw = () => {
    const data = state.data;
    if (!data) return;
    replace(document.getElementById("runs-dir"), `in ${data.runs_dir}`);
    const metricKeys = columns(data.runs);
    const cols = [
      ["status", (r) => r.status, (r) => status(r.status)],
      ["name", (r) => r.name, (r) => r.name],
      ["id", (r) => r.id, (r) => runLink(r.id)],
      ["tags", (r) => r.tags.join(","), (r) => tagLinks(r.tags)],
      ["start", (r) => r.start, (r) => when(r.start)],
      ["duration", (r) => r.duration, (r) => duration(r.duration)],
      ["left", (r) => r.time_left, (r) => (r.time_left === null ? "–" : `~${duration(r.time_left)}`)],
      ...metricKeys.map((k) => [k, (r) => r.metrics[k], (r) => (r.best[k] ? `${number(r.metrics[k])} (${number(r.best[k][1])})`
        : number(r.metrics[k]))]),
    ];
    const needle = state.name.toLowerCase();
    let runs = data.runs.filter((r) => (!needle || r.name.toLowerCase().includes(needle) || r.id.includes(needle))
      && (!state.tag || r.tags.includes(state.tag)) && (!state.status || r.status === state.status));
    const desc = state.sort.startsWith("-");
    const sortKey = state.sort.replace(/^-/, "");
    const column = cols.find((c) => c[0] === sortKey) || cols[4];
    runs = runs.slice().sort((a, b) => {
      const x = column[1](a), y = column[1](b);
      if (x === y) return 0;
      if (x === undefined || x === null) return 1;
      if (y === undefined || y === null) return -1;
      return (x < y ? -1 : 1) * (desc ? -1 : 1);
    });
    const head = el("tr", {}, el("th", {}, ""), cols.map(([title]) => el("th", {
      className: `sortable${title === sortKey ? " sorted" : ""}${title === sortKey && desc ? " desc" : ""}`,
      "data-column": title,
      on: { click: () => { state.sort = title === sortKey && !desc ? `-${title}` : title; update(); } },
    }, title)));
    const rows = runs.map((r) => el("tr", { "data-run": r.id },
      el("td", {}, el("input", { type: "checkbox", checked: state.selected.has(r.id), on: { change: (e) => {
        if (e.target.checked) state.selected.add(r.id); else state.selected.delete(r.id);
      } } })),
      cols.map(([title, , cell]) => el("td", { className: metricKeys.includes(title) ? "num" : "" }, cell(r)))));
    replace(table, el("thead", {}, head), el("tbody", {}, rows));
    replace(count, `${runs.length} of ${data.runs.length} runs; metrics: final (best)`);
    if (!data.runs.length) replace(count, "no runs yet: `cadence train` records them here");
  };

  const load = async () => { state.data = await getJSON("/api/runs"); draw(); };
  await load();
  every(3000, load);
}

// -- one run -----------------------------------------------------------------------------------------

async function runView(runId) {
  const state = { smooth: null, log: false, version: null, charts: {}, info: null };
  const header = el("div", { id: "run-header" });
  const latest = el("table", { id: "latest" });
  const charts = el("div", { id: "curves" });
  const sections = el("div", { id: "sections" });
  const redraw = (reset) => {
    if (reset) { state.version = null; state.charts = {}; replace(charts); }
    return refresh();
  };
  replace(main, header, chartControls(state, redraw), el("h2", {}, "Latest values"), latest,
    el("h2", {}, "Curves"), charts, sections);

  const drawHeader = (info, live) => {
    const run = { ...info, ...live };
    replace(header, el("h1", {}, run.name, " ", el("span", { className: "mono quiet" }, run.id)),
      el("p", { className: "meta" }, status(run.status), " ", tagLinks(run.tags),
        el("span", {}, `started ${when(run.start)}`), el("span", {}, `duration ${duration(run.duration)}`),
        run.step !== null && run.step !== undefined ? el("span", { id: "step" }, `step ${run.step}`
          + (run.planned_steps ? ` of ${run.planned_steps}` : "")) : null,
        run.time_left !== null && run.time_left !== undefined ? el("span", {}, `about ${duration(run.time_left)} left`) : null,
        el("a", { href: `/compare?runs=${encodeURIComponent(run.id)}` }, "compare…")),
      run.error ? el("pre", { className: "error" }, run.error) : null);
  };

  const drawSections = (info) => {
    const config = flatten(info.config);
    const prov = info.provenance || {};
    const git = prov.git || {};
    const provenance = [["command", prov.command], ["folder", prov.cwd], ["host", prov.host],
      ["versions", prov.cadence && `cadence ${prov.cadence}, torch ${prov.torch}, python ${prov.python}`],
      ["platform", prov.platform], ["repository", git.root],
      ["commit", git.commit && `${git.commit}${git.branch ? ` on ${git.branch}` : ""}`],
      ["uncommitted changes", prov.git ? (git.dirty ? "yes (source.diff below)" : "none") : "not in a git repository"]]
      .filter(([, v]) => v !== undefined && v !== null);
    const diff = el("pre", { id: "diff" });
    const sample = el("pre", { id: "sample" });
    const samplePicker = el("select", { id: "sample-step" },
      info.samples.slice().reverse().map((s) => el("option", { value: s }, `step ${s}`)));
    const showSample = async () => {
      if (!samplePicker.value) return;
      const response = await fetch(`/api/runs/${encodeURIComponent(info.id)}/samples/${samplePicker.value}`);
      sample.textContent = await response.text();
    };
    samplePicker.addEventListener("change", showSample);
    replace(sections,
      el("h2", {}, "Events"),
      info.events.length ? el("table", { id: "events" }, el("tr", {}, el("th", {}, "time"), el("th", {}, "step"),
        el("th", {}, "event"), el("th", {}, "message")), info.events.map((e) => el("tr", {}, el("td", {}, when(e.time)),
        el("td", {}, e.step ?? "–"), el("td", {}, e.kind), el("td", {}, e.message))))
        : el("p", { className: "quiet" }, "none"),
      el("h2", {}, "Samples"),
      info.samples.length ? [samplePicker, sample] : el("p", { className: "quiet" }, "none"),
      el("h2", {}, "Checkpoints"),
      info.checkpoints.length ? el("table", { id: "checkpoints" }, el("tr", {}, el("th", {}, "checkpoint"),
        el("th", {}, "step"), el("th", {}, "epoch"), el("th", {}, "weights"), el("th", {}, "metrics")),
        info.checkpoints.map((c) => el("tr", {}, el("td", { className: "mono" }, c.name), el("td", {}, c.step ?? "–"),
          el("td", {}, c.epoch ?? "–"), el("td", {}, c.weights ? "model.safetensors" : "shards"),
          el("td", {}, c.error || Object.entries(c.metrics).map(([k, v]) => `${k}=${number(v)}`).join("  ")))))
        : el("p", { className: "quiet" }, "none"),
      el("h2", {}, "Config"),
      el("table", { id: "config" }, Object.entries(config).map(([k, v]) =>
        el("tr", {}, el("td", { className: "mono" }, k), el("td", { className: "mono" }, shown(v))))),
      el("h2", {}, "Provenance"),
      el("table", { id: "provenance" }, provenance.map(([k, v]) =>
        el("tr", {}, el("td", {}, k), el("td", { className: "mono" }, shown(v))))),
      info.diff ? [el("h3", {}, "source.diff"), diff] : null);
    if (info.diff) fetch(`/api/runs/${encodeURIComponent(info.id)}/diff`).then((r) => r.text()).then((t) => { diff.textContent = t; });
    showSample();
  };

  const drawLatest = (series) => {
    const keys = state.info ? state.info.keys : {};
    replace(latest, el("tr", {}, el("th", {}, "key"), el("th", {}, "step"), el("th", {}, "value"), el("th", {}, "best")),
      Object.entries(series).map(([key, s]) => {
        const last = s.steps.length - 1;
        const best = keys[key] && keys[key].best;
        return el("tr", { "data-key": key }, el("td", { className: "mono" }, s.label), el("td", {}, s.steps[last]),
          el("td", { className: "num value" }, number(s.values[last])),
          el("td", { className: "num" }, best ? `${number(best[1])} at ${best[0]}` : "–"));
      }));
  };

  const drawCharts = (series) => {
    const phases = {};
    for (const key of Object.keys(series).sort()) (phases[phaseOf(key)] ||= []).push(key);
    for (const [phase, keys] of Object.entries(phases)) {
      let group = charts.querySelector(`[data-phase="${CSS.escape(phase)}"]`);
      if (!group) {
        group = el("section", { "data-phase": phase }, el("h3", {}, phase), el("div", { className: "charts" }));
        charts.append(group);
      }
      for (const key of keys) {
        const s = series[key];
        if (!state.charts[key]) state.charts[key] = new Chart(group.lastChild, s.label, [s.label], state.log);
        state.charts[key].set([[s.steps, s.values]]);
      }
    }
  };

  const points = new URLSearchParams(location.search).get("points");  // ?points=N: more (or fewer) than 2,000
  async function refresh() {
    const query = new URLSearchParams();
    if (points) query.set("points", points);
    if (state.smooth) query.set("smooth", state.smooth);
    if (state.version) query.set("version", state.version);
    const answer = await getJSON(`/api/runs/${encodeURIComponent(runId)}/series?${query}`);
    if (answer.unchanged) return;
    // The version is "<newest chunk>.<newest event>.<status>": the run's details change with its last two.
    const detailsChanged = !state.info || !state.version
      || answer.version.split(".").slice(1).join(".") !== state.version.split(".").slice(1).join(".");
    state.version = answer.version;
    if (detailsChanged) {
      state.info = await getJSON(`/api/runs/${encodeURIComponent(runId)}`);
      drawSections(state.info);
    }
    drawHeader(state.info, { status: answer.status, step: answer.step });
    drawLatest(answer.series);
    drawCharts(answer.series);
    document.body.dataset.version = answer.version;
  }

  await refresh();
  every(1000, refresh);
}

// -- runs compared -----------------------------------------------------------------------------------

async function compareView() {
  const query = new URLSearchParams(location.search);
  const data = await getJSON(`/api/compare?${query}`);
  const state = { smooth: null, log: false, versions: {}, series: {}, charts: {} };
  const colour = (i) => COLOURS[i % COLOURS.length];
  const labels = data.runs.map((r) => `${r.name} ${r.id}`);
  const charts = el("div", { className: "charts", id: "curves" });
  const redraw = (reset) => {
    if (reset) { state.versions = {}; state.charts = {}; replace(charts); }
    return refresh();
  };
  const keys = [...new Set(data.runs.flatMap((r) => Object.keys(r.metrics)))].sort();
  replace(main,
    el("h1", {}, query.has("tag") ? `Runs tagged ${query.get("tag")}` : `${data.runs.length} runs compared`),
    el("table", { id: "compared" }, data.runs.map((r, i) => el("tr", { "data-run": r.id },
      el("td", {}, el("span", { className: "legend-swatch", style: `background:${colour(i)}` })),
      el("td", {}, runLink(r.id)), el("td", {}, r.name), el("td", {}, status(r.status)), el("td", {}, tagLinks(r.tags))))),
    el("h2", {}, "Config differences"),
    Object.keys(data.differences).length ? el("table", { id: "differences" },
      el("tr", {}, el("th", {}, "key"), data.runs.map((r) => el("th", { className: "mono" }, r.id))),
      Object.entries(data.differences).map(([k, values]) => el("tr", {}, el("td", { className: "mono" }, k),
        values.map((v) => el("td", { className: "mono" }, v === null ? "–" : shown(v))))))
      : el("p", { className: "quiet" }, "none: the configs are the same"),
    el("h2", {}, "Final metrics"),
    el("table", { id: "final" }, el("tr", {}, el("th", {}, "key"), data.runs.map((r) => el("th", { className: "mono" }, r.id))),
      keys.map((k) => el("tr", {}, el("td", { className: "mono" }, (data.runs.find((r) => k in r.labels) || {}).labels?.[k] || k),
        data.runs.map((r) => el("td", { className: "num" }, number(r.metrics[k])))))),
    el("h2", {}, "Curves"), chartControls(state, redraw), charts);

  async function refresh() {
    let changed = false;
    for (const run of data.runs) {
      const q = new URLSearchParams();
      if (state.smooth) q.set("smooth", state.smooth);
      if (state.versions[run.id]) q.set("version", state.versions[run.id]);
      const answer = await getJSON(`/api/runs/${encodeURIComponent(run.id)}/series?${q}`);
      if (answer.unchanged) continue;
      state.versions[run.id] = answer.version;
      state.series[run.id] = answer.series;
      changed = true;
    }
    if (!changed) return;
    const all = [...new Set(data.runs.flatMap((r) => Object.keys(state.series[r.id] || {})))].sort();
    for (const key of all) {
      if (!state.charts[key]) state.charts[key] = new Chart(charts, key, labels, state.log);
      state.charts[key].set(data.runs.map((r) => {
        const s = (state.series[r.id] || {})[key];
        return s ? [s.steps, s.values] : [[], []];
      }));
    }
  }

  await refresh();
  every(2000, refresh);
}

// -- which view --------------------------------------------------------------------------------------

async function start() {
  const path = location.pathname;
  try {
    if (path === "/") await indexView();
    else if (path === "/compare") await compareView();
    else if (path.startsWith("/runs/")) await runView(decodeURIComponent(path.slice("/runs/".length)));
    else throw new Error(`no view at ${path}`);
    document.body.dataset.ready = "true";
  } catch (error) {
    failed(error);
  }
}

start();
