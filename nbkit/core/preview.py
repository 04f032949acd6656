"""What `%%finetune --dry-run` shows: the resolved config, the model and the first training example as
the model will see it, built by the same `prepare` that `finetune` uses, without training or writing.

Core layer (no IPython). It is private until `nbkit.finetune` grows a `dry_run=` twin that returns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
class FinetunePreview:
    config: dict[str, Any]  # resolved, printable
    summary: Any  # nbkit.core.models.ModelSummary
    splits: dict[str, int]  # rows per split
    example: dict[str, Any] = field(default_factory=dict)  # text, text_pair, label, tokens
    notes: list[str] = field(default_factory=list)  # what training will change, e.g. a capped max_length
    max_length: int | None = None  # the one training will use: config's, at most the model's positions

    def config_text(self) -> str:
        import yaml

        notes = "".join(f"\n# note: {n}" for n in self.notes)
        return "# resolved config\n" + yaml.safe_dump(self.config, sort_keys=False).rstrip() + notes

    def example_text(self) -> str:
        ex = self.example
        rows = ", ".join(f"{name} {n}" for name, n in self.splits.items())
        lines = [f"# data: {rows} rows", "# first training example"]
        lines.append(f"text:   {ex['text']!r}")
        if ex.get("text_pair") is not None:
            lines.append(f"pair:   {ex['text_pair']!r}")
        if "label" in ex:
            lines.append(f"label:  {ex['label']!r}")
        limit = self.max_length or self.config.get("max_length")
        lines.append(f"tokens ({len(ex['tokens'])} of max_length {limit}): "
                     + " ".join(ex["tokens"]))
        return "\n".join(lines)

    def __str__(self) -> str:
        return "\n\n".join([self.config_text(), "# model\n" + str(self.summary), self.example_text()])


def preview_finetune(cfg: Any) -> FinetunePreview:
    """Load the data and model of a resolved `FinetuneConfig` and describe them (nothing is written)."""
    from .models import capped_max_length, model_summary
    from .train.finetune import prepare

    data, model, tokenizer = prepare(cfg)
    # What fit will do: never more tokens than the model has positions for. The config block stays
    # as resolved (the same in the magic, Python and the CLI); a note says what changes.
    max_length, note = capped_max_length(cfg.max_length, model, tokenizer)
    train = data["train"]
    row = train[0]
    # load_data renamed the configured columns to text, text_pair and label.
    text, pair = row["text"], row.get("text_pair")
    enc = tokenizer(text, pair, truncation=True, max_length=max_length)
    example: dict[str, Any] = {
        "text": text,
        "text_pair": pair,
        "tokens": tokenizer.convert_ids_to_tokens(enc["input_ids"]),
    }
    if "label" in row:
        label = row["label"]
        names = getattr(train.features.get("label"), "names", None)
        example["label"] = names[label] if names and isinstance(label, int) else label
    return FinetunePreview(
        config=printable_config(cfg),
        notes=[note] if note else [],
        max_length=max_length,
        summary=model_summary(model),
        splits={name: len(split) for name, split in data.items()},
        example=example,
    )
