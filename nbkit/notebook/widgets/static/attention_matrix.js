// nbkit attention views, part 3 of 4: canvas views of whole maps. The matrix view (also used for
// rollout) paints one T x T map as an image, one pixel per cell, scaled up by the zoom; the model
// view is a grid of layer x head thumbnails; the generation view colours the text each generated
// token attended to. Labels are canvas text or textContent.

/** An image of uint8 codes, one pixel per cell. opts.signed: diverging colours; opts.causal: cells
 * above the diagonal (future tokens, masked) drawn as NBK_MASKED rather than as a value. */
function nbkImage(codes, rows, cols, opts = {}) {
  const img = new ImageData(cols, rows);
  const lut = opts.signed ? NBK_LUT_DIV : NBK_LUT;
  const mask = opts.causal && rows === cols;
  for (let p = 0; p < rows * cols; p++) {
    if (mask && p % cols > Math.floor(p / cols)) img.data.set(NBK_MASKED, p * 4);
    else img.data.set(lut.subarray(codes[p] * 4, codes[p] * 4 + 4), p * 4);
  }
  const c = document.createElement("canvas");
  c.width = cols; c.height = rows;
  c.getContext("2d").putImageData(img, 0, 0);
  return c;
}

/** A small gradient swatch of the colour map (0 on the left, the map's maximum on the right). */
function nbkLegend(signed) {
  const codes = new Uint8Array(128).map((_, i) => Math.round((i * 255) / 127));
  const c = nbkImage(codes, 1, 128, { signed });
  c.className = "nbk-legend";
  return c;
}

