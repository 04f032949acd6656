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
