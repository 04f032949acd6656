"""Capture attention weights from a Hugging Face model and analyse them as plain numpy arrays.

`capture_attention` runs one forward pass and returns an `Attention`: tokens, segments and one float32
array per kind of attention. Chat LLMs go through their chat template and may answer first
(`nbkit.core.llm.attention` has those helpers); `nbkit.core.attention_compare` compares two models. The analyses (averages, rollout, entropy, head scores, top-k pruning, word
merging) are numpy only. The widget (`nbkit.notebook.widgets.attention`) and the static figure draw from this
module; nothing here imports IPython, ipywidgets, anywidget or plotly.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .suggest import check_kwargs

__all__ = ["Attention", "AttentionError", "capture_attention", "top_k"]

# Kinds of attention: decoder-only and encoder-only models have "self"; encoder-decoders the other three.
KINDS = ("self", "encoder", "decoder", "cross")
_NO_WEIGHTS = ("sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
_DEFAULT_NEW_TOKENS = 20  # decoder tokens generated for an encoder-decoder when no target is given


class AttentionError(ValueError):
    """Attention cannot be captured or indexed as asked; the message names what is valid."""


def _check_index(value: int, size: int, what: str, context: str) -> int:
    """Validate an index in [-size, size) and return it as non-negative."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise AttentionError(f"{what} must be an integer, got {value!r}.")
    if not -size <= value < size:
        raise AttentionError(
            f"{what} {value} is out of range: {context} has {size} {what}s (0-{size - 1})."
        )
    return int(value) % size


