// nbkit attention views, part 4 of 4: the widget entry point. It builds the toolbar, keeps the
// current view in step with the model's traits (view, kind, layer, head, heads) and asks the kernel
// for the data each view needs, one layer or map at a time.

const NBK_VIEWS = ["head", "model", "matrix", "rollout", "generation"];
const NBK_WHAT = { head: "sparse", model: "thumbs", matrix: "dense", rollout: "rollout", generation: "dense" };
const NBK_DIFF_VIEWS = ["matrix", "model"]; // views that draw a signed difference (as DIFF_VIEWS in Python)

function nbkSelect(options, value, onChange) {
  const s = nbkEl("select", "nbk-select");
  for (const [v, label] of options) {
    const o = nbkEl("option", null, label);
    o.value = String(v);
    s.appendChild(o);
  }
  s.value = String(value);
  s.addEventListener("change", () => onChange(Number(s.value)));
  return s;
}

function render({ model, el }) {
  const t0 = performance.now();
  const info = model.get("info");
  const root = nbkEl("div", "nbk-att");
  const bar = nbkEl("div", "nbk-bar");
  const controls = nbkEl("div", "nbk-bar");
  const note = nbkEl("div", "nbk-note", info.note || "");
  const readout = nbkEl("div", "nbk-readout", "");
  const status = nbkEl("div", "nbk-status", "");
  const body = nbkEl("div", "nbk-body");
  const diffNote = nbkEl("div", "nbk-diff-note", "");
  if (!info.note) note.style.display = "none";
  root.append(bar, controls, note, diffNote, body, readout, status);
  el.appendChild(root);
  const client = nbkClient(model);
  let view = null, viewName = null, viewKind = null, viewSource = null, painted = false, seq = 0;
  const compare = info.compare || null;
  const diffName = compare ? `${compare.names[0]} − ${compare.names[1]}` : "";

  const set = (changes) => {
    for (const [k, v] of Object.entries(changes)) model.set(k, v);
    model.save_changes();
  };
  const say = (text) => { readout.textContent = text; };

  function tokensFor(kind) {
    const enc = model.get("tokens"), dec = model.get("decoder_tokens"), seg = model.get("segments");
    const zeros = dec.map(() => 0);
    if (kind === "decoder") return { tokQ: dec, tokK: dec, segQ: zeros, segK: zeros };
    if (kind === "cross") return { tokQ: dec, tokK: enc, segQ: zeros, segK: seg };
    return { tokQ: enc, tokK: enc, segQ: seg, segK: seg };
  }

  function buildBar() {
    bar.replaceChildren();
    const current = model.get("view"), source = model.get("source");
    if (compare) {
      // what the views show: either capture, or their difference (matrix and model views only)
      const sources = [["tuned", compare.names[0]], ["base", compare.names[1]], ["diff", diffName]];
      for (const [s, label] of sources) {
        const b = nbkEl("button", "nbk-tab nbk-source", label);
        b.dataset.source = s;
        if (s === source) b.classList.add("nbk-active");
        b.title = s === "base" ? compare.base_name : s === "diff" ? "tuned minus base, per layer and head" : "";
        b.addEventListener("click", () => set(s === "diff" && !NBK_DIFF_VIEWS.includes(model.get("view"))
          ? { view: "matrix", source: s } : { source: s }));
        bar.appendChild(b);
      }
      bar.appendChild(nbkEl("span", "nbk-sep", "|"));
    }
    for (const v of NBK_VIEWS) {
      if (v === "generation" && info.prompt_length == null) continue;
      const b = nbkEl("button", "nbk-tab", v);
      b.dataset.view = v;
      if (v === current) b.classList.add("nbk-active");
      if (source === "diff" && !NBK_DIFF_VIEWS.includes(v)) b.title = `shows ${compare.names[0]}: the difference has the matrix and model views`;
      b.addEventListener("click", () => set(source === "diff" && !NBK_DIFF_VIEWS.includes(v)
        ? { source: "tuned", view: v } : { view: v }));
      bar.appendChild(b);
    }
    if (info.kinds.length > 1) {
      bar.appendChild(nbkEl("span", "nbk-sep", "|"));
      for (const k of info.kinds) {
        const b = nbkEl("button", "nbk-tab", k);
        if (k === model.get("kind")) b.classList.add("nbk-active");
        b.addEventListener("click", () => set({ kind: k }));
        bar.appendChild(b);
      }
    }
  }

  function buildControls() {
    controls.replaceChildren();
    const v = model.get("view");
    if (v !== "model") {
      const layers = info.layers.map((l) => [l, `layer ${l}`]);
      if (v !== "rollout") layers.push([-1, "mean of layers"]);
      controls.append(nbkEl("span", "nbk-muted", v === "rollout" ? "through " : ""),
        nbkSelect(layers, model.get("layer"), (l) => set({ layer: l })));
    }
    if (v === "matrix" || v === "generation") {
      const heads = [[-1, "mean of heads"]];
      for (let h = 0; h < info.num_heads; h++) heads.push([h, `head ${h}`]);
      controls.appendChild(nbkSelect(heads, model.get("head"), (h) => set({ head: h })));
    }
    if (v === "head") {
      const chosen = new Set(model.get("heads"));
      const chips = nbkEl("span", "nbk-chips");
      for (let h = 0; h < info.num_heads; h++) {
        const c = nbkEl("button", "nbk-chip", String(h));
        c.dataset.head = String(h);
        c.style.background = chosen.has(h) ? nbkHeadColor(h) : "transparent";
        c.style.borderColor = nbkHeadColor(h);
        c.title = "click: show/hide this head; double-click: only this head";
        c.addEventListener("click", () => {
          const next = new Set(model.get("heads"));
          if (next.has(h)) next.delete(h); else next.add(h);
          set({ heads: [...next].sort((a, b) => a - b) });
        });
        c.addEventListener("dblclick", () => set({ heads: [h] }));
        chips.appendChild(c);
      }
      const all = nbkEl("button", "nbk-btn", "all");
      all.addEventListener("click", () => set({ heads: [...Array(info.num_heads).keys()] }));
      controls.append(chips, all, nbkEl("span", "nbk-muted",
        ` lines: ${info.top_k} strongest keys per token; opacity relative to each head's maximum`));
    }
  }

  function makeView(name, kind) {
    const toks = tokensFor(kind);
    const ctx = { ...toks, readout: say, heads: model.get("heads"), layers: info.layers,
      promptLength: kind === "cross" ? null : info.prompt_length, causal: info.causal && kind !== "cross", diffName,
      pick: (layer, head) => set({ view: "matrix", layer, head }) };
    if (name === "head") return nbkHeadView(body, ctx);
    if (name === "model") return nbkModelView(body, ctx);
    if (name === "generation") return nbkGenerationView(body, ctx);
    return nbkMatrixView(body, ctx);
  }

  async function refresh() {
    const my = ++seq;
    const name = model.get("view"), kind = model.get("kind");
    const layer = model.get("layer"), head = model.get("head"), source = model.get("source");
    const what = NBK_WHAT[name];
    const tStart = performance.now();
    if (name !== viewName || kind !== viewKind || source !== viewSource) {
      if (view) view.destroy();
      view = makeView(name, kind);
      viewName = name; viewKind = kind; viewSource = source;
    }
    showDiffNote(source, layer, head);
    if (!client.has(what, kind, layer, head, source)) status.textContent = "loading…";
    let data;
    try {
      data = await client.get(what, kind, layer, head, source);
    } catch (err) {
      if (my === seq) status.textContent = String(err.message || err);
      return;
    }
    if (my !== seq) return; // a newer selection won
    status.textContent = "";
    view.setData(data);
    const ms = performance.now() - (painted ? tStart : t0);
    nbkRecord(painted ? "update" : "firstPaint", ms);
    if (!painted) {
      painted = true;
      requestAnimationFrame(() => { nbkRecord("firstPaintFrame", performance.now() - t0); root.dataset.ready = "1"; });
    }
    root.dataset.view = name;
    root.dataset.source = source;
  }

  function showDiffNote(source, layer, head) {
    if (!compare || source !== "diff") { diffNote.style.display = "none"; return; }
    const pos = info.layers.indexOf(layer);
    const score = model.get("view") === "matrix" && pos >= 0 && head >= 0 ? ` This head's change: ${compare.change[pos][head].toFixed(3)} (0 = same rows, 1 = disjoint).` : "";
    diffNote.textContent = `${diffName}: red where ${compare.names[0]} attends more than ${compare.names[1]}, blue where less; both read the same tokens.${score}`;
    diffNote.style.display = "";
  }

  const onStructure = () => { buildBar(); buildControls(); refresh(); };
  const onData = () => { buildControls(); refresh(); };
  const onHeads = () => { buildControls(); if (view && view.setHeads) view.setHeads(model.get("heads")); };
  model.on("change:view", onStructure);
  model.on("change:kind", onStructure);
  model.on("change:source", onStructure);
  model.on("change:layer", onData);
  model.on("change:head", onData);
  model.on("change:heads", onHeads);
  buildBar();
  buildControls();
  refresh();
  return () => {
    model.off("change:view", onStructure);
    model.off("change:kind", onStructure);
    model.off("change:source", onStructure);
    model.off("change:layer", onData);
    model.off("change:head", onData);
    model.off("change:heads", onHeads);
    client.dispose();
    if (view) view.destroy();
  };
}

export default { render };
