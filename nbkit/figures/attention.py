"""A static plotly heatmap of one attention map, for export (HTML, PNG, a saved notebook).

Re-exported as `nbkit.figures.attention_heatmap`. It reads an `Attention` (nbkit.core.attention) and
builds a plain `go.Figure`: no widgets, no IPython. Token text is HTML-escaped, because plotly reads
a few HTML tags in labels.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import plotly.graph_objects as go

if TYPE_CHECKING:
    from nbkit.core.attention import Attention

__all__ = ["attention_heatmap"]


def _label(token: str, width: int = 16) -> str:
    text = token if len(token) <= width else token[: width - 1] + "…"
    return html.escape(text)


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
    tok_q, tok_k = attention.tokens_for(kind)
    tq, tk = weights.shape
    where = (
        "mean of layers"
        if layer is None
        else f"layer {attention.layers[attention.layer_position(layer)]}"
    )
    which = "mean of heads" if head is None else f"head {attention.check_head(head)}"
    step_q, step_k = max(1, tq // 64), max(1, tk // 64)  # at most ~64 tick labels per axis
    fig = go.Figure(
        go.Heatmap(
            z=weights,
            colorscale=colorscale,
            zmin=0,
            colorbar={"title": {"text": "weight"}},
            customdata=None
            if tq * tk > 40_000
            else [[[_label(a, 40), _label(b, 40)] for b in tok_k] for a in tok_q],
            hovertemplate=(
                "query %{y}: %{customdata[0]}<br>key %{x}: %{customdata[1]}<br>"
                "weight %{z:.4f}<extra></extra>"
            )
            if tq * tk <= 40_000
            else "query %{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title={
            "text": html.escape(f"{attention.model_name} · {kind} attention · {where} · {which}")
        },
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
    )
    return fig


def attention_png(attention: Attention, layer: int | None = 0, heads: list[int] | None = None, *,
                  kind: str | None = None, dpi: int = 100) -> bytes:
    """A PNG heatmap of what an attention view shows (one layer; the mean of `heads`, or of all heads
    for None): the static copy a saved notebook keeps for viewers without the widget."""
    import io

    import numpy as np
    from matplotlib.figure import Figure

    kind = attention.check_kind(kind)
    w = attention.weights[kind]  # (L, H, Tq, Tk)
    w = w.mean(axis=0) if layer is None else w[attention.layer_position(layer)]  # (H, Tq, Tk)
    weights = w.mean(axis=0) if not heads else w[list(heads)].mean(axis=0)  # (Tq, Tk)
    tok_q, tok_k = attention.tokens_for(kind)
    tq, tk = weights.shape
    side = min(9.0, 2.5 + 0.22 * max(tq, tk))
    fig = Figure(figsize=(side + 1.2, side), dpi=dpi)
    ax = fig.add_subplot()
    im = ax.imshow(np.asarray(weights), cmap="Blues", vmin=0, aspect="auto")
    step_q, step_k = max(1, tq // 40), max(1, tk // 40)
    clean = lambda s: s.replace("$", r"\$")  # noqa: E731 - "$...$" would be mathtext
    ax.set_xticks(range(0, tk, step_k), [clean(tok_k[i][:14]) for i in range(0, tk, step_k)],
                  rotation=90, fontsize=7)
    ax.set_yticks(range(0, tq, step_q), [clean(tok_q[i][:14]) for i in range(0, tq, step_q)], fontsize=7)
    where = "mean of layers" if layer is None else f"layer {attention.layers[attention.layer_position(layer)]}"
    which = ("all heads" if not heads or len(heads) == attention.num_heads
             else f"head {heads[0]}" if len(heads) == 1 else "heads " + ", ".join(map(str, heads)))
    ax.set_title(clean(f"{attention.model_name} · {kind} attention · {where} · {which}"), fontsize=9)
    ax.set_xlabel("key token", fontsize=8)
    ax.set_ylabel("query token", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.04, label="weight")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
