"""Interactive attention views (head, model, matrix, rollout, generation) as one anywidget.

The page never receives every layer at once: the widget's state carries the tokens and the data of the
first view only, and the JavaScript (shipped in `static/`, no CDN) asks for each further layer or map
with a custom message, answered with uint8/uint16 binary buffers. Numbers come from `nbkit.core.attention`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets as t

from nbkit.core.attention import (
    Attention,
    AttentionError,
    capture_attention,
    color_max,
    top_k,
    unpack_model,
)
from nbkit.core.attention_compare import AttentionComparison, compare_attention
from nbkit.core.suggest import check_kwargs, did_you_mean, valid_arguments

__all__ = ["VIEWS", "AttentionWidget", "show_attention"]

VIEWS = ("head", "model", "matrix", "rollout", "generation")
SOURCES = ("tuned", "base", "diff")  # what a comparison shows: either capture, or tuned minus base
DIFF_VIEWS = ("matrix", "model")  # the views that can draw signed maps
MEAN = -1  # `layer` / `head` value meaning "average over all of them"
_STATIC = Path(__file__).parent / "static"
# Concatenated into one ES module: anywidget loads a single module, so the helpers come first and
# attention.js (the only file with an `export`) last.
_JS_FILES = ("attention_util.js", "attention_head.js", "attention_matrix.js", "attention.js")
_WHAT_FOR_VIEW = {
    "head": "sparse",
    "model": "thumbs",
    "matrix": "dense",
    "rollout": "rollout",
    "generation": "dense",
}


def _static(*names: str) -> str:
    return "\n".join((_STATIC / name).read_text(encoding="utf-8") for name in names)


def _quantize(x: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """uint8 codes of x / scale (0..1 -> 0..255); the page maps code c back to c / 255 * scale."""
    scale = np.maximum(np.asarray(scale, dtype=np.float64), 1e-12)
    return np.clip(np.rint(x / scale * 255.0), 0, 255).astype(np.uint8)


def _quantize_signed(x: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """uint8 codes of a difference in [-scale, scale] (-> 0..255, 0 near 127.5); the page maps code c
    back to (c / 255 * 2 - 1) * scale."""
    scale = np.maximum(np.asarray(scale, dtype=np.float64), 1e-12)
    return np.clip(np.rint((x / scale + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _blocks(n: int, size: int) -> np.ndarray:
    return np.unique(np.linspace(0, n, min(n, size) + 1).astype(np.int64))[:-1]


def downsample(weights: np.ndarray, size: int) -> np.ndarray:
    """Shrink the last two axes to at most `size` x `size`: mean over query blocks, sum over key
    blocks, so each thumbnail row still sums to 1."""
    rows, cols = _blocks(weights.shape[-2], size), _blocks(weights.shape[-1], size)
    counts = np.diff(np.append(rows, weights.shape[-2]))  # (sq,)
    summed = np.add.reduceat(weights, cols, axis=-1)  # (..., Tq, sk)
    small = np.add.reduceat(summed, rows, axis=-2) / counts[:, None]  # (..., sq, sk)
    return small.astype(np.float32)


def request_key(what: str, kind: str, layer: int, head: int, source: str = "tuned") -> str:
    """Cache key shared with the page (same rule as keyOf in attention_util.js)."""
    if what in ("sparse", "rollout"):
        head = MEAN
    if what == "thumbs":
        layer = head = MEAN
    return f"{what}|{kind}|{layer}|{head}" + ("" if source == "tuned" else f"|{source}")


def _did_you_mean(value: str, allowed: tuple[str, ...] | list[str]) -> str:
    return did_you_mean(value, allowed, " Did you mean {!r}?")


class AttentionWidget(anywidget.AnyWidget):
    """Views of one `Attention`, or of an `AttentionComparison` (then `source` picks the tuned or the
    base capture, or "diff": tuned minus base on a diverging scale, in the matrix and model views).
    `layer`/`head` use the model's indices; -1 means the average."""

    _esm = _static(*_JS_FILES)
    _css = _static("attention.css")

    view = t.Unicode("head").tag(sync=True)
    kind = t.Unicode("self").tag(sync=True)
    layer = t.Int(0).tag(sync=True)
    head = t.Int(MEAN).tag(sync=True)
    heads = t.List(t.Int()).tag(sync=True)  # heads drawn in the head view
    tokens = t.List(t.Unicode()).tag(sync=True)
    decoder_tokens = t.List(t.Unicode()).tag(sync=True)
    segments = t.List(t.Int()).tag(sync=True)
    info = t.Dict().tag(sync=True)
    source = t.Unicode("tuned").tag(sync=True)
    _initial = t.Dict().tag(sync=True)  # {"meta": {...}, "buffers": [bytes, ...]} of the first view

    def __init__(
        self,
        attention: Attention | AttentionComparison,
        *,
        view: str | None = None,
        kind: str | None = None,
        layer: int | str | None = None,
        head: int | str | None = None,
        top_k: int = 6,
        thumb_size: int = 32,
        source: str | None = None,
    ) -> None:
        self.comparison = attention if isinstance(attention, AttentionComparison) else None
        if self.comparison is not None:
            attention = self.comparison.tuned
        self.attention = attention
        self._top_k, self._thumb = int(top_k), int(thumb_size)
        self._cache: OrderedDict[str, tuple[dict[str, Any], list[bytes]]] = OrderedDict()
        kind = attention.check_kind(kind)
        source = _check_source(source, self.comparison, view)
        view = _check_view(view or ("matrix" if source == "diff" else "head"), attention)
        if source == "diff" and view not in DIFF_VIEWS:
            raise AttentionError(f"view {view!r} cannot show a difference; use one of {', '.join(DIFF_VIEWS)} "
                                 "(or source='tuned' / 'base').")
        if source == "diff" and layer is None and head is None and view == "matrix":
            layer, head = self.comparison.most_changed(kind)  # open where the tuning changed most
        if layer is None:
            layer_index = attention.layers[-1 if view == "rollout" else 0]
        elif layer == "mean":
            layer_index = MEAN
        else:
            layer_index = attention.layers[attention.layer_position(layer)]  # type: ignore[arg-type]
        head_index = MEAN if head in (None, "mean") else attention.check_head(head)  # type: ignore[arg-type]
        all_heads = list(range(attention.num_heads))
        if head_index != MEAN:
            heads = [head_index]
        elif view == "head" and head is None and layer_index != MEAN and attention.num_heads > 1:
            # All heads at once draw a grey hairball: open on the most focused head of the layer
            # (lowest mean entropy) and say how to show the others.
            entropy = attention.entropy(kind)[attention.layer_position(layer_index)]  # (H,)
            heads = [int(np.argmin(entropy))]
        else:
            heads = all_heads
        # The first view's data travels in the comm_open state (and so in a saved notebook).
        meta, buffers = self.payload(_WHAT_FOR_VIEW[view], kind, layer_index, head_index, source)
        super().__init__(
            source=source,
            view=view,
            kind=kind,
            layer=layer_index,
            head=head_index,
            heads=heads,
            tokens=list(attention.tokens),
            decoder_tokens=list(attention.decoder_tokens or []),
            segments=[int(s) for s in attention.segments],
            info=self._info(),
            _initial={"meta": meta, "buffers": buffers},
        )
        self.on_msg(self._on_msg)
        if len(heads) == 1 and head_index == MEAN:
            self.info = {**self.info, "note": " ".join(filter(None, [
                self.info.get("note"),
                f"Showing head {heads[0]}, the most focused head of layer {layer_index} (lowest "
                f"entropy). Click the head numbers to add heads, or \"all\" to show all "
                f"{attention.num_heads}."]))}

    def __repr__(self) -> str:
        a = self.attention
        what = self.view if self.comparison is None else f"{self.view}, {self.source}"
        return (f"nbkit attention view ({what}): {a.model_name}, {len(a.tokens)} tokens, "
                f"{len(a.layers)} layers x {a.num_heads} heads")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The live view for JupyterLab, plus a PNG of the map it opens on and one line of text, for
        front ends without the widget (nbconvert, GitHub, a notebook reopened without a kernel)."""
        import base64

        from nbkit.figures.attention import attention_png

        live = super()._repr_mimebundle_(**kwargs) or {}
        data, metadata = live if isinstance(live, tuple) else (live, {})  # anywidget: (data, metadata)
        layer = None if self.layer == MEAN else self.layer
        if self.source == "diff":
            png = attention_png(self.comparison, layer, None if self.head == MEAN else [self.head], kind=self.kind)
        else:
            png = attention_png(self._source_attention(self.source), layer, self.heads, kind=self.kind)
        data = {**data, "image/png": base64.b64encode(png).decode("ascii"), "text/plain": repr(self)}
        return (data, metadata) if isinstance(live, tuple) else data

    def _info(self) -> dict[str, Any]:
        a = self.attention
        return {
            "layers": a.layers,
            "num_heads": a.num_heads,
            "kinds": list(a.kinds),
            "causal": a.causal,
            "prompt_length": a.prompt_length,
            "note": a.note,
            "model_name": a.model_name,
            "top_k": self._top_k,
            "merged": a.merged,
            "segments_meaning": _segments_meaning(a),
            "compare": None if self.comparison is None else {
                "names": list(self.comparison.names),
                "base_name": self.comparison.base.model_name,
                "change": np.round(self.comparison.change(a.default_kind), 4).tolist(),  # (L, H)
            },
        }

    def _source_attention(self, source: str) -> Attention:
        return self.comparison.base if source == "base" and self.comparison is not None else self.attention

    @t.validate("source")
    def _valid_source(self, proposal: Any) -> str:
        value = proposal["value"]
        if value not in SOURCES or (self.comparison is None and value != "tuned"):
            allowed = SOURCES if self.comparison is not None else ("tuned",)
            raise t.TraitError(f"source {value!r} is not available; this view has {', '.join(allowed)}.")
        return value

    @t.observe("source")
    def _source_changed(self, change: Any) -> None:
        if change["new"] == "diff" and self.view not in DIFF_VIEWS:
            self.view = "matrix"  # the head, rollout and generation views draw weights, not differences

    @t.observe("view")
    def _view_changed(self, change: Any) -> None:
        if self.source == "diff" and change["new"] not in DIFF_VIEWS:
            self.source = "tuned"

    # ------------------------------------------------------------------------------ validation
    @t.validate("view")
    def _valid_view(self, proposal: Any) -> str:
        return _check_view(proposal["value"], self.attention, error=t.TraitError)

    @t.validate("kind")
    def _valid_kind(self, proposal: Any) -> str:
        try:
            return self.attention.check_kind(proposal["value"])
        except AttentionError as err:
            raise t.TraitError(str(err)) from None

    @t.validate("layer")
    def _valid_layer(self, proposal: Any) -> int:
        value, layers = proposal["value"], self.attention.layers
        if value != MEAN and value not in layers:
            raise t.TraitError(
                f"layer {value} is out of range: valid layers are {layers[0]}-"
                f"{layers[-1]} (captured: {layers}), or -1 for the average."
            )
        return value

    @t.validate("head")
    def _valid_head(self, proposal: Any) -> int:
        value, n = proposal["value"], self.attention.num_heads
        if not MEAN <= value < n:
            raise t.TraitError(
                f"head {value} is out of range: valid heads are 0-{n - 1}, or -1 for the average."
            )
        return value

    @t.validate("heads")
    def _valid_heads(self, proposal: Any) -> list[int]:
        n = self.attention.num_heads
        bad = [h for h in proposal["value"] if not 0 <= h < n]
        if bad:
            raise t.TraitError(f"heads {bad} are out of range: valid heads are 0-{n - 1}.")
        return sorted(set(proposal["value"]))

    # ------------------------------------------------------------------------------ data for the page
    def payload(
        self, what: str, kind: str, layer: int, head: int, source: str = "tuned"
    ) -> tuple[dict[str, Any], list[bytes]]:
        """(meta, buffers) for one request; cached, since the page re-asks after a re-render."""
        key = request_key(what, kind, layer, head, source)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if source not in SOURCES or (self.comparison is None and source != "tuned"):
            raise AttentionError(f"source {source!r} is not available in this view.")
        built = self._build_diff(what, kind, layer, head) if source == "diff" else \
            self._build(what, kind, layer, head, self._source_attention(source))
        built[0].update(what=what, kind=kind, layer=layer, head=head, key=key, source=source)
        self._cache[key] = built
        if len(self._cache) > 48:
            self._cache.popitem(last=False)
        return built

    def _build_diff(self, what: str, kind: str, layer: int, head: int) -> tuple[dict[str, Any], list[bytes]]:
        """Tuned minus base, signed codes around 127.5, scaled to the largest |difference|."""
        c = self.comparison
        kind = c.tuned.check_kind(kind)
        lay = None if layer == MEAN else layer
        if what == "dense":
            m = c.map(lay, None if head == MEAN else head, kind)  # (Tq, Tk)
            scale = float(np.abs(m).max())
            return ({"shape": list(m.shape), "scales": [scale], "signed": True},
                    [_quantize_signed(m, scale).tobytes()])
        if what == "thumbs":
            small = downsample(c.tuned.weights[kind], self._thumb) - downsample(c.base.weights[kind], self._thumb)
            scales = np.abs(small).max(axis=(2, 3))  # (L, H)
            meta = {"shape": list(small.shape), "scales": scales.ravel().tolist(), "signed": True,
                    "change": np.round(c.change(kind), 4).ravel().tolist()}
            return meta, [_quantize_signed(small, scales[:, :, None, None]).tobytes()]
        raise AttentionError(f"the difference has the {' and '.join(DIFF_VIEWS)} views only, not {what!r}.")

    def _build(
        self, what: str, kind: str, layer: int, head: int, a: Attention | None = None
    ) -> tuple[dict[str, Any], list[bytes]]:
        a = self.attention if a is None else a
        kind = a.check_kind(kind)
        lay = None if layer == MEAN else layer
        if (
            what == "sparse"
        ):  # head view: the top-k keys of every query, for every head of one layer
            w = a.weights[kind]  # (L, H, Tq, Tk)
            w = w.mean(axis=0) if lay is None else w[a.layer_position(lay)]  # (H, Tq, Tk)
            idx, val = top_k(w, self._top_k)  # (H, Tq, k) each
            scales = w.max(axis=(1, 2))  # (H,)
            codes = _quantize(val, scales[:, None, None])  # (H, Tq, k)
            meta = {"shape": list(idx.shape), "scales": scales.tolist(), "tk": int(w.shape[-1])}
            return meta, [idx.astype("<u2").tobytes(), codes.tobytes()]
        if what in ("dense", "rollout"):  # matrix / rollout / generation views: one full map
            if what == "rollout":
                m = a.rollout(kind)[a.layer_position(-1 if lay is None else lay)]  # (T, T)
            else:
                m = a.map(lay, None if head == MEAN else head, kind)  # (Tq, Tk)
            sink = a.causal and kind in ("self", "decoder") and what == "dense"
            scale = color_max(m, sink)
            meta = {"shape": list(m.shape), "scales": [scale]}
            if sink and m.shape[-1] > 2:  # the first column saturates: its true values for the readout
                meta["first"] = np.round(m[:, 0].astype(np.float64), 4).tolist()
            return meta, [_quantize(m, scale).tobytes()]
        if what == "thumbs":  # model view: every layer x head at reduced resolution
            small = downsample(a.weights[kind], self._thumb)  # (L, H, sq, sk)
            scales = small.max(axis=(2, 3))  # (L, H)
            meta = {
                "shape": list(small.shape),
                "scales": scales.ravel().tolist(),
                "entropy": np.round(a.entropy(kind), 4).ravel().tolist(),
            }
            return meta, [_quantize(small, scales[:, :, None, None]).tobytes()]
        raise AttentionError(
            f"unknown request {what!r}; expected sparse, dense, rollout or thumbs."
        )

    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "fetch":
            return
        req = content.get("id")
        try:
            meta, buffers = self.payload(
                str(content.get("what")),
                str(content.get("kind")),
                int(content.get("layer", 0)),
                int(content.get("head", MEAN)),
                str(content.get("source", "tuned")),
            )
        except (AttentionError, ValueError, TypeError) as err:
            self.send({"type": "error", "id": req, "message": str(err)})
            return
        self.send({"type": "data", "id": req, **meta}, buffers=buffers)


def _segments_meaning(a: Attention) -> dict[str, str]:
    if a.causal:
        return {"-1": "special or chat-template token", "0": "prompt", "1": "generated answer"}
    return {"-1": "special token", "0": "text", "1": "text pair"}


def _check_source(source: str | None, comparison: AttentionComparison | None, view: str | None) -> str:
    if comparison is None:
        if source not in (None, "tuned"):
            raise AttentionError(f"source {source!r} needs a comparison: show_attention(..., compare='base').")
        return "tuned"
    if source is None:
        return "diff" if view in (None, *DIFF_VIEWS) else "tuned"
    if source not in SOURCES:
        raise AttentionError(f"Unknown source {source!r}.{_did_you_mean(source, SOURCES)} "
                             f"Valid sources: {', '.join(SOURCES)}.")
    return source


def _check_view(view: str, attention: Attention, error: type[Exception] = AttentionError) -> str:
    if view not in VIEWS:
        raise error(
            f"Unknown view {view!r}.{_did_you_mean(view, VIEWS)} Valid views: {', '.join(VIEWS)}."
        )
    if view == "generation" and attention.prompt_length is None:
        raise error("view 'generation' needs a causal model captured with max_new_tokens=N.")
    return view


# What `**capture` passes on: capture_attention's options (not its model/tokenizer/text, given here).
@check_kwargs(extra=lambda: [n for n in valid_arguments(capture_attention) if n not in ("model", "tokenizer", "text")],
              meant={"decoder_text": "target", "labels": "target", "max_length": "max_new_tokens",
                     "generate": "max_new_tokens", "base": "compare", "diff": "compare"})
def show_attention(
    model: Any,
    tokenizer: Any = None,
    text: Any = None,
    *,
    text_pair: str | None = None,
    view: str | None = None,
    layer: int | str | None = None,
    head: int | str | None = None,
    kind: str | None = None,
    top_k: int = 6,
    compare: Any = None,
    source: str | None = None,
    **capture: Any,
) -> AttentionWidget:
    """Capture attention for `text` and return the interactive view (display it, or leave it last in
    a cell). `model` may be a model with its tokenizer, a `Run` (`show_attention(run, "prompt")`), or
    a saved `Attention` / an `AttentionComparison` (then no tokenizer or text). `layer`/`head` pick
    the first map shown ("mean" averages); `capture` goes to `capture_attention` (layers, target,
    max_new_tokens, truncate, chat, max_memory).

    `compare="base"` (a LoRA model or run: the adapter disabled) or `compare=<base model>` captures
    both models on the same tokens and opens on the difference, tuned minus base, at the head that
    changed most; `source` ("tuned", "base", "diff") picks what the view opens on.
    """
    if view is not None and view not in VIEWS:
        raise AttentionError(
            f"Unknown view {view!r}.{_did_you_mean(view, VIEWS)} Valid views: {', '.join(VIEWS)}."
        )
    if isinstance(model, (Attention, AttentionComparison)):
        if compare is not None or capture:
            raise AttentionError("a saved Attention is shown as captured: compare= and capture options need "
                                 "show_attention(model, tokenizer, text, ...).")
        attention = model
    else:
        model, tokenizer, text = unpack_model(model, tokenizer, text)
        if tokenizer is None or text is None:
            raise AttentionError(
                "show_attention(model, tokenizer, text) needs a tokenizer and a text "
                "(or show_attention(run, text))."
            )
        if view == "generation" and not capture.get("max_new_tokens"):
            capture["max_new_tokens"] = 20
        if compare is None:
            attention = capture_attention(model, tokenizer, text, text_pair=text_pair, **capture)
        else:
            if isinstance(compare, str) and compare != "base":
                raise AttentionError(f"compare={compare!r}: pass 'base' (the adapter-disabled model of a LoRA "
                                     "model or run) or the base model itself.")
            if capture.pop("target", None) is not None or capture.pop("truncate", True) is not True:
                raise AttentionError("compare works on causal and encoder models; target/truncate do not apply.")
            attention = compare_attention(model, tokenizer, text, base=None if compare == "base" else compare,
                                          text_pair=text_pair, **capture)
    return AttentionWidget(attention, view=view, kind=kind, layer=layer, head=head, top_k=top_k,
                           source=source)