@dataclass
class Attention:
    """Attention weights of one input, with the tokens they refer to.

    `weights[kind]` has shape (layers, heads, T_query, T_key), float32, each row summing to 1.
    Kinds: "self" (encoder-only / decoder-only models) or "encoder", "decoder", "cross" (encoder-decoders;
    cross has decoder tokens as queries and encoder tokens as keys). `segments[i]` is 0 for a token of
    `text`, 1 for `text_pair` and -1 for special tokens; `word_ids[i]` numbers the words of each segment
    (-1 for specials). `layers` holds the model's layer index of each captured layer.
    """

    tokens: list[str]
    weights: dict[str, np.ndarray]
    segments: np.ndarray
    word_ids: np.ndarray
    layers: list[int]
    decoder_tokens: list[str] | None = None
    causal: bool = False
    # Causal models after generate(): tokens before this position are the prompt.
    prompt_length: int | None = None
    note: str = ""  # e.g. "Input truncated to 512 of 700 tokens."
    model_name: str = ""
    merged: bool = False

    # ----------------------------------------------------------------------------------- structure
    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if k in self.weights)

    @property
    def default_kind(self) -> str:
        return self.kinds[0]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_heads(self) -> int:
        return int(self.weights[self.default_kind].shape[1])

    def check_kind(self, kind: str | None) -> str:
        if kind is None:
            return self.default_kind
        if kind not in self.weights:
            raise AttentionError(
                f"kind {kind!r} is not available; this capture has {list(self.kinds)}."
            )
        return kind

    def layer_position(self, layer: int) -> int:
        """Position in the captured arrays of model layer `layer` (negative counts from the end)."""
        whole = self.layers == list(range(len(self.layers)))
        if whole or (isinstance(layer, (int, np.integer)) and layer < 0):
            return _check_index(layer, self.num_layers, "layer", "this capture")
        if layer in self.layers:
            return self.layers.index(int(layer))
        raise AttentionError(f"layer {layer!r} was not captured; captured layers: {self.layers}.")

    def check_head(self, head: int) -> int:
        return _check_index(head, self.num_heads, "head", "each layer")

    def tokens_for(self, kind: str | None = None) -> tuple[list[str], list[str]]:
        """(query tokens, key tokens) of a kind."""
        kind = self.check_kind(kind)
        dec = self.decoder_tokens or []
        return {"decoder": (dec, dec), "cross": (dec, self.tokens)}.get(
            kind, (self.tokens, self.tokens)
        )

    # ------------------------------------------------------------------------------------- averages
    def map(
        self, layer: int | None = None, head: int | None = None, kind: str | None = None
    ) -> np.ndarray:
        """One (T_q, T_k) map: a layer's head (ints), or the mean over heads and/or layers (None)."""
        w = self.weights[self.check_kind(kind)]  # (L, H, Tq, Tk)
        w = w.mean(axis=0) if layer is None else w[self.layer_position(layer)]  # (H, Tq, Tk)
        return w.mean(axis=0) if head is None else w[self.check_head(head)]  # (Tq, Tk)

    def head_average(self, kind: str | None = None) -> np.ndarray:
        """(L, T_q, T_k): each layer averaged over its heads."""
        return self.weights[self.check_kind(kind)].mean(axis=1)

    def layer_average(self, kind: str | None = None) -> np.ndarray:
        """(H, T_q, T_k): each head index averaged over layers."""
        return self.weights[self.check_kind(kind)].mean(axis=0)

    # ------------------------------------------------------------------------------------- analyses
    def rollout(self, kind: str | None = None, residual: float = 0.5) -> np.ndarray:
        """Attention rollout (Abnar & Zuidema 2020), (L, T, T): entry l is the rollout through layer l.

        Each layer's head mean is mixed with the identity for the residual connection,
        A' = (1 - residual) * A + residual * I, rows renormalised, and the layers multiplied in order:
        R_0 = A'_0, R_l = A'_l @ R_{l-1}. Only square kinds (self, encoder, decoder).
        """
        kind = self.check_kind(kind)
        if kind == "cross":
            raise AttentionError("rollout needs square attention; use kind 'encoder' or 'decoder'.")
        heads_mean = self.head_average(kind)  # (L, T, T)
        eye = np.eye(heads_mean.shape[-1], dtype=np.float64)  # (T, T)
        out = np.empty(heads_mean.shape, dtype=np.float32)  # (L, T, T)
        acc = eye
        for pos, a in enumerate(heads_mean.astype(np.float64)):
            mixed = (1.0 - residual) * a + residual * eye  # (T, T)
            mixed /= mixed.sum(axis=-1, keepdims=True)
            acc = mixed @ acc  # (T, T)
            out[pos] = acc
        return out

    def entropy(self, kind: str | None = None) -> np.ndarray:
        """(L, H): mean over query rows of each row's entropy in nats (0 = attends to one token)."""
        w = self.weights[self.check_kind(kind)]  # (L, H, Tq, Tk)
        out = np.empty(w.shape[:2], dtype=np.float32)  # (L, H)
        for pos, layer in enumerate(w):  # one layer at a time keeps the temporaries small
            logs = np.zeros_like(layer)  # (H, Tq, Tk)
            np.log(layer, out=logs, where=layer > 0)  # 0 * log 0 counts as 0
            out[pos] = -np.einsum("hqk,hqk->hq", layer, logs).mean(axis=-1)
        return out

    def head_scores(self, kind: str | None = None) -> dict[str, np.ndarray]:
        """Per-head behaviour scores, each (L, H) and averaged over query rows:

        "cls": weight on the first key token ([CLS]/bos), "sep": weight on [SEP]/eos-like special
        tokens after the first, "previous": weight on the token just before the query, "self": weight
        on the query's own position, "entropy": as `entropy()`.
        """
        kind = self.check_kind(kind)
        w = self.weights[kind]  # (L, H, Tq, Tk)
        tq, tk = w.shape[-2:]
        specials = {t for t, s in zip(self.tokens, self.segments.tolist(), strict=True) if s < 0}
        special = np.array([t in specials for t in self.tokens_for(kind)[1]], dtype=bool)  # (Tk,)
        special[0] = False  # the first token is scored as "cls"
        n = min(tq, tk)
        rows = np.arange(1, n)
        diag = w[..., np.arange(n), np.arange(n)].mean(axis=-1) if n else np.zeros(w.shape[:2])
        prev = w[..., rows, rows - 1].mean(axis=-1) if n > 1 else np.zeros(w.shape[:2])
        return {
            "cls": w[..., :, 0].mean(axis=-1),  # (L, H)
            "sep": w[..., :, special].sum(axis=-1).mean(axis=-1),  # (L, H)
            "previous": prev.astype(np.float32),
            "self": diag.astype(np.float32),
            "entropy": self.entropy(kind),
        }

    def merge_words(self) -> Attention:
        """A word-level copy: word pieces of one word become one token.

        For a word covering query rows R and key columns C, the merged weight is the sum over C
        (attention paid to any piece counts for the word) of the mean over R (each piece asks once),
        so rows still sum to 1. Special tokens stay single. Word-piece text is joined with "##" markers
        removed. Decoder tokens are not merged (generated ids carry no word boundaries).
        """
        groups: list[list[int]] = []
        seen: dict[tuple[int, int], int] = {}
        for i, (seg, wid) in enumerate(
            zip(self.segments.tolist(), self.word_ids.tolist(), strict=True)
        ):
            if wid < 0:
                groups.append([i])
            elif (seg, wid) in seen:
                groups[seen[(seg, wid)]].append(i)
            else:
                seen[(seg, wid)] = len(groups)
                groups.append([i])
        t = len(self.tokens)
        assign = np.zeros((t, len(groups)), dtype=np.float64)  # (T, W): token i is in word g
        for g, members in enumerate(groups):
            assign[members, g] = 1.0
        row_mean = assign / assign.sum(axis=0, keepdims=True)  # (T, W), columns sum to 1
        weights = {}
        for kind, w in self.weights.items():
            rows = row_mean if kind in ("self", "encoder") else None
            cols = assign if kind in ("self", "encoder", "cross") else None
            m = w.astype(np.float64)  # (L, H, Tq, Tk)
            if cols is not None:
                m = m @ cols  # (L, H, Tq, W)
            if rows is not None:
                m = np.einsum("tw,lhtk->lhwk", rows, m)  # (L, H, W, W)
            weights[kind] = m.astype(np.float32)
        words = ["".join(_piece(self.tokens[i], k > 0) for k, i in enumerate(g)) for g in groups]
        return replace(
            self,
            tokens=words,
            weights=weights,
            segments=np.array([self.segments[g[0]] for g in groups], dtype=np.int8),
            word_ids=np.array([self.word_ids[g[0]] for g in groups], dtype=np.int32),
            prompt_length=None
            if self.prompt_length is None
            else sum(1 for g in groups if g[0] < self.prompt_length),
            merged=True,
        )

    # ------------------------------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike[str]) -> str:
        """Write one .npz file: the weight arrays plus a JSON entry with tokens and metadata."""
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        meta = {
            "format": "nbkit.core.attention/1",
            "tokens": self.tokens,
            "decoder_tokens": self.decoder_tokens,
            "layers": self.layers,
            "causal": self.causal,
            "prompt_length": self.prompt_length,
            "note": self.note,
            "model_name": self.model_name,
            "merged": self.merged,
        }
        arrays = {f"weights_{k}": v for k, v in self.weights.items()}
        blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        tmp = path + ".tmp.npz"
        np.savez(tmp, meta_json=blob, segments=self.segments, word_ids=self.word_ids, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Attention:
        """Read a file written by `save` (no pickles are loaded)."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta_json"]).decode("utf-8"))
            if meta.get("format") != "nbkit.core.attention/1":
                raise AttentionError(f"{os.fspath(path)!r} is not an nbkit attention file.")
            weights = {
                k[len("weights_") :]: data[k] for k in data.files if k.startswith("weights_")
            }
            segments, word_ids = data["segments"], data["word_ids"]
        meta.pop("format")
        return cls(weights=weights, segments=segments, word_ids=word_ids, **meta)


def color_max(weights: np.ndarray, sink: bool) -> float:
    """Top of the colour scale for a (Tq, Tk) map: its maximum; with `sink` (causal LMs), the maximum
    outside the first key column. Decoder LLMs park most of every row on the first token (an
    "attention sink"), which would otherwise wash every other cell out to white; that column then
    saturates. The one rule for the widget, the plotly figure and the PNG."""
    rest = weights[:, 1:] if sink and weights.shape[-1] > 2 else weights
    top = float(np.nanmax(rest)) if rest.size else 0.0
    return top if top > 0 else float(np.nanmax(weights)) if weights.size else 0.0


def _piece(token: str, continuation: bool) -> str:
    return token[2:] if continuation and token.startswith("##") else token


def top_k(weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest weights of each row, for drawing: (indices, values), each (..., k), unsorted."""
    k = max(1, min(int(k), weights.shape[-1]))
    if k == weights.shape[-1]:
        idx = np.broadcast_to(np.arange(k), weights.shape).copy()  # (..., k)
    else:
        idx = np.argpartition(weights, -k, axis=-1)[..., -k:]  # (..., k)
    return idx, np.take_along_axis(weights, idx, axis=-1)


# ------------------------------------------------------------------------------------------ capture
def _max_length(model: Any, tokenizer: Any) -> int | None:
    config = getattr(model, "config", None)
    limits = [getattr(tokenizer, "model_max_length", None)]
    for name in ("max_position_embeddings", "n_positions"):
        limits.append(getattr(config, name, None))
    usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
    return min(usable) if usable else None


def _accepted(model: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(model.forward).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return inputs
    return {k: v for k, v in inputs.items() if k in params}


def _stack(maps: Any, keep: list[int]) -> np.ndarray:
    # maps: tuple over layers of (1, H, Tq, Tk) tensors
    return np.stack([maps[i][0].detach().float().cpu().numpy() for i in keep])  # (L, H, Tq, Tk)


def unpack_model(model: Any, tokenizer: Any, text: Any) -> tuple[Any, Any, Any]:
    """(model, tokenizer, text) from `f(model, tokenizer, text)` or `f(run, text)`: a `Run` (anything
    with `.model` and `.tokenizer` that is not itself a model) brings its own tokenizer."""
    import torch

    if not isinstance(model, torch.nn.Module) and hasattr(model, "model") and hasattr(model, "tokenizer"):
        if text is None and not hasattr(tokenizer, "convert_ids_to_tokens"):
            tokenizer, text = None, tokenizer
        if tokenizer is None:
            tokenizer = model.tokenizer
        model = model.model
        if tokenizer is None:
            raise AttentionError("this run has no tokenizer; pass one: capture_attention(run.model, tokenizer, text).")
    return model, tokenizer, text


def _gib(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


@dataclass
class _Prepared:
    """The token sequence a capture runs on (after chat templating and generation), shared by the
    models of a comparison so that both see exactly the same input."""

    inputs: dict[str, Any]
    ids: list[int]
    segments: list[int]
    word_ids: list[int | None]
    decoder_ids: list[int] | None
    prompt_length: int | None
    note: str
    encdec: bool


def _check_model(model: Any) -> Any:
    import torch

    config = getattr(model, "config", None)
    if (
        not isinstance(model, torch.nn.Module)
        or config is None
        or not hasattr(model, "set_attn_implementation")
    ):
        raise AttentionError(
            f"{type(model).__name__} is not a Hugging Face transformers model with attention layers; "
            "pass one loaded with nbkit.load_model or from_pretrained."
        )
    return config


def _prepare(model: Any, tokenizer: Any, text: Any, *, text_pair: str | None, target: str | None,
             max_new_tokens: int | None, truncate: bool, chat: bool | None,
             max_memory: float | None, layers_hint: int | None = None, copies: int = 1) -> _Prepared:
    """Validate, tokenize (through the chat template for chat models) and, with `max_new_tokens`,
    generate greedily with the model's own attention implementation."""
    import torch

    from .llm import attention as llm

    config = _check_model(model)
    if tokenizer is None or not callable(tokenizer):
        raise AttentionError("capture_attention(model, tokenizer, text) needs the model's tokenizer.")
    encdec = bool(getattr(config, "is_encoder_decoder", False))
    causal_lm = not encdec and bool(getattr(model, "can_generate", lambda: False)())
    if chat is None:
        chat = causal_lm and text_pair is None and bool(getattr(tokenizer, "chat_template", None))
    if isinstance(text, (list, tuple)) and chat:
        if not text or not all(isinstance(m, dict) and "role" in m and "content" in m for m in text):
            raise AttentionError("text must be a string or a list of {'role': ..., 'content': ...} turns.")
    elif not isinstance(text, str):
        raise AttentionError(f"text must be a string, not {type(text).__name__}.")
    elif not text.strip():
        raise AttentionError("text is empty: pass at least one word to look at.")
    if text_pair is not None and not text_pair.strip():
        raise AttentionError("text_pair is empty: pass a second text or leave text_pair=None.")
    if chat and not getattr(tokenizer, "chat_template", None):
        raise AttentionError("chat=True needs a tokenizer with a chat template; pass chat=False for plain text.")
    if max_new_tokens and not encdec and not model.can_generate():
        raise AttentionError(
            f"max_new_tokens needs a model that can generate; {type(model).__name__} cannot. "
            "Load it with task='causal-lm' (or leave max_new_tokens unset)."
        )

    if chat:
        enc, seq_ids, word_ids = llm.encode_chat(tokenizer, text)
        length = int(enc["input_ids"].shape[1])
    else:
        length = len(tokenizer(text, text_pair, verbose=False)["input_ids"])
    limit, note = _max_length(model, tokenizer), ""
    new_tokens = 0 if encdec else int(max_new_tokens or 0)
    if limit is not None and length > limit and truncate and not chat and not new_tokens:
        note = f"Input truncated to {limit} of {length} tokens."
    elif limit is not None and length + new_tokens > limit:
        plus = f" plus {new_tokens} to generate" if new_tokens else ""
        keep = "" if chat or new_tokens else " or pass truncate=True to keep the first tokens"
        raise AttentionError(
            f"The input is {length} tokens{plus} but the model takes at most {limit}; "
            f"shorten the text{keep}."
        )
    if not chat:
        cut = {"truncation": True, "max_length": limit} if note else {}
        enc = tokenizer(text, text_pair, return_tensors="pt", **cut)
        seq_ids = enc.sequence_ids(0) if hasattr(enc, "sequence_ids") else [0] * enc["input_ids"].shape[1]
        word_ids = enc.word_ids(0) if hasattr(enc, "word_ids") else list(range(len(seq_ids)))
        seq_ids = [-1 if s is None else s for s in seq_ids]
    t = int(enc["input_ids"].shape[1]) + (0 if encdec else int(max_new_tokens or 0))
    if max_memory is not None:
        heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0) or 1)
        n_layers = layers_hint or int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0) or 1)
        need = 2 * copies * n_layers * heads * t * t * 4  # the model's output tuple plus our float32 copy
        if need > max_memory:
            raise AttentionError(
                f"Capturing {n_layers} layers x {heads} heads x {t}^2 tokens needs about {_gib(need)}, over "
                f"max_memory={_gib(max_memory)}; shorten the text, lower max_new_tokens, or raise max_memory."
            )

    device = next(model.parameters()).device
    inputs = _accepted(model, {k: v.to(device) for k, v in enc.items()})
    ids = enc["input_ids"][0].tolist()
    prompt_length, decoder_ids = None, None
    if encdec:
        if target is not None:
            tgt = tokenizer(text_target=target, return_tensors="pt")["input_ids"]  # (1, Td)
            start = torch.tensor([[config.decoder_start_token_id]])  # (1, 1)
            decoder = torch.cat([start, tgt], dim=1).to(device)  # (1, Td + 1)
        else:
            n = _DEFAULT_NEW_TOKENS if max_new_tokens is None else max_new_tokens
            decoder = _generate(model, inputs, {"max_new_tokens": max(1, n), "do_sample": False})
        inputs["decoder_input_ids"] = decoder
        decoder_ids = decoder[0].tolist()
    elif max_new_tokens:
        options = llm.generation_options(model, tokenizer) if chat else {"do_sample": False}
        gen = _generate(model, inputs, {"max_new_tokens": max_new_tokens, **options})  # (1, T + N)
        prompt_length = len(ids)
        ids = gen[0].tolist()
        specials = llm.special_ids(tokenizer)
        answer = [llm.SEGMENT_TEMPLATE if i in specials else llm.SEGMENT_ANSWER for i in ids[prompt_length:]]
        seq_ids = [*seq_ids, *answer]
        # Generated positions have no word ids from the tokenizer: number them after the prompt's words.
        top = max([w for w in word_ids if w is not None], default=-1)
        word_ids = [*word_ids, *[top + 1 + k for k in range(len(ids) - prompt_length)]]
        inputs = {"input_ids": gen, "attention_mask": torch.ones_like(gen)}
    return _Prepared(inputs=inputs, ids=ids, segments=list(seq_ids), word_ids=list(word_ids),
                     decoder_ids=decoder_ids, prompt_length=prompt_length, note=note, encdec=encdec)


