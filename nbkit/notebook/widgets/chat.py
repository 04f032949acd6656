"""The chat box: a thin anywidget view over `nbkit.core.llm.chat_session.ChatSession`.

The page sends three messages (`send` with the text, `stop`, `clear`) and sets three traits
(`temperature`, `max_new_tokens`, `tuned`); the kernel answers in a thread, so the message handler
returns at once and the kernel stays free while the model generates. The answer in progress crosses
the comm as the `pending` trait, at most every `update_interval` seconds (not once per token);
finished turns are in `messages`. All text enters the page with textContent, never as HTML.

A run that still trains refuses to chat (`busy` says why) until its RunEnd, which the view observes;
training and generation never use the model at once. Below the live view sits a static, escaped HTML
transcript, rewritten after every answer: what a saved notebook shows without a kernel (nbconvert,
GitHub). The live view's CSS hides it while the widget is drawn, so JupyterLab shows it only once.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from nbkit.core.llm.chat_session import (
    DEFAULT_MAX_NEW_TOKENS,
    ChatError,
    ChatSession,
    check_max_new_tokens,
    check_temperature,
)

STATIC = Path(__file__).parent / "static"
UPDATE_INTERVAL = 0.1  # seconds between sends of the answer in progress


class ChatView(anywidget.AnyWidget):
    _esm = STATIC / "chat.js"
    _css = STATIC / "chat.css"
    title = t.Unicode("").tag(sync=True)
    system = t.Unicode("").tag(sync=True)
    # finished turns: {"role": "user"|"assistant", "content": str, "mode": "tuned"|"base", "stopped": bool}
    messages = t.List(t.Dict()).tag(sync=True)
    pending = t.Unicode("").tag(sync=True)  # the answer being generated, so far
    generating = t.Bool(False).tag(sync=True)
    tuned = t.Bool(True).tag(sync=True)
    can_switch = t.Bool(False).tag(sync=True)
    switch_note = t.Unicode("").tag(sync=True)  # why base/tuned is disabled
    temperature = t.Float(0.0).tag(sync=True)
    max_new_tokens = t.Int(DEFAULT_MAX_NEW_TOKENS).tag(sync=True)
    busy = t.Unicode("").tag(sync=True)  # why the model cannot answer now (its run still trains)
    error = t.Unicode("").tag(sync=True)  # the last request's problem, shown until the next one

    def __repr__(self) -> str:
        return f"nbkit chat: {self.title} ({len(self.messages)} messages)"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live view, plus one static line for front ends without the widget (the conversation
        itself is the transcript output below the view, kept up to date)."""
        live = super()._repr_mimebundle_(**kwargs) or {}
        data, metadata = live if isinstance(live, tuple) else (live, {})
        line = f"nbkit chat with {self.title}: the conversation is below"
        data = {**data, "text/plain": repr(self),
                "text/html": f"<div class='nbkit-chat-static-title'>{html.escape(line)}</div>"}
        return (data, metadata) if isinstance(live, tuple) else data


def _label(message: dict[str, Any]) -> str:
    if message.get("role") == "user":
        return "you"
    label = message.get("mode") or message.get("role", "")
    return f"{label} (stopped)" if message.get("stopped") else label


def transcript_html(title: str, messages: list[dict[str, Any]], *, system: str = "", note: str = "") -> str:
    """The conversation as static HTML; every piece of text is escaped."""
    rows = []
    if system:
        rows.append(("system", system, "#666"))
    for m in messages:
        rows.append((_label(m), m.get("content", ""), "#1f4e79" if m.get("role") == "user" else "#2d6a2d"))
    body = "".join(
        f"<div style='margin:4px 0'><b style='color:{color}'>{html.escape(who)}:</b> "
        f"<span style='white-space:pre-wrap'>{html.escape(text)}</span></div>" for who, text, color in rows)
    if not messages:
        body += "<div style='color:#888'>(no messages yet)</div>"
    tail = f"<div style='color:#888;font-size:12px'>{html.escape(note)}</div>" if note else ""
    return (f"<div class='nbkit-chat-transcript' style='font-size:13px;border-left:3px solid #ddd;"
            f"padding-left:8px'><div style='font-weight:600'>{html.escape(title)}</div>{body}{tail}</div>")


def transcript_text(title: str, messages: list[dict[str, Any]], *, system: str = "") -> str:
    lines = [title]
    if system:
        lines.append(f"system: {system}")
    lines += [f"{_label(m)}: {m.get('content', '')}" for m in messages]
    return "\n".join(lines)


