"""`nbkit.compare`: several runs (live `Run` objects or run directories) in one chart, with the config
keys on which they differ. Figure layer: plotly and pandas, no widgets.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nbkit.figures import compare_figure, compare_png, figure_bundle


@dataclass
class Comparison:
    figure: Any  # plotly Figure
    table: pd.DataFrame  # one row per run: differing config keys, final and best metric
    metric: str
    histories: dict[str, pd.DataFrame]

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        png = compare_png(self.histories, self.metric)
        display(figure_bundle(self.figure, png, f"<nbkit comparison of {len(self.histories)} runs>"), raw=True)
        display(HTML(self.table_html()))

    def table_html(self) -> str:
        return self.table.to_html(escape=True, float_format=lambda v: f"{v:.4g}", na_rep="")


def _as_run(item: Any):
    from nbkit.core.train.run import Run

    if isinstance(item, Run):
        return item
    if isinstance(item, (str, Path)):
        return Run.load(item)
    raise TypeError(f"compare() takes Run objects or run directories, not {type(item).__name__}")


def compare(runs: Iterable[Any], metric: str = "eval_loss") -> Comparison:
    """Overlay `metric` (a history column: eval_loss, eval_accuracy, loss, ...) for several runs."""
    loaded = [_as_run(r) for r in runs]
    if not loaded:
        raise ValueError("compare() needs at least one run or run directory")
    names: dict[str, Any] = {}
    for run in loaded:
        name = run.name if run.name not in names else f"{run.name} ({Path(run.run_dir).name})"
        names[name] = run
    histories = {name: run.history for name, run in names.items()}
    available = sorted({c for h in histories.values() for c in h.columns if c not in ("step", "epoch")})
    if metric not in available:
        close = difflib.get_close_matches(metric, available, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"no run has metric {metric!r}{hint}; available: {', '.join(available)}")
    keys = sorted({k for run in loaded for k in run.config})
    differing = [k for k in keys if len({repr(run.config.get(k)) for run in loaded}) > 1 and k != "run_dir"]
    lower_is_better = metric.endswith(("loss", "perplexity"))
    rows = []
    for name, run in names.items():
        values = histories[name][metric].dropna() if metric in histories[name] else pd.Series(dtype=float)
        best = (values.min() if lower_is_better else values.max()) if len(values) else None
        rows.append({"run": name, "status": run.status, **{k: run.config.get(k) for k in differing},
                     f"final {metric}": values.iloc[-1] if len(values) else None, f"best {metric}": best})
    table = pd.DataFrame(rows).set_index("run")
    return Comparison(figure=compare_figure(histories, metric), table=table, metric=metric, histories=histories)
