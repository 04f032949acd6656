"""`nbkit.core.runs.list_runs`: run directories written by hand with the loop's own JSONL observer."""

from __future__ import annotations

import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from nbkit.core.runs import COLUMNS, LIVE_SECONDS, list_runs
from nbkit.core.train.events import EvalEnd, RunEnd, RunStart, StepEnd
from nbkit.core.train.observers import JsonlLog


def write_run(root, name, *, start, steps=3, evals=(), end="finished", config=None):
    """A run directory as fit writes it: config.yaml and metrics.jsonl (events at fixed times)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config or {"best_metric": "eval_loss"}))
    log = JsonlLog(run_dir / "metrics.jsonl")
    log(RunStart(name=name, run_dir=str(run_dir), total_steps=steps, steps_per_epoch=steps, epochs=1,
                 time=start), None)
    for s in range(1, steps + 1):
        log(StepEnd(step=s, epoch=s / steps, loss=1.0 / s, lr=1e-3, samples_per_s=10.0,
                    tokens_per_s=None, time=start + s), None)
    for i, metrics in enumerate(evals):
        log(EvalEnd(step=i + 1, epoch=1.0, metrics=metrics, time=start + steps + i), None)
    if end is not None:
        log(RunEnd(status=end, step=steps, time=start + steps + len(evals) + 1), None)
    log.close()
    return run_dir


def test_missing_root_gives_an_empty_table(tmp_path):
    df = list_runs(tmp_path / "nope")
    assert df.empty
    assert list(df.columns) == COLUMNS


def test_rows_status_steps_best_and_order(tmp_path):
    now = time.time()
    old = write_run(tmp_path, "old", start=now - 7200, steps=5,
                    evals=[{"eval_loss": 0.9}, {"eval_loss": 0.4}, {"eval_loss": 0.6}])
    acc = write_run(tmp_path, "acc", start=now - 3600, steps=2, end="stopped",
                    evals=[{"eval_accuracy": 0.5}, {"eval_accuracy": 0.8}, {"eval_accuracy": 0.7}],
                    config={"best_metric": "eval_accuracy"})
    dead = write_run(tmp_path, "dead", start=now - 1800, steps=4, end=None)
    (tmp_path / "not-a-run").mkdir()  # no metrics.jsonl / config.yaml: ignored
    (tmp_path / "file.txt").write_text("x")

    df = list_runs(tmp_path)
    assert list(df["name"]) == ["dead", "acc", "old"]  # newest first
    rows = df.set_index("name")
    assert rows.loc["old", "status"] == "finished"
    assert rows.loc["acc", "status"] == "stopped"
    assert rows.loc["dead", "status"] == "interrupted"  # no RunEnd, log older than LIVE_SECONDS
    assert rows.loc["old", "steps"] == 5 and rows.loc["dead", "steps"] == 4
    assert rows.loc["old", "best_metric"] == "eval_loss"
    assert rows.loc["old", "best"] == pytest.approx(0.4)  # lowest loss
    assert rows.loc["acc", "best"] == pytest.approx(0.8)  # highest accuracy
    assert pd.isna(rows.loc["dead", "best"])
    assert rows.loc["old", "path"] == str(old) and rows.loc["acc", "path"] == str(acc)
    assert rows.loc["dead", "path"] == str(dead)
    age = rows.loc["old", "age"]
    assert isinstance(age, pd.Timedelta) and 7190 <= age.total_seconds() <= 7300
    assert rows.loc["old", "started"] < rows.loc["acc", "started"]


def test_a_run_still_logging_counts_as_running(tmp_path):
    write_run(tmp_path, "live", start=time.time() - LIVE_SECONDS / 4, steps=3, end=None)
    assert list(list_runs(tmp_path)["status"]) == ["running"]


def test_an_unreadable_run_is_listed_not_fatal(tmp_path):
    write_run(tmp_path, "good", start=time.time() - 60)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text("a: [unclosed")
    df = list_runs(tmp_path).set_index("name")
    assert df.loc["good", "status"] == "finished"
    assert df.loc["bad", "status"].startswith("unreadable")


def test_runs_module_imports_no_ui():
    code = ("import sys, nbkit.core.runs, nbkit.core.devices, nbkit.core.preview\n"
            "print(sorted(m for m in ('IPython', 'ipywidgets', 'plotly', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sizes_and_clean_keep_the_newest(tmp_path):
    from nbkit.core.runs import clean_runs, dir_size, sizes_for_display

    now = time.time()
    paths = [write_run(tmp_path, f"r{i}", start=now - 3600 * (5 - i)) for i in range(4)]
    (paths[0] / "checkpoints").mkdir()
    (paths[0] / "checkpoints" / "model.safetensors").write_bytes(b"\0" * 300_000)
    table = list_runs(tmp_path)
    sizes = dict(zip(table["name"], table["size"], strict=True))
    assert sizes["r0"] == dir_size(paths[0]) and sizes["r0"] - sizes["r1"] == 300_000
    assert sizes_for_display(table).set_index("name").loc["r0", "size"].endswith("KB")
    dry = clean_runs(tmp_path, keep=2)
    assert list(dry["name"]) == ["r1", "r0"] and not dry["removed"].any()
    assert all(p.exists() for p in paths)  # a dry run deletes nothing
    done = clean_runs(tmp_path, keep=2, dry_run=False)
    assert done["removed"].all()
    assert [p.exists() for p in paths] == [False, False, True, True]
    with pytest.raises(ValueError, match="keep must be a whole number >= 0"):
        clean_runs(tmp_path, keep=-1)


def test_a_running_run_is_never_cleaned(tmp_path):
    from nbkit.core.runs import clean_runs

    now = time.time()
    live = write_run(tmp_path, "live", start=now - 30, end=None)  # no RunEnd, written just now
    write_run(tmp_path, "new", start=now - 10)
    assert list(clean_runs(tmp_path, keep=0)["name"]) == ["new"]
    assert live.exists()


def test_magic_runs_shows_sizes_and_clean_lists_first(tmp_path):
    from IPython.testing.globalipapp import start_ipython
    from IPython.utils.capture import capture_output

    now = time.time()
    for i in range(3):
        write_run(tmp_path, f"m{i}", start=now - 3600 * (3 - i))
    ip = start_ipython() or __import__("IPython").get_ipython()
    ip.run_line_magic("load_ext", "nbkit")
    with capture_output() as cap:
        ip.run_line_magic("nbkit", f"clean {tmp_path} --keep 1")
    assert cap.stdout.startswith(f"Would remove 2 runs from '{tmp_path}' (")
    assert "add --yes to delete them" in cap.stdout
    assert (tmp_path / "m0").exists()
    with capture_output() as cap:
        ip.run_line_magic("nbkit", f"clean {tmp_path} --keep 1 --yes")
    assert cap.stdout.startswith(f"Removed 2 runs from '{tmp_path}'")
    assert not (tmp_path / "m0").exists() and (tmp_path / "m2").exists()


def test_cli_runs_and_clean(tmp_path):
    now = time.time()
    for i in range(2):
        write_run(tmp_path, f"c{i}", start=now - 3600 * (2 - i))
    out = subprocess.run([sys.executable, "-m", "nbkit.cli", "runs", str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    assert out.splitlines()[0].split()[:3] == ["name", "status", "steps"] and " size " in out.splitlines()[0]
    out = subprocess.run([sys.executable, "-m", "nbkit.cli", "clean", str(tmp_path), "--keep", "1", "--yes"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("Removed: 1 runs, ")
    assert not (tmp_path / "c0").exists() and (tmp_path / "c1").exists()


def test_a_run_shows_itself_without_an_object_repr(tmp_path):
    from nbkit.core.models import human_bytes
    from nbkit.core.runs import dir_size
    from nbkit.core.train.run import Run

    run_dir = write_run(tmp_path, "shown", start=time.time() - 60, evals=[{"eval_accuracy": 0.75}])
    run = Run.load(run_dir)
    bundle = run._repr_mimebundle_()
    assert sorted(bundle) == ["text/html", "text/plain"]
    size = human_bytes(dir_size(run_dir))
    assert bundle["text/plain"] == (f"nbkit run 'shown': finished at step 3, eval_accuracy 0.75 \u00b7 {run_dir} "
                                    f"({size})")
    assert "<th style='text-align:left;padding:1px 10px 1px 0'>last checkpoint</th>" in bundle["text/html"]
    assert "object at 0x" not in bundle["text/html"]
