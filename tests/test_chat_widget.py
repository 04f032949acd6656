"""The chat box (nbkit.notebook.widgets.chat) through its state and what crosses the comm: the page's
messages (send, stop, clear) return at once while a thread answers, the answer streams into
`pending` in batches, the Stop button ends it, base/tuned is disabled without an adapter, a training
run is refused until it ends, settings are checked, and the static transcript escapes markup. Also
`%chat` through a real IPython shell and `Run.chat()`."""

from __future__ import annotations

import threading

import pytest
import torch
from IPython.core.error import UsageError

from nbkit.core.llm.generate import generate
from nbkit.core.llm.lora import apply_lora
from nbkit.notebook.widgets.chat import Chat, chat, transcript_html
from nbkit.testing import tiny_llama

XSS = "<img src=x onerror=alert(1)>"
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


@pytest.fixture
def llama():
    return tiny_llama()


@pytest.fixture
def lora_llama():
    model, tok = tiny_llama()
    base = generate(model, tok, "hello the cat", max_new_tokens=8)
    peft_model = apply_lora(model, LORA)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return peft_model, tok, base


def record_comm(chat_box: Chat) -> list[dict]:
    """Every message the kernel sends to the page for this view (state updates and custom ones)."""
    sent: list[dict] = []
    chat_box.view.comm.send = lambda data=None, buffers=None, **kw: sent.append(data)
    return sent


def page_says(chat_box: Chat, content: dict) -> None:
    """What ipywidgets does when the page calls model.send(content)."""
    chat_box.view._handle_custom_msg(content, [])


def page_sets(chat_box: Chat, **state) -> None:
    """What ipywidgets does when the page calls model.set(...); model.save_changes()."""
    chat_box.view.set_state(state)


class Gate:
    """Holds the model in its `n`-th forward pass until `open()`: generation is provably in flight."""

    def __init__(self, model, n: int = 2):
        self.n, self.calls = n, 0
        self.inside, self.gate = threading.Event(), threading.Event()
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.calls += 1
        if self.calls == self.n:
            self.inside.set()
            assert self.gate.wait(30), "the test never opened the gate"

    def open(self):
        self.gate.set()
        self.handle.remove()


def test_the_state_a_new_chat_sends(llama):
    box = chat(llama, temperature=0.5, max_new_tokens=20, system="be brief")
    state = box.view.get_state()
    assert {k: state[k] for k in ("title", "system", "messages", "pending", "generating", "tuned", "can_switch",
                                  "temperature", "max_new_tokens", "busy", "error")} == {
        "title": "LlamaForCausalLM", "system": "be brief", "messages": [], "pending": "", "generating": False,
        "tuned": True, "can_switch": False, "temperature": 0.5, "max_new_tokens": 20, "busy": "", "error": ""}
    assert state["switch_note"].startswith("base vs tuned needs a LoRA run")
    assert "textContent" in box.view._esm and "innerHTML" not in box.view._esm


def test_send_returns_at_once_and_the_answer_streams_into_state(llama):
    model, tok = llama
    expected = generate(model, tok, "hello the cat", max_new_tokens=16)
    box = chat(llama, max_new_tokens=16)
    box.update_interval = 0.0  # every piece crosses the comm here, to see them all
    sent = record_comm(box)
    seen: list[str] = []
    box.view.observe(lambda c: seen.append(c["new"]), names="pending")
    gate = Gate(model)
    page_says(box, {"action": "send", "text": "hello the cat"})
    # the handler has returned while the model is still generating (held at its 2nd forward pass)
    assert gate.inside.wait(30)
    assert box.view.generating is True
    assert box.view.messages == [{"role": "user", "content": "hello the cat"}]
    assert [m["state"] for m in sent if m["method"] == "update" and "messages" in m["state"]] == [
        {"messages": [{"role": "user", "content": "hello the cat"}], "generating": True}]  # one message
    gate.open()
    box.wait()
    assert box.view.messages[-1] == {"role": "assistant", "content": expected, "mode": "tuned", "stopped": False}
    assert box.view.generating is False and box.view.pending == ""
    growing = [s for s in seen if s]
    assert len(growing) == len(expected.split())  # one update per word at interval 0
    assert all(expected.startswith(s.strip()) for s in growing)
    assert [len(s) for s in growing] == sorted(len(s) for s in growing)
    last = sent[-1]["state"]
    assert last["pending"] == "" and last["generating"] is False and last["messages"][-1]["content"] == expected


