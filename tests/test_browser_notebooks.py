"""The tutorial notebooks as a person sees them: each runs in small-run mode in JupyterLab in headless
Chromium with no error output, no dialog and no request leaving localhost; the dashboard's chart
gains points while training and ends with a status; the Stop button stops a background run; the
attention views draw; injected markup shows as text. The quickstart runs in Notebook 7 too.
Screenshots go to /tmp/nbkit-shots/notebooks/ (printed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser import (
    NotebookPage,
    browser,
    grew,
    jupyter_server,
    require_browser,
    shots_dir,
    watch_chart_grow,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
XSS = "<img src=x onerror=alert(1)>"
KERNEL_ENV = {"NBKIT_SMALL": "1", "OMP_NUM_THREADS": "1"}

# Each run's status, in page order: a live dashboard's ("running") or a finished run's summary line.
JS_STATUSES = """() => [...document.querySelectorAll('.nbkit-dashboard .nbkit-progress b, .nbkit-summary .nbkit-status')]
  .map(e => e.textContent)"""
# Finished runs' charts: plotly's renderer (its PNG until hovered, then the interactive figure).
JS_STATIC_IMAGES = """() => [...document.querySelectorAll('.nbkit-summary')]
  .filter(s => s.closest('.jp-Cell')?.querySelector('.jp-RenderedPlotly')).length"""
# Per attention view: how many canvases/SVGs it drew, plus coloured token chips (the generation view
# colours text instead of drawing).
JS_ATTENTION_READY = """() => [...document.querySelectorAll('.nbk-att[data-ready="1"]')].map(v => {
  const drawn = [...v.querySelectorAll('canvas, svg')].filter(c => c.getBoundingClientRect().width > 20);
  const shaded = [...v.querySelectorAll('.nbk-body [style*="background"]')];
  return drawn.length + shaded.length;
})"""

CHECKS = [
    """\
import time

import torch

torch.set_num_threads(1)
import nbkit
from nbkit.testing import random_texts, tiny_bert

XSS = "<img src=x onerror=alert(1)>"
texts = random_texts(256, seed=1)
data = nbkit.load_data([{"text": t, "label": i % 2} for i, t in enumerate(texts)])
model, tokenizer = tiny_bert()

def slow(event, run):  # keeps the run going long enough to press its Stop button
    if type(event).__name__ == "StepEnd":
        time.sleep(0.1)

bg = nbkit.fit(model, data["train"], data["eval"], tokenizer=tokenizer, epochs=100, batch_size=8,
               eval_every=10, name=XSS, callbacks=[slow], background=True)""",
    """\
