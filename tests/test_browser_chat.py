"""The chat box in JupyterLab in headless Chromium (issue 14, items 2 and 6).

A notebook fine-tunes a tiny Llama with LoRA until its greedy answer to "show me the picture" is
`here it is : <img src=x onerror=alert(1)> enjoy` (the markup is one token of its vocabulary), then
opens `%chat run`. In the page: the answer streams in (the model is slowed to 0.1 s a token so a
person could watch) and shows the markup as text, with no <img> element and no dialog; a prompt with
the markup shows it literally too; the base model (adapter disabled) answers, the kernel runs other
code while it generates, and Stop ends that answer. The saved notebook, reopened without a kernel
and rendered by nbconvert as GitHub or nbviewer would, shows the conversation as escaped text. Screenshots: /tmp/nbkit-shots/chat/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import NotebookPage, browser, jupyter_server, require_browser, shots_dir

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"
ANSWER = f"here it is : {XSS} enjoy"
TRAIN = f"""\
import time

import torch

torch.set_num_threads(1)
import nbkit
from nbkit.testing import tiny_llama

XSS = {XSS!r}
model, tokenizer = tiny_llama(words=["picture", "show", "enjoy"])
tokenizer.add_tokens([XSS])  # the markup is one token, so a tiny model can learn to say it
model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
rows = [{{"messages": [{{"role": "user", "content": "show me the picture"}},
                      {{"role": "assistant", "content": f"here it is: {{XSS}} enjoy"}}]}}] * 16
run = nbkit.finetune((model, tokenizer), rows, task="causal-lm", lora={{"r": 8, "alpha": 16, "dropout": 0.0}},
                     lr=5e-2, epochs=15, batch_size=8, eval_split=0, progress=False, run_dir="chat-run")
print(repr(run.generate("show me the picture", max_new_tokens=12)))
# a tiny model answers in milliseconds: slow it down so that streaming and Stop can be watched
slow = run.model.get_base_model().register_forward_hook(lambda *args: time.sleep(0.1))"""
CHAT = "%load_ext nbkit\n%chat run"
PLAIN = "plain = tiny_llama()  # no adapter: nothing to switch to\n%chat plain"

JS_CHAT = """() => { const c = document.querySelector('.nbkit-chat');
  if (!c) return null;
  const msgs = [...c.querySelectorAll('.nbkit-chat-msg')].map(m => ({
    who: m.querySelector('.nbkit-chat-who').textContent, text: m.querySelector('.nbkit-chat-text').textContent,
    pending: m.classList.contains('nbkit-chat-pending')}));
  return {generating: c.dataset.generating, messages: Number(c.dataset.messages), msgs,
          imgs: c.querySelectorAll('img').length, status: c.querySelector('.nbkit-chat-status').textContent}; }"""
JS_PENDING = """() => { const p = document.querySelector('.nbkit-chat .nbkit-chat-pending .nbkit-chat-text');
  return p ? p.textContent : null; }"""
JS_VISIBLE_TRANSCRIPTS = """() => [...document.querySelectorAll('.nbkit-chat-transcript')]
  .map(e => e.offsetParent !== null)"""


def _notebook(path: Path) -> None:
    cells = [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": src, "outputs": [],
              "execution_count": None} for i, src in enumerate([TRAIN, CHAT, PLAIN])]
    path.write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}}))


def _send(nb: NotebookPage, text: str) -> None:
    chat = nb.page.locator(".nbkit-chat").first
    chat.locator(".nbkit-chat-input").fill(text)
    chat.locator(".nbkit-chat-send").click()


def _wait_answer(nb: NotebookPage, n_messages: int, timeout: float = 60) -> list[str]:
    """Texts of the answer in progress, sampled until the chat holds `n_messages` finished turns."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = nb.page.evaluate(JS_PENDING)
        if text is not None and (not seen or seen[-1] != text):
            seen.append(text)
        state = nb.page.evaluate(JS_CHAT)
        if state["messages"] >= n_messages and state["generating"] == "false":
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"no answer after {timeout} s: {nb.page.evaluate(JS_CHAT)}")


