"""Plain-text formatting shared by the figures and the live view (neither imports the other)."""

from __future__ import annotations

from typing import Any


def format_value(v: Any) -> str:
    """A table cell: floats to 4 significant digits, nothing for None or NaN."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
