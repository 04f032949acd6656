"""List the run directories under a folder (`%nbkit runs` shows this table).

Each run is reopened with `Run.load` (train/run.py), which reads `config.yaml` and `metrics.jsonl`
without loading any weights. Core layer: no IPython.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

COLUMNS = ["name", "status", "steps", "best_metric", "best", "started", "age", "size", "path"]
# A run without a RunEnd is either dead or still training (in another kernel, or in the background):
# if its log was written this recently, call it running.
LIVE_SECONDS = 120.0


def _best(run: Any) -> tuple[str, float | None]:
    """The run's `best_metric` (eval_loss by default) and its best value over all evaluations."""
    from .train.events import EvalEnd

    metric = str(run.config.get("best_metric") or "eval_loss")
    values = [e.metrics[metric] for e in run.events
              if isinstance(e, EvalEnd) and isinstance(e.metrics.get(metric), (int, float))
              and math.isfinite(e.metrics[metric])]
    if not values:
        return metric, None
    from .train.metrics import lower_is_better  # the rule checkpoints and early stopping use

    return metric, (min(values) if lower_is_better(metric) else max(values))


def _row(path: Path, now: float) -> dict[str, Any]:
    import pandas as pd

    from .train.events import RunStart, StepEnd
    from .train.run import Run

    try:
        run = Run.load(path)
    except Exception as exc:  # a half-written or foreign folder: list it, do not fail the whole table
        return {"name": path.name, "status": f"unreadable ({type(exc).__name__})", "path": str(path)}
    steps = [e.step for e in run.events if isinstance(e, StepEnd)]
    start = next((e.time for e in run.events if isinstance(e, RunStart)), None)
    if start is None:
        start = path.stat().st_mtime
    metric, best = _best(run)
    status = run.status
    last = run.events[-1].time if run.events else start
    if status == "interrupted" and now - last < LIVE_SECONDS:
        status = "running"
    return {
        "name": run.name,
        "status": status,
        "steps": max(steps) if steps else 0,
        "best_metric": metric,
        "best": best,
        "started": pd.Timestamp(datetime.fromtimestamp(start)).floor("s"),  # local time
        "age": pd.Timedelta(seconds=max(0.0, now - start)).floor("s"),
        "size": dir_size(path),
        "path": str(path),
    }


def list_runs(root: str | Path = "nbkit-runs"):
    """A DataFrame with one row per run directory under `root`, newest first.

    Columns: name, status (finished, stopped, failed, interrupted, running...), steps (the last
    optimizer step logged), best_metric and best (its best evaluated value), started (local time),
    age, size (bytes on disk), path. A run whose log has no end and was written in the last LIVE_SECONDS is "running".
    A run directory is a folder holding `metrics.jsonl` or `config.yaml`; a missing `root` gives an
    empty table.
    """
    import pandas as pd

    root = Path(root)
    now = time.time()
    dirs = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    runs = [p for p in dirs if (p / "metrics.jsonl").exists() or (p / "config.yaml").exists()]
    df = pd.DataFrame([_row(p, now) for p in runs], columns=COLUMNS)
    df["steps"] = df["steps"].astype("Int64")
    df["best"] = df["best"].astype(float)
    return df.sort_values("started", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def dir_size(path: str | Path) -> int:
    """Bytes under `path` (files only, symlinks not followed); 0 for a missing folder."""
    total = 0
    for p in Path(path).rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:  # a file removed while we walk (a checkpoint being replaced)
            continue
    return total


def clean_runs(root: str | Path = "nbkit-runs", *, keep: int = 3, dry_run: bool = True):
    """Remove all but the newest `keep` run directories under `root`; runs still training are
    never removed. With `dry_run` (the default) nothing is deleted: the table says what would be.

    Returns a DataFrame (name, status, size, path, removed) of the runs past `keep`, oldest last.
    """
    import shutil

    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
        raise ValueError(f"keep must be a whole number >= 0 (runs to keep, newest first), got {keep!r}")
    table = list_runs(root)
    old = table.iloc[keep:]
    old = old[old["status"] != "running"][["name", "status", "size", "path"]].reset_index(drop=True)
    old["removed"] = False
    if not dry_run:
        for i, path in enumerate(old["path"]):
            shutil.rmtree(path, ignore_errors=True)
            old.loc[i, "removed"] = not Path(path).exists()
    return old


def sizes_for_display(table):
    """A copy of a runs table with `size` as text ("261.3 MB"), for showing to a person."""
    from .models import human_bytes

    shown = table.copy()
    if "size" in shown:
        shown["size"] = [human_bytes(int(v)) if v == v else "" for v in shown["size"]]
    return shown


def run_bundle(run: Any) -> dict[str, str]:
    """What a `Run` left last in a cell shows: one line of text and a small escaped HTML table
    (status, steps, latest metrics, checkpoints, size), so a saved notebook never reads
    `<nbkit.Run ...>` or an object address."""
    import html

    from .models import human_bytes
    from .train.events import StepEnd

    last = next((e for e in reversed(run.events) if isinstance(e, StepEnd)), None)
    steps = f"step {last.step}" if last else "no steps"
    metrics = run.metrics
    shown = ", ".join(f"{k} {v:.4g}" for k, v in list(metrics.items())[:4] if isinstance(v, (int, float)))
    size = human_bytes(dir_size(run.run_dir)) if Path(run.run_dir).exists() else "not on disk"
    line = f"nbkit run {run.name!r}: {run.status} at {steps}" + (f", {shown}" if shown else "") + \
        f" \u00b7 {run.run_dir} ({size})"
    rows = [("status", f"{run.status} at {steps}"), ("metrics", shown or "none yet"),
            ("best checkpoint", str(run.best_checkpoint or "none")),
            ("last checkpoint", str(run.last_checkpoint or "none")),
            ("run directory", f"{run.run_dir} ({size})")]
    cells = "".join(f"<tr><th style='text-align:left;padding:1px 10px 1px 0'>{html.escape(k)}</th>"
                    f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows)
    return {"text/plain": line,
            "text/html": f"<div><b>nbkit run {html.escape(run.name)}</b><table style='font-size:12px'>{cells}</table></div>"}
