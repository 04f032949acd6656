"""The attention views in JupyterLab, in headless Chromium, at 512 tokens and with no network.

One notebook builds a 12-layer x 12-head BERT (tiny hidden size) and shows the head, model and matrix
views of a 512-token input that contains two script-injection tokens. The page's own timers
(window.__nbkitAttention, recorded by the widget's JavaScript) give first paint and hover times;
playwright counts every request the page makes. Screenshots go to /tmp/nbkit-shots/attention/.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
SHOTS = Path("/tmp/nbkit-shots/attention")
XSS = ["<img src=x onerror=window.__xss1=1>", "</script><img src=x onerror=window.__xss2=1>"]
TOKEN = "nbkit-attention-test"

SETUP = f"""
import torch
torch.set_num_threads(1)
from transformers import BertConfig, BertModel
from nbkit.testing import tiny_tokenizer, WORDS
from nbkit.core.attention import capture_attention
from nbkit.notebook.widgets.attention import show_attention

XSS = {XSS!r}
tok = tiny_tokenizer(max_length=512)
tok.add_tokens(XSS)
config = BertConfig(vocab_size=len(tok), hidden_size=48, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=96, max_position_embeddings=512)
torch.manual_seed(0)
model = BertModel(config).eval()
words = [WORDS[i % len(WORDS)] for i in range(510)]
words[3], words[200] = XSS
att = capture_attention(model, tok, " ".join(words))
assert len(att.tokens) == 512 and XSS[0] in att.tokens and XSS[1] in att.tokens, att.tokens[:6]
"""
CELLS = [
    SETUP,
    'show_attention(att, view="head", layer=2)',
    'show_attention(att, view="model")',
    'show_attention(att, view="matrix", layer=5, head=3)',
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(path: Path, sources: list[str]) -> None:
    cells = [
        {"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
        for src in sources
    ]
    nb = {
        "cells": cells,
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    }
    path.write_text(json.dumps(nb))


@contextlib.contextmanager
def jupyter_lab(root: Path, cells: list[str], app: str = "lab"):
    """Start JupyterLab (or Notebook 7: app="notebook") on a free port with one notebook (`cells`);
    yield its base URL; stop it and its kernels."""
    # A python3 kernelspec pointing at this interpreter, found before any other on JUPYTER_PATH.
    spec = root / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3",
                "language": "python",
            }
        )
    )
    # Keep the "get notified about Jupyter news?" toast from covering the screenshots.
    labconfig = root / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    work = root / "work"
    work.mkdir()
    _notebook(work / "attention.ipynb", cells)
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_PATH": str(root / "jupyter"),
        "HF_HUB_OFFLINE": "1",
        "JUPYTER_CONFIG_PATH": str(root / "config"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    expose = "LabApp" if app == "lab" else "JupyterNotebookApp"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        app,
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={TOKEN}",
        f"--{expose}.expose_app_in_browser=True",
        "--allow-root",
        f"--ServerApp.root_dir={work}",
    ]
    with open(root / "lab.log", "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 40
            while True:
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.3)
            yield base
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def open_notebook(page, base: str, app: str = "lab") -> float:
    """Open the notebook, wait for an idle kernel, start running all cells; return the start time."""
    where = "lab/tree" if app == "lab" else "notebooks"
    page.goto(f"{base}/{where}/attention.ipynb?token={TOKEN}&reset")
    page.wait_for_function(
        "() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel?.status"
        " === 'idle'",
        timeout=60_000,
    )
    start = time.perf_counter()
    # Not awaited: the command's promise settles only when every cell has run.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    return start


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip(
        "playwright.sync_api", reason="the Python playwright package is not installed"
    )
    with jupyter_lab(tmp_path_factory.mktemp("lab"), CELLS) as base:
        yield base


def _timings(page) -> dict:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.__nbkitAttention || {}))")


def test_views_render_fast_offline_and_safe(lab):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            t_run = open_notebook(page, lab)
            page.wait_for_function(
                "() => document.querySelectorAll('.nbk-att[data-ready=\"1\"]').length === 3",
                timeout=60_000,
            )
            run_to_paint = time.perf_counter() - t_run
            views = page.locator(".nbk-att")
            head, model_view, matrix = views.nth(0), views.nth(1), views.nth(2)

            # --- injected tokens are text, and no script ran
            assert page.evaluate("() => [window.__xss1, window.__xss2]") == [None, None]
            assert page.locator('img[src="x"]').count() == 0
            for bad in XSS:
                shown = page.evaluate(
                    "(s) => [...document.querySelectorAll('.nbk-tok')].filter(e => e.textContent === s).length",
                    bad,
                )
                assert shown == 2  # once in each column of the head view
            assert head.locator(".nbk-left .nbk-tok").count() == 512

            # --- head view: hover tokens (the page times each response)
            head.scroll_into_view_if_needed()
            head.screenshot(path=str(SHOTS / "head.png"))
            for i in (1, 5, 9, 14):
                head.locator(".nbk-left .nbk-tok").nth(i).hover()
                page.wait_for_timeout(30)
            readout = head.locator(".nbk-readout").text_content()
            assert "attends most to" in readout
            head.screenshot(path=str(SHOTS / "head_hover.png"))
            # solo one head (double-click), then switch layer: a fetch answered by the kernel
            head.locator('.nbk-chip[data-head="4"]').dblclick()
            page.wait_for_timeout(100)
            head.locator("select").first.select_option("7")
            page.wait_for_function(
                "() => (window.__nbkitAttention.update || []).length >= 1", timeout=15_000
            )
            head.screenshot(path=str(SHOTS / "head_layer7_head4.png"))

            # --- matrix view: hover cells
            matrix.scroll_into_view_if_needed()
            box = matrix.locator("canvas.nbk-heat").bounding_box()
            for k in range(6):
                page.mouse.move(box["x"] + 20 + 60 * k, box["y"] + 30 + 50 * k)
                page.wait_for_timeout(30)
            assert "→" in matrix.locator(".nbk-readout").text_content()
            matrix.screenshot(path=str(SHOTS / "matrix.png"))

            # --- model view: a grid of 12 x 12 thumbnails; clicking one opens its matrix
            model_view.scroll_into_view_if_needed()
            assert model_view.locator("canvas.nbk-thumb").count() == 144
            model_view.screenshot(path=str(SHOTS / "model.png"))
            model_view.locator("canvas.nbk-thumb").nth(2 * 12 + 7).click()
            page.wait_for_function(
                "() => document.querySelectorAll('.nbk-att')[1].dataset.view === 'matrix'",
                timeout=15_000,
            )
            model_view.screenshot(path=str(SHOTS / "model_click_to_matrix.png"))
            assert "layer 2" in model_view.locator("select").first.evaluate(
                "s => s.options[s.selectedIndex].textContent"
            )
            timings = _timings(page)
        finally:
            browser.close()

    foreign = [
        u
        for u in requests
        if urlparse(u).hostname not in ("127.0.0.1", "localhost")
        and not u.startswith(("data:", "blob:"))
    ]
    report = {
        "run_all_to_three_views_s": round(run_to_paint, 2),
        "first_paint_ms": timings.get("firstPaintFrame"),
        "hover_ms": timings.get("hover"),
        "hover_frame_ms": timings.get("hoverFrame"),
        "select_ms": timings.get("select"),
        "layer_switch_ms": timings.get("update"),
        "requests": len(requests),
        "non_local_requests": foreign,
    }
    (SHOTS / "timings.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    assert foreign == []
    assert max(timings["firstPaintFrame"]) < 2000
    # hover: event -> DOM and canvas updated; hoverFrame: ... -> the frame that shows it
    assert len(timings["hover"]) >= 8 and max(timings["hover"]) < 50
    assert statistics.median(timings["hoverFrame"]) < 50


LLM_CELLS = [
    f"""
