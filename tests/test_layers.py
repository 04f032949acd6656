"""Layering rules checked in a fresh interpreter: the core never pulls in notebook UI libraries, and
`import nbkit` stays light (no torch, no transformers)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Core modules: extend this list as modules land (e.g. "nbkit.core.train", "nbkit.core.config").
CORE_MODULES = [
    "nbkit.core.models",
    "nbkit.testing",
    "nbkit.core.config",
    "nbkit.core.train",
    "nbkit.core.train.worker",
    "nbkit.core.integrations",
    "nbkit.core.runs",
    "nbkit.core.devices",
    "nbkit.core.data",
    "nbkit.core.preview",
    "nbkit.core.series",
    "nbkit.core.train.lr_find",
    "nbkit.core.suggest",
]

UI_MODULES = ["IPython", "ipywidgets", "anywidget", "plotly"]
HEAVY_MODULES = ["torch", "transformers"]


def imported_after(statement: str, watch: list[str]) -> list[str]:
    """Run `statement` in a new interpreter; return which of `watch` ended up in sys.modules."""
    code = (
        "import json, sys\n"
        f"{statement}\n"
        f"print(json.dumps(sorted(m for m in {watch!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_ui(module):
    assert imported_after(f"import {module}", UI_MODULES) == []


def test_core_work_imports_no_ui():
    # Heavy imports happen inside functions, so do some real work before looking.
    statement = (
        "from nbkit.testing import tiny_bert\n"
        "from nbkit.core.models import model_summary\n"
        "str(model_summary(tiny_bert()[0]))"
    )
    assert imported_after(statement, UI_MODULES) == []


def test_import_nbkit_is_light():
    assert imported_after("import nbkit", HEAVY_MODULES + UI_MODULES) == []


def test_the_check_can_fail():
    assert imported_after("import json, torch", HEAVY_MODULES) == ["torch"]
