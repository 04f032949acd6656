// nbkit dashboard controls: Stop, Pause/Resume, Stop after epoch, chart toggles.
// Buttons are enabled only once the kernel has answered this view ("live"): a front end that cannot
// deliver widget messages to a busy kernel shows a hint instead of a dead button.
// User-derived text is set with textContent only, never as HTML.
function button(label, title, onClick) {
  const b = document.createElement("button");
  b.className = "nbkit-btn";
  b.textContent = label;
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function toggle(label, onChange) {
  const wrap = document.createElement("label");
  wrap.className = "nbkit-toggle";
  const box = document.createElement("input");
  box.type = "checkbox";
  box.addEventListener("change", () => onChange(box.checked));
  wrap.appendChild(box);
  wrap.appendChild(document.createTextNode(" " + label));
  return [wrap, box];
}

function render({ model, el }) {
  el.classList.add("nbkit-controls");
  const send = (action, value) => model.send({ action, value });
  const stop = button("\u25A0 Stop", "Finish the current step, save a checkpoint, end as 'stopped'", () => send("stop"));
  const pause = button("\u275A\u275A Pause", "Hold training at the next step boundary", () =>
    send(model.get("paused") ? "resume" : "pause"));
  const epoch = button("Stop after epoch", "Finish this epoch, evaluate, save and stop", () => send("stop_after_epoch"));
  const [logWrap, logBox] = toggle("log scale", (v) => send("log_y", v));
  const [lrWrap, lrBox] = toggle("learning rate", (v) => send("show_lr", v));
  const hint = document.createElement("span");
  hint.className = "nbkit-hint";
  for (const node of [stop, pause, epoch, logWrap, lrWrap, hint]) el.appendChild(node);

  function update() {
    const live = model.get("live");
    const done = model.get("done");
    for (const b of [stop, pause, epoch]) b.disabled = !live || done;
    pause.textContent = model.get("paused") ? "\u25B6 Resume" : "\u275A\u275A Pause";
    logBox.checked = model.get("log_y");
    lrBox.checked = model.get("show_lr");
    hint.textContent = model.get("hint");
    el.dataset.live = String(live);
    el.dataset.done = String(done);
  }
  for (const name of ["live", "done", "paused", "hint", "log_y", "show_lr"]) model.on("change:" + name, update);
  model.on("msg:custom", (msg) => {
    if (msg && msg.type === "ping") send("pong", msg.id);
  });
  update();
  send("pong", -1); // announce this view; the kernel marks the controls live when it hears it
}

export default { render };
