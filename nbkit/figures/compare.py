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
    differences: pd.DataFrame | None = None  # one row per config key that differs, one column per run

    def _ipython_display_(self) -> None:
        from IPython.display import display

        png = compare_png(self.histories, self.metric)
        text = f"nbkit comparison of {len(self.histories)} runs: {self.metric}"
        display(figure_bundle(self.figure, png, text), raw=True)
        display({"text/html": self.table_html(), "text/plain": self.table_text()}, raw=True)

    def _differing_line(self) -> str:
        keys = list(self.differences.index) if self.differences is not None else []
        return ("config keys that differ: " + ", ".join(keys)) if keys else "the runs' configs are the same"

    def table_html(self) -> str:
        import html

        table = self.table.to_html(escape=True, float_format=lambda v: f"{v:.4g}", na_rep="")
        return f"<p>{html.escape(self._differing_line())}</p>{table}"

    def table_text(self) -> str:
        with pd.option_context("display.width", 200, "display.max_columns", 50):
            return f"{self._differing_line()}\n{self.table.to_string(float_format=lambda v: f'{v:.4g}', na_rep='')}"


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
    # run_dir and name always differ, and the name is already the row label
    differing = [k for k in keys if len({repr(run.config.get(k)) for run in loaded}) > 1
                 and k not in ("run_dir", "name")]
    lower_is_better = metric.endswith(("loss", "perplexity"))
    rows = []
    for name, run in names.items():
        values = histories[name][metric].dropna() if metric in histories[name] else pd.Series(dtype=float)
        best = (values.min() if lower_is_better else values.max()) if len(values) else None
        rows.append({"run": name, "status": run.status, **{k: run.config.get(k) for k in differing},
                     f"final {metric}": values.iloc[-1] if len(values) else None, f"best {metric}": best})
    table = pd.DataFrame(rows).set_index("run")
    differences = pd.DataFrame({name: [run.config.get(k) for k in differing] for name, run in names.items()},
                               index=pd.Index(differing, name="config key"))
    return Comparison(figure=compare_figure(histories, metric), table=table, metric=metric, histories=histories,
                      differences=differences)
