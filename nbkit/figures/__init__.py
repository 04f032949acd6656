"""Plotly figures built from plain data (a run's history DataFrame, several runs' histories).

No widgets and no IPython here: the live dashboard, `Run.report()` and `nbkit.compare` all draw with
these functions, so a chart looks the same live, in a saved notebook and in `report.html`.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from nbkit.core.series import BoundedSeries, metric_range, smooth
from nbkit.core.text import format_value as _fmt

from .attention import attention_difference_heatmap, attention_heatmap

__all__ = ["attention_difference_heatmap", "attention_heatmap", "compare_figure", "compare_png", "ema", "figure_bundle", "metrics_table_html",
           "training_bundle", "training_figure", "training_png", "training_series"]

LOSS_COLOR = "#1f77b4"
EVAL_COLORS = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def ema(values: pd.Series, alpha: float = 0.1) -> pd.Series:
    """The training-loss smoothing, as a Series: `nbkit.core.series.smooth`, the same function the
    live dashboard applies step by step."""
    return pd.Series(smooth(values.to_numpy(), alpha), index=values.index)


MAX_POINTS = 400  # per curve in a saved figure: the same bound as the live chart


def _bounded(x, y, max_points: int, mode: str) -> tuple[list[float], list[float]]:
    series = BoundedSeries(max_points if mode == "mean" else max_points // 2, mode)
    for a, b in zip(x, y, strict=True):
        series.append(float(a), float(b))
    return series.points()


def training_series(history: pd.DataFrame, *, smoothing: float = 0.1, max_points: int = MAX_POINTS,
                    x: str = "step") -> dict[str, Any]:
    """What the training chart draws, from a run's history: the raw loss (min/max-bounded), the
    smoothed loss (bounded means), the learning rate and each eval column, and the metric axis range.
    The live dashboard builds the same series step by step with the same classes."""
    steps = history[history["loss"].notna()] if "loss" in history else history.iloc[0:0]
    out: dict[str, Any] = {"loss": ([], []), "smooth": ([], []), "lr": ([], []), "evals": {}}
    if len(steps):
        xs = steps[x].to_numpy()
        out["loss"] = _bounded(xs, steps["loss"].to_numpy(), max_points, "minmax")
        out["smooth"] = _bounded(xs, smooth(steps["loss"].to_numpy(), smoothing), max_points, "mean")
        if "lr" in steps:
            out["lr"] = _bounded(steps["step"].to_numpy(), steps["lr"].to_numpy(), max_points, "mean")
    for col in [c for c in history.columns if c.startswith("eval_")]:
        pts = history[history[col].notna()]
        out["evals"][col] = _bounded(pts["step"].to_numpy(), pts[col].to_numpy(), max_points, "mean")
    metric_values = [v for col, (_, ys) in out["evals"].items() if not col.endswith("loss") for v in ys]
    out["metric_range"] = metric_range(metric_values)
    return out


def training_figure(history: pd.DataFrame, *, title: str = "", smoothing: float = 0.1,
                    log_y: bool = False, show_lr: bool = False, epoch_steps: list[int] | None = None,
                    max_points: int = MAX_POINTS, data: dict[str, Any] | None = None,
                    x: str = "step") -> go.Figure:
    """Training loss (raw, faint; smoothed, solid) per step; eval metrics per evaluation on a
    second axis; optional learning rate; epoch boundaries as dotted lines. Each curve holds at most
    `max_points` points (min/max decimation keeps loss spikes), so a saved figure stays small."""
    data = data or training_series(history, smoothing=smoothing, max_points=max_points, x=x)
    fig = go.Figure()
    if data["loss"][0]:
        fig.add_trace(go.Scatter(x=data["loss"][0], y=data["loss"][1], mode="lines", name="train loss",
                                 line={"color": LOSS_COLOR, "width": 1}, opacity=0.3))
        fig.add_trace(go.Scatter(x=data["smooth"][0], y=data["smooth"][1], mode="lines",
                                 name="train loss (smoothed)", line={"color": LOSS_COLOR, "width": 2}))
    for i, (col, (xs, ys)) in enumerate(data["evals"].items()):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=html.escape(col),
                                 line={"color": EVAL_COLORS[i % len(EVAL_COLORS)]},
                                 yaxis="y" if col.endswith("loss") else "y2"))
    if show_lr and data["lr"][0]:
        fig.add_trace(go.Scatter(x=data["lr"][0], y=data["lr"][1], mode="lines", name="learning rate",
                                 line={"color": "#7f7f7f", "dash": "dot"}, yaxis="y3"))
    for s in epoch_steps or []:
        fig.add_vline(x=s, line={"color": "#bbbbbb", "dash": "dot", "width": 1})
    # "auto": own round ticks (0.45, 0.5, ...), not ticks synced to the loss axis' grid lines
    yaxis2: dict[str, Any] = {"title": {"text": "eval metric"}, "overlaying": "y", "side": "right",
                              "showgrid": False, "tickmode": "auto", "nticks": 6}
    if data["metric_range"]:
        yaxis2["range"] = list(data["metric_range"])
    layout: dict[str, Any] = {
        "title": {"text": html.escape(title), "x": 0, "xanchor": "left", "y": 0.98} if title else None,
        "xaxis": {"title": {"text": "learning rate"}, "type": "log"} if x == "lr" else {"title": {"text": "step"}},
        "yaxis": {"title": {"text": "loss"}, "type": "log" if log_y else "linear"},
        "yaxis2": yaxis2,
        # above the plot area, never over the curves
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"},
        "margin": {"l": 60, "r": 60, "t": (70 if title else 40) + 20 * (_legend_rows(fig) - 1), "b": 45},
        "height": 400 + 20 * (_legend_rows(fig) - 1),
        "template": "plotly_white",
    }
    if show_lr:
        layout["yaxis3"] = {"overlaying": "y", "side": "right", "showticklabels": False, "showgrid": False}
    fig.update_layout(**layout)
    return fig


def _legend_rows(fig: go.Figure, width: float = 640) -> int:
    """Rows a horizontal legend takes in a notebook-wide figure (~7 px a character, ~45 px per item
    for the swatch and gap): the top margin grows with them, so the legend never covers the title."""
    rows, used = 1, 0.0
    for trace in fig.data:
        w = 45 + 7 * len(trace.name or "")
        if used and used + w > width:
            rows, used = rows + 1, 0.0
        used += w
    return rows


def training_bundle(history: pd.DataFrame, *, title: str = "", epoch_steps: list[int] | None = None,
                    text: str | None = None, x: str = "step") -> dict[str, Any]:
    """The training chart as one display bundle: interactive plotly JSON (no widget state needed),
    a PNG of the same chart, and a one-line text/plain."""
    data = training_series(history, x=x)  # computed once, drawn twice
    fig = training_figure(history, title=title, epoch_steps=epoch_steps, data=data, x=x)
    png = training_png(history, title=title, epoch_steps=epoch_steps, x=x, data=data)
    if text is None:
        n = int(history["loss"].notna().sum()) if "loss" in history else 0
        text = f"training chart: {title or 'run'}, {n} steps"
    return figure_bundle(fig, png, text)


def _compare_series(histories: dict[str, pd.DataFrame], metric: str):
    """(index, run name, steps, values) per run that has `metric`; training loss is smoothed.
    The one selection both the interactive figure and the PNG draw."""
    for i, (name, hist) in enumerate(histories.items()):
        if metric in hist:
            pts = hist[hist[metric].notna()]
            yield i, name, pts["step"], ema(pts[metric]) if metric == "loss" else pts[metric]


def compare_figure(histories: dict[str, pd.DataFrame], metric: str = "eval_loss") -> go.Figure:
    """One line per run for `metric` (a column of the histories, e.g. eval_loss or loss)."""
    fig = go.Figure()
    for i, name, x, y in _compare_series(histories, metric):
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines" if metric == "loss" else "lines+markers",
                                 name=html.escape(name), line={"color": EVAL_COLORS[i % len(EVAL_COLORS)]}))
    fig.update_layout(xaxis_title="step", yaxis_title=metric, template="plotly_white", height=380,
                      legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
                      margin={"t": 40})
    return fig


def metrics_table_html(rows: list[dict[str, Any]], max_rows: int = 12) -> str:
    """A compact HTML table of evaluations (the last `max_rows`); every cell escaped."""
    if not rows:
        return "<p><i>no evaluations yet</i></p>"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for r in rows[-max_rows:]:
        cells = "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols)
        body.append(f"<tr>{cells}</tr>")
    return (f"<table class='nbkit-metrics' style='border-collapse:collapse;font-size:12px'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _mpl_figure(width: float, height: float, dpi: int):
    # A bare Figure, not pyplot: no global state, safe from a thread, and the kernel's plotting
    # backend (inline) stays as the user set it; savefig renders PNG with Agg by itself.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)


def compare_png(histories: dict[str, pd.DataFrame], metric: str = "eval_loss", *, width: float = 8.0,
                height: float = 3.4, dpi: int = 100) -> bytes:
    """The comparison chart as a PNG, for viewers without plotly (GitHub, nbviewer)."""
    fig = _mpl_figure(width, height, dpi)
    ax = fig.add_subplot()
    for i, name, x, y in _compare_series(histories, metric):
        ax.plot(x, y, "-" if metric == "loss" else "o-", ms=3, label=name.replace("$", r"\$"),
                color=EVAL_COLORS[i % len(EVAL_COLORS)])
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4, frameon=False, borderaxespad=0.2)
    fig.tight_layout()
    return _png(fig)


def figure_bundle(fig: go.Figure, png: bytes, text: str) -> dict[str, Any]:
    """A display bundle: the interactive plotly figure for JupyterLab (plotly's mime renderer), a
    PNG for viewers without it, and text."""
    import base64

    return {"application/vnd.plotly.v1+json": fig.to_plotly_json(),
            "image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}


def training_png(history: pd.DataFrame, *, title: str = "", epoch_steps: list[int] | None = None,
                 log_y: bool = False, width: float = 8.0, height: float = 3.6, dpi: int = 100,
                 x: str = "step", max_points: int = MAX_POINTS, data: dict[str, Any] | None = None) -> bytes:
    """The final chart as a PNG (matplotlib, no browser needed): what a saved notebook shows on
    GitHub, nbviewer and in LaTeX/PDF, where no kernel draws the live chart. Same series, same
    smoothing and same metric range as the interactive figure."""
    data = data or training_series(history, max_points=max_points, x=x)
    fig = _mpl_figure(width, height, dpi)
    ax = fig.add_subplot()
    if data["loss"][0]:
        ax.plot(*data["loss"], color=LOSS_COLOR, alpha=0.3, lw=1, label="train loss")
        ax.plot(*data["smooth"], color=LOSS_COLOR, lw=2, label="train loss (smoothed)")
    ax2 = None
    for i, (col, (xs, ys)) in enumerate(data["evals"].items()):
        color = EVAL_COLORS[i % len(EVAL_COLORS)]
        if col.endswith("loss"):
            ax.plot(xs, ys, "o-", color=color, ms=3, label=col)
        else:
            ax2 = ax2 or ax.twinx()
            ax2.plot(xs, ys, "o-", color=color, ms=3, label=col)
    for s in epoch_steps or []:
        ax.axvline(s, color="#bbbbbb", ls=":", lw=1)
    if log_y:
        ax.set_yscale("log")
    if x == "lr":
        ax.set_xscale("log")
    ax.set_xlabel("learning rate" if x == "lr" else "step")
    ax.set_ylabel("loss")
    if ax2 is not None:
        ax2.set_ylabel("eval metric")
        if data["metric_range"]:
            ax2.set_ylim(*data["metric_range"])
        from matplotlib.ticker import MaxNLocator

        ax2.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))  # round ticks
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if title:
        ax.set_title(title.replace("$", r"\$"), fontsize=10, loc="left", pad=22 if handles else 6)
    if handles:
        # above the plot area, never over the curves
        ax.legend(handles, [lb.replace("$", r"\$") for lb in labels], fontsize=8, loc="lower left",
                  bbox_to_anchor=(0, 1.0), ncol=min(len(handles), 4), frameon=False, borderaxespad=0.2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def lr_find_figure(result: Any) -> go.Figure:
    """The learning-rate range test's curve (log-scale rate), with the suggested rate marked."""
    fig = go.Figure([
        go.Scatter(x=result.lrs, y=result.losses, mode="lines", name="loss", opacity=0.35),
        go.Scatter(x=result.lrs, y=result.smoothed, mode="lines", name="loss (smoothed)"),
    ])
    if result.suggestion:
        fig.add_vline(x=result.suggestion, line={"dash": "dash", "color": "#d62728"},
                      annotation_text=f"suggested {result.suggestion:.2e}")
    fig.update_layout(xaxis={"type": "log", "title": {"text": "learning rate"}},
                      yaxis={"title": {"text": "loss"}}, template="plotly_white", height=340)
    return fig
