// nbkit live dashboard: title, Stop / Pause controls, an SVG line chart, progress, evaluations
// table and memory line, in ONE small widget (no plotly.js in the page or in the saved widget state).
// The kernel sends bounded, already-smoothed series as float32 buffers a few times a second; the
// chart only draws them. Axis ranges for metrics come from the kernel (one rule, shared with the
// final figure). Buttons are enabled only once the kernel has answered this view ("live").
// All text enters the page through textContent, never as HTML.
const SVG = "http://www.w3.org/2000/svg";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function floats(v) {
  // ipywidgets hands buffers over as DataView (or ArrayBuffer / typed array)
  if (!v) return new Float32Array(0);
  if (v instanceof Float32Array) return v;
  if (v instanceof DataView) return new Float32Array(v.buffer, v.byteOffset, v.byteLength / 4);
  if (v instanceof ArrayBuffer) return new Float32Array(v);
  if (Array.isArray(v)) return Float32Array.from(v);
  if (v.buffer) return new Float32Array(v.buffer, v.byteOffset || 0, (v.byteLength || 0) / 4);
  return new Float32Array(0);
}

// Round ticks: steps of 1, 2 or 5 times a power of ten.
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / Math.max(1, n);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || 10 * p;
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function fmtTick(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0);
  return String(+v.toPrecision(4));
}