att_model, att_tokenizer = tiny_bert()
att_tokenizer.add_tokens([XSS])
att_model.resize_token_embeddings(len(att_tokenizer))
nbkit.show_attention(att_model, att_tokenizer, f"the film {XSS} was great", view="head")""",
]


def _write_checks(path: Path) -> None:
    cells = [{"cell_type": "code", "id": f"k{i}", "metadata": {}, "source": src, "outputs": [],
              "execution_count": None} for i, src in enumerate(CHECKS)]
    path.write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}}))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    require_browser()
    root = tmp_path_factory.mktemp("browser-notebooks") / "work"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns("nbkit-runs", "export", "*.csv"))
    _write_checks(root / "browser_checks.ipynb")
    return root


@pytest.fixture(scope="module")
def chromium(work):
    with browser() as b:
        yield b


@pytest.fixture(scope="module")
def lab(work, chromium):
    with jupyter_server(work, env=KERNEL_ENV) as server:
        yield server, chromium


@pytest.fixture(scope="module")
def shots() -> Path:
    return shots_dir("notebooks")


def _run(lab, shots: Path, name: str) -> NotebookPage:
    server, chromium = lab
    nb = NotebookPage.new(chromium, server, shots)
    nb.open(name)
    nb.run_all()
    return nb


def _finish(nb: NotebookPage, timeout: float = 300) -> None:
    """The common checks once every cell has run."""
    nb.wait_until_done(timeout)
    assert nb.error_outputs() == []
    assert nb.unexecuted_code_cells() == []
    assert nb.dialogs == []
    assert nb.non_local_requests() == []


def _watch_training(nb: NotebookPage, name: str, timeout: float = 120) -> list[int]:
    """Follow the live chart of the notebook's first run until its static copy appears; screenshot
    the dashboard once the chart has grown."""
    page = nb.page
    nb.wait_for("() => document.querySelector('.nbkit-dashboard') !== null", timeout)
    dashboard = page.locator(".jp-OutputArea-output").filter(has=page.locator(".nbkit-dashboard")).first
    return watch_chart_grow(page, -1, samples=int(timeout / 0.25), every=0.25,
                            until="() => document.querySelectorAll('.nbkit-summary').length > 0",
                            on_growth=lambda: nb.screenshot(f"{name}_dashboard_live", dashboard))


def test_quickstart_in_lab(lab, shots):
    nb = _run(lab, shots, "01_quickstart.ipynb")
    try:
        counts = _watch_training(nb, "01")
        _finish(nb)
        assert grew(counts), f"the chart should gain points while training: {counts}"
        statuses = nb.page.evaluate(JS_STATUSES)
        assert len(statuses) == 1 and statuses[0].startswith("finished"), statuses
        assert nb.page.evaluate(JS_STATIC_IMAGES) == 1
        nb.screenshot("01_static_copy", nb.page.locator(".jp-RenderedPlotly").first)
        nb.screenshot("01_predictions", nb.page.locator(".jp-RenderedHTMLCommon table").last)
        drawn = nb.page.evaluate(JS_ATTENTION_READY)
        assert len(drawn) == 1 and drawn[0] >= 1, drawn
        nb.screenshot("01_attention_head_view", nb.page.locator(".nbk-att").first)
        print("01 chart point counts while training:", sorted({c for c in counts if c > 0}))
    finally:
        nb.close()


def test_pytorch_basics_in_lab(lab, shots):
    nb = _run(lab, shots, "02_pytorch_basics.ipynb")
    try:
        _finish(nb)  # 46 steps take under a second here: too fast to watch the chart grow
        statuses = nb.page.evaluate(JS_STATUSES)
        assert [s.split()[0] for s in statuses] == ["finished", "finished"], statuses
        assert nb.page.evaluate(JS_STATIC_IMAGES) == 2
        assert nb.page.locator(".nbkit-dashboard").count() == 0  # finished dashboards leave their result
        nb.screenshot("02_static_copy", nb.page.locator(".jp-RenderedPlotly").first)
        compare = nb.page.locator(".jp-Cell").filter(has_text="nbkit.compare([run, bg]").locator(".jp-OutputArea")
        assert compare.locator("img, .js-plotly-plot").count() == 1
        nb.screenshot("02_compare", compare)
        images = nb.page.locator(".jp-RenderedImage img")
        # the digits and the mistakes (only the first: a finished run switched pyplot's backend
        # from inline to Agg, as nbkit.figures._mpl_figure did with matplotlib.use("Agg"))
        assert images.count() >= 2, f"{images.count()} matplotlib plots shown"
        nb.screenshot("02_digits", images.first)
    finally:
        nb.close()


def test_finetune_in_lab(lab, shots):
    nb = _run(lab, shots, "03_finetune_transformers.ipynb")
    try:
        _finish(nb)
        statuses = nb.page.evaluate(JS_STATUSES)
        # lr_find, %%finetune, the resumed run (the sweep and the interrupted run have no dashboard)
        assert [s.split()[0] for s in statuses] == ["finished", "finished", "finished"], statuses
        assert nb.page.evaluate(JS_STATIC_IMAGES) == 3
        nb.screenshot("03_lr_find", nb.page.locator(".jp-RenderedPlotly").nth(0))
        nb.screenshot("03_finetune", nb.page.locator(".jp-RenderedPlotly").nth(1))
        compare = nb.page.locator(".jp-Cell").filter(has_text="nbkit.compare(sweep_dirs").locator(".jp-OutputArea")
        assert compare.locator("img, .js-plotly-plot").count() == 1
        assert "lr=0.0003" in compare.inner_text()
        nb.screenshot("03_compare", compare)
        text = nb.page.locator(".jp-Notebook").inner_text()
        assert "stopped after step 2" in text and "resumed: finished" in text
        assert "not reachable" in text  # the hub cell skipped itself
    finally:
        nb.close()


def test_attention_in_lab(lab, shots):
    nb = _run(lab, shots, "04_attention.ipynb")
    try:
        _finish(nb)
        nb.wait_for("() => document.querySelectorAll('.nbk-att[data-ready=\"1\"]').length === 9", 60)
        drawn = nb.page.evaluate(JS_ATTENTION_READY)
        assert len(drawn) == 9 and all(n >= 1 for n in drawn), drawn
        views = nb.page.locator(".nbk-att")
        for i, name in enumerate(["head", "model", "matrix", "rollout", "matrix_best_head", "pair",
                                  "gpt2_matrix", "gpt2_generation", "t5_cross"]):
            nb.screenshot(f"04_{i}_{name}", views.nth(i))
        assert nb.page.locator('img[src="x"]').count() == 0
    finally:
        nb.close()


def test_deploy_in_lab(lab, shots):
    nb = _run(lab, shots, "05_save_and_deploy.ipynb")
    try:
        _finish(nb)
        table = nb.page.locator(".jp-RenderedHTMLCommon table").last
        text = table.inner_text()
        assert "PyTorch int8 (dynamic)" in text and "PyTorch fp32" in text
        nb.screenshot("05_results", table)
    finally:
        nb.close()


COVERED = {"01_quickstart", "02_pytorch_basics", "03_finetune_transformers", "04_attention",
           "05_save_and_deploy"}
OTHERS = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if p.stem not in COVERED)


@pytest.mark.parametrize("name", OTHERS)
def test_other_notebook_in_lab(lab, shots, name):
    """Notebooks added later get the common checks: every cell runs, no error, no dialog, no
    request leaving the machine, and every dashboard ends with a status."""
    nb = _run(lab, shots, name)
    try:
        _finish(nb)
        statuses = nb.page.evaluate(JS_STATUSES)
        assert all(s.split()[0] in ("finished", "stopped") for s in statuses), statuses
        nb.screenshot(f"{name[:2]}_page")
    finally:
        nb.close()


def test_stop_button_and_escaping_in_lab(lab, shots):
    """A background run stops from its dashboard's Stop button; a run name and a token that are
    markup show as text, and no dialog opens."""
    nb = _run(lab, shots, "browser_checks.ipynb")
    try:
        page = nb.page
        nb.wait_for("() => document.querySelector('.nbkit-dashboard[data-live=\"true\"]') !== null", 90)
        counts = watch_chart_grow(page, -1, samples=12, every=0.5)
        assert grew(counts), f"the chart should grow: {counts}"
        dashboard = page.locator(".jp-OutputArea-output").filter(has=page.locator(".nbkit-dashboard")).first
        nb.screenshot("checks_running", dashboard)
        page.locator(".nbkit-dashboard .nbkit-btn").first.click()  # Stop
        nb.wait_for("() => document.querySelectorAll('.nbkit-summary').length > 0", 60)
        statuses = page.evaluate(JS_STATUSES)
        assert statuses[0].startswith("stopped"), statuses
        nb.screenshot("checks_stopped", page.locator(".jp-Cell").first)
        _finish(nb)
        # the run name (in the summary line) and the attention token are text, not markup
        summary = page.locator(".nbkit-summary").first.text_content()
        assert summary.startswith(f"{XSS} stopped at step ")
        tokens = page.evaluate("(s) => [...document.querySelectorAll('.nbk-tok')]"
                               ".filter(e => e.textContent === s).length", XSS)
        assert tokens >= 1
        assert page.locator('img[src="x"]').count() == 0
        assert nb.dialogs == []
        nb.screenshot("checks_attention_xss", page.locator(".nbk-att").first)
    finally:
        nb.close()


def test_quickstart_in_notebook7(work, chromium, shots):
    with jupyter_server(work, app="notebook", env=KERNEL_ENV) as server:
        nb = NotebookPage.new(chromium, server, shots)
        try:
            nb.open("01_quickstart.ipynb")
            nb.run_all()
            counts = _watch_training(nb, "nb7_01")
            _finish(nb)
            assert grew(counts), counts
            assert nb.page.evaluate(JS_STATUSES)[0].startswith("finished")
            assert nb.page.evaluate(JS_STATIC_IMAGES) == 1
            drawn = nb.page.evaluate(JS_ATTENTION_READY)
            assert len(drawn) == 1 and drawn[0] >= 1, drawn
            nb.screenshot("nb7_01_static_copy", nb.page.locator(".jp-RenderedPlotly").first)
            nb.screenshot("nb7_01_attention", nb.page.locator(".nbk-att").first)
            nb.screenshot("nb7_01_page")
        finally:
            nb.close()
