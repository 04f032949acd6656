"""LoRA (and QLoRA on CUDA) through peft: wrap a causal LM, save and load adapters, merge them.

`lora: true` takes the defaults below (r=16 on every linear layer but the LM head); `lora: {r, alpha,
dropout, target_modules}` sets them. Checkpoints of a LoRA run hold the adapter only
(`adapter_model.safetensors` + `adapter_config.json`, what `peft.PeftModel.from_pretrained` reads),
so they weigh megabytes, not the base model. These small functions are what the checkpoint code and
`Run` call; torch and peft are imported inside them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any

from ..config import ConfigError

LORA_DEFAULTS: dict[str, Any] = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def lora_options(value: Any) -> dict[str, Any] | None:
    """Validate the `lora` option: False/None (off), True (defaults) or a dict of LORA_DEFAULTS' keys."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(LORA_DEFAULTS)
    if not isinstance(value, dict):
        raise ConfigError(f"'lora' must be true, false or a mapping with keys {', '.join(LORA_DEFAULTS)}, "
                          f"got {value!r}")
    unknown = [k for k in value if k not in LORA_DEFAULTS]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in 'lora'; valid keys: {', '.join(LORA_DEFAULTS)}")
    out = {**LORA_DEFAULTS, **value}
    if not isinstance(out["r"], int) or isinstance(out["r"], bool) or out["r"] < 1:
        raise ConfigError(f"'lora.r' must be an integer >= 1, got {out['r']!r}")
    if not isinstance(out["alpha"], (int, float)) or isinstance(out["alpha"], bool) or out["alpha"] <= 0:
        raise ConfigError(f"'lora.alpha' must be a number > 0, got {out['alpha']!r}")
    if not isinstance(out["dropout"], (int, float)) or not 0 <= out["dropout"] < 1:
        raise ConfigError(f"'lora.dropout' must be a number in [0, 1), got {out['dropout']!r}")
    tm = out["target_modules"]
    if isinstance(tm, str) and tm != "all-linear":
        tm = [t.strip() for t in tm.split(",") if t.strip()]
    if not (tm == "all-linear" or (isinstance(tm, list) and tm and all(isinstance(t, str) for t in tm))):
        raise ConfigError(f"'lora.target_modules' must be 'all-linear' or a list of module names, got {tm!r}")
    out["target_modules"] = tm
    return out


def check_4bit() -> None:
    """QLoRA needs a CUDA GPU and bitsandbytes: say so before anything loads."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "load_in_4bit needs a CUDA GPU (bitsandbytes NF4 kernels); this machine has none. Drop "
            "load_in_4bit: LoRA alone trains on the CPU"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("load_in_4bit needs bitsandbytes: pip install bitsandbytes")


def quantization_config() -> Any:
    """bitsandbytes NF4 with bf16 compute, as QLoRA does (call check_4bit first)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def is_peft(model: Any) -> bool:
    return type(model).__module__.startswith("peft.") and hasattr(model, "peft_config")


def apply_lora(model: Any, options: dict[str, Any] | None, *, gradient_checkpointing: bool = False,
               quantized: bool = False, seed: int = 0) -> Any:
    """`model` with LoRA adapters (only they train), and gradient checkpointing if asked. The
    adapters' random init depends on `seed` only, so equal configs train equally."""
    import torch

    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24 (the old name warns)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if getattr(model, "config", None) is not None:
            model.config.use_cache = False  # the cache is useless while training with checkpointing
    if options is None:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=options["r"], lora_alpha=options["alpha"], lora_dropout=options["dropout"],
                        target_modules=options["target_modules"], task_type="CAUSAL_LM")
    if gradient_checkpointing:
        model.enable_input_require_grads()
    with torch.random.fork_rng(devices=[]), quiet_peft():
        torch.manual_seed(seed)
        return get_peft_model(model, config)


@contextlib.contextmanager
def quiet_peft():
    """peft 0.21 calls transformers' deprecated `is_gradient_checkpointing` while wrapping a model:
    a FutureWarning on every wrap that says nothing to a user of nbkit (or of peft). Silence only it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def trainable_params(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def save_adapter(model: Any, folder: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write the adapter (`adapter_model.safetensors` + `adapter_config.json`) and the tokenizer."""
    if not is_peft(model):
        raise ValueError("this model has no LoRA adapter: train with lora: true to save one")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def is_adapter_folder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def load_adapter_weights(model: Any, folder: str | os.PathLike) -> None:
    """Load saved adapter weights into a peft model in place (resuming a LoRA run)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(Path(folder) / ADAPTER_FILE))
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"adapter {folder} does not match this model: unexpected keys {unexpected[:5]}")


def load_peft_model(folder: str | os.PathLike, base: str | None = None, *, trainable: bool = False,
                    dtype: str = "float32"):
    """(base + adapter, tokenizer) from an adapter folder. `base`: the base model's name (an nbkit
    alias such as "smollm2", a hub id or a folder); default: the one the adapter config names.
    `dtype`: the base model's (peft keeps the adapter of a 16-bit base in float32)."""
    import json

    from peft import PeftModel

    from ..models import load_model

    folder = Path(folder)
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    name = base or config.get("base_model_name_or_path")
    if not name:
        raise ValueError(f"{folder} does not name its base model: pass base='model name or folder'")
    model, tokenizer = load_model(name, "causal-lm", device="cpu", dtype=dtype)
    if (folder / "tokenizer_config.json").exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
    with quiet_peft():
        model = PeftModel.from_pretrained(model, folder, is_trainable=trainable)
    return model.eval(), tokenizer


def merge(model: Any, folder: str | os.PathLike, tokenizer: Any = None) -> Path:
    """Write a `from_pretrained` folder with the adapter merged into the base weights (tokenizer and
    chat template included). The model passed in keeps its adapter: the merge runs on a copy."""
    import copy

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merged = copy.deepcopy(model).merge_and_unload() if is_peft(model) else model
    merged.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
        if getattr(merged, "generation_config", None) is not None:
            # generate() stops at generation_config.eos_token_id only: without the chat template's
            # end-of-turn token there, a plain transformers user's answers run on past the turn.
            from .export import stop_ids

            config = copy.deepcopy(merged.generation_config)
            have = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
            ids = sorted({*[t for t in have if t is not None], *stop_ids(tokenizer)})
            if ids:
                config.eos_token_id = ids if len(ids) > 1 else ids[0]
                config.save_pretrained(folder)
    return folder