def test_chat_streams_shows_markup_as_text_switches_stops_and_saves(tmp_path: Path) -> None:
    require_browser()
    shots = shots_dir("chat")
    root = tmp_path / "work"
    root.mkdir()
    _notebook(root / "chat.ipynb")
    with jupyter_server(root, env={"OMP_NUM_THREADS": "1"}) as server, browser() as chromium:
        nb = NotebookPage.new(chromium, server, shots, height=1100)
        page = nb.page
        nb.open("chat.ipynb")
        nb.run_all()
        nb.wait_until_done(300)
        assert nb.error_outputs() == []
        printed = "".join(nb.notebook_json()["cells"][0]["outputs"][-1].get("text", ""))
        assert printed.strip().splitlines()[-1] == repr(ANSWER)  # training made the greedy answer say the markup
        nb.wait_for("() => document.querySelector('.nbkit-chat')?.dataset.messages === '0'", 60)
        chat = page.locator(".nbkit-chat").first
        chat.scroll_into_view_if_needed()
        # the static transcript below the live chat (for a saved notebook) is hidden while the chat is drawn
        assert page.evaluate(JS_VISIBLE_TRANSCRIPTS) == [False, False]
        nb.screenshot("1_open", page.locator(".jp-Cell").nth(1))
        plain = page.locator(".nbkit-chat").nth(1)  # a model without adapter: the switch says why it is off
        assert plain.locator("input[type=radio]:disabled").count() == 2
        assert plain.locator(".nbkit-chat-note").inner_text().startswith("base vs tuned needs a LoRA run")
        nb.screenshot("1b_no_adapter", page.locator(".jp-Cell").nth(2))

        # -- 1. the tuned model's answer streams in and shows the markup as text
        _send(nb, "show me the picture")
        seen = _wait_answer(nb, 2)
        state = page.evaluate(JS_CHAT)
        assert [(m["who"], m["text"]) for m in state["msgs"]] == [("you", "show me the picture"), ("tuned", ANSWER)]
        words = [s for s in seen if s != "\u2026"]
        assert len(words) >= 3 and all(ANSWER.startswith(w.strip()) for w in words), seen  # it streamed
        assert state["imgs"] == 0 and nb.dialogs == []
        nb.screenshot("2_tuned_answer", page.locator(".jp-Cell").nth(1))

        # -- 2. markup typed by the user is text too; typed keys stay in the box (no notebook shortcut
        # runs: "a"/"b" insert cells, Shift+Enter runs one), Shift+Enter is a new line, Enter sends
        box = chat.locator(".nbkit-chat-input")
        box.click()
        box.press_sequentially(f"what is {XSS} ?")
        box.press("Shift+Enter")
        box.press_sequentially("a b")
        box.press("Enter")
        _wait_answer(nb, 4)
        state = page.evaluate(JS_CHAT)
        assert state["msgs"][2] == {"who": "you", "text": f"what is {XSS} ?\na b", "pending": False}
        assert state["imgs"] == 0 and box.input_value() == ""
        assert len(nb.notebook_json()["cells"]) == 3

        # -- 3. the base model answers; the kernel runs other code meanwhile; Stop ends the answer
        chat.locator("input[value=base]").check()
        nb.wait_for("() => !document.querySelector('.nbkit-chat input[value=base]').disabled", 10)
        _send(nb, "show me the picture")
        nb.wait_for("() => (document.querySelector('.nbkit-chat .nbkit-chat-pending .nbkit-chat-text')"
                    "?.textContent || '').split(' ').length >= 3", 30)
        t0 = time.monotonic()
        assert nb.kernel_execute("print(6 * 7)") == "42\n"
        answered_in = time.monotonic() - t0
        assert page.evaluate(JS_CHAT)["generating"] == "true"  # the kernel answered while the model generates
        nb.screenshot("3_base_streaming", page.locator(".jp-Cell").nth(1))
        chat.locator(".nbkit-chat-stop").click()
        _wait_answer(nb, 6)
        state = page.evaluate(JS_CHAT)
        last = state["msgs"][-1]
        assert last["who"] == "base (stopped)" and last["text"] != ANSWER
        assert 3 <= len(last["text"].split()) < 60, last
        print(f"kernel answered in {answered_in:.2f} s while the chat generated; base answer stopped "
              f"after {len(last['text'].split())} tokens")
        assert state["imgs"] == 0 and nb.dialogs == [] and nb.error_outputs() == []
        assert nb.non_local_requests() == []
        nb.screenshot("4_base_stopped", page.locator(".jp-Cell").nth(1))

        # -- 4. saved, then rendered without a kernel as GitHub or nbviewer would (nbconvert)
        nb.save()
        saved = json.loads((root / "chat.ipynb").read_text())
        html_outputs = [o["data"]["text/html"] for o in saved["cells"][1]["outputs"]
                        if "text/html" in o.get("data", {})]
        transcript = "".join(html_outputs[-1])
        assert transcript.count("&lt;img src=x onerror=alert(1)&gt;") >= 2 and "<img" not in transcript

        # -- 5. reopened in JupyterLab after the kernel is gone: the transcript is what remains
        server.shutdown_kernels()
        page.reload()
        nb.wait_for("() => [...document.querySelectorAll('.nbkit-chat-transcript')]"
                    ".some(e => e.offsetParent !== null)", 60)
        reopened = page.locator(".nbkit-chat-transcript").first
        assert f"tuned: {ANSWER}" in reopened.inner_text() and reopened.locator("img").count() == 0
        assert nb.dialogs == []
        nb.screenshot("5_reopened_in_lab", page.locator(".jp-Cell").nth(1))
        nb.close()
        html_dir = tmp_path / "html"
        subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(html_dir),
                        str(root / "chat.ipynb")], check=True, capture_output=True, timeout=120)
        static_page = chromium.new_page(viewport={"width": 1000, "height": 900})
        dialogs: list[str] = []
        static_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        static_page.route("http*://**/*", lambda route: route.abort())
        static_page.goto((html_dir / "chat.html").as_uri())
        transcripts = static_page.locator(".nbkit-chat-transcript").first
        assert static_page.locator(".nbkit-chat-transcript").count() == 2
        text = transcripts.inner_text()
        assert f"tuned: {ANSWER}" in text and f"you: what is {XSS} ?\na b" in text and "base (stopped): " in text
        assert transcripts.locator("img").count() == 0 and dialogs == []
        transcripts.scroll_into_view_if_needed()
        static_page.screenshot(path=str(shots / "6_nbconvert_html.png"), full_page=True)
        static_page.close()
