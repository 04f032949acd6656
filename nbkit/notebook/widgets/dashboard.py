"""The live training dashboard: one small widget (title, Stop / Pause, an SVG chart drawn by our own
JavaScript, progress, evaluations table, memory) that observes the engine's events (`fn(event, run)`)
and never drives training itself: its buttons only call `run.stop()` / `run.pause()`.

Cost: a step costs a few appends to bounded series (`nbkit.core.series`) and a clock read; the page
gets at most `max_points` float32 points per curve, at most once per `min_interval` seconds. No
plotly is imported while training runs (plotly's widget pulls nbformat and jsonschema, seconds of
imports before the first point), so the first chart is drawn as soon as the first step ends.

When the run ends, the live widget's output is replaced by the result a person keeps: an interactive
plotly figure that needs no widget state (`application/vnd.plotly.v1+json`) with a PNG of the same
chart and a one-line text/plain, then one output with the status line (checkpoints, run directory
size) and the metrics table. The widget is closed, so a saved notebook carries no state for it.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from nbkit.core.llm.samples import describe_samples
from nbkit.core.series import BoundedSeries, MovingAverage, metric_range
from nbkit.core.text import format_value as _fmt
from nbkit.core.train.events import (
    CheckpointSaved,
    EpochEnd,
    EvalEnd,
    RunEnd,
    RunStart,
    Samples,
    StepEnd,
    TrainEnd,
)
from nbkit.notebook.widgets.kernel_status import KernelBusy

STATIC = Path(__file__).parent / "static"
# Same colours as nbkit.figures (not imported here: it loads plotly, which the live view never needs).
LOSS_COLOR = "#1f77b4"
EVAL_COLORS = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
# A front end that cannot deliver widget messages to a busy kernel never answers; after this long
# the controls say so instead of offering buttons that do nothing.
LIVE_TIMEOUT_S = 4.0
BUDGET = 0.01  # at most this fraction of the kernel's time goes to redrawing the live view ...
MAX_GAP = 2.0  # ... but a busy machine still sees it move: at least one redraw every 2 seconds
HINT_BLOCKED = ("Buttons can't reach the kernel while this cell runs here: use the stop square \u25a0 "
                "(Kernel \u2192 Interrupt; it stops at a step boundary) or fit(..., background=True).")


class DashboardView(anywidget.AnyWidget):
    _esm = STATIC / "dashboard.js"
    _css = STATIC / "dashboard.css"
    title = t.Unicode("").tag(sync=True)
    subtitle = t.Unicode("").tag(sync=True)
    status = t.Unicode("waiting").tag(sync=True)
    progress = t.Dict().tag(sync=True)  # {"fraction": 0..1, "text": "step 3/40 · ..."}
    chart = t.Dict().tag(sync=True)  # {"series": [{name, color, axis, x: bytes, y: bytes}], "epochs", ...}
    table = t.Dict().tag(sync=True)  # {"columns": [...], "rows": [[str, ...], ...]}
    memory = t.Unicode("").tag(sync=True)
    live = t.Bool(False).tag(sync=True)
    done = t.Bool(False).tag(sync=True)
    paused = t.Bool(False).tag(sync=True)
    log_y = t.Bool(False).tag(sync=True)
    show_lr = t.Bool(False).tag(sync=True)
    hint = t.Unicode("").tag(sync=True)
    # LLM runs: {"prompts", "references", "base", "steps": [..], "answers": [[..] per step]} (text only)
    samples = t.Dict().tag(sync=True)

    def __repr__(self) -> str:  # what a front end without widgets shows while the run is live
        return f"nbkit dashboard: {self.title} ({self.status})"


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
        return (f"{d.device}: allocated {human_bytes(d.allocated_bytes or 0)}, reserved "
                f"{human_bytes(d.reserved_bytes or 0)}, peak {human_bytes(d.peak_allocated_bytes or 0)}")
    return f"CPU: process RSS {human_bytes(report.process_rss_bytes or 0)}"


def table_spec(rows: list[dict[str, Any]], max_rows: int = 6) -> dict[str, Any]:
    """Evaluations as columns + rows of strings (the page puts them in with textContent)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return {"columns": cols, "rows": [[_fmt(r.get(c)) for c in cols] for r in rows[-max_rows:]]}


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
        self.average = MovingAverage(0.1)
        self.evals: dict[str, BoundedSeries] = {}
        self.eval_rows: list[dict[str, Any]] = []
        self.epoch_steps: list[int] = []
        self.checkpoints: dict[str, str] = {}  # "best" / "last" -> path, from CheckpointSaved
        self.samples: list[Samples] = []  # an LLM run's answers, one event per evaluation
        self.start: RunStart | None = None
        self.last: StepEnd | None = None
        self._steps: list[StepEnd] = []  # steps whose values the loop has not read from the device yet
        self.end: RunEnd | None = None
        self.status = "waiting"
        self.phase = ""
        self.name = ""
        self.run_dir: str | None = None
        self._t_flush = 0.0
        self._gap = min_interval  # seconds between redraws: min_interval, or more on a slow kernel
        self._t_memory = 0.0
        self._t_ping = 0.0
        self._t_shown: float | None = None
        self.t_first_chart: float | None = None  # monotonic time of the first flush with points
        self._ping = 0
        self.updates = 0  # flushes sent to the browser (tests and benchmarks read it)
        self._chart_handle = None
        self._summary_handle = None
        self._busy = None  # the kernel-status keeper while a blocking cell trains
        self.run = None
        self.result: dict[str, Any] | None = None  # the final bundles (tests read them)
        self.view = DashboardView()
        self.view.on_msg(self._on_msg)
        _route_clicks_to_the_front_ends_subshell(self.view)
        self.controls = self.view  # older name, kept for callers that poke the controls
        if run is not None:
            run.subscribe(self)

    # -- display --------------------------------------------------------------------------------

    def show(self) -> Dashboard:
        from IPython.display import display

        # Two outputs we can rewrite later from any thread (background runs too): the live widget,
        # replaced by the final chart, and the summary (status line and table), empty until then.
        self._chart_handle = display(self.view, display_id=True)
        self._summary_handle = display({"text/plain": ""}, raw=True, display_id=True)
        self._t_shown = time.monotonic()
        if self._busy is None and threading.current_thread() is threading.main_thread():
            # from now until this cell's own "idle": the view's hello and clicks arrive on a subshell
            self._busy = KernelBusy.start()
        return self

    def _ipython_display_(self) -> None:
        self.show()

    # -- events ---------------------------------------------------------------------------------

    def _take_steps(self) -> None:
        steps, self._steps = self._steps, []
        for event in steps:
            loss = event.loss
            x = event.step if self.x_axis == "step" else event.lr
            self.loss.append(x, loss)
            self.smooth.append(x, self.average.update(loss))
            self.lr.append(event.step, event.lr)

    def __call__(self, event: Any, run: Any) -> None:
        if type(event) is StepEnd:  # the hot path: an append, and a clock read when values are in
            self.last = event
            self._steps.append(event)
            # Values still on the device wait for the loop's bulk read (a few a second): the view
            # never forces a device sync, except once for the very first point a person waits for.
            if not (event.ready or self.t_first_chart is None):
                return
            self._take_steps()
            if time.monotonic() - self._t_flush >= self._gap or self.t_first_chart is None:
                self.run = run
                self.flush()
            return
        self._take_steps()
        self.run = run
        if isinstance(event, RunStart):
            self.start, self.name, self.status, self.run_dir = event, event.name, "running", event.run_dir
            self.end, self.phase = None, ""
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
            self.view.title = event.name
            self.view.subtitle = f"{event.run_dir} \u00b7 " + " \u00b7 ".join(setup)
            if self._busy is None and threading.current_thread() is threading.main_thread():
                self._busy = KernelBusy.start()  # a blocking cell: keep the kernel reading busy
        elif isinstance(event, EvalEnd):
            self.eval_rows.append({"step": event.step, **event.metrics})
            for key, value in event.metrics.items():
                if key.startswith(("eval_", "test_")):
                    self.evals.setdefault(key, BoundedSeries(self.max_points, "mean")).append(event.step, value)
        elif isinstance(event, EpochEnd):
            self.epoch_steps.append(event.step)
        elif isinstance(event, CheckpointSaved):
            self.checkpoints["best" if event.best else "last"] = event.path
            if event.best:
                self.checkpoints.setdefault("last", event.path)
        elif isinstance(event, TrainEnd):
            self.phase = event.doing
        elif isinstance(event, Samples):
            self.samples.append(event)
            self.view.samples = samples_spec(self.samples)
        elif isinstance(event, RunEnd):
            self._finish(event, run)
            return
        self.flush()

    def _finish(self, event: RunEnd, run: Any) -> None:
        self.end, self.status, self.phase = event, event.status, ""
        self.view.done = True
        self.view.hint = ""
        try:
            self.flush()
            if self._write_result(run) and not self.keep_chart:
                self.view.close()
        finally:
            if self._busy is not None:
                self._busy.stop()
                self._busy = None
            # ipywidgets keeps every widget alive for the kernel's life; don't let ours keep the run
            # (and through it the model) alive too.
            self.run = None

    # -- controls -------------------------------------------------------------------------------

    def _on_msg(self, widget: Any, content: dict, buffers: list) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "pong":
            self.view.live, self.view.hint = True, ""
            return
        if action in ("log_y", "show_lr"):
            setattr(self.view, action, bool(content.get("value")))
            return
        run = self.run
        if run is None:
            return
        try:
            self._act(run, action)
        except NotImplementedError as exc:  # e.g. pause on a multi-process run: say so, don't crash
            self.view.hint = str(exc)

    def _act(self, run: Any, action: str | None) -> None:
        if action == "stop":
            run.stop("stopped from the dashboard")
            self.view.hint = f"stopping after this step; a checkpoint goes to {self.run_dir or 'the run directory'}"
        elif action == "pause":
            run.pause()
        elif action == "resume":
            run.resume()
        elif action == "stop_after_epoch":
            run.stop_after_epoch()
            self.view.hint = "will stop at the end of this epoch"
        self.view.paused = getattr(run, "status", "") == "paused"

    def _check_live(self) -> None:
        v = self.view
        if v.live or self.status != "running":
            return
        now = time.monotonic()
        if now - self._t_ping < 1.0:  # a view that exists answers the first ping; don't flood one that doesn't
            return
        self._t_ping = now
        self._ping += 1
        v.send({"type": "ping", "id": self._ping})
        if self._t_shown is not None and time.monotonic() - self._t_shown > LIVE_TIMEOUT_S:
            v.hint = HINT_BLOCKED

    # -- drawing --------------------------------------------------------------------------------

    def chart_spec(self) -> dict[str, Any]:
        """The bounded series as the page draws them (float32 buffers, about 4 bytes a number)."""
        def trace(name, series, color, axis, **style):
            xs, ys = series.points()
            return {"name": name, "color": color, "axis": axis, **style,
                    "x": np.asarray(xs, dtype=np.float32).tobytes(),
                    "y": np.asarray(ys, dtype=np.float32).tobytes()}

        traces = [trace("train loss", self.loss, LOSS_COLOR, "y", opacity=0.3, width=1),
                  trace("train loss (smoothed)", self.smooth, LOSS_COLOR, "y", width=2),
                  trace("learning rate", self.lr, "#7f7f7f", "lr", dash=True, width=1)]
        metric_values: list[float] = []
        for i, (key, series) in enumerate(self.evals.items()):
            axis = "y" if key.endswith("loss") else "y2"
            traces.append(trace(key, series, EVAL_COLORS[i % len(EVAL_COLORS)], axis, markers=True, width=1.5))
            if axis == "y2":
                metric_values += series.points()[1]
        return {"series": traces, "epochs": self.epoch_steps[-100:], "y2range": metric_range(metric_values),
                "xlabel": "learning rate" if self.x_axis == "lr" else "step", "xlog": self.x_axis == "lr"}

    def flush(self) -> None:
        """Send the current (bounded) state to the browser.

        A redraw costs a few milliseconds of kernel time (most of it the kernel's own message
        signing and sending); redraws are spaced so they take at most ~1% of the time
        (`BUDGET`): every `min_interval` seconds, or less often on a slow kernel, but at least
        every `MAX_GAP` seconds, so a person on a loaded machine still sees the run move."""
        t0 = time.monotonic()
        self.updates += 1
        v = self.view
        with v.hold_sync():
            v.chart = self.chart_spec()
            self._update_text()
        self._check_live()
        now = time.monotonic()
        if self.t_first_chart is None and self.loss.n:
            self.t_first_chart = now
        self._t_flush = now
        if self.min_interval > 0:  # 0: every step (tests, benchmarks of a single update)
            self._gap = min(max(self.min_interval, (now - t0) / BUDGET), max(MAX_GAP, self.min_interval))

    def progress_text(self) -> str:
        start, last = self.start, self.last
        total = start.total_steps if start else 0
        step = last.step if last else (start.start_step if start else 0)
        elapsed = last.elapsed if last else 0.0
        done_here = step - (start.start_step if start else 0)
        eta = elapsed / done_here * (total - step) if done_here > 0 else None
        parts = [f"step {step}/{total}"]
        if last is not None:
            parts.append(f"epoch {last.epoch:.2f}/{start.epochs if start else '?'}")
            parts.append(f"elapsed {_fmt_time(elapsed)}")
            if self.status == "running" and not self.phase:
                parts.append(f"ETA {_fmt_time(eta)}")
            parts.append(f"{last.samples_per_s:,.1f} samples/s")
            if last.tokens_per_s:
                parts.append(f"{last.tokens_per_s:,.0f} tokens/s")
            parts.append(f"loss {last.loss:.4f}")
        return " \u00b7 ".join(parts)

    def _update_text(self) -> None:
        v, start, last = self.view, self.start, self.last
        total = start.total_steps if start else 0
        step = last.step if last else 0
        v.status = f"{self.phase}\u2026" if self.phase and self.status == "running" else self.status
        v.progress = {"fraction": step / total if total else 0.0, "text": self.progress_text()}
        v.table = table_spec(self.eval_rows)
        now = time.monotonic()
        if now - self._t_memory >= self.memory_every or self.status != "running":
            self._t_memory = now
            v.memory = _memory_text()

    # -- the result a person keeps --------------------------------------------------------------

    def status_line(self, run: Any = None) -> str:
        """One line: how the run ended, where its best and last checkpoints are, how big it is."""
        from nbkit.core.models import human_bytes
        from nbkit.core.runs import dir_size

        end = self.end
        step = end.step if end else (self.last.step if self.last else 0)
        parts = [f"{self.name or 'run'} {self.status} at step {step}"]
        if end is not None and end.message and self.status != "finished":
            parts[0] += f" ({end.message})"
        best = _path_or_none(getattr(run, "best_checkpoint", None)) or self.checkpoints.get("best")
        last = _path_or_none(getattr(run, "last_checkpoint", None)) or self.checkpoints.get("last")
        if best and last and Path(best) == Path(last):
            parts.append(f"best and last checkpoint: {best}")
        else:
            if best:
                parts.append(f"best checkpoint: {best}")
            if last:
                parts.append(f"last checkpoint: {last}")
        if not best and not last:
            parts.append("no checkpoint saved")
        run_dir = getattr(run, "run_dir", None) or self.run_dir
        if run_dir and Path(run_dir).exists():
            parts.append(f"run directory {run_dir} ({human_bytes(dir_size(run_dir))})")
        return " \u00b7 ".join(parts)

    def summary_bundle(self, run: Any = None) -> dict[str, Any]:
        """The status line and the metrics table: escaped, styled HTML and a plain-text twin."""
        from nbkit.figures import metrics_table_html

        line = self.status_line(run)
        color = {"finished": "#2ca02c", "stopped": "#b35900", "failed": "#d62728"}.get(self.status, "#333")
        table = metrics_table_html(self.eval_rows, max_rows=12) if self.eval_rows else ""
        table += samples_html(self.samples)
        head = f"{self.name or 'run'} "
        marked = (f"{html.escape(head)}<span class='nbkit-status'>{html.escape(self.status)}</span>"
                  f"{html.escape(line[len(head) + len(self.status):])}" if line.startswith(head + self.status)
                  else html.escape(line))
        html_out = (f"<div class='nbkit-summary' style='font-size:13px'>"
                    f"<div style='color:{color};margin:2px 0 6px 0'>{marked}</div>{table}</div>")
        text = line
        if self.eval_rows:
            spec = table_spec(self.eval_rows, max_rows=12)
            widths = [max(len(c), *(len(r[i]) for r in spec["rows"])) for i, c in enumerate(spec["columns"])]
            rows = [spec["columns"], *spec["rows"]]
            text += "\n" + "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)
        if self.samples:
            text += "\n" + describe_samples(self.samples[-1])
        return {"text/html": html_out, "text/plain": text}

    def chart_bundle(self, run: Any) -> dict[str, Any] | None:
        history = getattr(run, "history", None)
        if history is None or history.empty or "loss" not in history or history["loss"].notna().sum() == 0:
            return None
        from nbkit.figures import training_bundle

        steps = int(history["loss"].notna().sum())
        text = f"nbkit training chart: {self.name} ({self.status}, {steps} steps)"
        return training_bundle(history, title=self.name, epoch_steps=self.epoch_steps, x=self.x_axis, text=text)

    def _write_result(self, run: Any) -> bool:
        if self._chart_handle is None:
            return False
        chart = self.chart_bundle(run)
        summary = self.summary_bundle(run)
        self.result = {"chart": chart, "summary": summary}
        # The summary first: it is small HTML, while the chart's update replaces the live widget with
        # plotly's renderer; a front end busy with that one must not hold up (or drop) the other.
        self._summary_handle.update(summary, raw=True)
        if not self.keep_chart:
            self._chart_handle.update(chart or {"text/plain": f"nbkit: {self.name} {self.status}, no steps logged"},
                                      raw=True)
        return True


