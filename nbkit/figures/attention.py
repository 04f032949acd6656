"""A static plotly heatmap of one attention map, for export (HTML, PNG, a saved notebook).

Re-exported as `nbkit.figures.attention_heatmap` and `attention_difference_heatmap`. They read an
`Attention` (nbkit.core.attention) or an `AttentionComparison` (nbkit.core.attention_compare) and build
a plain `go.Figure`: no widgets, no IPython. Token text is HTML-escaped, because plotly reads a few HTML
tags in labels. Causal maps leave the masked upper triangle blank (no value, not a zero weight), and a
capture with a generated answer has a line where the answer starts.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from nbkit.core.attention import color_max

if TYPE_CHECKING:
    from nbkit.core.attention import Attention
    from nbkit.core.attention_compare import AttentionComparison

__all__ = ["attention_difference_heatmap", "attention_heatmap"]
MASKED = "#e6e6e6"  # the causal mask's future cells


def shown(token: str) -> str:
    """A token as the views print it: line breaks and tabs as visible marks (same as nbkShow in JS)."""
    return token.replace("\n", "↵").replace("\t", "⇥")


def _label(token: str, width: int = 16) -> str:
    token = shown(token)
    text = token if len(token) <= width else token[: width - 1] + "…"
    return html.escape(text)


def _masked(attention: Attention, kind: str, weights: np.ndarray) -> np.ndarray:
    """Causal maps with the future (upper triangle) as NaN: drawn as 'masked', not as weight 0."""
    if not attention.causal or kind not in ("self", "decoder") or weights.shape[0] != weights.shape[1]:
        return weights
    out = weights.astype(np.float64)  # (T, T)
    out[np.triu_indices(out.shape[0], k=1)] = np.nan
    return out


def _answer_lines(attention: Attention, kind: str) -> list[dict]:
    p = attention.prompt_length
    if p is None or kind not in ("self", "decoder"):
        return []
    line = {"type": "line", "line": {"color": "#e6550d", "width": 1.5, "dash": "dot"}, "layer": "above"}
    return [{**line, "xref": "x", "yref": "paper", "x0": p - 0.5, "x1": p - 0.5, "y0": 0, "y1": 1},
            {**line, "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": p - 0.5, "y1": p - 0.5}]


def attention_heatmap(
    attention: Attention,
    layer: int | None = 0,
    head: int | None = 0,
    *,
    kind: str | None = None,
    colorscale: str = "Blues",
) -> go.Figure:
    """Heatmap of one map: rows are query tokens, columns key tokens. `layer`/`head` None averages.

    Axes are numeric positions labelled with the tokens, so repeated tokens ("the", "the") keep
    their own rows; hovering shows both tokens and the weight.
    """
    kind = attention.check_kind(kind)
    weights = attention.map(layer, head, kind)  # (Tq, Tk)
    where = (
        "mean of layers"
        if layer is None
        else f"layer {attention.layers[attention.layer_position(layer)]}"
    )
    which = "mean of heads" if head is None else f"head {attention.check_head(head)}"
    sink = attention.causal and kind in ("self", "decoder")
    scale = {"colorscale": colorscale, "zmin": 0, "colorbar": {"title": {"text": "weight"}}}
    if sink and weights.shape[-1] > 2:  # the first token's column saturates (an attention sink)
        scale.update(zmax=color_max(weights, True),
                     colorbar={"title": {"text": "weight (first token saturates)"}})
    return _heatmap(attention, kind, _masked(attention, kind, weights), f"{kind} attention · {where} · {which}",
                    scale)


def attention_difference_heatmap(
    comparison: AttentionComparison,
    layer: int | None | str = "most changed",
    head: int | None | str = "most changed",
    *,
    kind: str | None = None,
) -> go.Figure:
    """Heatmap of tuned minus base for one map, on a diverging scale centred on 0 (red: the tuned model
    attends more, blue: less). By default the head whose attention changed most; None averages."""
    kind = comparison.tuned.check_kind(kind)
    if layer == "most changed" or head == "most changed":
        best_layer, best_head = comparison.most_changed(kind)
        layer = best_layer if layer == "most changed" else layer
        head = best_head if head == "most changed" else head
    a = comparison.tuned
    diff = comparison.map(layer, head, kind)  # (Tq, Tk)
    top = float(np.abs(diff).max()) or 1e-9
    where = "mean of layers" if layer is None else f"layer {a.layers[a.layer_position(layer)]}"
    which = "mean of heads" if head is None else f"head {a.check_head(head)}"
    change = comparison.change(kind)  # (L, H)
    score = ""
    if layer is not None and head is not None:
        score = f" · change {change[a.layer_position(layer), a.check_head(head)]:.3f}"
    names = comparison.names
    return _heatmap(a, kind, _masked(a, kind, diff), f"{names[0]} − {names[1]} · {where} · {which}{score}",
                    {"colorscale": "RdBu", "reversescale": True, "zmid": 0, "zmin": -top, "zmax": top,
                     "colorbar": {"title": {"text": f"{names[0]} − {names[1]}"}}, "_hover": "difference"})


def _heatmap(attention: Attention, kind: str, weights: np.ndarray, what: str, scale: dict) -> go.Figure:
    tok_q, tok_k = attention.tokens_for(kind)
    tq, tk = weights.shape
    step_q, step_k = max(1, tq // 64), max(1, tk // 64)  # at most ~64 tick labels per axis
    scale = dict(scale)
    value = scale.pop("_hover", "weight")
    fig = go.Figure(
        go.Heatmap(
            z=weights,
            **scale,
            customdata=None
            if tq * tk > 40_000
            else [[[_label(a, 40), _label(b, 40)] for b in tok_k] for a in tok_q],
            hovertemplate=(
                "query %{y}: %{customdata[0]}<br>key %{x}: %{customdata[1]}<br>"
                f"{value} %{{z:.4f}}<extra></extra>"
            )
            if tq * tk <= 40_000
            else f"query %{{y}}<br>key %{{x}}<br>{value} %{{z:.4f}}<extra></extra>",
        )
    )
    fig.update_layout(
        title={"text": html.escape(f"{attention.model_name} · {what}")},
        shapes=_answer_lines(attention, kind),
        xaxis={
            "title": {"text": "key token"},
            "tickmode": "array",
            "tickvals": list(range(0, tk, step_k)),
            "ticktext": [_label(tok_k[i]) for i in range(0, tk, step_k)],
            "side": "top",
            "tickangle": -60,
        },
        yaxis={
            "title": {"text": "query token"},
            "tickmode": "array",
            "autorange": "reversed",
            "tickvals": list(range(0, tq, step_q)),
            "ticktext": [_label(tok_q[i]) for i in range(0, tq, step_q)],
        },
        width=min(1100, 220 + 14 * tk),
        height=min(1100, 200 + 14 * tq),
        template="plotly_white",
        plot_bgcolor=MASKED if attention.causal else None,
    )
    return fig


def attention_png(attention: Attention | AttentionComparison, layer: int | None = 0, heads: list[int] | None = None,
                  *, kind: str | None = None, dpi: int = 100) -> bytes:
    """A PNG heatmap of what an attention view shows (one layer; the mean of `heads`, or of all heads
    for None): the static copy a saved notebook keeps for viewers without the widget. For an
    `AttentionComparison`, tuned minus base on a diverging scale."""
    import io

    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from nbkit.core.attention_compare import AttentionComparison

    signed = isinstance(attention, AttentionComparison)
    a = attention.tuned if signed else attention
    kind = a.check_kind(kind)
    w = attention.difference(kind) if signed else a.weights[kind]  # (L, H, Tq, Tk)
    w = w.mean(axis=0) if layer is None else w[a.layer_position(layer)]  # (H, Tq, Tk)
    weights = _masked(a, kind, w.mean(axis=0) if not heads else w[list(heads)].mean(axis=0))  # (Tq, Tk)
    tok_q, tok_k = a.tokens_for(kind)
    tq, tk = weights.shape
    side = min(9.0, 2.5 + 0.22 * max(tq, tk))
    fig = Figure(figsize=(side + 1.2, side), dpi=dpi)
    ax = fig.add_subplot()
    cmap = colormaps["RdBu_r" if signed else "Blues"].with_extremes(bad=MASKED)
    top = float(np.nanmax(np.abs(weights))) or 1e-9
    sink = a.causal and kind in ("self", "decoder") and weights.shape[-1] > 2
    limits = {"vmin": -top, "vmax": top} if signed else {"vmin": 0, "vmax": color_max(weights, sink) or None}
    im = ax.imshow(np.ma.masked_invalid(weights), cmap=cmap, aspect="auto", interpolation="nearest", **limits)
    if a.prompt_length is not None and kind in ("self", "decoder"):
        for line in (ax.axhline, ax.axvline):
            line(a.prompt_length - 0.5, color="#e6550d", linestyle=":", linewidth=1.2)
    step_q, step_k = max(1, tq // 40), max(1, tk // 40)
    clean = lambda s: shown(s).replace("$", r"\$")  # noqa: E731 - "$...$" would be mathtext
    ax.set_xticks(range(0, tk, step_k), [clean(tok_k[i][:14]) for i in range(0, tk, step_k)],
                  rotation=90, fontsize=7)
    ax.set_yticks(range(0, tq, step_q), [clean(tok_q[i][:14]) for i in range(0, tq, step_q)], fontsize=7)
    where = "mean of layers" if layer is None else f"layer {a.layers[a.layer_position(layer)]}"
    which = ("all heads" if not heads or len(heads) == a.num_heads
             else f"head {heads[0]}" if len(heads) == 1 else "heads " + ", ".join(map(str, heads)))
    what = f"{attention.names[0]} − {attention.names[1]}" if signed else f"{kind} attention"
    ax.set_title(clean(f"{a.model_name} · {what} · {where} · {which}"), fontsize=9)
    ax.set_xlabel("key token", fontsize=8)
    ax.set_ylabel("query token", fontsize=8)
    label = what if signed else "weight (first token saturates)" if sink else "weight"
    fig.colorbar(im, ax=ax, fraction=0.04, label=label, extend="max" if sink and not signed else "neither")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