def test_the_answer_in_progress_is_sent_in_batches_not_per_token(llama):
    model, tok = llama
    box = chat(llama, max_new_tokens=30)
    box.update_interval = 60.0
    sent = record_comm(box)
    box.send("hello the cat").join()
    pending_updates = [m["state"]["pending"] for m in sent if "pending" in m["state"] and m["state"]["pending"]]
    answer = box.view.messages[-1]["content"]
    assert len(answer.split()) == 30
    assert box.updates == 1 and len(pending_updates) == 1  # the first word at once, then nothing for 60 s
    assert answer.startswith(pending_updates[0].strip())


def test_the_stop_button_ends_the_answer(llama):
    model, tok = llama
    full = generate(model, tok, "hello the cat", max_new_tokens=40)
    box = chat(llama, max_new_tokens=40)
    gate = Gate(model, n=3)
    page_says(box, {"action": "send", "text": "hello the cat"})
    assert gate.inside.wait(30)
    page_says(box, {"action": "stop"})  # arrives while the 3rd token is computed
    page_says(box, {"action": "send", "text": "again"})  # refused: one answer at a time
    assert box.view.error == "still answering: wait for the answer, or press Stop"
    gate.open()
    box.wait()
    assert box.view.messages[-1] == {"role": "assistant", "content": " ".join(full.split()[:3]), "mode": "tuned",
                                     "stopped": True}
    assert len(box.view.messages) == 2


def test_clear_forgets_the_conversation(llama):
    box = chat(llama, max_new_tokens=4)
    box.send("hello the cat").join()
    assert len(box.history) == 2
    page_says(box, {"action": "clear"})
    assert box.view.messages == [] and box.history == []


def test_without_adapter_the_switch_is_disabled_and_says_why(llama):
    box = chat(llama)
    page_sets(box, tuned=False)
    assert box.view.tuned is True and box.session.tuned is True  # set back: nothing to switch to
    assert box.view.error.startswith("base vs tuned needs a LoRA run")


def test_a_lora_model_answers_as_base_or_tuned(lora_llama):
    model, tok, base = lora_llama
    tuned = generate(model, tok, "hello the cat", max_new_tokens=8)
    assert tuned != base
    box = chat((model, tok), max_new_tokens=8)
    assert box.view.can_switch is True and box.view.switch_note == ""
    box.send("hello the cat").join()
    page_sets(box, tuned=False)
    assert box.session.tuned is False and box.view.error == ""
    box.send("hello the cat").join()
    answers = [(m["mode"], m["content"]) for m in box.view.messages if m["role"] == "assistant"]
    assert answers[0] == ("tuned", tuned)
    assert answers[1][0] == "base"
    # the second answer continues the conversation, as the base model
    with model.disable_adapter():
        assert answers[1][1] == generate(model, tok, box.history[:3], max_new_tokens=8)
    assert answers[1][1] != generate(model, tok, box.history[:3], max_new_tokens=8)


def test_settings_from_the_page_are_checked(llama):
    box = chat(llama)
    page_sets(box, temperature=0.7, max_new_tokens=12)
    assert (box.session.temperature, box.session.max_new_tokens) == (0.7, 12)
    page_sets(box, temperature=-1.0)
    assert box.view.temperature == 0.7 and box.session.temperature == 0.7
    assert box.view.error.startswith("temperature must be a number >= 0")
    page_sets(box, max_new_tokens=0)
    assert box.view.max_new_tokens == 12 and "max_new_tokens must be a whole number" in box.view.error
    page_says(box, {"action": "send", "text": "  "})
    assert box.view.error.startswith("a message must be a non-empty string") and box.view.messages == []