function extent(arrays, log) {
  let lo = Infinity, hi = -Infinity;
  for (const a of arrays) for (const v of a) {
    if (!Number.isFinite(v) || (log && v <= 0)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) return null;
  if (lo === hi) { const d = Math.abs(lo) * 0.05 || 0.5; lo -= d; hi += d; }
  return [lo, hi];
}

function drawChart(root, chart, opts) {
  const W = Math.max(320, root.clientWidth || 640), H = 300;
  const m = { l: 58, r: 58, t: 8, b: 34 };
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const s = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "nbkit-chart-svg" });
  const series = (chart.series || []).filter((t) => t.axis !== "lr" || opts.showLr);
  const data = series.map((t) => ({ ...t, xs: floats(t.x), ys: floats(t.y) }));
  const xr = extent(data.map((d) => d.xs), chart.xlog);
  const left = data.filter((d) => d.axis === "y");
  const right = data.filter((d) => d.axis === "y2");
  const lrs = data.filter((d) => d.axis === "lr");
  let yr = extent(left.map((d) => d.ys), opts.logY);
  const y2r = chart.y2range || extent(right.map((d) => d.ys), false);
  const lrr = extent(lrs.map((d) => d.ys), false);
  root.replaceChildren(s);
  if (!xr) {
    const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nbkit-axis-label" });
    t.textContent = "waiting for the first step\u2026";
    s.appendChild(t);
    return;
  }
  const tx = (v) => chart.xlog ? Math.log10(v) : v;
  const [x0, x1] = [tx(xr[0]), tx(xr[1])];
  const X = (v) => m.l + (tx(v) - x0) / (x1 - x0 || 1) * pw;
  const mkY = (r, log) => {
    if (!r) return null;
    const f = (v) => log ? Math.log10(v) : v;
    const a = f(r[0]), b = f(r[1]);
    return (v) => m.t + ph - (f(v) - a) / (b - a || 1) * ph;
  };
  const Y = mkY(yr, opts.logY), Y2 = mkY(y2r, false), YL = mkY(lrr, false);
  s.appendChild(svg("rect", { x: m.l, y: m.t, width: pw, height: ph, class: "nbkit-plot-bg" }));
  // grid and ticks
  const xt = chart.xlog ? niceTicks(x0, x1, 6).filter((v) => Number.isInteger(v)).map((v) => Math.pow(10, v))
    : niceTicks(xr[0], xr[1], 7);
  for (const v of xt) {
    const x = X(v);
    if (x < m.l - 0.5 || x > m.l + pw + 0.5) continue;
    s.appendChild(svg("line", { x1: x, x2: x, y1: m.t, y2: m.t + ph, class: "nbkit-grid" }));
    const t = svg("text", { x, y: m.t + ph + 14, "text-anchor": "middle", class: "nbkit-tick" });
    t.textContent = fmtTick(v);
    s.appendChild(t);
  }
  const yTicks = (r, log) => log ? niceTicks(Math.floor(Math.log10(r[0])), Math.ceil(Math.log10(r[1])), 5)
    .filter(Number.isInteger).map((v) => Math.pow(10, v)).filter((v) => v >= r[0] && v <= r[1]) : niceTicks(r[0], r[1], 5);
  if (Y) for (const v of yTicks(yr, opts.logY)) {
    const y = Y(v);
    s.appendChild(svg("line", { x1: m.l, x2: m.l + pw, y1: y, y2: y, class: "nbkit-grid" }));
    const t = svg("text", { x: m.l - 6, y: y + 4, "text-anchor": "end", class: "nbkit-tick" });
    t.textContent = fmtTick(v);
    s.appendChild(t);
  }
  if (Y2) for (const v of niceTicks(y2r[0], y2r[1], 5)) {
    const t = svg("text", { x: m.l + pw + 6, y: Y2(v) + 4, "text-anchor": "start", class: "nbkit-tick" });
    t.textContent = fmtTick(v);
    s.appendChild(t);
  }
  const label = (text, x, y, rot) => {
    const t = svg("text", { x, y, "text-anchor": "middle", class: "nbkit-axis-label",
      transform: rot ? `rotate(${rot} ${x} ${y})` : "" });
    t.textContent = text;
    s.appendChild(t);
  };
  label(chart.xlabel || "step", m.l + pw / 2, H - 4, 0);
  if (Y) label("loss", 14, m.t + ph / 2, -90);
  if (Y2) label("eval metric", W - 10, m.t + ph / 2, 90);
  const clip = svg("clipPath", { id: opts.clipId });
  clip.appendChild(svg("rect", { x: m.l, y: m.t, width: pw, height: ph }));
  s.appendChild(clip);
  const g = svg("g", { "clip-path": `url(#${opts.clipId})` });
  s.appendChild(g);
  for (const e of chart.epochs || []) {
    const x = X(e);
    g.appendChild(svg("line", { x1: x, x2: x, y1: m.t, y2: m.t + ph, class: "nbkit-epoch" }));
  }
  for (const d of data) {
    const Yd = d.axis === "y" ? Y : d.axis === "y2" ? Y2 : YL;
    if (!Yd) continue;
    let path = "";
    const pts = [];
    for (let i = 0; i < d.xs.length; i++) {
      const xv = d.xs[i], yv = d.ys[i];
      if (!Number.isFinite(yv) || (chart.xlog && xv <= 0) || (opts.logY && d.axis === "y" && yv <= 0)) continue;
      const px = X(xv).toFixed(1), py = Yd(yv).toFixed(1);
      path += (path ? "L" : "M") + px + "," + py;
      pts.push([px, py]);
    }
    if (path) g.appendChild(svg("path", { d: path, fill: "none", stroke: d.color, "stroke-width": d.width || 1.5,
      "stroke-opacity": d.opacity ?? 1, "stroke-dasharray": d.dash ? "3,3" : "" }));
    if (d.markers) for (const [px, py] of pts) g.appendChild(svg("circle", { cx: px, cy: py, r: 3, fill: d.color }));
  }
  return data;
}

function legend(node, chart, opts) {
  node.replaceChildren();
  for (const t of chart.series || []) {
    if (t.axis === "lr" && !opts.showLr) continue;
    const item = el("span", "nbkit-legend-item");
    const sw = el("span", "nbkit-swatch");
    sw.style.background = t.color;
    sw.style.opacity = String(Math.max(t.opacity ?? 1, 0.5));
    item.appendChild(sw);
    item.appendChild(document.createTextNode(t.name));
    node.appendChild(item);
  }
}