def _generate(model: Any, inputs: dict[str, Any], options: dict[str, Any]) -> Any:
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model.generate(**inputs, **options)
    finally:
        model.train(was_training)


def _forward(model: Any, tokenizer: Any, prep: _Prepared, layers: list[int] | None) -> Attention:
    """One forward pass with attention weights (eager for the pass, the model's own implementation
    restored afterwards) over the prepared sequence."""
    import torch

    from .llm import attention as llm

    config = model.config
    original = getattr(config, "_attn_implementation", None)
    was_training = model.training
    if original in _NO_WEIGHTS:
        model.set_attn_implementation("eager")
    model.eval()
    try:
        with torch.no_grad():
            out = model(**prep.inputs, output_attentions=True, return_dict=True)
    finally:
        if original in _NO_WEIGHTS:
            model.set_attn_implementation(original)
        model.train(was_training)

    maps = (
        {
            "encoder": out.encoder_attentions,
            "decoder": out.decoder_attentions,
            "cross": out.cross_attentions,
        }
        if prep.encdec
        else {"self": getattr(out, "attentions", None)}
    )
    if not maps[next(iter(maps))]:
        raise AttentionError(
            f"{type(model).__name__} returned no attention weights (implementation {original!r}). "
            "Reload it with attn_implementation='eager'."
        )
    total = len(maps[next(iter(maps))])
    keep = (
        list(range(total))
        if layers is None
        else [_check_index(x, total, "layer", "this model") for x in layers]
    )
    if not keep:
        raise AttentionError(f"layers is empty; pick some of 0-{total - 1}.")
    weights = {kind: _stack(m, keep) for kind, m in maps.items() if m}  # kind -> (L, H, Tq, Tk)
    del out, maps
    first = weights.get("self")
    # Causal if no query of layer 0 sees a later token (checking one layer keeps this cheap).
    causal = first is not None and first.shape[-1] > 1 and not np.triu(first[0], k=1).any()
    return Attention(
        tokens=llm.readable_tokens(tokenizer, prep.ids),
        weights=weights,
        segments=np.array(prep.segments, dtype=np.int8),
        word_ids=np.array([-1 if w is None else w for w in prep.word_ids], dtype=np.int32),
        layers=keep,
        decoder_tokens=None if prep.decoder_ids is None else llm.readable_tokens(tokenizer, prep.decoder_ids),
        causal=bool(causal),
        prompt_length=prep.prompt_length,
        note=prep.note,
        model_name=model_name(model),
    )


