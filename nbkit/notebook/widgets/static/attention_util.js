// nbkit attention views, part 1 of 4: helpers shared by the views (palette, colour map, payload
// decoding, the request client, timings). The Python side concatenates the four files into one ES
// module. Token text only ever enters the page through textContent or canvas fillText.

const NBK_HEAD_COLORS = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a",
  "#637939", "#8c6d31", "#843c39", "#7b4173",
];
const NBK_SEG_COLORS = { "-1": "#9e9e9e", 0: "#4c78a8", 1: "#f58518" };

function nbkHeadColor(h) {
  return NBK_HEAD_COLORS[h % NBK_HEAD_COLORS.length];
}

/** Create an element; `text` is placed with textContent, never parsed as HTML. */
function nbkEl(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

/** Same rule as request_key() in nbkit/notebook/widgets/attention.py. */
function nbkKeyOf(what, kind, layer, head, source) {
  if (what === "sparse" || what === "rollout") head = -1;
  if (what === "thumbs") { layer = -1; head = -1; }
  const tail = !source || source === "tuned" ? "" : `|${source}`;
  return `${what}|${kind}|${layer}|${head}${tail}`;
}

/** A token as the views print it: line breaks and tabs as visible marks (same as shown() in
 * nbkit/figures/attention.py); leading spaces of byte-level pieces (" Paris") stay spaces. */
function nbkShow(text) {
  return String(text).replace(/\n/g, "↵").replace(/\t/g, "⇥");
}

function nbkBytes(buf) {
  if (buf instanceof ArrayBuffer) return new Uint8Array(buf);
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  throw new Error("nbkit: unexpected buffer type");
}

/** Turn a payload (meta + binary buffers) into typed arrays. uint16 indices are copied so they are
 * aligned whatever offset the transport gave the buffer. */
function nbkDecode(meta, buffers) {
  const out = { meta, shape: meta.shape, scales: meta.scales };
  if (meta.what === "sparse") {
    out.idx = new Uint16Array(nbkBytes(buffers[0]).slice().buffer);
    out.codes = nbkBytes(buffers[1]);
  } else {
    out.codes = nbkBytes(buffers[0]);
  }
  return out;
}

/** A 256-entry RGBA colour map through three colours (code 0 -> lo, 128 -> mid, 255 -> hi). */
function nbkLut(lo, mid, hi) {
  const lut = new Uint8ClampedArray(256 * 4);
  for (let c = 0; c < 256; c++) {
    const x = c / 255;
    const [a, b, f] = x < 0.5 ? [lo, mid, x * 2] : [mid, hi, (x - 0.5) * 2];
    for (let k = 0; k < 3; k++) lut[c * 4 + k] = a[k] + (b[k] - a[k]) * f;
    lut[c * 4 + 3] = 255;
  }
  return lut;
}

/** White -> blue sequential colour map, for uint8 codes. */
const NBK_LUT = nbkLut([255, 255, 255], [107, 174, 214], [8, 48, 107]);
/** Blue -> white -> red diverging colour map for signed codes (0 = -max, ~128 = 0, 255 = +max). */
const NBK_LUT_DIV = nbkLut([33, 102, 172], [247, 247, 247], [178, 24, 43]);
const NBK_MASKED = [230, 230, 230, 255]; // the causal mask's future cells (no weight, not weight 0)

/** The value a uint8 code stands for: c / 255 * scale, or (c / 255 * 2 - 1) * scale when signed. */
function nbkValue(code, scale, signed) {
  return signed ? ((code / 255) * 2 - 1) * scale : (code / 255) * scale;
}

/** Page-side timings, read by the browser test: window.__nbkitAttention.<name> = [ms, ...]. */
function nbkRecord(name, ms) {
  const store = (window.__nbkitAttention = window.__nbkitAttention || {});
  (store[name] = store[name] || []).push(ms);
}

/** Measure `fn` plus the frame it paints in; records "<name>" (script) and "<name>Frame" (to paint). */
function nbkTimed(name, fn) {
  const t0 = performance.now();
  fn();
  nbkRecord(name, performance.now() - t0);
  requestAnimationFrame(() => nbkRecord(name + "Frame", performance.now() - t0));
}

/** Fetch view data from the kernel on demand; answers are cached per key for this view. */
function nbkClient(model) {
  const cache = new Map();
  const inflight = new Map();
  const pending = new Map();
  const prefix = Math.random().toString(36).slice(2);
  let next = 1;
  const onMsg = (msg, buffers) => {
    if (!msg || (msg.type !== "data" && msg.type !== "error")) return;
    const p = pending.get(msg.id);
    if (!p) return; // another view's request
    pending.delete(msg.id);
    if (msg.type === "error") { p.reject(new Error(msg.message)); return; }
    const data = nbkDecode(msg, buffers || []);
    cache.set(p.key, data);
    nbkRecord("fetch", performance.now() - p.t0);
    p.resolve(data);
  };
  model.on("msg:custom", onMsg);
  const init = model.get("_initial");
  if (init && init.meta) cache.set(init.meta.key, nbkDecode(init.meta, init.buffers || []));
  return {
    has(what, kind, layer, head, source) { return cache.has(nbkKeyOf(what, kind, layer, head, source)); },
    get(what, kind, layer, head, source) {
      const key = nbkKeyOf(what, kind, layer, head, source);
      if (cache.has(key)) return Promise.resolve(cache.get(key));
      if (inflight.has(key)) return inflight.get(key);
      const id = `${prefix}:${next++}`;
      const promise = new Promise((resolve, reject) => {
        pending.set(id, { key, resolve, reject, t0: performance.now() });
        setTimeout(() => {
          if (!pending.has(id)) return;
          pending.delete(id);
          reject(new Error("No reply from the kernel: run the cell again to reconnect this view."));
        }, 20000);
      });
      inflight.set(key, promise);
      const done = () => inflight.delete(key);
      promise.then(done, done);
      model.send({ type: "fetch", id, what, kind, layer, head, source: source || "tuned" });
      return promise;
    },
    dispose() { model.off("msg:custom", onMsg); pending.clear(); },
  };
}

/** A token label: text via textContent, segment/special marks as classes, full text in the tooltip. */
function nbkTokenEl(text, seg, i) {
  const e = nbkEl("div", "nbk-tok", nbkShow(text));
  e.dataset.i = String(i);
  e.title = `${i}: ${nbkShow(text)}`;
  if (seg < 0) e.classList.add("nbk-special");
  else e.style.borderColor = NBK_SEG_COLORS[seg] || NBK_SEG_COLORS[0];
  return e;
}
