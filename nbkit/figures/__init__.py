"""Plotly figures built from plain data (a run's history DataFrame, several runs' histories).

No widgets and no IPython here: the live dashboard, `Run.report()` and `nbkit.compare` all draw with
these functions, so a chart looks the same live, in a saved notebook and in `report.html`.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from .attention import attention_heatmap

__all__ = ["attention_heatmap", "compare_figure", "compare_png", "ema", "figure_bundle", "metrics_table_html", "training_figure", "training_png"]

LOSS_COLOR = "#1f77b4"
EVAL_COLORS = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def ema(values: pd.Series, alpha: float = 0.1) -> pd.Series:
    """Exponential moving average with bias correction, so the first points are not pulled to 0."""
    return values.ewm(alpha=alpha, adjust=True).mean()


def training_figure(history: pd.DataFrame, *, title: str = "", smoothing: float = 0.1,
                    log_y: bool = False, show_lr: bool = False, epoch_steps: list[int] | None = None) -> go.Figure:
    """Training loss (raw, faint; smoothed, solid) per step; eval metrics per evaluation on a
    second axis; optional learning rate; epoch boundaries as dotted lines."""
    fig = go.Figure()
    steps = history[history["loss"].notna()] if "loss" in history else history.iloc[0:0]
    if len(steps):
        fig.add_trace(go.Scattergl(x=steps["step"], y=steps["loss"], mode="lines", name="train loss",
                                   line={"color": LOSS_COLOR, "width": 1}, opacity=0.3))
        fig.add_trace(go.Scattergl(x=steps["step"], y=ema(steps["loss"], smoothing), mode="lines",
                                   name="train loss (smoothed)", line={"color": LOSS_COLOR, "width": 2}))
    evals = [c for c in history.columns if c.startswith("eval_")]
    for i, col in enumerate(evals):
        pts = history[history[col].notna()]
        on_loss_axis = col.endswith("loss")
        fig.add_trace(go.Scatter(x=pts["step"], y=pts[col], mode="lines+markers", name=col,
                                 line={"color": EVAL_COLORS[i % len(EVAL_COLORS)]},
                                 yaxis="y" if on_loss_axis else "y2"))
    if show_lr and "lr" in history:
        fig.add_trace(go.Scatter(x=steps["step"], y=steps["lr"], mode="lines", name="learning rate",
                                 line={"color": "#7f7f7f", "dash": "dot"}, yaxis="y3"))
    for s in epoch_steps or []:
        fig.add_vline(x=s, line={"color": "#bbbbbb", "dash": "dot", "width": 1})
    layout: dict[str, Any] = {
        "title": {"text": html.escape(title)} if title else None,
        "xaxis": {"title": {"text": "step"}},
        "yaxis": {"title": {"text": "loss"}, "type": "log" if log_y else "linear"},
        "yaxis2": {"title": {"text": "eval metric"}, "overlaying": "y", "side": "right", "showgrid": False},
        "legend": {"orientation": "h", "y": -0.2},
        "margin": {"l": 60, "r": 60, "t": 40 if title else 20, "b": 40},
        "height": 380,
        "template": "plotly_white",
    }
    if show_lr:
        layout["yaxis3"] = {"overlaying": "y", "side": "right", "showticklabels": False, "showgrid": False}
    fig.update_layout(**layout)
    return fig


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
                      legend={"orientation": "h", "y": -0.2})
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


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


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
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def figure_bundle(fig: go.Figure, png: bytes, text: str) -> dict[str, Any]:
    """A display bundle: the interactive plotly figure for JupyterLab (plotly's mime renderer), a
    PNG for viewers without it, and text."""
    import base64

    return {"application/vnd.plotly.v1+json": fig.to_plotly_json(),
            "image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}


def training_png(history: pd.DataFrame, *, title: str = "", epoch_steps: list[int] | None = None,
                 log_y: bool = False, width: float = 8.0, height: float = 3.4, dpi: int = 100,
                 x: str = "step") -> bytes:
    """The final chart as a PNG (matplotlib, no browser needed): what a saved notebook shows on
    GitHub or nbviewer, where no kernel draws the live widget."""
    fig = _mpl_figure(width, height, dpi)
    ax = fig.add_subplot()
    steps = history[history["loss"].notna()] if "loss" in history else history.iloc[0:0]
    if len(steps):
        ax.plot(steps[x], steps["loss"], color=LOSS_COLOR, alpha=0.3, lw=1, label="train loss")
        ax.plot(steps[x], ema(steps["loss"]), color=LOSS_COLOR, lw=2, label="train loss (smoothed)")
    evals = [c for c in history.columns if c.startswith("eval_")]
    ax2 = None
    for i, col in enumerate(evals):
        pts = history[history[col].notna()]
        color = EVAL_COLORS[i % len(EVAL_COLORS)]
        if col.endswith("loss"):
            ax.plot(pts["step"], pts[col], "o-", color=color, ms=3, label=col)
        else:
            ax2 = ax2 or ax.twinx()
            ax2.plot(pts["step"], pts[col], "o-", color=color, ms=3, label=col)
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
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper right", framealpha=0.8)
    if title:
        ax.set_title(title.replace("$", r"\$"), fontsize=10)  # "$...$" would otherwise be mathtext
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
