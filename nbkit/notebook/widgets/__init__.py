"""Notebook widgets (ipywidgets, anywidget, plotly FigureWidget). They subscribe to the core's data
and events and never drive training themselves. Imported lazily: `import nbkit` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Dashboard": "nbkit.notebook.widgets.dashboard",
    "AttentionWidget": "nbkit.notebook.widgets.attention",
    "Chat": "nbkit.notebook.widgets.chat",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nbkit.notebook.widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
