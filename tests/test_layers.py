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
    "nbkit.core.llm.chat_session",
]

UI_MODULES = ["IPython", "ipywidgets", "anywidget", "plotly", "matplotlib"]
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


def test_training_work_imports_no_ui(tmp_path):
    """A real fit with evaluation and checkpoints, a resume, Run.load and lr_find, in a fresh
    interpreter: none of them may pull in a notebook or plotting library, even at run time."""
    statement = f"""
import datasets
from nbkit.testing import random_texts, tiny_bert
from nbkit.core.train import Run, fit
from nbkit.core.train.lr_find import lr_find
model, tok = tiny_bert()
ds = datasets.Dataset.from_dict({{"text": random_texts(48), "label": [i % 2 for i in range(48)]}})
stop = lambda e, r: r.stop() if e.kind == "step" and e.step == 3 else None
run = fit(model, ds, ds, tokenizer=tok, epochs=2, batch_size=8, run_dir={str(tmp_path / 'r')!r},
          callbacks=[stop], metrics=["accuracy"])
assert run.status == "stopped", run.status
run = fit(model, ds, ds, tokenizer=tok, epochs=2, batch_size=8, resume_from=run.run_dir, metrics=["accuracy"])
assert run.status == "finished", run.status
again = Run.load(run.run_dir)
assert again.history["step"].max() == 12
lr_find(model, ds, tokenizer=tok, num_steps=8, run_dir={str(tmp_path / 'lr')!r})
"""
    assert imported_after(statement, UI_MODULES) == []


def test_core_source_never_imports_upper_layers():
    """No module under nbkit/core names the figures or notebook layers, or a UI library."""
    import ast
    from pathlib import Path

    core = Path(__file__).parents[1] / "nbkit" / "core"
    banned = ("nbkit.figures", "nbkit.notebook", "IPython", "ipywidgets", "anywidget", "plotly", "matplotlib")
    offenders = []
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(banned)]
    # Run.report() and Run.chat() are the upward calls, made only when a user asks for the HTML
    # report or the chat box.
    assert sorted(offenders) == ["run.py: nbkit.figures.report", "run.py: nbkit.notebook.widgets.chat"]


def test_import_nbkit_is_light():
    assert imported_after("import nbkit", HEAVY_MODULES + UI_MODULES) == []


def test_the_check_can_fail():
    assert imported_after("import json, torch", HEAVY_MODULES) == ["torch"]


def _module_imports(path, package):
    """Modules of `package` that `path` imports at module level (relative imports resolved)."""
    import ast

    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(package + "."):
            out.add(node.module[len(package) + 1:].split(".")[0])
    return out


def test_no_import_cycle_inside_train():
    from pathlib import Path

    train = Path(__file__).parents[1] / "nbkit" / "core" / "train"
    graph = {p.stem: _module_imports(p, "nbkit.core.train") for p in train.glob("*.py") if p.stem != "__init__"}
    seen, stack = set(), []

    def visit(node):
        assert node not in stack, f"import cycle: {' -> '.join([*stack[stack.index(node):], node])}"
        if node in seen:
            return
        stack.append(node)
        for nxt in graph.get(node, ()):
            visit(nxt)
        stack.pop()
        seen.add(node)

    for node in graph:
        visit(node)


def test_no_module_reaches_into_a_runs_private_state():
    import re
    from pathlib import Path

    root = Path(__file__).parents[1] / "nbkit"
    pattern = re.compile(r"\brun\._[a-z]")  # run._emit, run._stop_event, self.run._observers ...
    offenders = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if p.name != "run.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_the_training_algorithm_fits_on_one_screen():
    import inspect

    from nbkit.core.train.loop import Loop

    lines = inspect.getsource(Loop.train).splitlines()
    assert len(lines) <= 60, len(lines)
