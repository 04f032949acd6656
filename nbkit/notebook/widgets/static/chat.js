// nbkit chat box: the conversation, the answer being generated, and the controls (send, stop,
// clear, base/tuned, temperature, max new tokens). The kernel generates in a thread and sends the
// answer in progress as the `pending` trait a few times a second. Every piece of text (prompts,
// answers, notes) enters the page through textContent, never as HTML.

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function label(m) {
  if (m.role === "user") return "you";
  const who = m.mode || m.role || "";
  return m.stopped ? who + " (stopped)" : who;
}

function bubble(m) {
  const row = el("div", "nbkit-chat-msg nbkit-chat-" + (m.role === "user" ? "user" : "assistant"));
  row.appendChild(el("div", "nbkit-chat-who", label(m)));
  row.appendChild(el("div", "nbkit-chat-text", m.content));
  return row;
}

let counter = 0;

function render({ model, el: root }) {
  root.classList.add("nbkit-chat");
  const uid = "nbkit-chat-" + (++counter) + "-" + Math.random().toString(36).slice(2, 8);
  const header = el("div", "nbkit-chat-header");
  const title = el("span", "nbkit-chat-title");
  header.appendChild(title);

  // base / tuned: two radio buttons, disabled (with the reason) for a model without an adapter
  const modeBox = el("span", "nbkit-chat-mode");
  modeBox.appendChild(document.createTextNode("answer as "));
  const radios = {};
  for (const mode of ["tuned", "base"]) {
    const wrap = el("label", "nbkit-chat-radio");
    const r = document.createElement("input");
    r.type = "radio";
    r.name = uid + "-mode";
    r.value = mode;
    r.addEventListener("change", () => {
      if (r.checked) { model.set("tuned", mode === "tuned"); model.save_changes(); }
    });
    wrap.appendChild(r);
    wrap.appendChild(document.createTextNode(" " + mode));
    modeBox.appendChild(wrap);
    radios[mode] = r;
  }
  header.appendChild(modeBox);

  function numberInput(name, text, attrs, parse) {
    const wrap = el("label", "nbkit-chat-setting");
    wrap.appendChild(document.createTextNode(text + " "));
    const input = document.createElement("input");
    input.type = "number";
    input.className = "nbkit-chat-" + name.replace(/_/g, "-");
    input.setAttribute("data-lm-suppress-shortcuts", "true");
    for (const [k, v] of Object.entries(attrs)) input.setAttribute(k, String(v));
    input.addEventListener("change", () => {
      const v = parse(input.value);
      if (v === null || !input.checkValidity()) { input.value = String(model.get(name)); return; }
      model.set(name, v);
      model.save_changes();
    });
    wrap.appendChild(input);
    return [wrap, input];
  }
  const [tempWrap, temp] = numberInput("temperature", "temperature", { min: 0, max: 5, step: 0.1 },
    (s) => { const v = Number(s); return s !== "" && Number.isFinite(v) && v >= 0 ? v : null; });
  const [maxWrap, maxTokens] = numberInput("max_new_tokens", "max new tokens", { min: 1, max: 8192, step: 1 },
    (s) => { const v = Number(s); return s !== "" && Number.isInteger(v) && v >= 1 ? v : null; });
  header.appendChild(tempWrap);
  header.appendChild(maxWrap);

  const note = el("div", "nbkit-chat-note");
  const log = el("div", "nbkit-chat-log");
  const status = el("div", "nbkit-chat-status");
  const form = el("div", "nbkit-chat-form");
  const input = document.createElement("textarea");
  input.className = "nbkit-chat-input";
  input.rows = 2;
  input.placeholder = "Type a message (Enter sends, Shift+Enter starts a new line)";
  // JupyterLab's shortcuts (Shift+Enter runs the cell, "a"/"b"/"dd" in command mode) skip these keys
  input.setAttribute("data-lm-suppress-shortcuts", "true");
  const sendBtn = el("button", "nbkit-btn nbkit-chat-send", "Send");
  const stopBtn = el("button", "nbkit-btn nbkit-chat-stop", "\u25A0 Stop");
  const clearBtn = el("button", "nbkit-btn nbkit-chat-clear", "Clear");
  sendBtn.title = "Send the message; the answer streams in as it is generated";
  stopBtn.title = "End the answer after its current token";
  clearBtn.title = "Forget the conversation";
  for (const n of [input, sendBtn, stopBtn, clearBtn]) form.appendChild(n);
  for (const n of [header, note, log, status, form]) root.appendChild(n);

  function submit() {
    const text = input.value;
    if (!text.trim() || model.get("generating") || model.get("busy")) return;
    model.send({ action: "send", text });
    input.value = "";
  }
  sendBtn.addEventListener("click", submit);
  input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.isComposing) return;
    e.preventDefault();
    e.stopPropagation();
    if (!e.shiftKey) { submit(); return; }
    // the notebook swallows the line break Shift+Enter would insert: insert it here
    input.setRangeText("\n", input.selectionStart, input.selectionEnd, "end");
  });
  stopBtn.addEventListener("click", () => model.send({ action: "stop" }));
  clearBtn.addEventListener("click", () => model.send({ action: "clear" }));

  let pendingNode = null;
  function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }
  function messages() {
    const stick = nearBottom();
    log.replaceChildren();
    const system = model.get("system");
    if (system) log.appendChild(bubble({ role: "system", mode: "system", content: system }));
    const list = model.get("messages") || [];
    for (const m of list) log.appendChild(bubble(m));
    if (!list.length && !model.get("generating")) log.appendChild(el("div", "nbkit-chat-empty", "No messages yet."));
    pendingNode = null;
    pending();
    if (stick) log.scrollTop = log.scrollHeight;
    root.dataset.messages = String(list.length);
  }
  function pending() {
    const generating = model.get("generating");
    if (!generating) { if (pendingNode) { pendingNode.remove(); pendingNode = null; } return; }
    const stick = nearBottom();
    if (!pendingNode) {
      pendingNode = bubble({ role: "assistant", mode: model.get("tuned") ? "tuned" : "base", content: "" });
      pendingNode.classList.add("nbkit-chat-pending");
      log.appendChild(pendingNode);
    }
    pendingNode.querySelector(".nbkit-chat-text").textContent = model.get("pending") || "\u2026";
    if (stick) log.scrollTop = log.scrollHeight;
  }
  function controls() {
    const generating = model.get("generating"), busy = model.get("busy"), error = model.get("error");
    const canSwitch = model.get("can_switch");
    title.textContent = "chat \u00b7 " + model.get("title");
    radios.tuned.checked = model.get("tuned");
    radios.base.checked = !model.get("tuned");
    for (const r of Object.values(radios)) r.disabled = !canSwitch || generating;
    modeBox.title = canSwitch ? "Base: the model with its LoRA adapter disabled" : model.get("switch_note");
    modeBox.classList.toggle("nbkit-chat-disabled", !canSwitch);
    note.textContent = canSwitch ? "" : model.get("switch_note");
    temp.value = String(model.get("temperature"));
    maxTokens.value = String(model.get("max_new_tokens"));
    sendBtn.disabled = generating || !!busy;
    input.disabled = !!busy;
    stopBtn.disabled = !generating;
    clearBtn.disabled = generating;
    status.textContent = busy || error || (generating ? "answering\u2026" : "");
    status.dataset.kind = busy ? "busy" : error ? "error" : "";
    root.dataset.generating = String(generating);
    root.dataset.busy = String(!!busy);
  }
  model.on("change:messages", messages);
  model.on("change:system", messages);
  model.on("change:pending", pending);
  model.on("change:generating", () => { pending(); controls(); });
  for (const name of ["title", "tuned", "can_switch", "switch_note", "temperature", "max_new_tokens", "busy", "error"]) {
    model.on("change:" + name, controls);
  }
  messages();
  controls();
}

export default { render };
