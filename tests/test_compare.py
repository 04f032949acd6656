"""nbkit.compare over live and reloaded runs, and the standalone report."""

from __future__ import annotations

import re

import datasets
import pytest

import nbkit
from nbkit.testing import random_texts, tiny_bert


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    ds = datasets.Dataset.from_dict({"text": random_texts(32), "label": [i % 2 for i in range(32)]})
    runs = []
    for lr in (1e-3, 1e-5):
        model, tok = tiny_bert()
        runs.append(nbkit.fit(model, ds, ds, tokenizer=tok, lr=lr, epochs=2, batch_size=8, metrics=["accuracy"],
                              name="<b>sweep</b>", run_dir=root / f"lr{lr}", progress=False))
    return runs


def test_compare_overlays_runs_and_lists_config_differences(two_runs):
    live, finished = two_runs
    cmp = nbkit.compare([live, finished.run_dir], metric="eval_loss")
    assert len(cmp.figure.data) == 2
    assert list(cmp.table.columns) == ["name", "status", "lr", "final eval_loss", "best eval_loss"]
    assert list(cmp.table.index) == ["lr=1e-03", "lr=1e-05"]
    assert sorted(cmp.table["lr"]) == [1e-5, 1e-3]
    assert cmp.table["best eval_loss"].iloc[0] == pytest.approx(live.history["eval_loss"].min())
    html_table = cmp.table_html()
    assert "<b>sweep</b>" not in html_table and "&lt;b&gt;sweep&lt;/b&gt;" in html_table
    assert all("<b>" not in t.name for t in cmp.figure.data)
    # the keys that differ, said in words and as a key x run table
    assert list(cmp.differences.index) == ["lr"]
    assert sorted(cmp.differences.loc["lr"]) == [1e-5, 1e-3]
    assert html_table.startswith("<p>config keys that differ: lr</p>")
    assert cmp.table_text().splitlines()[0] == "config keys that differ: lr"


def test_compare_unknown_metric_suggests_one(two_runs):
    with pytest.raises(ValueError, match="did you mean 'eval_accuracy'"):
        nbkit.compare(two_runs, metric="eval_acc")
    with pytest.raises(TypeError, match="Run objects or run directories"):
        nbkit.compare([42])


def test_report_is_standalone_html_with_escaped_names(two_runs):
    run = two_runs[0]
    path = run.report()
    page = path.read_text()
    assert path == run.run_dir / "report.html"
    assert re.findall(r"<script[^>]*\ssrc=", page) == []  # plotly.js is embedded, nothing is fetched
    assert len(page) > 1_000_000  # the embedded plotly.js bundle
    assert "<h1>&lt;b&gt;sweep&lt;/b&gt;</h1>" in page
    assert "eval_accuracy" in page


def test_nbkit_compare_magic_shows_figure_and_table(two_runs):
    from IPython.core.error import UsageError
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output

    ip = start_ipython() or TerminalInteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbkit")
    dirs = " ".join(str(r.run_dir) for r in two_runs)
    with capture_output() as cap:
        ip.run_line_magic("nbkit", f"compare {dirs} --metric eval_accuracy")
    shown = [o.data for o in cap.outputs]
    assert len(shown) == 2
    assert len(shown[0]["application/vnd.plotly.v1+json"]["data"]) == 2  # live figure for JupyterLab
    assert shown[0]["image/png"].startswith("iVBOR")  # and a PNG for viewers without plotly
    assert shown[0]["text/plain"] == "nbkit comparison of 2 runs: eval_accuracy"
    assert shown[1]["text/plain"].startswith("config keys that differ: lr\n")
    assert "object at 0x" not in shown[1]["text/plain"]
    with pytest.raises(UsageError, match="did you mean 'eval_accuracy'"):
        ip.run_line_magic("nbkit", f"compare {dirs} --metric eval_acc")
    with pytest.raises(UsageError, match="needs run directories"):
        ip.run_line_magic("nbkit", "compare")


def test_runs_are_labelled_evenly_by_what_differs(two_runs):
    live, finished = two_runs
    cmp = nbkit.compare([live, finished.run_dir])
    assert [t.name for t in cmp.figure.data] == ["lr=1e-03", "lr=1e-05"]  # one form, one format for both
    assert list(cmp.table["name"]) == ["<b>sweep</b>", "<b>sweep</b>"]
    # Identical configs: name and position.
    same = nbkit.compare([finished.run_dir, finished.run_dir])
    assert list(same.table.index) == ["<b>sweep</b> #1", "<b>sweep</b> #2"]
    assert "&lt;b&gt;sweep&lt;/b&gt; #1" in same.table_html()
    # Names differ, settings do not: the names; names and settings differ: both, for every run.
    a, b = nbkit.Run.load(finished.run_dir), nbkit.Run.load(finished.run_dir)
    a.name, b.name = "base", "tuned"
    assert list(nbkit.compare([a, b]).table.index) == ["base", "tuned"]
    b.config = {**b.config, "seed": 7, "batch_size": 4}
    assert list(nbkit.compare([a, b]).table.index) == ["base batch_size=8, seed=0", "tuned batch_size=4, seed=7"]
    # Three runs, two alike: every label gets its position.
    c = nbkit.Run.load(finished.run_dir)
    c.name = "base"
    labels = list(nbkit.compare([a, c, live]).table.index)
    assert labels == ["base lr=1e-05 #1", "base lr=1e-05 #2", "<b>sweep</b> lr=1e-03 #3"]


def test_compare_magic_labels_runs_by_what_differs(two_runs):
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output

    ip = start_ipython() or TerminalInteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbkit")
    with capture_output() as cap:
        ip.run_line_magic("nbkit", "compare " + " ".join(str(r.run_dir) for r in two_runs))
    traces = cap.outputs[0].data["application/vnd.plotly.v1+json"]["data"]
    assert [t["name"] for t in traces] == ["lr=1e-03", "lr=1e-05"]
