"""The training dashboard in JupyterLab in headless Chromium (issue 4's browser check).

A notebook trains a tiny model in a blocking cell; the chart gains points; the Stop button (live
while the cell is busy: JupyterLab >= 4.4 with ipykernel 7 routes widget messages then) ends the
run as "stopped". The notebook is saved with JupyterLab's own save command and reopened without its
kernel's widget state, twice: rendered by nbconvert to HTML (what GitHub/nbviewer show) and
reopened in JupyterLab after the kernel was shut down; both must show the static copy of the final
chart. The saved file's size and the widget state it carries are printed.
Screenshots: /tmp/nbkit-shots/dashboard/.
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
    jupyter_server,
    require_browser,
    shots_dir,
    watch_chart_grow,
)

pytestmark = pytest.mark.browser

SETUP = """\
import json
import time

import torch

torch.set_num_threads(1)
import nbkit
from nbkit.testing import random_texts, tiny_bert

texts = random_texts(256, seed=2)
data = nbkit.load_data([{"text": t, "label": i % 2} for i, t in enumerate(texts)])
model, tokenizer = tiny_bert()

def slow(event, run):  # a tiny model trains in milliseconds: slow it so a person could press Stop
    if type(event).__name__ == "StepEnd":
        time.sleep(0.1)"""
TRAIN = """\
run = nbkit.fit(model, data["train"], data["eval"], tokenizer=tokenizer, epochs=100, batch_size=8,
                eval_every=10, metrics=["accuracy"], name="dashboard-check", callbacks=[slow])"""
REPORT = """\
import ipywidgets.embed

# What JupyterLab would store in the notebook with "save widget state" on: every widget's state.
state = ipywidgets.embed.embed_data(views=[])["manager_state"]
print("STATUS", run.status, "WIDGET_STATE_BYTES", len(json.dumps(state)))"""

JS_STATUS = """() => [...document.querySelectorAll('.widget-html-content')]
  .map(e => e.textContent).filter(t => /step \\d+\\/\\d+/.test(t))[0] || ''"""
JS_STATIC = """() => [...document.querySelectorAll('.nbkit-static img')]
  .filter(i => i.complete && i.naturalWidth > 100).map(i => [i.naturalWidth, i.naturalHeight])"""


def _notebook(path: Path) -> None:
    cells = [{"cell_type": "code", "id": f"d{i}", "metadata": {}, "source": src, "outputs": [],
              "execution_count": None} for i, src in enumerate([SETUP, TRAIN, REPORT])]
    path.write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}}))


def _widget_bytes(nb: dict) -> dict[str, int]:
    """Bytes of the saved file taken by widget state, widget views, the static copy, everything else."""
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

        # -- live: the chart grows, the controls are live while the cell is busy
        nb.wait_for("() => document.querySelector('.nbkit-controls[data-live=\"true\"]') !== null", 90)
        counts = watch_chart_grow(page, 0, samples=16, every=0.5)
        grown = sorted({c for c in counts if c > 0})
        assert len(grown) >= 3 and grown == sorted(grown), f"the chart should gain points: {counts}"
        assert nb.page.evaluate(JS_STATUS).startswith("running")
        assert page.locator(".nbkit-controls .nbkit-btn").first.text_content().endswith("Stop")
        nb.screenshot("1_running", page.locator(".jp-OutputArea").first)

        # -- Stop: the blocking cell ends, the run is "stopped", the static copy appears
        page.locator(".nbkit-controls .nbkit-btn").first.click()
        nb.wait_for("() => document.querySelectorAll('.nbkit-static img').length > 0", 60)
        nb.wait_until_done(120)
        status = nb.page.evaluate(JS_STATUS)
        assert status.startswith("stopped"), status
        assert nb.error_outputs() == [] and nb.dialogs == [] and nb.non_local_requests() == []
        report = page.locator(".jp-OutputArea-output pre").filter(has_text="WIDGET_STATE_BYTES").inner_text()
        assert "STATUS stopped" in report
        state_bytes = int(report.split("WIDGET_STATE_BYTES")[1].split()[0])
        nb.screenshot("2_stopped", page.locator(".jp-OutputArea").first)
        nb.screenshot("3_stopped_page")

        # -- save with JupyterLab's command; what the file carries
        nb.save()
        saved = root / "dashboard.ipynb"
        nb_json = json.loads(saved.read_text())
        sizes = _widget_bytes(nb_json)
        print(f"saved notebook: {saved.stat().st_size} bytes; {sizes}; the widget state JupyterLab "
              f"would add with 'save widget state' on: {state_bytes} bytes")
        assert sizes["static_copy_outputs"] > 5_000  # the PNG is in the file
        assert saved.stat().st_size < 500_000  # no megabytes of widget state

        # -- reopened in JupyterLab with the kernel gone (a new kernel knows none of the widgets)
        server.shutdown_kernels()
        nb.page.reload()
        nb.wait_for("() => document.querySelectorAll('.nbkit-static img').length > 0", 60)
        nb.page.wait_for_timeout(1500)
        assert len(nb.page.evaluate(JS_STATIC)) == 1
        assert "stopped" in page.locator(".nbkit-static").first.inner_text()
        nb.screenshot("4_reopened_in_lab", page.locator(".jp-Cell").nth(1))
        nb.close()

        # -- rendered without any kernel, as GitHub or nbviewer would: nbconvert's HTML
        html_dir = tmp_path / "html"
        subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(html_dir),
                        str(saved)], check=True, capture_output=True, timeout=120)
        static_page = chromium.new_page(viewport={"width": 1100, "height": 900})
        outside: list[str] = []
        # nbconvert's template may link a CDN (e.g. for widgets or MathJax): count and refuse those.
        static_page.route("**/*", lambda route: (outside.append(route.request.url), route.abort())
                          if route.request.url.startswith("http") else route.continue_())
        static_page.goto((html_dir / "dashboard.html").as_uri())
        static_page.wait_for_function(f"() => ({JS_STATIC})().length === 1", timeout=30_000)
        assert "stopped" in static_page.locator(".nbkit-static").first.inner_text()
        static_page.locator(".nbkit-static").first.screenshot(path=str(shots / "5_nbconvert_html.png"))
        print(f"nbconvert HTML: {len(outside)} requests leave the machine (refused): {outside[:5]}")
        static_page.close()