import torch
torch.set_num_threads(1)
from peft import LoraConfig, get_peft_model
from nbkit.testing import tiny_llama
from nbkit.notebook.widgets.attention import show_attention

XSS = {XSS[0]!r}
model, tok = tiny_llama(layers=4, heads=4, kv_heads=2, hidden=32)
tok.add_tokens([XSS])
model.resize_token_embeddings(len(tok))
tuned = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
gen = torch.Generator().manual_seed(1)
with torch.no_grad():
    for name, p in tuned.named_parameters():
        if "lora_B" in name:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
""",
    'show_attention(tuned, tok, f"what is the {XSS} time ?", compare="base", max_new_tokens=6)',
]


def test_llm_difference_view(tmp_path):
    """Base vs LoRA on a tiny Llama (4 query heads / 2 kv heads) with a generated answer: the page
    opens on tuned − base, switches to the model view and to the base capture, and runs no markup."""
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the Python playwright package is not installed")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with jupyter_lab(tmp_path, LLM_CELLS) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            open_notebook(page, base)
            page.wait_for_function("() => document.querySelector('.nbk-att[data-ready=\"1\"]')", timeout=90_000)
            view = page.locator(".nbk-att").first
            view.scroll_into_view_if_needed()
            assert view.get_attribute("data-view") == "matrix" and view.get_attribute("data-source") == "diff"
            assert view.locator(".nbk-source.nbk-active").text_content() == "tuned − base"
            assert "red where tuned attends more than base" in view.locator(".nbk-diff-note").text_content()
            assert view.locator(".nbk-matrix-box").get_attribute("data-signed") == "1"
            box = view.locator("canvas.nbk-heat").bounding_box()
            page.mouse.move(box["x"] + box["width"] - 40, box["y"] + box["height"] - 12)  # a cell of the answer
            page.wait_for_timeout(50)
            assert "(tuned − base)" in view.locator(".nbk-readout").text_content()
            page.mouse.move(box["x"] + box["width"] - 12, box["y"] + 100)  # above the diagonal
            page.wait_for_timeout(50)
            assert "masked (a later token)" in view.locator(".nbk-readout").text_content()
            view.screenshot(path=str(SHOTS / "llm_diff_matrix.png"))

            view.locator('.nbk-tab[data-view="model"]').click()
            page.wait_for_function("() => document.querySelector('.nbk-att').dataset.view === 'model'", timeout=15_000)
            assert view.locator("canvas.nbk-thumb").count() == 16
            view.locator("canvas.nbk-thumb").nth(5).hover()
            assert "change 0." in view.locator(".nbk-readout").text_content()
            view.screenshot(path=str(SHOTS / "llm_diff_model.png"))

            view.locator('.nbk-tab[data-view="head"]').click()  # the head view shows the tuned capture
            page.wait_for_function("() => document.querySelector('.nbk-att').dataset.view === 'head'", timeout=15_000)
            assert view.get_attribute("data-source") == "tuned"
            assert view.locator(".nbk-left .nbk-answer-start").count() == 1
            texts = view.locator(".nbk-left .nbk-tok").all_text_contents()
            assert XSS[0] in texts and texts[0] == "<|im_start|>"
            view.screenshot(path=str(SHOTS / "llm_head_tuned.png"))
            assert page.evaluate("() => window.__xss1") is None and page.locator('img[src="x"]').count() == 0
        finally:
            browser.close()
