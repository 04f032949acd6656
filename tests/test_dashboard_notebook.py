"""A notebook with one training run, executed headless in a real kernel (nbclient, widget state kept as
`nbconvert --execute` keeps it), then read as GitHub, nbconvert HTML and LaTeX would read it: every
nbkit output has static content, nothing reads as an object repr or a frozen progress bar, the chart
is an interactive plotly bundle with its PNG, and the file stays small."""

from __future__ import annotations

import base64
import json
import os
import re

import nbformat
import pytest

pytestmark = pytest.mark.slow

CELLS = [
    """\
import torch
torch.set_num_threads(1)
import nbkit
from nbkit.testing import random_texts
texts = random_texts(96, seed=3)
data = nbkit.load_data([{"text": t, "label": i % 2} for i, t in enumerate(texts)])""",
    "model, tokenizer = nbkit.load_model(FOLDER + '/base', num_labels=2)",
    """\
run = nbkit.fit(model, data["train"], data["eval"], tokenizer=tokenizer, epochs=2, batch_size=8,
                metrics=["accuracy"], name="saved-run", run_dir=FOLDER + "/runs/saved-run")""",
    "run",
    "model.set_attn_implementation('eager')\nnbkit.show_attention(model, tokenizer, 'the cat sat on the mat')",
]
BAD = [r"VBox\(children", r"object at 0x", r"Loading weights", r"LOAD REPORT", r"<nbkit\.", r"FigureWidget",
       r"Writing model shards", r"\d+%\|"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    import nbclient
    import transformers

    from nbkit.testing import tiny_bert

    folder = tmp_path_factory.mktemp("saved")
    base, tok = tiny_bert()  # a base checkpoint: loading it under a classifier makes a new head
    transformers.BertModel(base.config).save_pretrained(folder / "base")
    tok.save_pretrained(folder / "base")
    cells = [nbformat.v4.new_code_cell(f"FOLDER = {str(folder)!r}")] + [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.environ["OMP_NUM_THREADS"] = "1"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=True).execute()
    path = folder / "saved.ipynb"
    nbformat.write(nb, path)
    return nb, path


def outputs(nb, index):
    return nb.cells[index + 1].outputs  # +1: the FOLDER cell


def test_no_errors_and_no_noise_in_any_output(executed):
    nb, path = executed
    for cell in nb.cells:
        for out in cell.outputs:
            assert out.output_type != "error", "\n".join(out.get("traceback", []))
    text = path.read_text()
    for pattern in BAD:
        assert not re.search(pattern, text), pattern


def test_loading_prints_one_line(executed):
    nb, _ = executed
    (out,) = outputs(nb, 1)
    assert out.output_type == "stream" and out.text == "new classification head: 2 labels, initialized\n"


def test_the_run_leaves_a_chart_bundle_and_a_summary(executed):
    nb, _ = executed
    outs = outputs(nb, 2)
    kinds = [sorted(o.get("data", {})) for o in outs]
    assert kinds == [["application/vnd.plotly.v1+json", "image/png", "text/plain"], ["text/html", "text/plain"]]
    chart, summary = outs[0].data, outs[1].data
    assert chart["text/plain"] == "nbkit training chart: saved-run (finished, 22 steps)"
    png = base64.b64decode(chart["image/png"])
    assert png.startswith(b"\x89PNG") and len(png) < 150_000
    assert summary["text/plain"].splitlines()[0].startswith("saved-run finished at step 22 \u00b7 best ")
    assert "run directory " in summary["text/plain"].splitlines()[0]
    assert summary["text/html"].count("<table") == 1
    assert "<button" not in summary["text/html"]  # no buttons left behind, disabled or not
    (run_out,) = outputs(nb, 3)
    assert run_out.data["text/plain"].startswith("nbkit run 'saved-run': finished at step 22, eval_loss ")


def test_the_attention_view_leaves_a_png(executed):
    nb, _ = executed
    (out,) = outputs(nb, 4)
    assert sorted(out.data) == ["application/vnd.jupyter.widget-view+json", "image/png", "text/plain"]
    assert out.data["text/plain"].startswith("nbkit attention view (head): ")


def test_the_saved_notebook_is_small(executed):
    nb, path = executed
    size = path.stat().st_size
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    print(f"saved notebook {size / 1024:.0f} KB, {len(state)} widget models, "
          f"{len(json.dumps(state)) / 1024:.0f} KB of widget state")
    assert size <= 400 * 1024
    # two small anywidgets (the dashboard, closed, which nbclient still lists; the attention view)
    # and their layouts: no plotly.js bundle (a FigureWidget's state is ~5 MB)
    assert sorted(m["model_name"] for m in state.values()) == ["AnyModel", "AnyModel", "LayoutModel", "LayoutModel"]
    assert len(json.dumps(state)) < 100 * 1024


def test_nbconvert_html_and_latex_show_the_chart(executed):
    from nbconvert import HTMLExporter, LatexExporter

    nb, path = executed
    stripped = nbformat.read(path, as_version=4)
    stripped.metadata.pop("widgets", None)  # GitHub / a reopened notebook: no widget state
    # with widget state the attention view is embedded live; without, its PNG stands in
    for notebook, images in ((nb, 1), (stripped, 2)):
        body, _ = HTMLExporter().from_notebook_node(notebook)
        imgs = re.findall(r'<img[^>]+src="data:image/png;base64,', body)
        assert len(imgs) == images
        for pattern in BAD:
            assert not re.search(pattern, body), pattern
        assert re.search(r"saved-run <span class=.nbkit-status.>finished</span> at step 22 \u00b7 ", body)
    latex, resources = LatexExporter().from_notebook_node(stripped)
    pngs = [name for name in resources["outputs"] if name.endswith(".png")]
    assert len(pngs) == 2  # the training chart and the attention view
    assert all(f"{{{name}}}" in latex for name in pngs)  # each drawn (\adjustimage{...}{name})
    for pattern in BAD:
        assert not re.search(pattern, latex), pattern
    assert "saved-run finished at step 22" in latex
