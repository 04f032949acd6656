"""`finetune`: the Python twin of the `%%finetune` magic and of `nbkit finetune CONFIG.yaml`.

It validates one `FinetuneConfig`, loads the data and the model with the foundation's loaders (so the
label names reach the model's config), and hands everything to `fit`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import (
    TRAINER_ALIASES,
    ConfigError,
    FinetuneConfig,
    TrainConfig,
    build_config,
    read_config,
)
from ..suggest import check_kwargs
from .launch import WORKER_ENV, launch_finetune
from .rundir import run_name
from .trackers import resolve_report_to

_TRAIN_KEYS = tuple(TrainConfig.__dataclass_fields__)


def resolve_config(config: dict[str, Any] | None = None, **options: Any) -> FinetuneConfig:
    """The validated config for `finetune(**options)`: the one validator the magic and CLI share.

    A GGUF model ("smollm2", a .gguf file) or LoRA means `task: causal-lm` unless a task is given."""
    merged = {**(config or {}), **options}
    if "task" not in merged:
        from ..llm.gguf import is_gguf_source

        model = merged.get("model")
        if (isinstance(model, str) and is_gguf_source(model)) or merged.get("lora"):
            options = {**options, "task": "causal-lm"}
    cfg = build_config(FinetuneConfig, config, **options)
    if cfg.samples not in (None, False, 0, []) and cfg.task != "causal-lm":
        raise ConfigError(f"'samples' are prompts an LLM answers (task: causal-lm), not {cfg.task!r}")
    return cfg


def prepare(cfg: FinetuneConfig):
    """Load data and model for `cfg`: returns (datasets.DatasetDict, model, tokenizer); for
    `task: causal-lm`, (nbkit.core.llm.pipeline.LLMData, model, tokenizer).

    A classifier's label names and the data's are reconciled first (`reconcile_labels`): the data
    follows the model's id order, and the model's config carries the names it will be saved with.
    """
    from ..data import align_labels, label_names, load_data
    from ..models import (
        checkpoint_label_names,
        config_label_names,
        load_model,
        reconcile_labels,
        set_label_names,
    )

    if cfg.task == "causal-lm":
        from ..llm.pipeline import prepare_llm

        return prepare_llm(cfg)
    if cfg.lora or cfg.load_in_4bit:
        raise ConfigError(f"lora and load_in_4bit apply to task: causal-lm, not {cfg.task!r}")

    is_lm = cfg.task in ("causal-lm", "masked-lm")
    label = None if is_lm else cfg.label
    data = load_data(cfg.data, text=cfg.text, label=label, text_pair=cfg.text_pair,
                     eval_split=cfg.eval_split, seed=cfg.seed, allow_rare_labels=cfg.allow_rare_labels)
    names = label_names(data)
    classify = bool(names) and cfg.task == "sequence-classification"
    if isinstance(cfg.model, tuple):  # (model, tokenizer) as returned by load_model / %nbkit_load
        model, tokenizer = cfg.model
        config = getattr(model, "config", None)
        if classify and config is not None:
            order = reconcile_labels(config_label_names(config), names,
                                     num_labels=getattr(config, "num_labels", None), new_head=False)
            data = align_labels(data, order)
            set_label_names(model, order)
    elif isinstance(cfg.model, str):
        kwargs = {}
        if classify:
            theirs, num = checkpoint_label_names(cfg.model)
            order = reconcile_labels(theirs, names, num_labels=num, new_head=True)
            data = align_labels(data, order)
            kwargs = {"labels": order}
        model, tokenizer = load_model(cfg.model, cfg.task, **kwargs)
    else:
        raise ConfigError(
            "model must be a name ('minilm', a hub id, a folder) or a (model, tokenizer) pair from "
            f"nbkit.load_model, not {type(cfg.model).__name__}"
        )
    return data, model, tokenizer


@check_kwargs(extra=list(FinetuneConfig.__dataclass_fields__), aliases=TRAINER_ALIASES)
def finetune(model: Any = None, data: Any = None, *, config: dict[str, Any] | str | os.PathLike | None = None,
             callbacks: Sequence[Callable] = (), resume_from: str | os.PathLike | None = None,
             background: bool = False, progress: bool | Callable = True, stop_file: str | os.PathLike | None = None,
             dry_run: bool = False, **options: Any):
    """Fine-tune `model` on `data` and return the `Run`.

    `model`: "minilm" (bundled weights, the default), a hub id or a local folder, or a
    `(model, tokenizer)` pair. `data`: a CSV/JSON/Parquet path, a hub data set, "sentiment" (bundled,
    the default), a DataFrame or a Dataset. Arguments override the same keys in `config`.
    Other options are the keys of `nbkit.core.config.FinetuneConfig` (`nbkit.core.config.config_help()` lists
    them); `config=` takes the same keys as a dict or a YAML file's path. `resume_from=run_dir`
    continues an interrupted run with the config stored in that directory. `dry_run=True` trains
    nothing and returns a `Preview` (the first examples as tokens, trained ones marked, lengths,
    truncation, trainable parameters), as `%%finetune --dry-run` shows.

    Instruction-tuned LLMs: `model="smollm2"` (offline) or any causal LM, `task="causal-lm"`, data
    with `messages`, `prompt`/`completion` or `text` columns; `lora=True` trains LoRA adapters.
    """
    from .loop import fit

    if resume_from is not None:
        # The stored config, with what this call changes on top: the loop refuses keys that would
        # make it another run and reports the ones it applies (a longer epochs, eval_every...).
        import yaml

        path = Path(resume_from) / "config.yaml"
        if not path.exists():
            raise ConfigError(f"nothing to resume in {resume_from}: it has no config.yaml")
        stored = yaml.safe_load(path.read_text()) or {}
        config = {**{k: v for k, v in stored.items() if k in FinetuneConfig.__dataclass_fields__},
                  **(config or {})}
        config.pop("run_dir", None)
    elif isinstance(config, (str, os.PathLike)):
        config = read_config(config)
    values = dict(config or {})
    for key, value in (("model", model), ("data", data)):
        if value is not None:
            values[key] = value
    cfg = resolve_config(values, **options)
    resolve_report_to(cfg.report_to)  # a tracker that is not installed fails here, before any loading
    if dry_run:
        from ..preview import preview_finetune

        return preview_finetune(cfg)
    if (cfg.processes > 1 or cfg.hosts > 1) and not os.environ.get(WORKER_ENV):
        if resume_from is not None:
            values["run_dir"] = str(resume_from)
            cfg = resolve_config(values, **options)
        return launch_finetune(cfg, callbacks=callbacks, progress=progress, background=background,
                               resume=resume_from is not None)
    ds, net, tokenizer = prepare(cfg)
    extra = {k: getattr(cfg, k) for k in FinetuneConfig.__dataclass_fields__ if k not in _TRAIN_KEYS}
    for key in ("model", "data"):
        if not isinstance(extra[key], str):  # an object from the notebook: record what it was
            extra[key] = f"<{type(extra[key]).__name__}>"
    train_opts = {k: getattr(cfg, k) for k in _TRAIN_KEYS}
    if train_opts["name"] is None and isinstance(cfg.model, str):
        train_opts["name"] = run_name(cfg.model)
    train, eval_data = ds["train"], ds.get("eval")
    test = ds["test"] if cfg.test and "test" in ds else None
    evaluators: list = []
    if cfg.task == "causal-lm":  # LLMData: token columns with answer-only labels
        from ..llm.pipeline import chat_metrics, sample_answers
        from ..llm.pipeline import evaluators as llm_evaluators

        train_opts["metrics"] = chat_metrics(cfg, ds)
        evaluators = llm_evaluators(cfg, ds, tokenizer, train_opts["metrics"])
        callbacks = [*sample_answers(cfg, ds, tokenizer, evaluators), *callbacks]
        for note in ds.notes:
            print(f"nbkit: {note}")
        train, eval_data = ds.dataset("train"), ds.dataset("eval")
        test = ds.dataset("test") if cfg.test else None
    if isinstance(cfg.model, tuple):
        print(f"nbkit: {in_place_note(net)}")
    run = fit(net, train, eval_data, test=test, tokenizer=tokenizer,
              callbacks=callbacks, resume_from=resume_from, background=background, progress=progress,
              config_extra=extra, stop_file=stop_file, evaluators=evaluators, **train_opts)
    if cfg.task == "causal-lm":  # what run.merge / run.save_adapter check the export on by default
        from ..llm.export import eval_prompts

        run.eval_prompts = eval_prompts(ds)
    if isinstance(cfg.model, tuple):
        net._nbkit_trained_by = run.name  # what the next run's note says
    return run


def in_place_note(model: Any) -> str:
    """The one line `finetune` prints for a user's model object: it trains that object in place.

    In place, not a copy: a copy would hold the weights twice (and Adam's state on top), which a
    1-2 GB notebook or an LLM cannot spare, and `fit`, Trainer and plain PyTorch all train in place.
    Across a sweep the next run would then start from this one's weights, so the note says so.
    """
    earlier = getattr(model, "_nbkit_trained_by", None)
    where = (f"; it was already trained by run {earlier!r}, so this run starts from those weights"
             if earlier else "")
    return (f"training your {type(model).__name__} in place (run.model is that object){where}; "
            "for a fresh start each run, load it again or pass a copy (copy.deepcopy)")
