"""One schema for training options: `fit(**options)`, `finetune(**config)`, the `%%finetune` YAML body
and `nbkit finetune CONFIG.yaml` are all validated here, so they accept the same keys, defaults and
errors. Each field documents itself (`help`), which `%finetune --help` and the CLI print.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
METRICS = ("accuracy", "f1", "perplexity", "exact_match")
TASKS = (
    "sequence-classification",
    "token-classification",
    "causal-lm",
    "masked-lm",
    "seq2seq",
    "base",
)


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key and what is allowed."""


def _opt(default: Any, help: str, kind: Any, *, choices=None, min=None, gt=None, max=None, lt=None):
    meta = {"help": help, "kind": kind, "choices": choices, "min": min, "gt": gt, "max": max, "lt": lt}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Options of `nbkit.fit`. Defaults here are the defaults everywhere."""

    epochs: int = _opt(1, "passes over the training data", int, min=1)
    max_steps: int | None = _opt(None, "stop after this many optimizer steps (overrides epochs)", int, min=1)
    lr: float = _opt(5e-5, "peak learning rate", float, gt=0)
    batch_size: int = _opt(16, "examples per forward pass (per process)", int, min=1)
    grad_accum: int = _opt(1, "forward passes per optimizer step", int, min=1)
    optimizer: str = _opt("adamw", "optimizer", str, choices=OPTIMIZERS)
    weight_decay: float = _opt(0.0, "decoupled weight decay (not applied to biases and norms)", float, min=0)
    scheduler: str = _opt("linear", "learning-rate schedule after warm-up", str, choices=SCHEDULERS)
    warmup: float = _opt(0.0, "warm-up: a fraction of all steps if < 1, else a number of steps", float, min=0)
    max_grad_norm: float | None = _opt(1.0, "clip gradients to this global norm (null: no clipping)", float, gt=0)
    precision: str = _opt("auto", "auto: bf16/fp16 autocast on GPUs, fp32 on CPU", str, choices=PRECISIONS)
    group_by_length: bool | None = _opt(
        None, "batch texts of similar length together (default: on for text data)", bool
    )
    max_length: int = _opt(256, "truncate tokenized texts to this many tokens", int, min=2)
    eval_every: int | None = _opt(None, "evaluate every N steps (default: at each epoch end)", int, min=1)
    metrics: list = _opt([], "eval metrics: accuracy, f1 (macro), perplexity, exact_match (LLM answers)",
                         list, choices=METRICS)
    best_metric: str = _opt("eval_loss", "metric that picks the best checkpoint", str)
    early_stopping: int | None = _opt(None, "stop after N evaluations without improvement", int, min=1)
    seed: int = _opt(0, "random seed for weights init, data order and dropout", int, min=0)
    scale_lr: bool = _opt(False, "multiply lr by the number of processes (linear scaling rule)", bool)
    name: str | None = _opt(None, "run name (default: derived from the model)", str)
    run_dir: str | None = _opt(None, "run directory (default: ./nbkit-runs/<name>-<time>)", str)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FinetuneConfig(TrainConfig):
    """What `%%finetune`, `nbkit.finetune` and `nbkit finetune` accept: model and data plus fit options."""

    model: Any = _opt("minilm", "model: 'minilm', a hub id or a local folder", str)
    data: Any = _opt("sentiment", "data: a CSV/JSON/Parquet path, a hub dataset, or 'sentiment'", str)
    task: str = _opt("sequence-classification", "what the model predicts", str, choices=TASKS)
    text: str = _opt("text", "column holding the input text", str)
    text_pair: str | None = _opt(None, "column holding a second text (sentence pairs)", str)
    label: str | None = _opt("label", "column holding the label", str)
    eval_split: float = _opt(0.1, "fraction (or count) of train held out for eval when data has none", float, min=0)
    test: bool = _opt(True, "evaluate on the data's test split at the end, when it has one", bool)
    processes: int = _opt(1, "worker processes per machine (> 1: launched with `launcher`)", int, min=1)
    launcher: str = _opt("accelerate", "how workers start: accelerate launch or torchrun", str,
                         choices=("accelerate", "torchrun"))
    accelerate_config: str | None = _opt(None, "an accelerate config file (DDP/FSDP/DeepSpeed settings)", str)
    hosts: int = _opt(1, "machines taking part (each runs `processes` workers)", int, min=1)
    main_address: str = _opt("127.0.0.1", "address of machine 0 when hosts > 1", str)
    epochs: int = _opt(3, "passes over the training data", int, min=1)
    # Instruction-tuned LLMs (task: causal-lm; see nbkit.core.llm)
    train_on: str = _opt("answers", "causal-lm chat data: train on the answers only, or on all tokens", str,
                         choices=("answers", "all"))
    chat_template: str | None = _opt(None, "a chat template for a tokenizer without one: chatml, Jinja or a file", str)
    lora: Any = _opt(False, "LoRA adapters via peft: true, or {r, alpha, dropout, target_modules}", dict)
    load_in_4bit: bool = _opt(False, "QLoRA: load the base model in 4-bit NF4 (CUDA and bitsandbytes)", bool)
    gradient_checkpointing: bool = _opt(False, "recompute activations in backward (less memory, slower)", bool)
    generate_eval: int = _opt(32, "eval examples answered greedily for exact_match at each evaluation", int, min=0)
    max_new_tokens: int | None = _opt(None, "tokens generated per exact_match answer (default: fits the references)",
                                      int, min=1)


def _describe(meta: dict) -> str:
    kind = meta["kind"]
    parts = []
    if meta["choices"]:
        parts.append("one of " + ", ".join(meta["choices"]))
    else:
        parts.append({int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list",
                      dict: "true, false or a mapping"}[kind])
    for key, sym in (("min", ">="), ("gt", ">"), ("max", "<="), ("lt", "<")):
        if meta[key] is not None:
            parts.append(f"{sym} {meta[key]:g}")
    return " ".join(parts)


def _coerce(key: str, value: Any, meta: dict, default: Any) -> Any:
    kind = meta["kind"]
    if value is None:
        if meta.get("nullable"):
            return None
        _fail(key, value, meta)
    if kind is str and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if kind is float and isinstance(value, str):
        # YAML 1.1 reads `5e-5` (no dot) as a string; accept it as the number the user meant.
        try:
            value = float(value)
        except ValueError:
            _fail(key, value, meta)
    if key == "lora":
        from .llm.lora import lora_options

        lora_options(value)  # raises ConfigError naming the bad key
        return value
    if key in ("model", "data") and not isinstance(value, str):
        if isinstance(value, (bool, int, float)):
            _fail(key, value, meta)
        return value  # an object from the user's namespace ($df, $model); the loaders check it
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        _fail(key, value, meta)
    if kind is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            _fail(key, value, meta)
        value = list(value)
        for v in value:
            if meta["choices"] and isinstance(v, str) and v not in meta["choices"]:
                _fail(key, v, meta, item=True)
            if not (isinstance(v, str) or callable(v)):
                _fail(key, v, meta, item=True)
        return value
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if not ok:
        _fail(key, value, meta)
    if meta["choices"] and value not in meta["choices"]:
        _fail(key, value, meta)
    for bound, test in (("min", lambda v, b: v >= b), ("gt", lambda v, b: v > b),
                        ("max", lambda v, b: v <= b), ("lt", lambda v, b: v < b)):
        if meta[bound] is not None and not test(value, meta[bound]):
            _fail(key, value, meta)
    return value


def _fail(key: str, value: Any, meta: dict, item: bool = False):
    hint = ""
    if meta["choices"] and isinstance(value, str):
        close = difflib.get_close_matches(value, meta["choices"], n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    what = f"each item of {key!r}" if item else f"{key!r}"
    raise ConfigError(f"{what} must be {_describe(meta)}, got {value!r}{hint}")


def build_config(cls: type, values: dict[str, Any] | None = None, **kwargs: Any):
    """Validate `values` (from YAML, the CLI or keyword arguments) into an instance of `cls`.

    Raises one `ConfigError` naming the first bad key, its value and what is allowed.
    """
    merged = {**(values or {}), **kwargs}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in merged:
        if not isinstance(key, str) or key not in fields:
            # A prefix ("lrate" -> "lr") is a better guess than difflib's ratio for short keys.
            close = [f for f in fields if str(key).startswith(f) or f.startswith(str(key))]
            close = close or difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown key {key!r}{hint}. Valid keys: {', '.join(fields)}.")
    clean = {}
    for key, value in merged.items():
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        meta = {**f.metadata, "nullable": "None" in str(f.type)}
        clean[key] = _coerce(key, value, meta, default)
    return cls(**clean)


def config_help(cls: type = FinetuneConfig) -> str:
    """Every key with its type, default and meaning, for `%finetune --help` and `nbkit finetune --help`."""
    rows = []
    # The subclass's own keys (model, data, ...) first: they are what a reader looks for.
    own = [f for f in dataclasses.fields(cls) if f.name in cls.__annotations__]
    for f in own + [f for f in dataclasses.fields(cls) if f not in own]:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f.name, _describe(f.metadata), repr(default), f.metadata["help"]))
    w0 = max(len(r[0]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    return "\n".join(f"  {k:<{w0}}  default {d:<{w2}}  {h} ({t})" for k, t, d, h in rows)