function nbkMatrixView(host, ctx) {
  // ctx: {tokQ, tokK, segQ, segK, readout(text)}
  const tq = ctx.tokQ.length, tk = ctx.tokK.length;
  const n = Math.max(tq, tk);
  const box = nbkEl("div", "nbk-matrix-box");
  const zoomBar = nbkEl("div", "nbk-zoom");
  const out = nbkEl("button", "nbk-btn", "−"), fit = nbkEl("button", "nbk-btn", "fit");
  const inn = nbkEl("button", "nbk-btn", "+"), zoomLabel = nbkEl("span", "nbk-muted");
  const legendMax = nbkEl("span", "nbk-muted"), legendMin = nbkEl("span", "nbk-muted", "   0");
  let legend = nbkLegend(false);
  zoomBar.append(out, fit, inn, zoomLabel, legendMin, legend, legendMax);
  const wrap = nbkEl("div", "nbk-matrix");
  const canvas = nbkEl("canvas", "nbk-heat");
  wrap.appendChild(canvas);
  box.append(zoomBar, wrap);
  host.appendChild(box);
  const g = canvas.getContext("2d");
  const fitCell = Math.max(1, Math.floor(520 / n));
  const maxCell = Math.max(fitCell, Math.floor(8000 / n));
  let cell = fitCell, data = null, image = null, hover = null;

  function margins() {
    return cell >= 9 ? { x: 96, y: 80 } : { x: 8, y: 8 };
  }

  function draw() {
    const m = margins();
    const w = m.x + tk * cell, h = m.y + tq * cell;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    g.clearRect(0, 0, w, h);
    zoomLabel.textContent = ` ${cell}px per cell`;
    if (!image) return;
    g.imageSmoothingEnabled = false;
    g.drawImage(image, m.x, m.y, tk * cell, tq * cell);
    const p0 = ctx.promptLength;
    if (p0 != null && p0 > 0 && p0 < tq && tq === tk) { // where the answer starts, on both axes
      g.save();
      g.strokeStyle = "#e6550d"; g.lineWidth = 1.5; g.setLineDash([3, 2]);
      g.beginPath();
      g.moveTo(m.x, m.y + p0 * cell); g.lineTo(m.x + tk * cell, m.y + p0 * cell);
      g.moveTo(m.x + p0 * cell, m.y); g.lineTo(m.x + p0 * cell, m.y + tq * cell);
      g.stroke();
      g.restore();
    }
    // segment strips along both axes
    for (let i = 0; i < tq; i++) { g.fillStyle = NBK_SEG_COLORS[ctx.segQ[i] ?? 0]; g.fillRect(m.x - 5, m.y + i * cell, 4, cell); }
    for (let j = 0; j < tk; j++) { g.fillStyle = NBK_SEG_COLORS[ctx.segK[j] ?? 0]; g.fillRect(m.x + j * cell, m.y - 5, cell, 4); }
    if (cell >= 9) {
      g.fillStyle = getComputedStyle(host).color || "#222";
      g.font = `${Math.min(12, cell)}px sans-serif`;
      g.textAlign = "right"; g.textBaseline = "middle";
      for (let i = 0; i < tq; i++) g.fillText(nbkShow(ctx.tokQ[i]).slice(0, 14), m.x - 8, m.y + (i + 0.5) * cell, m.x - 10);
      for (let j = 0; j < tk; j++) {
        g.save();
        g.translate(m.x + (j + 0.5) * cell, m.y - 8);
        g.rotate(-Math.PI / 3);
        g.textAlign = "left";
        g.fillText(nbkShow(ctx.tokK[j]).slice(0, 14), 0, 0, m.y);
        g.restore();
      }
    }
    if (hover) {
      g.strokeStyle = "#d62728";
      g.lineWidth = 1;
      g.strokeRect(m.x + 0.5, m.y + hover.i * cell + 0.5, tk * cell - 1, cell);
      g.strokeRect(m.x + hover.j * cell + 0.5, m.y + 0.5, cell, tq * cell - 1);
    }
  }

  function onMove(ev) {
    if (!data) return;
    const r = canvas.getBoundingClientRect(), m = margins();
    const j = Math.floor((ev.clientX - r.left - m.x) / cell), i = Math.floor((ev.clientY - r.top - m.y) / cell);
    const inside = i >= 0 && j >= 0 && i < tq && j < tk;
    if (!inside) { if (hover) { hover = null; draw(); ctx.readout(""); } return; }
    if (hover && hover.i === i && hover.j === j) return;
    nbkTimed("hover", () => {
      hover = { i, j };
      const signed = !!data.meta.signed;
      const first = data.meta.first;
      const v = j === 0 && first ? first[i] : nbkValue(data.codes[i * tk + j], data.scales[0], signed);
      const masked = ctx.causal && tq === tk && j > i;
      const what = masked ? "masked (a later token)" : signed ? `${v >= 0 ? "+" : ""}${v.toFixed(4)} (${ctx.diffName})` : v.toFixed(4);
      ctx.readout(`${i} “${nbkShow(ctx.tokQ[i])}” → ${j} “${nbkShow(ctx.tokK[j])}”: ${what}`);
      draw();
    });
  }
  const onLeave = () => { hover = null; draw(); ctx.readout(""); };
  const setCell = (c) => { cell = Math.min(maxCell, Math.max(1, c)); draw(); };
  const onWheel = (ev) => {
    if (!ev.ctrlKey && !ev.metaKey) return;
    ev.preventDefault();
    setCell(ev.deltaY < 0 ? cell * 2 : Math.floor(cell / 2));
  };
  out.onclick = () => setCell(Math.floor(cell / 2));
  inn.onclick = () => setCell(cell * 2);
  fit.onclick = () => setCell(fitCell);
  canvas.addEventListener("mousemove", onMove);
  canvas.addEventListener("mouseleave", onLeave);
  wrap.addEventListener("wheel", onWheel, { passive: false });

  return {
    setData(d) {
      data = d;
      const signed = !!d.meta.signed;
      image = nbkImage(d.codes, d.shape[0], d.shape[1], { signed, causal: ctx.causal });
      const fresh = nbkLegend(signed);
      legend.replaceWith(fresh);
      legend = fresh;
      legendMin.textContent = signed ? `   −${d.scales[0].toPrecision(3)}` : "   0";
      legendMax.textContent = signed ? `+${d.scales[0].toPrecision(3)} (${ctx.diffName})`
        : d.meta.first ? `${d.scales[0].toPrecision(3)} (max after the first token, whose column saturates: an attention sink)`
        : `${d.scales[0].toPrecision(3)} (max)`;
      box.dataset.signed = signed ? "1" : "0";
      draw();
    },
    destroy() { wrap.removeEventListener("wheel", onWheel); box.remove(); },
  };
}

