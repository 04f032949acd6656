"""What `%%finetune --dry-run` and `nbkit.finetune(..., dry_run=True)` return: a `Preview` of the run
without training or writing anything: the resolved config, the model, the first training examples as
the model sees them (for LLM data: which tokens are trained), their length distribution, how many
`max_length` cuts, the trainable parameters and an estimate of training memory.

Built by the same `prepare` that `finetune` uses, so what it shows is what training gets. Core layer
(no IPython): `_repr_html_` is plain escaped HTML that Jupyter renders.
"""

from __future__ import annotations

import dataclasses
import html
import statistics
from dataclasses import dataclass, field
from typing import Any

N_EXAMPLES = 3  # examples shown in the preview


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return isinstance(value, list) and all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, (str, int, float, bool, type(None)))


def printable_config(cfg: Any) -> dict[str, Any]:
    """The config as YAML-safe data: objects from the notebook become "<TypeName>" as in config.yaml,
    metric functions their name."""
    out = {}
    for key, value in cfg.__dict__.items():
        if key == "metrics":
            value = [v if isinstance(v, str) else getattr(v, "__name__", repr(v)) for v in value]
        elif not _plain(value):
            value = f"<{type(value).__name__}>"
        out[key] = value
    return out


@dataclass
class PreviewExample:
    """One training example as the model sees it: `tokens` (the tokenizer's token strings), `trained`
    (one boolean per token: is it a target of the loss), `pieces` (each token's text)."""

    tokens: list[str]
    trained: list[bool]
    pieces: list[str]
    text: str | None = None
    text_pair: str | None = None
    label: Any = None
    truncated: bool = False  # max_length cut trained tokens off this example

    @property
    def trained_text(self) -> str:
        """The text of the trained tokens, joined (what the loss teaches)."""
        return "".join(p for p, t in zip(self.pieces, self.trained, strict=True) if t)


