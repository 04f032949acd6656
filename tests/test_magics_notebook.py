"""A notebook that loads the extension and runs `%%finetune` on a tiny model folder and CSV, executed by
nbclient in a real kernel (this venv's Python, through a kernelspec written to a temporary JUPYTER_PATH)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

KERNEL = "nbkit-test-python"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec that starts this interpreter, so the kernel sees the nbkit under test."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nbkit test (venv)",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torch in the kernel: 1 thread on a shared 2-core box
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


def build_notebook(model_dir: Path, csv: Path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "nbkit test (venv)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import sys\n%load_ext nbkit\nprint(sys.executable)"),
        nbformat.v4.new_code_cell("%%finetune --dry-run\n"
                                  f"model: {model_dir}\ndata: {csv}\nmax_length: 16"),
        nbformat.v4.new_code_cell("%%finetune --name nb-run\n"
                                  f"model: {model_dir}\ndata: {csv}\nepochs: 1\nbatch_size: 16\n"
                                  "metrics: [accuracy]"),
        nbformat.v4.new_code_cell("print(run.status, run.run_dir, sorted(run.metrics))"),
        nbformat.v4.new_code_cell("%nbkit runs"),
    ]
    return nb


def test_notebook_with_finetune_runs_under_nbclient(kernel_env, tiny_bert_dir):
    import nbclient
    import pandas as pd

    from nbkit.testing import random_texts

    csv = kernel_env / "reviews.csv"
    texts = random_texts(64, seed=5, min_words=4, max_words=12)
    pd.DataFrame({"text": texts, "label": ["pos", "neg"] * 32}).to_csv(csv, index=False)
    work = kernel_env / "work"
    work.mkdir()
    nb = build_notebook(tiny_bert_dir, csv)

    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == []

    def stdout(i):
        return "".join(o.get("text", "") for o in nb.cells[i].outputs
                       if o["output_type"] == "stream" and o["name"] == "stdout")

    assert stdout(0).strip() == sys.executable  # the kernel ran this venv's interpreter
    assert "# resolved config" in stdout(1) and "tokens (" in stdout(1)
    status, run_dir, metrics = stdout(3).split(" ", 2)
    assert status == "finished"
    assert "eval_accuracy" in metrics
    assert (work / run_dir / "metrics.jsonl").is_file()
    table = [o for o in nb.cells[4].outputs if o["output_type"] == "execute_result" or
             o["output_type"] == "display_data"]
    assert len(table) == 1 and "nb-run" in table[0]["data"]["text/plain"]
    assert "finished" in table[0]["data"]["text/html"]
