"""The live dashboard, checked through its widget state and the bytes that cross the comm (a recording
comm stands in for the kernel's, as in ipywidgets' own tests)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from nbkit.core.series import BoundedSeries
from nbkit.core.train.events import EpochEnd, EvalEnd, RunEnd, RunStart, StepEnd


@pytest.fixture
def comm_log(monkeypatch):
    """Every message widgets publish: (msg_type, bytes, data)."""
    import ipywidgets.widgets.widget as widget_module
    from comm.base_comm import BaseComm

    log = []

    class RecordingComm(BaseComm):
        kernel = "recording"

        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            size = len(json.dumps(data, default=str)) if data else 0
            size += sum(len(memoryview(b).cast("B")) for b in (buffers or []))
            log.append((msg_type, size, data))

    monkeypatch.setattr(widget_module.comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    return log


class FakeRun:
    def __init__(self):
        self.calls = []
        self.status = "running"
        self.history = None

    def stop(self, reason=""):
        self.calls.append("stop")

    def pause(self):
        self.calls.append("pause")
        self.status = "paused"

    def resume(self):
        self.calls.append("resume")
        self.status = "running"

    def stop_after_epoch(self):
        self.calls.append("stop_after_epoch")


def start(d, run, n, name="run"):
    d(RunStart(name=name, run_dir="/tmp/r", total_steps=n, steps_per_epoch=max(1, n // 4), epochs=4), run)


def step(s, n=1000):
    return StepEnd(step=s, epoch=s / n, loss=2.0 / (1 + s) ** 0.3, lr=1e-3, samples_per_s=50.0,
                   tokens_per_s=900.0, elapsed=s * 0.01)


def bytes_per_update(comm_log, n_steps):
    """Fill a dashboard with n_steps steps (20 evaluations), then measure 5 more updates."""
    from nbkit.notebook.widgets.dashboard import Dashboard

    d, run = Dashboard(min_interval=0.0), FakeRun()
    start(d, run, n_steps)
    for s in range(1, n_steps + 1):
        ev = step(s, n_steps)
        d.loss.append(s, ev.loss)
        d.smooth.append(s, ev.loss)
        d.lr.append(s, ev.lr)
        d.last = ev
        if s % (n_steps // 20) == 0:
            d.evals.setdefault("eval_loss", BoundedSeries(d.max_points, "mean")).append(s, 1 / s)
    comm_log.clear()
    t = time.perf_counter()
    for s in range(5):
        d(step(n_steps + s, n_steps), run)
    per_update_s = (time.perf_counter() - t) / 5
    return sum(size for _, size, _ in comm_log) / 5, per_update_s, d


def test_bytes_per_update_do_not_grow_with_run_length(comm_log):
    small, _, d_small = bytes_per_update(comm_log, 1_000)
    large, _, d_large = bytes_per_update(comm_log, 100_000)
    assert large < 64 * 1024
    assert large / small <= 1.5
    for d in (d_small, d_large):
        series = d.view.chart["series"]
        assert len(series[0]["x"]) // 4 <= d.max_points  # raw loss: 2 float32 points per bucket at most
        assert len(series[1]["x"]) // 4 <= d.max_points


def test_updates_are_throttled(comm_log):
    from nbkit.notebook.widgets.dashboard import Dashboard

    d, run = Dashboard(min_interval=10.0), FakeRun()
    start(d, run, 5000)
    before = d.updates
    for s in range(1, 2001):
        d(step(s), run)
    assert d.updates - before <= 1  # 2,000 steps inside one 10 s window: at most one redraw
    d(RunEnd(status="finished", step=2000), run)  # the end is always drawn
    xs = np.frombuffer(d.view.chart["series"][0]["x"], dtype=np.float32)
    assert xs[-1] == 2000


def test_series_bounds_and_keeps_extremes():
    s = BoundedSeries(100, "minmax")
    for i in range(100_000):
        s.append(i, 1.0 if i != 73_456 else 50.0)
    xs, ys = s.points()
    assert len(xs) <= 100 and max(ys) == 50.0 and xs == sorted(xs)
    m = BoundedSeries(100, "mean")
    for i in range(1000):
        m.append(i, float(i))
    mx, my = m.points()
    assert len(mx) == 50 and my == sorted(my) and my[0] < 20 and my[-1] > 980
    assert mx == pytest.approx(my)  # y = x: each drawn point is a true bucket mean


def test_progress_table_and_text_fields(comm_log):
    """Every text goes to the page as data (the page sets it with textContent), never as markup."""
    from nbkit.notebook.widgets.dashboard import Dashboard

    d, run = Dashboard(min_interval=0.0), FakeRun()
    evil = "<img src=x onerror=alert(1)>"
    start(d, run, 100, name=evil)
    d(step(10, 100), run)
    d(EvalEnd(step=10, epoch=0.4, metrics={"eval_loss": 0.5, f"eval_{evil}": 0.9}), run)
    d(EpochEnd(step=25, epoch=1), run)
    v = d.view
    assert v.title == evil  # plain text: dashboard.js puts it in with textContent
    assert v.table["columns"] == ["step", "eval_loss", f"eval_{evil}"]
    assert v.table["rows"] == [["10", "0.5", "0.9"]]
    text = v.progress["text"]
    assert text.startswith("step 10/100 \u00b7 epoch 0.10/4") and "samples/s" in text and "ETA" in text
    assert v.progress["fraction"] == pytest.approx(0.1)
    assert v.chart["epochs"] == [25]
    assert v.chart["y2range"] == [0.8, 1.0] or v.chart["y2range"] == (0.8, 1.0)
    names = [s["name"] for s in v.chart["series"]]
    assert names == ["train loss", "train loss (smoothed)", "learning rate", "eval_loss", f"eval_{evil}"]
    assert v.memory.startswith(("CPU: process RSS", "cuda"))
    js = (Path(mod_path()) / "static" / "dashboard.js").read_text()
    assert "innerHTML" not in js


def mod_path():
    from nbkit.notebook.widgets import dashboard

    return Path(dashboard.__file__).parent


def test_live_smoothing_is_the_saved_figures_smoothing():
    """One moving-average function: the live curve (fed step by step) and the figure (run over the
    history) give the same points."""
    import pandas as pd

    from nbkit.figures import training_series
    from nbkit.notebook.widgets.dashboard import Dashboard

    d, run = Dashboard(min_interval=1e9), FakeRun()
    start(d, run, 3000)
    losses = [1.0 + ((s * 7919) % 100) / 100 for s in range(1, 3001)]
    for s, loss in enumerate(losses, 1):
        d(StepEnd(step=s, epoch=0, loss=loss, lr=1e-3, samples_per_s=1.0, tokens_per_s=None), run)
    history = pd.DataFrame({"step": range(1, 3001), "loss": losses, "lr": 1e-3})
    saved = training_series(history)
    live = d.smooth.points()
    assert len(live[0]) == len(saved["smooth"][0]) == 200  # max_points 400: 200 bucket means
    assert np.allclose(live[1], saved["smooth"][1], rtol=1e-12)
    assert np.allclose(d.loss.points()[1], saved["loss"][1])


def test_buttons_call_the_run_once_the_front_end_answered(comm_log):
    from nbkit.notebook.widgets.dashboard import Dashboard

    d, run = Dashboard(min_interval=0.0), FakeRun()
    start(d, run, 100)
    assert d.controls.live is False
    d._on_msg(d.controls, {"action": "pong", "value": -1}, [])  # what controls.js sends on render
    assert d.controls.live is True
    for action in ("pause", "resume", "stop_after_epoch", "stop"):
        d._on_msg(d.controls, {"action": action}, [])
    assert run.calls == ["pause", "resume", "stop_after_epoch", "stop"]
    d._on_msg(d.controls, {"action": "log_y", "value": True}, [])
    assert d.view.log_y is True


def test_a_front_end_that_never_answers_gets_the_stop_square_hint(comm_log, monkeypatch):
    from nbkit.notebook.widgets import dashboard as mod

    monkeypatch.setattr(mod, "LIVE_TIMEOUT_S", 0.0)
    d, run = mod.Dashboard(min_interval=0.0), FakeRun()
    d._t_shown = time.monotonic() - 1
    start(d, run, 100)
    d(step(1, 100), run)
    assert d.controls.live is False and "stop square" in d.controls.hint
    pings = [m for m in comm_log if m[2] and m[2].get("method") == "custom" and
             m[2]["content"].get("type") == "ping"]
    assert pings  # the kernel keeps asking the view to answer


def test_dashboard_stops_a_background_run(comm_log, tmp_path):
    import datasets

    from nbkit.core.train import fit
    from nbkit.notebook.widgets.dashboard import Dashboard
    from nbkit.testing import random_texts, tiny_bert

    model, tok = tiny_bert()
    texts = random_texts(400)
    ds = datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(400)]})
    slow = lambda e, r: time.sleep(0.02) if e.kind == "step" else None  # noqa: E731
    d = Dashboard(min_interval=0.0)
    run = fit(model, ds, tokenizer=tok, epochs=3, batch_size=8, callbacks=[slow, d], run_dir=tmp_path / "r",
              background=True, progress=False)
    deadline = time.time() + 30
    while (run.history.empty or run.history["step"].max() < 3) and time.time() < deadline:
        time.sleep(0.02)
    d._on_msg(d.controls, {"action": "pong"}, [])
    d._on_msg(d.controls, {"action": "stop"}, [])
    run.wait(30)
    assert run.status == "stopped" and run.history["step"].max() < 150
    assert d.controls.done is True
    assert d.view.status == "stopped"
    line = d.status_line(run)
    assert line.startswith(f"{run.name} stopped at step ") and "(stopped from the dashboard)" in line
    assert f"last checkpoint: {run.last_checkpoint}" in line or f"best and last checkpoint: {run.last_checkpoint}" in line


def test_the_result_replaces_the_live_widget(comm_log, tmp_path):
    """At the end the widget's own output becomes the chart bundle (plotly JSON + PNG + one line
    of text), a second output holds the status line and one table, and the widget is closed."""
    import base64

    import datasets
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output

    from nbkit.core.train import fit
    from nbkit.notebook.widgets.dashboard import Dashboard
    from nbkit.testing import random_texts, tiny_bert

    model, tok = tiny_bert()
    ds = datasets.Dataset.from_dict({"text": random_texts(32), "label": [i % 2 for i in range(32)]})
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    # a real shell, so display() goes through its display publisher (None if already started)
    ip = start_ipython() or TerminalInteractiveShell.instance()
    # a terminal shell formats text/plain only; a kernel formats every type, as here
    active = ip.display_formatter.active_types
    ip.display_formatter.active_types = ip.display_formatter.format_types
    try:
        with capture_output() as cap:
            d = Dashboard().show()
            run = fit(model, ds, ds, tokenizer=tok, epochs=2, batch_size=8, callbacks=[d], metrics=["accuracy"],
                      run_dir=tmp_path / "r", progress=False, name="tiny")
    finally:
        ip.display_formatter.active_types = active
    # outputs: the widget, the empty summary, then the updates of both
    kinds = [sorted(o.data) for o in cap.outputs]
    assert kinds[0] == ["application/vnd.jupyter.widget-view+json", "text/plain"]
    assert kinds[1] == ["text/plain"] and cap.outputs[1].data["text/plain"] == ""
    # the last two updates: the summary, then the chart that replaces the widget
    summary, chart = cap.outputs[-2].data, cap.outputs[-1].data
    assert sorted(chart) == ["application/vnd.plotly.v1+json", "image/png", "text/plain"]
    assert chart["text/plain"] == "nbkit training chart: tiny (finished, 8 steps)"
    png = base64.b64decode(chart["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(png) < 200_000
    fig = chart["application/vnd.plotly.v1+json"]
    assert [t["name"] for t in fig["data"]] == ["train loss", "train loss (smoothed)", "eval_loss", "eval_accuracy"]
    assert fig["layout"]["legend"]["y"] > 1  # above the plot area, not over the curves
    assert fig["layout"]["yaxis2"]["range"] == [0.4, 0.6]  # accuracy 0.5 on round tenths
    assert len(json.dumps(fig, default=str)) < 30_000
    size = human_size(tmp_path / "r")
    line = f"tiny finished at step 8 \u00b7 best and last checkpoint: {run.last_checkpoint} \u00b7 run directory {tmp_path / 'r'} ({size})"
    assert summary["text/plain"].splitlines()[0] == line
    assert summary["text/plain"].splitlines()[1].split() == ["step", "eval_loss", "eval_accuracy"]
    assert summary["text/html"].count("<table") == 1 and summary["text/html"].count("<tr>") == 3
    assert "nbkit-summary" in summary["text/html"] and "th" in summary["text/html"]
    assert "tiny <span class='nbkit-status'>finished</span> at step 8 \u00b7 " in summary["text/html"]
    # the live widget is closed: nothing of it stays in the saved widget state
    assert d.view.comm is None
    assert [m for m in comm_log if m[0] == "comm_close"]


def human_size(path):
    from nbkit.core.models import human_bytes
    from nbkit.core.runs import dir_size

    return human_bytes(dir_size(path))


def test_phase_shows_what_happens_after_the_last_step(comm_log):
    from nbkit.core.train.events import TrainEnd
    from nbkit.notebook.widgets.dashboard import Dashboard

    d, run = Dashboard(min_interval=0.0), FakeRun()
    start(d, run, 10)
    d(step(10, 10), run)
    d(TrainEnd(step=10, status="finished", doing="testing and saving"), run)
    assert d.view.status == "testing and saving\u2026"
    assert "ETA" not in d.view.progress["text"]


def test_a_slow_kernel_spaces_redraws_out_but_never_beyond_max_gap(comm_log, monkeypatch):
    import time

    from nbkit.notebook.widgets import dashboard as mod

    d = mod.Dashboard(min_interval=0.5)
    run = FakeRun()
    start(d, run, 100)
    monkeypatch.setattr(d, "_update_text", lambda: time.sleep(0.1))  # 100 ms: 1% would be every 10 s
    d.flush()
    assert d._gap == mod.MAX_GAP == 2.0