def test_a_background_run_is_refused_until_it_ends(tmp_path):
    from nbkit.core.train.finetune import finetune

    model, tok = tiny_llama()
    rows = [{"prompt": "hello the cat", "completion": "the dog."}] * 8
    gate, entered = threading.Event(), threading.Event()

    def hold(event, run):
        if type(event).__name__ == "StepEnd" and event.step == 1:
            entered.set()
            gate.wait(30)

    run = finetune((model, tok), rows, task="causal-lm", lora=LORA, epochs=1, batch_size=4, eval_split=0,
                   lr=1e-2, callbacks=[hold], background=True, progress=False,
                   run_dir=tmp_path / "run")
    try:
        assert entered.wait(30)
        box = run.chat(max_new_tokens=6)
        assert box.view.busy.startswith(f"run {run.name!r} is still training (running)")
        assert box.send("hello the cat") is None
        assert box.view.error == box.view.busy and box.view.messages == []
    finally:
        gate.set()
        run.wait()
    assert box.view.busy == ""  # the view heard the RunEnd
    assert box._on_event not in run.observers
    box.send("hello the cat").join()
    assert box.view.messages[-1]["content"] == run.generate("hello the cat", max_new_tokens=6)
    assert box.view.can_switch is True and box.view.title == f"run {run.name}"


def test_the_static_transcript_escapes_markup(llama):
    box = chat(llama, max_new_tokens=4, system=f"sys {XSS}")
    box.send(f"say {XSS}").join()
    written = []

    class Handle:
        def update(self, bundle, raw=False):
            written.append(bundle)

    box._transcript = Handle()
    box.send("and again").join()
    bundle = written[-1]
    html_out = bundle["text/html"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in html_out and "<img" not in html_out
    assert html_out.count("&lt;img") == 2  # the system prompt and the message
    lines = bundle["text/plain"].splitlines()
    assert lines[:3] == ["nbkit chat \u00b7 LlamaForCausalLM", f"system: sys {XSS}", f"you: say {XSS}"]
    assert lines[3].startswith("tuned: ") and lines[4] == "you: and again" and len(lines) == 6
    assert "base vs tuned needs a LoRA run" in html_out  # the note, for a model without adapter
    assert transcript_html(XSS, [{"role": "assistant", "content": XSS, "mode": "tuned", "stopped": True}]).count(
        "&lt;img") == 2
    data = box.view._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"] == "nbkit chat: LlamaForCausalLM (4 messages)"
    assert "conversation is below" in data["text/html"]


# -- %chat through a real IPython shell -----------------------------------------------------------

@pytest.fixture
def ip(llama):
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or TerminalInteractiveShell.instance()  # the first call in a process returns it
    shell.run_line_magic("load_ext", "nbkit")
    shell.user_ns["pair"] = llama
    yield shell
    shell.user_ns.pop("pair", None)


def test_chat_magic_opens_a_chat_box(ip):
    box = ip.run_line_magic("chat", 'pair --temperature 0.3 --max-new-tokens 5 --system "be brief"')
    assert isinstance(box, Chat)
    assert (box.session.temperature, box.session.max_new_tokens, box.session.system) == (0.3, 5, "be brief")
    assert box.view.system == "be brief"
    box.send("hello the cat").join()
    assert len(box.view.messages[-1]["content"].split()) == 5


def test_chat_magic_errors_are_one_line(ip):
    with pytest.raises(UsageError, match="needs a run or a"):
        ip.run_line_magic("chat", "")
    with pytest.raises(UsageError, match="no variable 'piar' \\(did you mean pair\\?\\)"):
        ip.run_line_magic("chat", "piar")
    with pytest.raises(UsageError, match="%chat: temperature must be a number >= 0"):
        ip.run_line_magic("chat", "pair --temperature -1")
    with pytest.raises(UsageError, match="%chat: base vs tuned needs a LoRA run"):
        ip.run_line_magic("chat", "pair --base")
    ip.user_ns["n"] = 3
    with pytest.raises(UsageError, match="needs a causal language model"):
        ip.run_line_magic("chat", "n")
