"""One schema for training options: `fit(**options)`, `finetune(**config)`, the `%%finetune` YAML body
and `nbkit finetune CONFIG.yaml` are all validated here, so they accept the same keys, defaults and
errors. Each field documents itself (`help`), which `%finetune --help` and the CLI print.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .suggest import closest, did_you_mean

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
METRICS = ("accuracy", "f1", "perplexity", "exact_match")
TRACKERS = ("tensorboard", "trackio", "mlflow")  # report_to; nbkit/core/train/trackers.py writes them
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


def yaml_safe(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with only values YAML (and JSON) can hold: an object from the notebook (a model, a
    DataFrame, a metric function) becomes its name or repr. The one rule config.yaml, events and
    resume comparisons share."""

    def plain(v: Any) -> Any:
        if isinstance(v, (str, int, float, bool, type(None))):
            return v
        if isinstance(v, enum.Enum):
            return plain(v.value)
        if isinstance(v, (list, tuple, set)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return getattr(v, "__name__", None) or f"<{type(v).__name__}>"

    return {k: plain(v) for k, v in config.items()}
class ArgumentError(ConfigError, TypeError):
    """An unknown keyword argument of a Python twin (`show_attention(decoder_text=...)`). A TypeError, as
    Python's own, and a ConfigError, so the magics and CLI show it as one line."""


# Hugging Face `TrainingArguments` names accepted as aliases of our keys. Only names whose meaning and
# values are the same here: a config pasted from a Trainer script then runs as written, and the run's
# config.yaml stores our name, so runs compare evenly. (transformers 5's warmup_steps is our warmup:
# a fraction if < 1, else steps; warmup_ratio, its older twin, must stay a fraction.)
TRAINER_ALIASES: dict[str, str] = {
    "learning_rate": "lr",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "warmup_steps": "warmup",
    "warmup_ratio": "warmup",
    "eval_steps": "eval_every",
    "lr_scheduler_type": "scheduler",
    "run_name": "name",
    "output_dir": "run_dir",
    "early_stopping_patience": "early_stopping",
}
# Trainer names whose value has another shape here: rejected, with what to write instead.
TRAINER_HINTS: dict[str, str] = {
    "bf16": "write precision: bf16",
    "fp16": "write precision: fp16",
    "optim": f"write optimizer: one of {', '.join(OPTIMIZERS)}",
    "eval_strategy": "write eval_every: N to evaluate every N steps (default: at each epoch end)",
    "evaluation_strategy": "write eval_every: N to evaluate every N steps (default: at each epoch end)",
    "logging_steps": "nbkit logs the loss at every optimizer step; nothing to set",
    "per_device_eval_batch_size": "evaluation uses batches of 2 x batch_size; set batch_size",
    "metric_for_best_model": "write best_metric: eval_<name>, e.g. eval_accuracy",
}

# The same Trainer names as keyword arguments of `fit` / `lr_find`: the key each one means here.
TRAINER_MEANT: dict[str, str] = {
    "bf16": "precision", "fp16": "precision", "optim": "optimizer", "eval_strategy": "eval_every",
    "evaluation_strategy": "eval_every", "metric_for_best_model": "best_metric",
    "per_device_eval_batch_size": "batch_size",
}


def resolve_aliases(values: dict[str, Any], fields: Any = None) -> dict[str, Any]:
    """`values` with Trainer's names (`learning_rate`, ...) renamed to ours (`lr`, ...).

    Raises ConfigError when a key is given under both names, or a Trainer name has no twin here.
    """
    fields = set(fields if fields is not None else FinetuneConfig.__dataclass_fields__)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(key, str) and key not in fields and key in TRAINER_HINTS:
            raise ConfigError(f"{key!r} is a Hugging Face Trainer argument; here {TRAINER_HINTS[key]}")
        target = TRAINER_ALIASES.get(key) if isinstance(key, str) and key not in fields else None
        if target is None or target not in fields:
            out[key] = value
            continue
        if target in values or target in out:
            raise ConfigError(f"{key!r} and {target!r} are the same key ({key} is Trainer's name for "
                              f"{target}); give one: {target}")
        if key == "warmup_ratio" and isinstance(value, (int, float)) and not 0 <= value < 1:
            raise ConfigError(f"'warmup_ratio' must be a fraction in [0, 1), got {value!r}; for a number "
                              "of steps write warmup: N")
        out[target] = value
    return out


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
    max_length: int = _opt(256, "truncate tokenized texts to this many tokens (at most the model's positions)",
                           int, min=2)
    eval_every: int | None = _opt(None, "evaluate every N steps (default: at each epoch end)", int, min=1)
    metrics: list = _opt([], "eval metrics: accuracy, f1 (macro), perplexity, exact_match (LLM answers)",
                         list, choices=METRICS)
    best_metric: str = _opt("eval_loss", "metric that picks the best checkpoint", str)
    early_stopping: int | None = _opt(None, "stop after N evaluations without improvement", int, min=1)
    keep_optimizer: bool = _opt(False, "keep the optimizer state in the last checkpoint after the run finishes", bool)
    seed: int = _opt(0, "random seed for weights init, data order and dropout", int, min=0)
    scale_lr: bool = _opt(False, "multiply lr by the number of processes (linear scaling rule)", bool)
    name: str | None = _opt(None, "run name (default: derived from the model)", str)
    run_dir: str | None = _opt(None, "run directory (default: ./nbkit-runs/<name>-<time>)", str)
    overwrite: bool = _opt(False, "replace the run already in run_dir (default: refuse, never mix two runs)", bool)
    report_to: list | None = _opt(
        [], "also log to trackers: tensorboard (RUN_DIR/tensorboard), trackio, mlflow "
        "(MLFLOW_TRACKING_URI or ./mlflow.db); 'all': those installed, 'none'", list,
        choices=TRACKERS + ("all", "none"),
    )

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
    allow_rare_labels: bool = _opt(
        False, "keep a label value with few rows whose name is close to another's (else: a typo error)", bool
    )
    eval_split: float | int = _opt(0.1, "fraction (or row count) of train held out for eval when data has none",
                                   float, min=0)
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
    samples: list | int | None = _opt(
        None, "prompts the base and tuned model answer at each evaluation, shown live and logged: "
        "a list (strings or {prompt, reference}), a count of eval prompts, or 0 (default: 3 eval prompts)", list)


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
    if key == "samples":
        from .llm.samples import check_samples

        check_samples(value)  # a count, or prompts (strings, {prompt, reference}, chat turns)
        return list(value) if isinstance(value, tuple) else value
    if key in ("model", "data") and not isinstance(value, str):
        if isinstance(value, (bool, int, float)):
            _fail(key, value, meta)
        return value  # an object from the user's namespace ($df, $model); the loaders check it
    if key == "eval_split" and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and value >= 1 and float(value).is_integer():
        return int(value)  # a row count (16), not the fraction 16.0 the float kind would make of it
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
        hint = did_you_mean(value, meta["choices"])
    what = f"each item of {key!r}" if item else f"{key!r}"
    raise ConfigError(f"{what} must be {_describe(meta)}, got {value!r}{hint}")


def build_config(cls: type, values: dict[str, Any] | None = None, **kwargs: Any):
    """Validate `values` (from YAML, the CLI or keyword arguments) into an instance of `cls`.

    Raises one `ConfigError` naming the first bad key, its value and what is allowed.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    # Aliases per source, so a keyword argument still overrides the same key in `values`.
    merged = {**resolve_aliases(values or {}, fields), **resolve_aliases(kwargs, fields)}
    for key in merged:
        if not isinstance(key, str) or key not in fields:
            guess = closest(key, [*fields, *(a for a, t in TRAINER_ALIASES.items() if t in fields)])
            guess = TRAINER_ALIASES.get(guess, guess) if guess not in fields else guess
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise ConfigError(f"unknown key {key!r}{hint}. Valid keys:\n{grouped_keys(list(fields))}")
    clean = {}
    for key, value in merged.items():
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        meta = {**f.metadata, "nullable": "None" in str(f.type)}
        clean[key] = _coerce(key, value, meta, default)
    if "report_to" in clean:
        clean["report_to"] = _report_to(clean["report_to"])
    return cls(**clean)


def load_yaml(text: str, where: str = "the config", first_line: int = 1) -> Any:
    """`yaml.safe_load(text)`, except that a key written twice in one mapping is a `ConfigError`
    naming the key and both lines (`where` says whose lines, e.g. a file name; `first_line` is the
    number of the text's first line there: 2 for a cell body under its `%%finetune` line).

    Plain `safe_load` keeps the last value silently: `lr` written twice trains with the second one.
    """
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # `<<: *base` merges are meant to be overridden
                    key = self.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + first_line
                    try:
                        first = seen.get(key)
                    except TypeError:
                        continue  # an unhashable key: SafeLoader reports it below
                    if first is not None:
                        raise ConfigError(
                            f"key {key!r} is written twice in {where} (lines {first} and {line}); "
                            "keep one of them"
                        )
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The keys of a YAML config file (what `nbkit finetune CONFIG.yaml` and `finetune(config=path)`
    read), with one `ConfigError` for a missing file, bad YAML, a key written twice or a non-mapping."""
    import yaml

    shown = os.fspath(path)
    try:
        text = open(shown, encoding="utf-8").read()  # noqa: SIM115
    except FileNotFoundError:
        raise ConfigError(f"config file {shown} not found") from None
    try:
        values = load_yaml(text, where=shown)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown} is not valid YAML: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{shown} must be a mapping of config keys, e.g. 'model: minilm'")
    return values


def _report_to(value: list | None) -> list[str]:
    """`report_to` as a list of tracker names (or ["all"]): null and "none" mean no tracker."""
    value = list(value or [])
    for v in value:
        if not isinstance(v, str):
            raise ConfigError(f"each item of 'report_to' must be one of {', '.join(TRACKERS)}, got {v!r}")
    alone = [v for v in value if v in ("all", "none")]
    if alone and len(value) > 1:
        raise ConfigError(f"'report_to': {alone[0]!r} stands alone (got {value!r}); "
                          f"list trackers instead, e.g. [{', '.join(TRACKERS)}]")
    if value == ["none"]:
        return []
    return list(dict.fromkeys(value))  # in order, each once


KEY_GROUPS = {
    "model and data": ("model", "data", "task", "text", "text_pair", "label", "eval_split", "test",
                       "allow_rare_labels"),
    "training": ("epochs", "max_steps", "lr", "batch_size", "grad_accum", "optimizer", "weight_decay",
                 "scheduler", "warmup", "max_grad_norm", "precision", "group_by_length", "max_length",
                 "seed", "scale_lr"),
    "evaluation": ("eval_every", "metrics", "best_metric", "early_stopping"),
    "run": ("name", "run_dir", "overwrite", "keep_optimizer", "report_to"),
    "processes": ("processes", "launcher", "accelerate_config", "hosts", "main_address"),
}


def grouped_keys(keys: list[str], width: int = 88) -> str:
    """Valid keys one group per line ("  training: epochs, lr, ..."), wrapped at commas only, so a
    key is never split across lines however the message is shown."""
    import textwrap

    lines = []
    listed: set[str] = set()
    groups = [(g, [k for k in ks if k in keys]) for g, ks in KEY_GROUPS.items()]
    groups.append(("other", [k for k in keys if not any(k in ks for ks in KEY_GROUPS.values())]))
    for group, members in groups:
        members = [k for k in members if k not in listed]
        if not members:
            continue
        listed.update(members)
        lines += textwrap.wrap(", ".join(members), width=width, initial_indent=f"  {group}: ",
                               subsequent_indent=" " * (len(group) + 4), break_long_words=False,
                               break_on_hyphens=False)
    return "\n".join(lines)


def config_help(cls: type = FinetuneConfig) -> str:
    """Every key with its type, default and meaning, for `%finetune --help` and `nbkit finetune --help`."""
    rows = []
    aliases: dict[str, list[str]] = {}
    for alias, target in TRAINER_ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    # The subclass's own keys (model, data, ...) first: they are what a reader looks for.
    own = [f for f in dataclasses.fields(cls) if f.name in cls.__annotations__]
    for f in own + [f for f in dataclasses.fields(cls) if f not in own]:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        also = f"; alias {', '.join(aliases[f.name])}" if f.name in aliases else ""
        rows.append((f.name, _describe(f.metadata), repr(default), f.metadata["help"] + also))
    w0 = max(len(r[0]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    return "\n".join(f"  {k:<{w0}}  default {d:<{w2}}  {h} ({t})" for k, t, d, h in rows)
