"""The answers panel of an LLM run in JupyterLab in headless Chromium (issue 14).

A tiny Llama learns to answer `<img src=x onerror=alert(1)>` (one added token, so the decoded answer
is that markup exactly). While it trains, the dashboard's panel shows the base and tuned answers
of each evaluation with a step selector; when it ends, the saved output keeps them as static HTML.
Markup in the prompt, the reference and the generated answer must show as text: no <img> element
appears and no dialog opens. Screenshots: /tmp/nbkit-shots/samples/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from browser import (
    NotebookPage,
    browser,
    jupyter_server,
    require_browser,
    shots_dir,
    write_notebook,
)

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"
SETUP = f"""\
import time

import torch

torch.set_num_threads(1)
import nbkit
from nbkit.testing import tiny_llama

XSS = {XSS!r}
model, tok = tiny_llama(words=["say", "hello"])
tok.add_tokens([XSS])  # one token: the model can learn to answer exactly this markup
rows = [{{"messages": [{{"role": "user", "content": "say hello"}}, {{"role": "assistant", "content": XSS}}]}}] * 24

def slow(event, run):  # slow the tiny model down so the panel can be looked at mid-run
    if type(event).__name__ == "StepEnd":
        time.sleep(0.15)"""
TRAIN = """\
run = nbkit.finetune(model=(model, tok), data=rows, task="causal-lm", lr=1e-2, max_steps=60, batch_size=8,
                     eval_every=10, eval_split=4, name="markup-run", callbacks=[slow],
                     samples=["say hello", {"prompt": XSS, "reference": XSS}])"""
CHECK = """run.samples.tail(2)[["step", "answer"]].to_dict("records")"""

JS_PANEL = """() => { const p = document.querySelector('.nbkit-samples');
  if (!p) return null;
  return {steps: [...p.querySelectorAll('option')].map(o => o.value),
          header: [...p.querySelectorAll('th')].map(t => t.textContent),
          cells: [...p.querySelectorAll('td')].map(t => t.textContent),
          imgs: p.querySelectorAll('img').length}; }"""
JS_STATIC = """() => { const s = document.querySelector('.nbkit-samples-static');
  return s ? {text: s.innerText, imgs: s.querySelectorAll('img').length,
              open: s.querySelectorAll('details[open]').length,
              folded: s.querySelectorAll('details').length} : null; }"""


def test_answers_panel_live_step_selector_markup_as_text_and_saved(tmp_path: Path) -> None:
    require_browser()
    shots = shots_dir("samples")
    root = tmp_path / "work"
    root.mkdir()
    write_notebook(root / "samples.ipynb", [SETUP, TRAIN, CHECK], "s")
    with jupyter_server(root, env={"OMP_NUM_THREADS": "1"}) as server, browser() as chromium:
        nb = NotebookPage.new(chromium, server, shots)
        page = nb.page
        nb.open("samples.ipynb")
        nb.run_all()

        # -- mid-run: the panel has the start and at least one evaluation
        nb.wait_for("() => document.querySelectorAll('.nbkit-samples option').length >= 3", 120)
        panel = page.evaluate(JS_PANEL)
        assert panel["steps"][:3] == ["0", "10", "20"], panel
        assert panel["header"][:3] == ["prompt", "reference", "base"], panel
        assert panel["cells"][4] == XSS and panel["cells"][5] == XSS  # prompt and reference, as text
        assert panel["imgs"] == 0
        nb.screenshot("1_panel_mid_run", page.locator(".nbkit-dashboard").first)

        # the step selector shows an older evaluation: the base model's answers at step 0
        page.locator(".nbkit-samples-step").select_option("0")
        older = page.evaluate(JS_PANEL)
        assert older["header"][-1] == "step 0" and older["cells"][3] == older["cells"][2], older
        nb.screenshot("2_panel_step_0", page.locator(".nbkit-samples").first)

        # -- the end: static HTML in the output a person keeps; the trained answer is the markup
        nb.wait_until_done(240)
        static = page.evaluate(JS_STATIC)
        assert static is not None and static["imgs"] == 0, static
        assert static["open"] == 1 and static["folded"] == 7  # steps 0, 10, ..., 60
        assert "Answers at step 60 (latest)" in static["text"]
        assert static["text"].count(XSS) >= 3, static["text"]  # prompt, reference and the tuned answer
        records = nb.notebook_json()["cells"][2]["outputs"][0]["data"]["text/plain"]
        assert f"'answer': '{XSS}'" in "".join(records)
        assert nb.error_outputs() == [] and nb.dialogs == [] and nb.non_local_requests() == []
        nb.screenshot("3_finished_static", page.locator(".jp-Cell").nth(1))
        nb.save()
        nb.close()

    # -- the saved notebook rendered without a kernel (nbconvert): the markup stays text
    saved = root / "samples.ipynb"
    out = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--stdout", str(saved)],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    assert XSS not in out  # never raw: in the code, the outputs and the panel it is escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in out