MAX_SAMPLE_ROUNDS = 50  # evaluations whose answers the live view keeps (the file keeps all)


def samples_spec(rounds: list[Samples]) -> dict[str, Any]:
    """The answers panel's state: the prompts once, the base answers once, the tuned answers per
    evaluation (the latest MAX_SAMPLE_ROUNDS). Plain strings: the page shows them as text."""
    if not rounds:
        return {}
    last = rounds[-1]
    base = next((r.base for r in reversed(rounds) if r.base is not None), None)
    kept = rounds[-MAX_SAMPLE_ROUNDS:]
    return {"prompts": list(last.prompts), "references": list(last.references or [None] * len(last.prompts)),
            "base": list(base) if base is not None else None,
            "steps": [r.step for r in kept], "answers": [list(r.answers) for r in kept]}


def samples_html(rounds: list[Samples], open_last: bool = True) -> str:
    """The answers panel as static, escaped HTML for the saved notebook: the latest evaluation
    open, the earlier ones folded (<details>, no script needed)."""
    from nbkit.core.llm.generate import normalize

    if not rounds:
        return ""
    e = html.escape
    cell = "text-align:left;vertical-align:top;white-space:pre-wrap;padding:2px 8px"  # notebooks right-align cells
    parts = ["<div class='nbkit-samples-static' style='margin-top:8px'>"]
    for i, r in enumerate(reversed(rounds)):
        refs = r.references or [None] * len(r.prompts)
        has_ref = any(x is not None for x in refs)
        names = ["prompt", *(["reference"] if has_ref else []), *(["base"] if r.base is not None else []),
                 f"step {r.step}"]
        head = "<tr>" + "".join(f"<th style='{cell}'>{e(n)}</th>" for n in names) + "</tr>"
        rows = []
        for j, prompt in enumerate(r.prompts):
            cells = [prompt] + ([refs[j] or ""] if has_ref else []) + ([r.base[j]] if r.base is not None else [])
            answer = r.answers[j]
            hit = refs[j] is not None and normalize(answer) == normalize(str(refs[j]))
            mark = ";color:#2ca02c' title='equals the reference" if hit else ""
            rows.append("<tr>" + "".join(f"<td style='{cell}'>{e(c)}</td>" for c in cells)
                        + f"<td style='{cell}{mark}'>{e(answer)}</td></tr>")
        label = f"Answers at step {r.step}" + (" (latest)" if i == 0 else "")
        style = "border-collapse:collapse;font-size:12px"
        parts.append(f"<details{' open' if i == 0 and open_last else ''}><summary>{e(label)}</summary>"
                     f"<table class='nbkit-metrics' style='{style}'>{head}{''.join(rows)}</table></details>")
    parts.append("</div>")
    return "".join(parts)


def _path_or_none(p: Any) -> str | None:
    return str(p) if p else None


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