@dataclass
class Preview:
    config: dict[str, Any]  # resolved, printable
    summary: Any  # nbkit.core.models.ModelSummary
    splits: dict[str, int]  # rows per split
    examples: list[PreviewExample] = field(default_factory=list)
    kind: str = "classification"  # or "llm"
    format: str | None = None  # LLM data: messages, prompt-completion or text
    lengths: dict[str, int] = field(default_factory=dict)  # tokens per train example: min, median, p95, max
    truncated: int = 0  # train examples whose trained tokens max_length cut
    trainable_params: int = 0
    total_params: int = 0
    memory: dict[str, int] = field(default_factory=dict)  # estimated bytes: weights, gradients, ...
    notes: list[str] = field(default_factory=list)  # what training will change, e.g. a capped max_length
    max_length: int | None = None  # the one training will use: config's, at most the model's positions

    @property
    def example(self) -> dict[str, Any]:
        """The first example as a dict (text, text_pair, label, tokens)."""
        ex = self.examples[0]
        out: dict[str, Any] = {"text": ex.text, "text_pair": ex.text_pair, "tokens": ex.tokens}
        if ex.label is not None:
            out["label"] = ex.label
        return out

    @property
    def limit(self) -> Any:
        """The max_length training will use (the config's, cut to the model's positions)."""
        return self.max_length or self.config.get("max_length")

    @property
    def memory_bytes(self) -> int:
        return sum(self.memory.values())

    # -- text -------------------------------------------------------------------------------------

    def config_text(self) -> str:
        import yaml

        notes = "".join(f"\n# note: {n}" for n in self.notes)
        return "# resolved config\n" + yaml.safe_dump(self.config, sort_keys=False).rstrip() + notes

    def data_lines(self) -> list[str]:
        from .models import human_bytes, human_count

        rows = ", ".join(f"{name} {n}" for name, n in self.splits.items())
        lines = [f"# data: {rows} rows" + (f" ({self.format} format)" if self.format else "")]
        if self.lengths:
            lines.append("# tokens per example: " + ", ".join(f"{k} {v}" for k, v in self.lengths.items())
                         + f"; {self.truncated} truncated by max_length {self.limit}")
        share = self.trainable_params / self.total_params if self.total_params else 0
        lines.append(f"# trainable parameters: {human_count(self.trainable_params)} of "
                     f"{human_count(self.total_params)} ({share:.1%})")
        if self.memory:
            parts = ", ".join(f"{k} {human_bytes(v)}" for k, v in self.memory.items())
            lines.append(f"# training memory (estimate): {human_bytes(self.memory_bytes)} ({parts})")
        return lines

    def example_text(self) -> str:
        lines = self.data_lines()
        for i, ex in enumerate(self.examples):
            lines.append("# first training example" if i == 0 else f"# training example {i + 1}")
            if ex.text is not None:
                lines.append(f"text:   {ex.text!r}")
            if ex.text_pair is not None:
                lines.append(f"pair:   {ex.text_pair!r}")
            if ex.label is not None:
                lines.append(f"{'answer' if self.kind == 'llm' else 'label'}: {ex.label!r}")
            lines.append(f"tokens ({len(ex.tokens)} of max_length {self.limit}): "
                         + " ".join(ex.tokens))
            if self.kind == "llm":
                lines.append(f"trained ({sum(ex.trained)} tokens{', truncated' if ex.truncated else ''}): "
                             f"{ex.trained_text!r}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return "\n\n".join([self.config_text(), "# model\n" + str(self.summary), self.example_text()])

    def __repr__(self) -> str:
        return (f"<nbkit.Preview {self.kind} {self.summary.architecture}, {len(self.examples)} examples, "
                f"{self.trainable_params:,} trainable parameters>")

    # -- HTML -------------------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<div>{esc(line.lstrip('# '))}</div>" for line in self.data_lines())
        blocks = []
        for i, ex in enumerate(self.examples):
            spans = []
            for piece, token, trained in zip(ex.pieces, ex.tokens, ex.trained, strict=True):
                style = ("background:#c8e6c9;color:#1b5e20" if trained else "color:#777")
                shown = esc(piece).replace("\n", "\u21b5<br>") or "&#8203;"
                spans.append(f'<span title="{esc(token)}" style="{style};white-space:pre-wrap">{shown}</span>')
            label = (f" &middot; label <b>{esc(str(ex.label))}</b>"
                     if ex.label is not None and self.kind != "llm" else "")
            cut = " &middot; <b>truncated</b>" if ex.truncated else ""
            blocks.append(
                f"<div style='margin-top:6px'><b>example {i + 1}</b> &middot; {len(ex.tokens)} tokens, "
                f"{sum(ex.trained)} trained{label}{cut}</div>"
                f"<div style='font-family:monospace;border:1px solid #ddd;padding:4px'>{''.join(spans)}</div>"
            )
        legend = ("<div style='font-size:90%'><span style='background:#c8e6c9'>green</span>: trained "
                  "tokens (loss on them); grey: context only</div>") if self.kind == "llm" else ""
        return (f"<div class='nbkit-preview'><div><b>{esc(self.summary.architecture)}</b> "
                f"{esc(str(self.summary.name))}</div>{head}{legend}{''.join(blocks)}</div>")


# --- building ------------------------------------------------------------------------------------


def estimate_memory(model: Any, *, batch_size: int, seq_len: int, gradient_checkpointing: bool = False,
                    lm: bool = False) -> dict[str, int]:
    """Bytes a training step needs, roughly: weights, gradients and AdamW state of the trainable
    parameters, and activations (per layer ~34*b*s*h + 5*a*b*s^2 16-bit values, Korthikanti et al.
    2022, doubled for fp32) plus the logits and their gradient."""
    params = list(model.parameters())
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    config = getattr(model, "config", None)
    if config is not None and callable(getattr(config, "get_text_config", None)):
        config = config.get_text_config()
    h = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0) or 0
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 0) or 0
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 0) or 0
    vocab = (getattr(config, "vocab_size", 0) or 0) if lm else 0  # a classifier's logits are tiny
    b, s = batch_size, seq_len
    per_layer = 2 * (34 * b * s * h + 5 * heads * b * s * s)
    acts = per_layer * (1 if gradient_checkpointing else layers) + (4 * b * s * h * layers if gradient_checkpointing else 0)
    logits = 3 * 4 * b * s * vocab
    return {"weights": weights, "gradients": 4 * trainable, "optimizer": 8 * trainable,
            "activations": acts + logits}


def _length_stats(lengths: list[int]) -> dict[str, int]:
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"min": ordered[0], "median": int(statistics.median(ordered)), "p95": p95, "max": ordered[-1]}


