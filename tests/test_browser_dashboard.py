"""The training dashboard in JupyterLab in headless Chromium (issue 4's browser check).

A notebook trains a tiny model twice. First in a blocking cell: the chart gains points, and the run is
stopped with the dashboard's Stop button, which JupyterLab >= 4.4 delivers to the busy kernel on a
subshell (else the dashboard shows its stop-square hint, and this test fails). Then in the background: the Stop button must work, and the run ends "stopped".
The notebook is saved with JupyterLab's own save command and reopened without its widget state,
twice: in JupyterLab after the kernel was shut down, and rendered by nbconvert to HTML (what GitHub
or nbviewer show); both must show the static copies of the final charts. The saved file's size and
the widget state it carries are printed. Screenshots: /tmp/nbkit-shots/dashboard/.
"""

from __future__ import annotations

import json
import subprocess
import sys
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

SETUP = """\
import time

import torch

torch.set_num_threads(1)
import nbkit
from nbkit.testing import random_texts, tiny_bert

texts = random_texts(256, seed=2)
data = nbkit.load_data([{"text": t, "label": i % 2} for i, t in enumerate(texts)])

def slow(event, run):  # a tiny model trains in milliseconds: slow it so a person could press Stop
    if type(event).__name__ == "StepEnd":
        time.sleep(0.1)"""
BLOCKING = """\
model, tokenizer = tiny_bert()
run = nbkit.fit(model, data["train"], data["eval"], tokenizer=tokenizer, epochs=100, batch_size=8,
                eval_every=10, metrics=["accuracy"], name="blocking-run", callbacks=[slow])"""
BACKGROUND = """\
model2, tokenizer2 = tiny_bert()
bg = nbkit.fit(model2, data["train"], data["eval"], tokenizer=tokenizer2, epochs=100, batch_size=8,
               eval_every=10, metrics=["accuracy"], name="background-run", callbacks=[slow],
               background=True)"""
# What JupyterLab would store in the notebook with "save widget state" on: every widget's state.
STATE_REPORT = """\
import json, ipywidgets.embed
print("STATUS", run.status, bg.wait().status, "WIDGET_STATE_BYTES",
      len(json.dumps(ipywidgets.embed.embed_data(views=None)["manager_state"])))"""

JS_STATUSES = """() => [...document.querySelectorAll('.widget-html-content')]
  .map(e => e.textContent).filter(t => /step \\d+\\/\\d+/.test(t))"""
JS_STATIC = """() => [...document.querySelectorAll('.nbkit-static img')]
  .filter(i => i.complete && i.naturalWidth > 100).length"""
JS_CONTROLS = """(i) => {
  const c = document.querySelectorAll('.nbkit-controls')[i];
  return c ? {live: c.dataset.live, hint: c.querySelector('.nbkit-hint')?.textContent || ''} : null;
}"""


def _notebook(path: Path) -> None:
    cells = [{"cell_type": "code", "id": f"d{i}", "metadata": {}, "source": src, "outputs": [],
              "execution_count": None} for i, src in enumerate([SETUP, BLOCKING, BACKGROUND])]
    path.write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}}))


def _file_parts(nb: dict) -> dict[str, int]:
    """Bytes of the saved file taken by widget state, widget view outputs and the static copies."""
    sizes = {"widget_state_metadata": len(json.dumps(nb["metadata"].get("widgets", {}))),
             "widget_view_outputs": 0, "static_copy_outputs": 0}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                sizes["widget_view_outputs"] += len(json.dumps(out))
            elif "nbkit-static" in "".join(data.get("text/html", "")):
                sizes["static_copy_outputs"] += len(json.dumps(out))
    return sizes


def _wait_controls(nb: NotebookPage, index: int, timeout_s: float = 15) -> dict:
    """The controls' state once they are live or show the "can't reach the kernel" hint."""
    nb.wait_for("""(i) => { const c = document.querySelectorAll('.nbkit-controls')[i];
        return c && (c.dataset.live === 'true' || (c.querySelector('.nbkit-hint')?.textContent || '') !== ''); }""",
                timeout_s, arg=index)
    return nb.page.evaluate(JS_CONTROLS, index)