function table(node, spec) {
  node.replaceChildren();
  if (!spec || !spec.columns || !spec.rows || !spec.rows.length) return;
  const tb = el("table", "nbkit-metrics");
  const head = el("tr");
  for (const c of spec.columns) head.appendChild(el("th", "", c));
  const thead = el("thead");
  thead.appendChild(head);
  tb.appendChild(thead);
  const body = el("tbody");
  for (const r of spec.rows) {
    const tr = el("tr");
    for (const v of r) tr.appendChild(el("td", "", v));
    body.appendChild(tr);
  }
  tb.appendChild(body);
  node.appendChild(tb);
}

// An LLM run's answers: prompt | reference | base | tuned at the chosen step. A step selector
// walks the history; it follows the newest evaluation until a person picks an older one.
function samplesPanel(node, spec, state) {
  node.replaceChildren();
  if (!spec || !spec.steps || !spec.steps.length) return;
  const steps = spec.steps;
  if (state.step === null || state.follow || !steps.includes(state.step)) state.step = steps[steps.length - 1];
  const head = el("div", "nbkit-samples-head");
  head.appendChild(el("b", "", "Answers"));
  head.appendChild(document.createTextNode(" at step "));
  const pick = document.createElement("select");
  pick.className = "nbkit-samples-step";
  steps.forEach((s, i) => {
    const o = el("option", "", s + (i === steps.length - 1 ? " (latest)" : ""));
    o.value = String(s);
    pick.appendChild(o);
  });
  pick.value = String(state.step);
  pick.addEventListener("change", () => {
    state.step = Number(pick.value);
    state.follow = state.step === steps[steps.length - 1];
    samplesPanel(node, spec, state);
  });
  head.appendChild(pick);
  head.appendChild(el("span", "nbkit-samples-note", " greedy; base = the model before training"));
  node.appendChild(head);
  const answers = spec.answers[steps.indexOf(state.step)] || [];
  const refs = spec.references || [];
  const hasRef = refs.some((r) => r !== null && r !== undefined);
  const hasBase = Array.isArray(spec.base);
  const tb = el("table", "nbkit-samples-table");
  const hr = el("tr");
  for (const c of ["prompt", ...(hasRef ? ["reference"] : []), ...(hasBase ? ["base"] : []), "step " + state.step]) {
    hr.appendChild(el("th", "", c));
  }
  const thead = el("thead");
  thead.appendChild(hr);
  tb.appendChild(thead);
  const body = el("tbody");
  const norm = (x) => String(x ?? "").split(/\s+/).filter(Boolean).join(" ");
  spec.prompts.forEach((p, i) => {
    const tr = el("tr");
    tr.appendChild(el("td", "nbkit-sample-prompt", p));
    if (hasRef) tr.appendChild(el("td", "nbkit-sample-ref", refs[i] ?? ""));
    if (hasBase) tr.appendChild(el("td", "nbkit-sample-base", spec.base[i]));
    const a = el("td", "nbkit-sample-answer", answers[i] ?? "");
    if (hasRef && refs[i] !== null && norm(answers[i]) === norm(refs[i])) {
      a.classList.add("nbkit-match");
      a.title = "equals the reference";
    }
    tr.appendChild(a);
    body.appendChild(tr);
  });
  tb.appendChild(body);
  node.appendChild(tb);
}