function nbkModelView(host, ctx) {
  // ctx: {layers, readout(text), pick(layer, head)}
  const box = nbkEl("div", "nbk-model");
  host.appendChild(box);
  return {
    setData(d) {
      box.replaceChildren();
      const [L, H, sq, sk] = d.shape;
      const grid = nbkEl("div", "nbk-model-grid");
      grid.style.gridTemplateColumns = `auto repeat(${H}, 56px)`;
      grid.appendChild(nbkEl("div", "nbk-muted", ""));
      for (let h = 0; h < H; h++) {
        const lab = nbkEl("div", "nbk-model-head", `h${h}`);
        lab.style.color = nbkHeadColor(h);
        grid.appendChild(lab);
      }
      for (let l = 0; l < L; l++) {
        grid.appendChild(nbkEl("div", "nbk-model-layer", `layer ${ctx.layers[l]}`));
        for (let h = 0; h < H; h++) {
          const start = (l * H + h) * sq * sk;
          const signed = !!d.meta.signed;
          const c = nbkImage(d.codes.subarray(start, start + sq * sk), sq, sk, { signed, causal: ctx.causal && sq === sk });
          c.className = "nbk-thumb";
          c.title = `layer ${ctx.layers[l]}, head ${h}: click to open`;
          const says = signed
            ? `layer ${ctx.layers[l]}, head ${h}: change ${d.meta.change[l * H + h].toFixed(3)} (mean total variation between ${ctx.diffName.replace(" − ", " and ")} rows, 0-1)`
            : `layer ${ctx.layers[l]}, head ${h}: mean entropy ${d.meta.entropy[l * H + h].toFixed(2)} nats`;
          c.addEventListener("mouseenter", () => nbkTimed("hover", () => ctx.readout(says)));
          c.addEventListener("click", () => ctx.pick(ctx.layers[l], h));
          grid.appendChild(c);
        }
      }
      box.append(nbkEl("div", "nbk-muted", d.meta.signed
        ? `${ctx.diffName}: ${sq}×${sk} thumbnails, red where the first attends more, blue less, each scaled to its own largest change; click one to open it.`
        : `${sq}×${sk} thumbnails (blocks of tokens), each scaled to its own maximum; click one to open it.`), grid);
    },
    destroy() { box.remove(); },
  };
}

function nbkGenerationView(host, ctx) {
  // ctx: {tokQ, promptLength, readout(text)}
  const T = ctx.tokQ.length, p0 = ctx.promptLength;
  const box = nbkEl("div", "nbk-gen");
  const bar = nbkEl("label", "nbk-muted", "generated token ");
  const slider = nbkEl("input");
  slider.type = "range"; slider.min = String(p0); slider.max = String(T - 1); slider.value = String(p0);
  bar.appendChild(slider);
  const text = nbkEl("div", "nbk-gen-text");
  const spans = ctx.tokQ.map((s, i) => {
    const e = nbkEl("span", i < p0 ? "nbk-gen-tok" : "nbk-gen-tok nbk-gen-new", nbkShow(s));
    if ((ctx.segQ[i] ?? 0) < 0) e.classList.add("nbk-special");
    e.dataset.i = String(i);
    return text.appendChild(e);
  });
  box.append(bar, text);
  host.appendChild(box);
  let data = null;

  function show(step) {
    if (!data) return;
    const row = step * T, scale = data.scales[0];
    let max = 0;
    // the first token (an attention sink in decoder LLMs) saturates: the darkest of the rest is the max
    for (let j = data.meta.first ? 1 : 0; j <= step; j++) max = Math.max(max, data.codes[row + j]);
    spans.forEach((e, j) => {
      const c = j <= step ? data.codes[row + j] : 0;
      e.style.background = j < step && c ? `rgba(214, 39, 40, ${(0.85 * c) / (max || 1)})` : "";
      e.classList.toggle("nbk-focus", j === step);
      e.classList.toggle("nbk-future", j > step);
    });
    ctx.readout(`step ${step - p0 + 1} of ${T - p0}: “${nbkShow(ctx.tokQ[step])}” (darker = more attention; max ${((max / 255) * scale).toFixed(3)})`);
  }
  slider.addEventListener("input", () => nbkTimed("select", () => show(Number(slider.value))));
  text.addEventListener("mouseover", (ev) => {
    const i = Number(ev.target.dataset && ev.target.dataset.i);
    if (ev.target.classList.contains("nbk-gen-new") && i !== Number(slider.value)) {
      slider.value = String(i);
      nbkTimed("hover", () => show(i));
    }
  });
  return {
    setData(d) { data = d; show(Number(slider.value)); },
    destroy() { box.remove(); },
  };
}