def _llm_examples(split: Any, tokenizer: Any) -> list[PreviewExample]:
    out = []
    for i in range(min(N_EXAMPLES, len(split))):
        ids, labels = split.columns["input_ids"][i], split.columns["labels"][i]
        conv = split.conversations[i]
        text = conv.text if conv.text is not None else None
        out.append(PreviewExample(
            tokens=tokenizer.convert_ids_to_tokens(ids), trained=[v != -100 for v in labels],
            pieces=[tokenizer.decode([t]) for t in ids], text=text,
            label=conv.answer if conv.messages else None,
            truncated=split.truncated_rows[i],
        ))
    return out


def _weightless_twin(model: Any) -> Any:
    """A Hugging Face model's architecture without its weights (meta tensors), or a deep copy of a
    model that cannot be rebuilt from its config."""
    import copy

    import torch

    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "from_config") and not hasattr(type(model), "_from_config"):
        return copy.deepcopy(model)
    with torch.device("meta"):
        twin = type(model)._from_config(copy.deepcopy(config))
    return twin


def preview_finetune(cfg: Any) -> Preview:
    """Load the data and model of a resolved `FinetuneConfig` and describe them (nothing is written)."""
    from .llm.lora import trainable_params
    from .models import capped_max_length, model_summary
    from .train.finetune import prepare

    device = None
    if isinstance(cfg.model, tuple) and cfg.task == "causal-lm":
        # LoRA and a chat template would change the caller's model and tokenizer: a dry run changes
        # nothing. It works on a copy of the tokenizer and a weightless twin of the model (same
        # modules and shapes on the meta device), so previewing a 135M model costs no memory.
        import copy

        model, tokenizer = cfg.model
        device = str(next(model.parameters()).device)  # where it trains: the twin's are on "meta"
        cfg = dataclasses.replace(cfg, model=(_weightless_twin(model), copy.deepcopy(tokenizer)))
    data, model, tokenizer = prepare(cfg)
    trainable, total = trainable_params(model)
    # What fit will do: never more tokens than the model has positions for. The config block stays
    # as resolved (the same in the magic, Python and the CLI); a note says what changes.
    max_length, note = capped_max_length(cfg.max_length, model, tokenizer)
    summary = model_summary(model)
    if device is not None:
        summary = dataclasses.replace(summary, device=device)
    common = dict(config=printable_config(cfg), summary=summary,
                  splits={name: len(split) for name, split in data.items()},
                  trainable_params=trainable, total_params=total, notes=[note] if note else [],
                  max_length=max_length)
    if cfg.task == "causal-lm":
        train = data["train"]
        lengths = [len(x) for x in train.columns["input_ids"]]
        stats = _length_stats(lengths)
        return Preview(**common, kind="llm", format=data.format, examples=_llm_examples(train, tokenizer),
                       lengths=stats, truncated=train.truncated,
                       memory=estimate_memory(model, batch_size=cfg.batch_size, seq_len=stats["max"],
                                              gradient_checkpointing=cfg.gradient_checkpointing, lm=True))
    train = data["train"]
    names = getattr(train.features.get("label"), "names", None)
    rows = train.select(range(min(N_EXAMPLES, len(train)))).to_dict()
    examples = []
    for i in range(len(rows["text"])):
        # load_data renamed the configured columns to text, text_pair and label.
        text = rows["text"][i]
        pair = rows["text_pair"][i] if "text_pair" in rows else None
        ids = tokenizer(text, pair, truncation=True, max_length=max_length)["input_ids"]
        label = rows["label"][i] if "label" in rows else None
        if names and isinstance(label, int):
            label = names[label]
        examples.append(PreviewExample(tokens=tokenizer.convert_ids_to_tokens(ids), trained=[False] * len(ids),
                                       pieces=[tokenizer.decode([t]) + " " for t in ids], text=text,
                                       text_pair=pair, label=label))
    sample = train.select(range(min(1000, len(train)))).to_dict()
    enc = tokenizer(sample["text"], sample.get("text_pair"), truncation=False)["input_ids"]
    lengths = [min(len(x), max_length) for x in enc]
    truncated = sum(len(x) > max_length for x in enc)
    stats = _length_stats(lengths)
    return Preview(**common, kind="classification", examples=examples, lengths=stats, truncated=truncated,
                   memory=estimate_memory(model, batch_size=cfg.batch_size, seq_len=stats["max"]))


FinetunePreview = Preview  # the name this class had while it was private
