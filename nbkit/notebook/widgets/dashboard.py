"""The live training dashboard: one output with a plotly chart, progress, an evaluations table,
device memory and Stop / Pause controls. It is an observer of the engine's events (`fn(event, run)`)
and never drives training itself: its buttons only call `run.stop()` / `run.pause()`.

Cost stays flat with run length: events go into bounded series (`nbkit.core.series`), and the browser
gets at most `max_points` points per trace, at most once per `min_interval` seconds. When the run
ends, a static PNG of the final chart and the metrics table are written into the cell's output (a
display_id output, which also works for background runs), so a saved notebook shows the result
without a kernel or widget state.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import traitlets as t

from nbkit.figures import EVAL_COLORS, LOSS_COLOR, metrics_table_html, training_png
from nbkit.core.series import BoundedSeries
from nbkit.core.train.events import CheckpointSaved, EpochEnd, EvalEnd, RunEnd, RunStart, StepEnd

STATIC = Path(__file__).parent / "static"
# A front end that cannot deliver widget messages to a busy kernel never answers; after this long
# the controls say so instead of offering buttons that do nothing.
LIVE_TIMEOUT_S = 4.0
HINT_BLOCKED = ("Buttons can't reach the kernel while this cell runs here: use the stop square \u25a0 "
                "(Kernel \u2192 Interrupt; it stops at a step boundary) or fit(..., background=True).")


class Controls(anywidget.AnyWidget):
    _esm = STATIC / "controls.js"
    _css = STATIC / "dashboard.css"
    live = t.Bool(False).tag(sync=True)
    done = t.Bool(False).tag(sync=True)
    paused = t.Bool(False).tag(sync=True)
    log_y = t.Bool(False).tag(sync=True)
    show_lr = t.Bool(False).tag(sync=True)
    hint = t.Unicode("").tag(sync=True)


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _memory_text() -> str:
    from nbkit.core.devices import device_report
    from nbkit.core.models import human_bytes

    report = device_report()
    gpus = [d for d in report.devices if d.device.startswith("cuda")]
    if gpus:
        d = gpus[0]
        return (f"{html.escape(d.device)}: allocated {human_bytes(d.allocated_bytes or 0)}, reserved "
                f"{human_bytes(d.reserved_bytes or 0)}, peak {human_bytes(d.peak_allocated_bytes or 0)}")
    return f"CPU: process RSS {human_bytes(report.process_rss_bytes or 0)}"


class Dashboard:
    """Live view of a run. `fit`/`finetune` show one automatically in notebooks; to attach one by
    hand: `Dashboard(run).show()` (it replays the events so far)."""

    def __init__(self, run: Any = None, *, max_points: int = 400, min_interval: float = 0.5,
                 memory_every: float = 2.0, x_axis: str = "step", keep_chart: bool = False):
        if x_axis not in ("step", "lr"):
            raise ValueError(f"x_axis must be 'step' or 'lr' (the learning-rate finder), got {x_axis!r}")
        self.x_axis, self.keep_chart = x_axis, keep_chart
        self.max_points, self.min_interval, self.memory_every = max_points, min_interval, memory_every
        self.loss = BoundedSeries(max_points // 2, "minmax")
        self.smooth = BoundedSeries(max_points, "mean")
        self.lr = BoundedSeries(max_points, "mean")
        self.evals: dict[str, BoundedSeries] = {}
        self.eval_rows: list[dict[str, Any]] = []
        self.epoch_steps: list[int] = []
        self._ema: float | None = None
        self.alpha = 0.1
        self.start: RunStart | None = None
        self.last: StepEnd | None = None
        self.status = "waiting"
        self.name = ""
        self._t_flush = 0.0
        self._t_memory = 0.0
        self._t_shown: float | None = None
        self._ping = 0
        self.updates = 0  # flushes sent to the browser (tests and benchmarks read it)
        self._dirty = False
        self._static_handle = None
        self.run = None

        self.title = W.HTML()
        self.fig = go.FigureWidget(layout=_layout(x_axis), data=[
            go.Scatter(name="train loss", mode="lines", line={"color": LOSS_COLOR, "width": 1}, opacity=0.3),
            go.Scatter(name="train loss (smoothed)", mode="lines", line={"color": LOSS_COLOR, "width": 2}),
            go.Scatter(name="learning rate", mode="lines", yaxis="y3", visible=False,
                       line={"color": "#7f7f7f", "dash": "dot"}),
        ])
        self.progress_bar = W.FloatProgress(value=0, min=0, max=1, layout=W.Layout(width="100%"))
        self.progress = W.HTML()
        self.table = W.HTML()
        self.memory = W.HTML()
        self.controls = Controls()
        self.controls.on_msg(self._on_msg)
        _route_clicks_to_the_front_ends_subshell(self.controls)
        self.widget = W.VBox([self.title, self.controls, self.fig, self.progress_bar, self.progress,
                              self.table, self.memory], layout=W.Layout(width="100%"))
        if run is not None:
            run.subscribe(self)

    # -- display --------------------------------------------------------------------------------

    def show(self) -> Dashboard:
        from IPython.display import HTML, display

        display(self.widget)
        # An output we can rewrite later from any thread: it receives the static copy at RunEnd.
        self._static_handle = display(HTML(""), display_id=True)
        self._t_shown = time.monotonic()
        return self

    def _ipython_display_(self) -> None:
        self.show()

    # -- events ---------------------------------------------------------------------------------

    def __call__(self, event: Any, run: Any) -> None:
        self.run = run
        if isinstance(event, StepEnd):
            self.last = event
            x = event.lr if self.x_axis == "lr" else event.step
            self.loss.append(x, event.loss)
            self._ema = event.loss if self._ema is None else self._ema + self.alpha * (event.loss - self._ema)
            self.smooth.append(x, self._ema)
            self.lr.append(event.step, event.lr)
            self._dirty = True
            if time.monotonic() - self._t_flush >= self.min_interval:
                self.flush()
            return
        if isinstance(event, RunStart):
            self.start, self.name, self.status = event, event.name, "running"
            setup = [f"{event.steps_per_epoch} steps/epoch"]
            if event.effective_batch_size:
                setup.append(f"effective batch {event.effective_batch_size}")
            if event.processes > 1:
                setup.append(f"{event.processes} processes")
            if event.lr:
                setup.append(f"lr {event.lr:.3g}")
            trainable, total = getattr(event, "trainable_params", None), getattr(event, "total_params", None)
            if trainable is not None and total and trainable < total:  # LoRA, frozen layers
                from nbkit.core.models import human_count

                setup.append(f"trainable {human_count(trainable)} of {human_count(total)} parameters "
                             f"({trainable / total:.1%})")
            self.title.value = (f"<b>{html.escape(event.name)}</b> &middot; "
                                f"<code>{html.escape(str(event.run_dir))}</code><br>"
                                f"<span style='color:#666;font-size:12px'>{' &middot; '.join(setup)}</span>")
        elif isinstance(event, EvalEnd):
            self.eval_rows.append({"step": event.step, **event.metrics})
            for key, value in event.metrics.items():
                if key.startswith("eval_"):
                    self.evals.setdefault(key, BoundedSeries(self.max_points, "mean")).append(event.step, value)
        elif isinstance(event, EpochEnd):
            self.epoch_steps.append(event.step)
        elif isinstance(event, CheckpointSaved):
            pass
        elif isinstance(event, RunEnd):
            self.status = event.status
            self.controls.done = True
            self.controls.hint = ""
            self.flush()
            if self._write_static_copy(event) and not self.keep_chart:
                self._retire_chart()
            # ipywidgets keeps every widget alive for the kernel's life; don't let ours keep the run
            # (and through it the model) alive too.
            self.run = None
            return
        self.flush()

    # -- controls -------------------------------------------------------------------------------

    def _on_msg(self, widget: Any, content: dict, buffers: list) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "pong":
            self.controls.live, self.controls.hint = True, ""
            return
        if action in ("log_y", "show_lr"):
            setattr(self.controls, action, bool(content.get("value")))
            self._apply_toggles()
            return
        run = self.run
        if run is None:
            return
        try:
            self._act(run, action)
        except NotImplementedError as exc:  # e.g. pause on a multi-process run: say so, don't crash
            self.controls.hint = str(exc)

    def _act(self, run: Any, action: str | None) -> None:
        if action == "stop":
            run.stop("stopped from the dashboard")
        elif action == "pause":
            run.pause()
        elif action == "resume":
            run.resume()
        elif action == "stop_after_epoch":
            run.stop_after_epoch()
            self.controls.hint = "will stop at the end of this epoch"
        self.controls.paused = getattr(run, "status", "") == "paused"

    def _apply_toggles(self) -> None:
        with self.fig.batch_update():
            self.fig.layout.yaxis.type = "log" if self.controls.log_y else "linear"
            self.fig.data[2].visible = self.controls.show_lr

    def _check_live(self) -> None:
        c = self.controls
        if c.live or self.status != "running":
            return
        self._ping += 1
        c.send({"type": "ping", "id": self._ping})
        if self._t_shown is not None and time.monotonic() - self._t_shown > LIVE_TIMEOUT_S:
            c.hint = HINT_BLOCKED

    # -- drawing --------------------------------------------------------------------------------

    def flush(self) -> None:
        """Send the current (bounded) state to the browser."""
        self._t_flush = time.monotonic()
        self._dirty = False
        self.updates += 1
        lx, ly = _arrays(self.loss)
        sx, sy = _arrays(self.smooth)
        rx, ry = _arrays(self.lr)
        with self.fig.batch_update():
            self.fig.data[0].x, self.fig.data[0].y = lx, ly
            self.fig.data[1].x, self.fig.data[1].y = sx, sy
            self.fig.data[2].x, self.fig.data[2].y = rx, ry
            for i, (key, series) in enumerate(self.evals.items()):
                trace = self._eval_trace(key, i)
                trace.x, trace.y = _arrays(series)
            self.fig.layout.shapes = [
                {"type": "line", "xref": "x", "yref": "paper", "x0": s, "x1": s, "y0": 0, "y1": 1,
                 "line": {"color": "#bbbbbb", "dash": "dot", "width": 1}}
                for s in self.epoch_steps[-100:]
            ]
        self._update_text()
        self._check_live()

    def _eval_trace(self, key: str, i: int):
        for trace in self.fig.data:
            if trace.name == html.escape(key):
                return trace
        self.fig.add_trace(go.Scatter(name=html.escape(key), mode="lines+markers",
                                      line={"color": EVAL_COLORS[i % len(EVAL_COLORS)]},
                                      yaxis="y" if key.endswith("loss") else "y2"))
        return self.fig.data[-1]

    def _update_text(self) -> None:
        start, last = self.start, self.last
        total = start.total_steps if start else 0
        step = last.step if last else (start.start_step if start else 0)
        self.progress_bar.max = max(total, 1)
        self.progress_bar.value = step
        self.progress_bar.bar_style = {"finished": "success", "stopped": "warning", "failed": "danger"}.get(
            self.status, "")
        elapsed = last.elapsed if last else 0.0
        done_here = step - (start.start_step if start else 0)
        eta = elapsed / done_here * (total - step) if done_here > 0 else None
        parts = [f"<b>{html.escape(self.status)}</b>", f"step {step}/{total}"]
        if last is not None:
            epochs = start.epochs if start else "?"
            parts.append(f"epoch {last.epoch:.2f}/{epochs}")
            parts.append(f"elapsed {_fmt_time(elapsed)}")
            if self.status == "running":
                parts.append(f"ETA {_fmt_time(eta)}")
            parts.append(f"{last.samples_per_s:,.1f} samples/s")
            if last.tokens_per_s:
                parts.append(f"{last.tokens_per_s:,.0f} tokens/s")
            parts.append(f"loss {last.loss:.4f}")
        self.progress.value = " &middot; ".join(parts)
        self.table.value = metrics_table_html(self.eval_rows, max_rows=6)
        now = time.monotonic()
        if now - self._t_memory >= self.memory_every or self.status != "running":
            self._t_memory = now
            self.memory.value = f"<span style='color:#666;font-size:12px'>{_memory_text()}</span>"

    # -- the static copy ------------------------------------------------------------------------

    def static_html(self) -> str:
        """The final chart (PNG) and evaluations table as one HTML fragment, escaped."""
        history = self.run.history if self.run is not None else None
        if history is None or history.empty:
            return ""
        png = training_png(history, title=self.name, epoch_steps=self.epoch_steps, x=self.x_axis)
        b64 = base64.b64encode(png).decode("ascii")
        return (f"<div class='nbkit-static'><img alt='training chart' src='data:image/png;base64,{b64}'/>"
                f"<div>{html.escape(self.status)} &middot; step {self.last.step if self.last else 0}</div>"
                f"{metrics_table_html(self.eval_rows, max_rows=12)}</div>")

    def _write_static_copy(self, event: RunEnd) -> bool:
        if self._static_handle is None:
            return False
        fragment = self.static_html()
        if fragment:
            from IPython.display import HTML

            self._static_handle.update(HTML(fragment))
        return bool(fragment)

    def _retire_chart(self) -> None:
        """Once the static copy is in the output, close the live chart: a plotly FigureWidget's state
        carries plotly.js (about 5 MB), which a notebook saved with widget state would keep per run.
        (`keep_chart=True` keeps it live; `nbkit.figures.training_figure(run.history)` redraws it.)"""
        self.widget.children = tuple(c for c in self.widget.children if c is not self.fig)
        self.fig.close()


def _route_clicks_to_the_front_ends_subshell(widget: Any) -> None:
    """Let Stop/Pause reach a kernel that is busy training in the cell.

    JupyterLab >= 4.4 sends widget messages on a kernel subshell, so they can be handled while a
    cell runs. ipykernel 7.4, though, re-routes a comm's incoming messages to the subshell that last
    published on it, which for the dashboard is the busy cell itself, so a click would wait for the
    run to end. Keep the subshell the front end chose. (A private hook; without it, as on older
    ipykernels, the buttons stay disabled and the dashboard shows the stop-square hint.)
    """
    comm = getattr(widget, "comm", None)
    if comm is not None and hasattr(comm, "_reply_subshell_for"):
        comm._reply_subshell_for = lambda data, default: default


def _arrays(series: BoundedSeries):
    """float32 numpy arrays: plotly sends them as base64 typed arrays (about 5 bytes a number)
    instead of ~18 characters of JSON text per float."""
    xs, ys = series.points()
    return np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32)


def _layout(x_axis: str = "step") -> dict[str, Any]:
    xaxis = {"title": {"text": "learning rate"}, "type": "log"} if x_axis == "lr" else {"title": {"text": "step"}}
    return {
        "height": 340,
        "margin": {"l": 55, "r": 55, "t": 10, "b": 35},
        "xaxis": xaxis,
        "yaxis": {"title": {"text": "loss"}},
        "yaxis2": {"title": {"text": "eval metric"}, "overlaying": "y", "side": "right", "showgrid": False},
        "yaxis3": {"overlaying": "y", "side": "right", "showticklabels": False, "showgrid": False},
        "legend": {"orientation": "h", "y": -0.18},
        "template": "plotly_white",
        "uirevision": "nbkit",  # keep the user's zoom across updates
    }
