"""The live dashboard, checked through its widget state and the bytes that cross the comm (a recording
comm stands in for the kernel's, as in ipywidgets' own tests)."""

from __future__ import annotations

import json
import time

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
        assert len(d.fig.data[0].x) <= d.max_points  # raw loss: 2 points per bucket at most
        assert len(d.fig.data[1].x) <= d.max_points


def test_updates_are_throttled(comm_log):
    from nbkit.notebook.widgets.dashboard import Dashboard

    d, run = Dashboard(min_interval=10.0), FakeRun()
    start(d, run, 5000)
    before = d.updates
    for s in range(1, 2001):
        d(step(s), run)
    assert d.updates - before <= 1  # 2,000 steps inside one 10 s window: at most one redraw
    d(RunEnd(status="finished", step=2000), run)  # the end is always drawn
    assert d.fig.data[0].x[-1] == 2000


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


def test_progress_table_and_escaping(comm_log):
    from nbkit.notebook.widgets.dashboard import Dashboard

    d, run = Dashboard(min_interval=0.0), FakeRun()
    evil = "<img src=x onerror=alert(1)>"
    start(d, run, 100, name=evil)
    d(step(10, 100), run)
    d(EvalEnd(step=10, epoch=0.4, metrics={"eval_loss": 0.5, f"eval_{evil}": 0.9}), run)
    d(EpochEnd(step=25, epoch=1), run)
    assert evil not in d.title.value and "&lt;img src=x onerror=alert(1)&gt;" in d.title.value
    assert evil not in d.table.value and "&lt;img" in d.table.value
    assert all(evil not in (t.name or "") for t in d.fig.data)
    assert "step 10/100" in d.progress.value and "samples/s" in d.progress.value and "ETA" in d.progress.value
    assert d.progress_bar.value == 10 and d.progress_bar.max == 100
    assert [s["x0"] for s in d.fig.layout.shapes] == [25]  # the epoch boundary
    assert "RSS" in d.memory.value or "allocated" in d.memory.value


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
    assert d.fig.layout.yaxis.type == "log"
    d._on_msg(d.controls, {"action": "show_lr", "value": True}, [])
    assert d.fig.data[2].visible is True


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
    assert "stopped" in d.progress.value


def test_static_copy_goes_into_the_cell_output(comm_log, tmp_path):
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
            fit(model, ds, ds, tokenizer=tok, epochs=2, batch_size=8, callbacks=[d], metrics=["accuracy"],
                run_dir=tmp_path / "r", progress=False)
    finally:
        ip.display_formatter.active_types = active
    # outputs: the widget, the empty placeholder, then the placeholder's update with the copy
    html_outputs = [o.data.get("text/html", "") for o in cap.outputs]
    final = html_outputs[-1]
    assert "data:image/png;base64," in final and "eval_accuracy" in final
    assert final.count("<tr>") >= 3  # header + one row per evaluation
    # the 5 MB live chart is closed once its static copy is in the output
    assert d.fig not in d.widget.children and d.fig.comm is None
    closes = [m for m in comm_log if m[0] == "comm_close"]
    assert closes
