// nbkit attention views, part 2 of 4: the head view. Query tokens on the left, key tokens on the
// right, one line per (query, key) among each query's top-k keys, coloured by head. The two token
// columns scroll together; the canvas between them is sticky and only as tall as the viewport, so
// 512+ tokens cost one viewport of pixels and each redraw skips lines outside the window.

const NBK_ROW = 18;
const NBK_LINES_W = 220;

function nbkHeadView(host, ctx) {
  // ctx: {tokQ, tokK, segQ, segK, heads, readout(text)}
  const tq = ctx.tokQ.length, tk = ctx.tokK.length;
  const rows = Math.max(tq, tk);
  const viewH = Math.min(460, rows * NBK_ROW + 4);
  const wrap = nbkEl("div", "nbk-head");
  wrap.style.height = `${viewH}px`;
  const grid = nbkEl("div", "nbk-head-grid");
  grid.style.height = `${rows * NBK_ROW}px`;
  const left = nbkEl("div", "nbk-col nbk-left");
  const mid = nbkEl("div", "nbk-mid");
  const right = nbkEl("div", "nbk-col nbk-right");
  const canvas = nbkEl("canvas", "nbk-lines");
  canvas.style.height = `${viewH}px`;
  mid.appendChild(canvas);
  const leftEls = ctx.tokQ.map((s, i) => left.appendChild(nbkTokenEl(s, ctx.segQ[i] ?? 0, i)));
  const rightEls = ctx.tokK.map((s, i) => right.appendChild(nbkTokenEl(s, ctx.segK[i] ?? 0, i)));
  if (ctx.promptLength != null && ctx.promptLength < tq && tq === tk) {
    // a dotted rule where the model's answer starts, on both columns
    for (const e of [leftEls[ctx.promptLength], rightEls[ctx.promptLength]]) {
      e.classList.add("nbk-answer-start");
      e.title += " (first token of the answer)";
    }
  }
  grid.append(left, mid, right);
  wrap.appendChild(grid);
  host.appendChild(wrap);

  let data = null;
  let heads = ctx.heads.slice();
  let focus = null; // {side: "q" | "k", i}
  let pinned = null;
  let lit = [];
  let frame = 0;

  const g = canvas.getContext("2d");

  function sizeCanvas() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(NBK_LINES_W * dpr), h = Math.round(viewH * dpr);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  /** Value of head h, query i, slot r (0..1 of the head's strongest weight). */
  function draw() {
    sizeCanvas();
    g.clearRect(0, 0, NBK_LINES_W, viewH);
    if (!data) return;
    const [, nq, k] = data.shape;
    const { idx, codes } = data;
    const top = wrap.scrollTop;
    const half = NBK_ROW / 2;
    const fq = focus && focus.side === "q" ? focus.i : -1;
    const fk = focus && focus.side === "k" ? focus.i : -1;
    const minCode = focus ? 2 : 12; // skip lines too faint to see
    const strength = focus ? 0.95 : 0.45 / Math.sqrt(Math.max(1, heads.length));
    g.lineWidth = focus ? 2 : 1;
    for (const h of heads) {
      const paths = Array.from({ length: 8 }, () => new Path2D());
      const i0 = fq >= 0 ? fq : 0, i1 = fq >= 0 ? fq + 1 : nq;
      for (let i = i0; i < i1; i++) {
        const y0 = i * NBK_ROW + half - top;
        const base = (h * nq + i) * k;
        for (let r = 0; r < k; r++) {
          const c = codes[base + r];
          if (c < minCode) continue;
          const j = idx[base + r];
          if (fk >= 0 && j !== fk) continue;
          const y1 = j * NBK_ROW + half - top;
          if ((y0 < 0 && y1 < 0) || (y0 > viewH && y1 > viewH)) continue;
          const p = paths[c >> 5];
          p.moveTo(0, y0);
          p.lineTo(NBK_LINES_W, y1);
        }
      }
      g.strokeStyle = nbkHeadColor(h);
      for (let b = 0; b < 8; b++) {
        g.globalAlpha = strength * (b + 1) / 8;
        g.stroke(paths[b]);
      }
    }
    g.globalAlpha = 1;
  }

  function schedule() {
    if (frame) return;
    frame = requestAnimationFrame(() => { frame = 0; draw(); });
  }

  /** Mean weight (over the drawn heads) from the focused token to each token on the other side. */
  function weightsFrom(f) {
    const [, nq, k] = data.shape;
    const n = f.side === "q" ? tk : tq;
    const out = new Float32Array(n);
    for (const h of heads) {
      const s = data.scales[h] / 255 / heads.length;
      for (let i = f.side === "q" ? f.i : 0; i < (f.side === "q" ? f.i + 1 : nq); i++) {
        const base = (h * nq + i) * k;
        for (let r = 0; r < k; r++) {
          const j = data.idx[base + r];
          if (f.side === "q") out[j] += data.codes[base + r] * s;
          else if (j === f.i) out[i] += data.codes[base + r] * s;
        }
      }
    }
    return out;
  }

  function highlight() {
    for (const e of lit) { e.style.background = ""; e.classList.remove("nbk-focus"); }
    lit = [];
    if (!focus || !data) { ctx.readout(""); return; }
    const own = (focus.side === "q" ? leftEls : rightEls)[focus.i];
    own.classList.add("nbk-focus");
    lit.push(own);
    const w = weightsFrom(focus);
    const others = focus.side === "q" ? rightEls : leftEls;
    let best = 0, max = 0;
    for (let j = 0; j < w.length; j++) if (w[j] > max) { max = w[j]; best = j; }
    for (let j = 0; j < w.length; j++) {
      if (w[j] <= 0) continue;
      others[j].style.background = `rgba(31, 119, 180, ${(0.8 * w[j]) / (max || 1)})`;
      lit.push(others[j]);
    }
    const name = (focus.side === "q" ? ctx.tokQ : ctx.tokK)[focus.i];
    const arrow = focus.side === "q" ? "attends most to" : "is attended most by";
    ctx.readout(`${focus.i} “${nbkShow(name)}” ${arrow} ${best} “${nbkShow((focus.side === "q" ? ctx.tokK : ctx.tokQ)[best])}” (${max.toFixed(3)})`);
  }

  function setFocus(f) {
    nbkTimed("hover", () => { focus = f; highlight(); draw(); });
  }

  function onOver(side) {
    return (ev) => {
      const tok = ev.target.closest(".nbk-tok");
      if (!tok || pinned) return;
      const i = Number(tok.dataset.i);
      if (focus && focus.side === side && focus.i === i) return;
      setFocus({ side, i });
    };
  }
  function onClick(side) {
    return (ev) => {
      const tok = ev.target.closest(".nbk-tok");
      if (!tok) return;
      const i = Number(tok.dataset.i);
      pinned = pinned && pinned.side === side && pinned.i === i ? null : { side, i };
      setFocus(pinned);
    };
  }
  const onLeave = () => { if (!pinned && focus) setFocus(null); };
  const listeners = [
    [left, "mouseover", onOver("q")], [right, "mouseover", onOver("k")],
    [left, "click", onClick("q")], [right, "click", onClick("k")],
    [left, "mouseleave", onLeave], [right, "mouseleave", onLeave], [wrap, "scroll", schedule],
  ];
  for (const [target, type, fn] of listeners) target.addEventListener(type, fn);

  return {
    setData(d) { data = d; highlight(); draw(); },
    setHeads(hs) { nbkTimed("select", () => { heads = hs.slice(); highlight(); draw(); }); },
    destroy() {
      if (frame) cancelAnimationFrame(frame);
      for (const [target, type, fn] of listeners) target.removeEventListener(type, fn);
      wrap.remove();
    },
  };
}
