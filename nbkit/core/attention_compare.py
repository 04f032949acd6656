"""Base vs tuned attention for the same input: `compare_attention` and the `AttentionComparison` it returns.

Both models run on exactly the same token sequence (the prompt and, with `max_new_tokens`, the tuned
model's greedy answer), so their maps can be subtracted cell by cell. The base of a LoRA run is the
peft model with its adapter disabled (no second copy in memory). The widget
(`nbkit.notebook.widgets.attention`) and the figures draw the difference from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .attention import Attention, AttentionError, _forward, _prepare, model_name, unpack_model
from .suggest import check_kwargs

__all__ = ["AttentionComparison", "compare_attention"]


@dataclass
class AttentionComparison:
    """Two captures of one token sequence: `tuned` and `base` (same tokens, layers and heads).

    `difference()` is tuned minus base, per layer and head; `change()` scores how much each head
    moved: the mean over query rows of the total variation distance between the two rows (half their
    L1 distance), 0 for an unchanged head and 1 for one that now attends to entirely different tokens.
    """

    tuned: Attention
    base: Attention
    names: tuple[str, str] = ("tuned", "base")

    def __post_init__(self) -> None:
        a, b = self.tuned, self.base
        if a.tokens != b.tokens or a.layers != b.layers or a.kinds != b.kinds:
            raise AttentionError("the two captures differ in tokens, layers or kinds; compare captures of "
                                 "the same text, from models with the same tokenizer and layers.")
        for kind in a.kinds:
            if a.weights[kind].shape != b.weights[kind].shape:
                raise AttentionError(f"{kind} attention shapes differ: {a.weights[kind].shape} vs "
                                     f"{b.weights[kind].shape}; the models must have the same heads.")

    # the structure is the tuned capture's (both are the same)
    def __getattr__(self, name: str) -> Any:
        if name in ("tokens", "segments", "word_ids", "layers", "kinds", "default_kind", "num_layers",
                    "num_heads", "causal", "prompt_length", "note", "decoder_tokens", "check_kind",
                    "check_head", "layer_position", "tokens_for", "model_name", "merged"):
            return getattr(self.tuned, name)
        raise AttributeError(name)

    def difference(self, kind: str | None = None) -> np.ndarray:
        """(L, H, Tq, Tk): tuned minus base; each row sums to 0."""
        kind = self.tuned.check_kind(kind)
        return self.tuned.weights[kind] - self.base.weights[kind]

    def map(self, layer: int | None = None, head: int | None = None, kind: str | None = None) -> np.ndarray:
        """(Tq, Tk) difference of one map (None averages, as `Attention.map`)."""
        return self.tuned.map(layer, head, kind) - self.base.map(layer, head, kind)

    def change(self, kind: str | None = None) -> np.ndarray:
        """(L, H) mean total variation distance per head, in [0, 1]."""
        kind = self.tuned.check_kind(kind)
        out = np.empty(self.tuned.weights[kind].shape[:2], dtype=np.float32)  # (L, H)
        for pos in range(out.shape[0]):  # one layer at a time keeps the temporaries small
            d = self.tuned.weights[kind][pos] - self.base.weights[kind][pos]  # (H, Tq, Tk)
            out[pos] = 0.5 * np.abs(d).sum(axis=-1).mean(axis=-1)
        return out

    def most_changed(self, kind: str | None = None) -> tuple[int, int]:
        """(model layer index, head) of the head whose attention moved most."""
        change = self.change(kind)
        pos, head = np.unravel_index(int(np.argmax(change)), change.shape)
        return self.tuned.layers[int(pos)], int(head)

    def __repr__(self) -> str:
        a = self.tuned
        return (f"AttentionComparison({self.names[0]} vs {self.names[1]}: {a.model_name}, {len(a.tokens)} "
                f"tokens, {a.num_layers} layers x {a.num_heads} heads, max change "
                f"{float(self.change().max()):.3f})")


@check_kwargs(meant={"generate": "max_new_tokens", "other": "base", "reference": "base"})
def compare_attention(
    model: Any,
    tokenizer: Any = None,
    text: Any = None,
    *,
    base: Any = None,
    text_pair: str | None = None,
    layers: list[int] | None = None,
    max_new_tokens: int | None = None,
    chat: bool | None = None,
    max_memory: float | None = 2e9,
) -> AttentionComparison:
    """Attention of `model` (the tuned one) and of its base on the same input.

    `model` is a peft (LoRA) model, whose base is itself with the adapter disabled, or a `Run` of one
    (then no tokenizer: `compare_attention(run, "prompt")`); or any model with `base=` another model
    with the same tokenizer and architecture. With `max_new_tokens` the tuned model answers greedily
    first, and both models are read on prompt + that answer (what the base would attend to while
    reading the tuned model's answer). Other options as `capture_attention`.
    """
    import torch

    model, tokenizer, text = unpack_model(model, tokenizer, text)
    if base is not None:
        base, _, _ = unpack_model(base, tokenizer, text)
        if not isinstance(base, torch.nn.Module):
            raise AttentionError(f"base must be a model (or a Run), not {type(base).__name__}.")
    elif not hasattr(model, "disable_adapter"):
        raise AttentionError(
            f"{type(model).__name__} has no adapter to disable, so there is no base to compare with: pass "
            "a peft (LoRA) model or its Run, or base=<the model before tuning>."
        )
    prep = _prepare(model, tokenizer, text, text_pair=text_pair, target=None, max_new_tokens=max_new_tokens,
                    truncate=False, chat=chat, max_memory=max_memory, copies=2)
    tuned = _forward(model, tokenizer, prep, layers)
    if base is None:
        with model.disable_adapter():
            other = _forward(model, tokenizer, prep, layers)
        other.model_name = f"{tuned.model_name} (adapter disabled)"
    else:
        device = next(base.parameters()).device
        prep.inputs = {k: v.to(device) for k, v in prep.inputs.items()}
        other = _forward(base, tokenizer, prep, layers)
        if other.model_name == tuned.model_name:
            other.model_name = f"{model_name(base)} (base)"
    return AttentionComparison(tuned=tuned, base=other)
