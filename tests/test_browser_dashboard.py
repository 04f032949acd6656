"""The training dashboard in JupyterLab in headless Chromium (issues 4 and 15).

A notebook trains a tiny model twice. First in a blocking cell: the chart gains points, JupyterLab's
kernel status reads "busy" (polled every 0.1 s while it trains), and the run is stopped with the
dashboard's Stop button, which JupyterLab >= 4.4 delivers to the busy kernel on a subshell; the
result says where the checkpoints are. Then in the background: Stop works there too. Each finished
run leaves plotly's renderer (its PNG, interactive on hover) and a summary, no widget. The notebook
is saved with JupyterLab's own command and reopened without a kernel, then rendered by nbconvert to
HTML (what GitHub or nbviewer show). Screenshots: /tmp/nbkit-shots/dashboard/.
"""

from __future__ import annotations

import subprocess
import sys
import time
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
    write_notebook,
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

JS_KERNEL = "() => window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status"
JS_DASH = """(i) => { const d = document.querySelectorAll('.nbkit-dashboard')[i];
  return d ? {live: d.dataset.live, done: d.dataset.done, points: Number(d.dataset.points || 0),
              status: d.querySelector('.nbkit-progress b')?.textContent || '',
              hint: d.querySelector('.nbkit-hint')?.textContent || ''} : null; }"""
# The end of a run: plotly's renderer (showing its PNG until hovered) and the summary line.
JS_RESULTS = """() => [...document.querySelectorAll('.nbkit-summary')].map(e => e.textContent)"""
JS_CHARTS = """() => document.querySelectorAll('.jp-RenderedPlotly').length"""


def _poll_kernel(page, index: int, seconds: float, every: float = 0.1) -> list[str]:
    """The kernel status JupyterLab shows, polled while dashboard `index` is still training."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        dash = page.evaluate(JS_DASH, index)
        if dash is None or dash["done"] == "true":
            break
        seen.append(page.evaluate(JS_KERNEL))
        time.sleep(every)
    return seen


def test_dashboard_busy_kernel_stop_save_and_reopen(tmp_path: Path) -> None:
    require_browser()
    shots = shots_dir("dashboard")
    root = tmp_path / "work"
    root.mkdir()
    write_notebook(root / "dashboard.ipynb", [SETUP, BLOCKING, BACKGROUND], "d")
    with jupyter_server(root, env={"OMP_NUM_THREADS": "1"}) as server, browser() as chromium:
        nb = NotebookPage.new(chromium, server, shots)
        page = nb.page
        nb.open("dashboard.ipynb")
        nb.run_all()

        # -- 1. blocking cell: the chart grows, the kernel reads busy, Stop works and says where
        nb.wait_for("() => document.querySelectorAll('.nbkit-dashboard').length >= 1", 90)
        page.locator(".nbkit-dashboard").first.scroll_into_view_if_needed()
        counts = watch_chart_grow(page, 0, samples=60, every=0.5, enough=4)
        assert grew(counts), f"the chart should gain points while training: {counts}"
        dash = page.evaluate(JS_DASH, 0)
        assert dash["status"] == "running" and dash["live"] == "true", dash
        statuses = _poll_kernel(page, 0, 8.0)
        busy = statuses.count("busy") / max(1, len(statuses))
        print(f"kernel status while the blocking cell trains: {len(statuses)} polls, busy {busy:.1%}, "
              f"others {sorted(set(statuses) - {'busy'})}")
        assert len(statuses) >= 40 and busy >= 0.95, statuses
        nb.screenshot("1_blocking_running", page.locator(".jp-Cell").nth(1))
        page.locator(".nbkit-dashboard").first.locator(".nbkit-btn").first.click()  # Stop
        nb.wait_for("() => document.querySelectorAll('.nbkit-summary').length >= 1", 60)
        first = page.evaluate(JS_RESULTS)[0]
        assert first.startswith("blocking-run stopped at step ") and "(stopped from the dashboard)" in first
        assert "checkpoint: " in first and "run directory " in first, first
        nb.screenshot("2_blocking_stopped", page.locator(".jp-Cell").nth(1))

        # -- 2. background run: its Stop button works while it trains
        # the background cell's own dashboard, once the blocking one has been replaced by its result
        nb.wait_for("() => document.querySelectorAll('.nbkit-dashboard').length === 1 && "
                    "document.querySelectorAll('.jp-Cell')[2].querySelector('.nbkit-dashboard') !== null", 120)
        # a loaded machine spaces redraws out (up to MAX_GAP seconds): watch up to 30 s for 3 of them
        counts = watch_chart_grow(page, 0, samples=60, every=0.5, enough=4)
        assert grew(counts), f"the background chart should gain points: {counts}"
        nb.wait_for("() => document.querySelector('.nbkit-dashboard')?.dataset.live === 'true'", 20)
        nb.screenshot("3_background_running", page.locator(".jp-Cell").nth(2))
        page.locator(".nbkit-dashboard").first.locator(".nbkit-btn").first.click()  # Stop
        nb.wait_for("() => document.querySelectorAll('.nbkit-summary').length >= 2", 120)
        nb.wait_until_done(60)
        results = page.evaluate(JS_RESULTS)
        assert [r.split()[:2] for r in results] == [["blocking-run", "stopped"], ["background-run", "stopped"]]
        assert page.locator(".nbkit-dashboard").count() == 0  # no live widget, no dead buttons left
        assert page.evaluate(JS_CHARTS) == 2
        assert nb.error_outputs() == [] and nb.dialogs == [] and nb.non_local_requests() == []
        nb.screenshot("4_finished", page.locator(".jp-Cell").nth(1))
        page.locator(".jp-RenderedPlotly").first.hover()  # plotly's renderer turns its PNG interactive
        nb.wait_for("() => document.querySelectorAll('.jp-RenderedPlotly .plot-container').length >= 1", 30)
        nb.screenshot("5_finished_interactive", page.locator(".jp-Cell").nth(1))

        # -- 3. save with JupyterLab's command; what the file carries
        nb.save()
        saved = root / "dashboard.ipynb"
        print(f"saved notebook: {saved.stat().st_size:,} bytes")
        assert saved.stat().st_size < 400_000

        # -- 4. reopened in JupyterLab after the kernel is gone
        server.shutdown_kernels()
        page.reload()
        nb.wait_for("() => document.querySelectorAll('.jp-RenderedPlotly').length >= 2", 60)
        page.wait_for_timeout(2000)
        body = page.locator(".jp-Notebook").inner_text()
        assert "Error displaying widget" not in body and "model not found" not in body
        assert "blocking-run stopped at step" in body
        nb.screenshot("6_reopened_in_lab", page.locator(".jp-Cell").nth(1))
        nb.close()

        # -- 5. rendered with no kernel at all, as GitHub or nbviewer would: nbconvert's HTML
        html_dir = tmp_path / "html"
        subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", "--output-dir", str(html_dir),
                        str(saved)], check=True, capture_output=True, timeout=120)
        static_page = chromium.new_page(viewport={"width": 1100, "height": 900})
        static_page.route("http*://**/*", lambda route: route.abort())
        static_page.goto((html_dir / "dashboard.html").as_uri())
        static_page.wait_for_function("() => [...document.images].filter(i => i.complete && i.naturalWidth > 300)"
                                      ".length === 2", timeout=30_000)
        text = static_page.locator("body").inner_text()
        assert "VBox(" not in text and "object at 0x" not in text and "blocking-run stopped at step" in text
        static_page.screenshot(path=str(shots / "7_nbconvert_html.png"), full_page=True)
        static_page.close()