class Chat:
    """A chat box over `session`. `send(text)`, `stop()` and `clear()` do what the page's buttons
    do; `wait()` waits for the answer being generated. `run`: the run the model belongs to (its end
    lifts the "still training" refusal)."""

    def __init__(self, session: ChatSession, *, run: Any = None, title: str | None = None,
                 update_interval: float = UPDATE_INTERVAL):
        self.session, self.update_interval = session, update_interval
        self.title = title or session.name
        self.updates = 0  # sends of the answer in progress (tests read it)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._transcript = None
        self._observer = self._on_event  # one bound method, so that remove_observer finds it
        self.view = ChatView(title=self.title, system=session.system or "", tuned=session.tuned,
                             can_switch=session.has_adapter, switch_note=session.switch_note,
                             temperature=session.temperature, max_new_tokens=session.max_new_tokens)
        self.view.on_msg(self._on_msg)
        self.view.observe(self._on_setting, names=["temperature", "max_new_tokens", "tuned"])
        from nbkit.notebook.widgets.dashboard import _route_clicks_to_the_front_ends_subshell

        _route_clicks_to_the_front_ends_subshell(self.view)
        if run is not None:
            run.add_observer(self._observer)  # before reading the status: an end in between is not missed
            self._refresh_busy()

    # -- display --------------------------------------------------------------------------------

    def show(self) -> Chat:
        from IPython.display import display

        display(self.view)
        self._transcript = display(self.transcript_bundle(), raw=True, display_id=True)
        return self

    def _ipython_display_(self) -> None:
        self.show()

    def transcript_bundle(self) -> dict[str, str]:
        v = self.view
        note = "" if v.can_switch else v.switch_note
        title = f"nbkit chat \u00b7 {self.title}"
        return {"text/html": transcript_html(title, list(v.messages), system=v.system, note=note),
                "text/plain": transcript_text(title, list(v.messages), system=v.system)}

    def _write_transcript(self) -> None:
        if self._transcript is not None:
            self._transcript.update(self.transcript_bundle(), raw=True)

    # -- the page's requests --------------------------------------------------------------------

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "send":
            self.send(content.get("text", ""))
        elif action == "stop":
            self.stop()
        elif action == "clear":
            self.clear()

    def _on_setting(self, change: dict[str, Any]) -> None:
        name, value = change["name"], change["new"]
        try:
            if name == "temperature":
                self.session.temperature = check_temperature(value)
            elif name == "max_new_tokens":
                self.session.max_new_tokens = check_max_new_tokens(value)
            else:
                self.session.tuned = value
        except ChatError as exc:
            setattr(self.view, name, change["old"])  # the page shows the value in use again
            self.view.error = str(exc)
            return
        self.view.error = ""

    def _on_event(self, event: Any, run: Any) -> None:
        from nbkit.core.train.events import RunEnd, RunStart

        if isinstance(event, (RunStart, RunEnd)):
            self._refresh_busy()
        if isinstance(event, RunEnd):  # ipywidgets keeps views alive: ours must not keep the run
            run.remove_observer(self._observer)

    def _refresh_busy(self) -> None:
        reason = self.session._busy() if self.session._busy is not None else None
        self.view.busy = reason or ""

    def send(self, text: str) -> threading.Thread | None:
        """Answer `text` in a thread (returned; None when refused, with the reason in `view.error`)."""
        with self._lock:
            if self.view.generating:
                self.view.error = "still answering: wait for the answer, or press Stop"
                return None
            self._refresh_busy()
            try:
                pieces = self.session.stream(text)
            except ChatError as exc:
                self.view.error = str(exc)
                return None
            mode = self.session.mode
            with self.view.hold_sync():
                self.view.error = ""
                self.view.messages = [*self.view.messages, {"role": "user", "content": text}]
                self.view.pending = ""
                self.view.generating = True
            self._thread = threading.Thread(target=self._answer, args=(pieces, mode),
                                            name="nbkit-chat", daemon=True)
            self._thread.start()
            return self._thread

    def _answer(self, pieces: Any, mode: str) -> None:
        text, last, failure = "", 0.0, None
        try:
            for piece in pieces:
                text += piece
                now = time.monotonic()
                if now - last >= self.update_interval and text.strip():
                    self.view.pending = text
                    self.updates += 1
                    last = now
        except Exception as exc:  # noqa: BLE001 - shown in the view; the kernel goes on
            failure = exc
        v = self.view
        with v.hold_sync():
            if failure is None:
                answer = self.session.history[-1]["content"]
                v.messages = [*v.messages, {"role": "assistant", "content": answer, "mode": mode,
                                            "stopped": self.session.stopped}]
            else:
                v.messages = list(v.messages)[:-1]  # the session forgot the turn too
                v.error = f"generation failed: {type(failure).__name__}: {failure}"
            v.pending = ""
            v.generating = False
        self._write_transcript()

    def stop(self) -> None:
        """End the answer being generated after its current token."""
        self.session.stop()

    def clear(self) -> None:
        """Forget the conversation (refused while an answer is generated)."""
        with self._lock:
            if self.view.generating:
                self.view.error = "still answering: press Stop before clearing"
                return
            self.session.clear()
            with self.view.hold_sync():
                self.view.messages = []
                self.view.error = ""
        self._write_transcript()

    def wait(self, timeout: float | None = None) -> Chat:
        """Wait for the answer being generated (if any)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self

    @property
    def history(self) -> list[dict[str, str]]:
        return list(self.session.history)

    def __repr__(self) -> str:
        return f"<nbkit.Chat {self.title!r} {self.session.mode}, {len(self.view.messages)} messages>"


def chat(target: Any, tokenizer: Any = None, *, tuned: bool = True, temperature: float = 0.0,
         max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, system: str | None = None) -> Chat:
    """A chat box with a model: `target` is a Run (`run.chat()`), a `(model, tokenizer)` pair (what
    `load_model` returns) or a model with `tokenizer=`. `tuned=False` starts with the base model of
    a LoRA run; `temperature=0` decodes greedily. The `%chat` magic's twin."""
    options = {"tuned": tuned, "temperature": temperature, "max_new_tokens": max_new_tokens, "system": system}
    from nbkit.core.train.run import Run

    if isinstance(target, Run):
        if tokenizer is not None:
            raise ChatError("a run brings its own tokenizer: chat(run) without tokenizer=")
        return Chat(ChatSession.for_run(target, **options), run=target, title=f"run {target.name}")
    if isinstance(target, tuple) and len(target) == 2 and tokenizer is None:
        target, tokenizer = target
    return Chat(ChatSession(target, tokenizer, **options))