def model_name(model: Any) -> str:
    """The model's name for titles; a peft model is named after its base, plus its adapter type."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(inner, "config", None)
    name = str(getattr(config, "_name_or_path", "") or type(inner).__name__)
    if os.path.isabs(name):  # a local folder (e.g. nbkit's cache): its last part names the model
        name = os.path.basename(name.rstrip(os.sep)) or name
    if inner is not model:
        try:
            kind = str(model.peft_config[model.active_adapter].peft_type.value)
        except (AttributeError, KeyError, TypeError):
            kind = "adapter"
        name += " + " + {"LORA": "LoRA"}.get(kind, kind)
    return name


@check_kwargs(meant={"decoder_text": "target", "labels": "target", "max_length": "max_new_tokens",
                     "generate": "max_new_tokens"})
def capture_attention(
    model: Any,
    tokenizer: Any = None,
    text: Any = None,
    *,
    text_pair: str | None = None,
    layers: list[int] | None = None,
    target: str | None = None,
    max_new_tokens: int | None = None,
    truncate: bool = True,
    chat: bool | None = None,
    max_memory: float | None = 2e9,
) -> Attention:
    """Run `model` once on `text` (and `text_pair`) and return its attention weights.

    Works for encoders (BERT), decoders (GPT-2, Llama with grouped-query attention: one map per query
    head) and encoder-decoders (T5, BART); `model` may be a peft model, or a `Run` in place of
    (model, tokenizer). A model on an implementation that cannot return weights (sdpa, flash) is
    switched to eager attention for the capture and switched back afterwards. `layers` keeps only
    those layer indices. Chat models (a causal LM whose tokenizer has a chat template; `chat=None`
    decides so) see `text` as the user's turn through the template, with the assistant's turn opened;
    `text` may also be a list of {role, content} turns. A causal model with `max_new_tokens` first
    answers greedily (stopping at eos / end of turn), then one forward pass over prompt + answer gives
    the weights (exactly what greedy decoding attended to); `prompt_length` marks where the answer
    starts. Encoder-decoders take the decoder side from `target`, else from `max_new_tokens`
    (default 20) greedy tokens. Inputs longer than the model's maximum are truncated with a `note`,
    or raise with `truncate=False`. A capture that would hold more than `max_memory` bytes of
    weights (layers x heads x T^2 float32, twice) is refused before it runs.
    """
    model, tokenizer, text = unpack_model(model, tokenizer, text)
    prep = _prepare(model, tokenizer, text, text_pair=text_pair, target=target,
                    max_new_tokens=max_new_tokens, truncate=truncate, chat=chat, max_memory=max_memory)
    return _forward(model, tokenizer, prep, layers)
