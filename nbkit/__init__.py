"""nbkit: a notebook toolkit for PyTorch + Hugging Face.

`%load_ext nbkit` registers the magics; every magic has a Python twin here. Importing nbkit is
cheap: torch and transformers load only when a function that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use, see __getattr__)
_EXPORTS = {
    "load_model": "nbkit.core.models",
    "model_summary": "nbkit.core.models",
    "ModelSummary": "nbkit.core.models",
    "load_data": "nbkit.core.data",
    "sample_data": "nbkit.core.data",
    # fit/finetune/lr_find: the core functions, with the live dashboard inside a Jupyter kernel
    "fit": "nbkit.notebook.twins",
    "finetune": "nbkit.notebook.twins",
    "lr_find": "nbkit.notebook.twins",
    "Run": "nbkit.core.train",
    "compare": "nbkit.figures.compare",
    "Dashboard": "nbkit.notebook.widgets.dashboard",
    "capture_attention": "nbkit.core.attention",
    "Attention": "nbkit.core.attention",
    "show_attention": "nbkit.notebook.widgets.attention",
    "compare_attention": "nbkit.core.attention_compare",
    "AttentionComparison": "nbkit.core.attention_compare",
    "TrainerCallback": "nbkit.notebook.trainer",
    "Preview": "nbkit.core.preview",
    "generate": "nbkit.core.llm.generate",  # answers of any causal LM (chat template, greedy by default)
    "chat": "nbkit.notebook.widgets.chat",
    "ChatSession": "nbkit.core.llm.chat_session",
}

__all__ = [*_EXPORTS, "load_ipython_extension", "unload_ipython_extension", "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nbkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext nbkit`: register the magics (imports neither torch nor transformers)."""
    from nbkit.notebook.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from nbkit.notebook.magics import unload_ipython_extension as unload

    unload(ipython)