function button(label, title, onClick) {
  const b = el("button", "nbkit-btn", label);
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function toggle(label, onChange) {
  const wrap = el("label", "nbkit-toggle");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.addEventListener("change", () => onChange(box.checked));
  wrap.appendChild(box);
  wrap.appendChild(document.createTextNode(" " + label));
  return [wrap, box];
}

let counter = 0;

function render({ model, el: root }) {
  root.classList.add("nbkit-dashboard");
  const clipId = "nbkit-clip-" + (++counter) + "-" + Math.random().toString(36).slice(2, 8);
  const send = (action, value) => model.send({ action, value });
  const title = el("div", "nbkit-title");
  const subtitle = el("div", "nbkit-subtitle");
  const controls = el("div", "nbkit-controls");
  const stop = button("\u25A0 Stop", "Finish the current step, save a checkpoint, end as 'stopped'", () => send("stop"));
  const pause = button("\u275A\u275A Pause", "Hold training at the next step boundary", () =>
    send(model.get("paused") ? "resume" : "pause"));
  const epoch = button("Stop after epoch", "Finish this epoch, evaluate, save and stop", () => send("stop_after_epoch"));
  const [logWrap, logBox] = toggle("log scale", (v) => { model.set("log_y", v); draw(); });
  const [lrWrap, lrBox] = toggle("learning rate", (v) => { model.set("show_lr", v); draw(); });
  const hint = el("span", "nbkit-hint");
  for (const n of [stop, pause, epoch, logWrap, lrWrap, hint]) controls.appendChild(n);
  const chartNode = el("div", "nbkit-chart");
  const legendNode = el("div", "nbkit-legend");
  const bar = el("div", "nbkit-bar");
  const fill = el("div", "nbkit-bar-fill");
  bar.appendChild(fill);
  const progress = el("div", "nbkit-progress");
  const tableNode = el("div", "nbkit-table");
  const samplesNode = el("div", "nbkit-samples");
  const samplesState = { step: null, follow: true };
  const memory = el("div", "nbkit-memory");
  for (const n of [title, subtitle, controls, chartNode, legendNode, bar, progress, tableNode, samplesNode, memory]) {
    root.appendChild(n);
  }
  const samples = () => samplesPanel(samplesNode, model.get("samples"), samplesState);

  function draw() {
    const chart = model.get("chart") || {};
    const opts = { logY: model.get("log_y"), showLr: model.get("show_lr"), clipId };
    drawChart(chartNode, chart, opts);
    legend(legendNode, chart, opts);
    const first = (chart.series || [])[0];
    root.dataset.points = String(first ? floats(first.x).length : 0); // for tests and curious people
  }
  function text() {
    title.textContent = model.get("title");
    subtitle.textContent = model.get("subtitle");
    const p = model.get("progress") || {};
    fill.style.width = (100 * Math.min(1, Math.max(0, p.fraction || 0))).toFixed(1) + "%";
    fill.dataset.state = model.get("status");
    progress.replaceChildren();
    const st = el("b", "", model.get("status"));
    progress.appendChild(st);
    if (p.text) progress.appendChild(document.createTextNode(" \u00b7 " + p.text));
    table(tableNode, model.get("table"));
    memory.textContent = model.get("memory");
  }
  function controlsState() {
    const live = model.get("live"), done = model.get("done");
    for (const b of [stop, pause, epoch]) b.disabled = !live || done;
    controls.style.display = done ? "none" : "";
    pause.textContent = model.get("paused") ? "\u25B6 Resume" : "\u275A\u275A Pause";
    logBox.checked = model.get("log_y");
    lrBox.checked = model.get("show_lr");
    hint.textContent = model.get("hint");
    root.dataset.live = String(live);
    root.dataset.done = String(done);
  }
  model.on("change:chart", draw);
  for (const name of ["log_y", "show_lr"]) model.on("change:" + name, () => { draw(); controlsState(); });
  for (const name of ["title", "subtitle", "progress", "status", "table", "memory"]) model.on("change:" + name, text);
  for (const name of ["live", "done", "paused", "hint"]) model.on("change:" + name, controlsState);
  model.on("change:samples", samples);
  model.on("msg:custom", (msg) => { if (msg && msg.type === "ping") send("pong", msg.id); });
  let ro = null;
  if (typeof ResizeObserver !== "undefined") {
    let w = 0;
    ro = new ResizeObserver(() => { const nw = chartNode.clientWidth; if (Math.abs(nw - w) > 4) { w = nw; draw(); } });
    ro.observe(chartNode);
  }
  draw();
  text();
  samples();
  controlsState();
  send("pong", -1); // announce this view; the kernel marks the controls live when it hears it
  return () => { if (ro) ro.disconnect(); };
}

export default { render };