def test_dashboard_stop_save_and_reopen(tmp_path: Path) -> None:
    require_browser()
    shots = shots_dir("dashboard")
    root = tmp_path / "work"
    root.mkdir()
    _notebook(root / "dashboard.ipynb")
    with jupyter_server(root, env={"OMP_NUM_THREADS": "1"}) as server, browser() as chromium:
        nb = NotebookPage.new(chromium, server, shots)
        page = nb.page
        nb.open("dashboard.ipynb")
        nb.run_all()

        # -- 1. blocking cell: the chart grows; Stop if the buttons are live, else the stop square
        nb.wait_for("() => document.querySelectorAll('.js-plotly-plot').length >= 1", 90)
        counts = watch_chart_grow(page, -1, samples=12, every=0.5)
        assert grew(counts), f"the chart should gain points while training: {counts}"
        assert page.evaluate(JS_STATUSES)[0].startswith("running")
        controls = _wait_controls(nb, 0)
        nb.screenshot("1_blocking_running", page.locator(".jp-Cell").nth(1))
        blocking_live = controls["live"] == "true"
        if blocking_live:
            page.locator(".nbkit-controls").nth(0).locator(".nbkit-btn").first.click()
        else:
            assert "stop square" in controls["hint"], controls  # a hint, not a dead button
            nb.interrupt_kernel()
        nb.wait_for("() => document.querySelectorAll('.nbkit-static img').length >= 1", 60)
        assert page.evaluate(JS_STATUSES)[0].startswith("stopped")
        nb.screenshot("2_blocking_stopped", page.locator(".jp-Cell").nth(1))

        # -- 2. background run: its Stop button works while it trains
        nb.wait_for("() => document.querySelectorAll('.nbkit-controls').length >= 2 && "
                    "document.querySelectorAll('.js-plotly-plot').length >= 1", 60)
        controls = _wait_controls(nb, 1)
        assert controls["live"] == "true", controls
        counts = watch_chart_grow(page, -1, samples=8, every=0.5)
        assert grew(counts), f"the background chart should gain points: {counts}"
        assert page.evaluate(JS_STATUSES)[1].startswith("running")
        nb.screenshot("3_background_running", page.locator(".jp-Cell").nth(2))
        page.locator(".nbkit-controls").nth(1).locator(".nbkit-btn").first.click()  # Stop
        nb.wait_for("() => document.querySelectorAll('.nbkit-static img').length >= 2", 60)
        nb.wait_until_done(60)
        assert [s.split()[0] for s in page.evaluate(JS_STATUSES)] == ["stopped", "stopped"]
        assert page.evaluate(JS_STATIC) == 2
        # each finished dashboard retired its live chart (its widget state is megabytes of plotly.js)
        assert page.locator(".js-plotly-plot").count() == 0
        assert nb.error_outputs() == [] and nb.dialogs == [] and nb.non_local_requests() == []
        nb.screenshot("4_background_stopped", page.locator(".jp-Cell").nth(2))
        report = nb.kernel_execute(STATE_REPORT)
        assert report.startswith("STATUS stopped stopped"), report
        state_bytes = int(report.split("WIDGET_STATE_BYTES")[1].split()[0])

        # -- 3. save with JupyterLab's command; what the file carries
        nb.save()
        saved = root / "dashboard.ipynb"
        parts = _file_parts(json.loads(saved.read_text()))
        print(f"saved notebook: {saved.stat().st_size:,} bytes; {parts}; widget state JupyterLab would "
              f"add with 'save widget state' on: {state_bytes:,} bytes")
        assert parts["static_copy_outputs"] > 2 * 5_000  # both PNGs are in the file
        assert saved.stat().st_size < 500_000  # and no megabytes of widget state

        # -- 4. reopened in JupyterLab after the kernel is gone: a new kernel knows none of the widgets
        server.shutdown_kernels()
        page.reload()
        nb.wait_for("() => document.querySelectorAll('.nbkit-static img').length >= 2", 60)
        page.wait_for_timeout(2000)
        assert page.evaluate(JS_STATIC) == 2
        assert "stopped" in page.locator(".nbkit-static").first.inner_text()
        nb.screenshot("5_reopened_in_lab", page.locator(".jp-Cell").nth(1))
        nb.close()

        # -- 5. rendered with no kernel at all, as GitHub or nbviewer would: nbconvert's HTML
        html_dir = tmp_path / "html"
        subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(html_dir),
                        str(saved)], check=True, capture_output=True, timeout=120)
        static_page = chromium.new_page(viewport={"width": 1100, "height": 900})
        outside: list[str] = []

        def refuse_remote(route):  # the template may link a CDN (widgets, MathJax): count, refuse
            outside.append(route.request.url)
            route.abort()

        static_page.route("http*://**/*", refuse_remote)
        static_page.goto((html_dir / "dashboard.html").as_uri())
        static_page.wait_for_function(f"() => ({JS_STATIC})() === 2", timeout=30_000)
        assert "stopped" in static_page.locator(".nbkit-static").first.inner_text()
        static_page.locator(".nbkit-static").first.screenshot(path=str(shots / "6_nbconvert_html.png"))
        print(f"nbconvert HTML: {len(outside)} requests to leave the machine, refused: {outside[:4]}")
        static_page.close()

    assert blocking_live, ("the Stop button never went live while a blocking cell ran (the dashboard "
                           "showed its stop-square hint): widget messages did not reach the busy kernel")
