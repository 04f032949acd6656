"""`nbkit.compare`: several runs (live `Run` objects or run directories) in one chart, with the config
keys on which they differ. Figure layer: plotly and pandas, no widgets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nbkit.core.suggest import check_kwargs, did_you_mean
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


# Keys that differ between any two runs and say nothing about the training itself.
_NOT_SETTINGS = ("run_dir", "name", "output_dir", "logging_dir", "run_name")
MAX_LABEL_KEYS = 3


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Config keys whose values are not the same in every config, in first-seen order."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    return [k for k in keys if k not in _NOT_SETTINGS and len({repr(c.get(k)) for c in configs}) > 1]


def _needs_exponent(v: Any) -> bool:
    return isinstance(v, float) and v != 0 and not 1e-3 <= abs(v) < 1e5


def _value(v: Any, exponent: bool = False) -> str:
    """A config value for a label; `exponent` writes floats as 3e-05 / 1e-03, so a key's values
    read alike even when only some of them are small."""
    if isinstance(v, float) and (exponent or _needs_exponent(v)) and v != 0:
        mantissa, exp = f"{v:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exp}"  # 3e-05, 1e-04, 2.5e-05
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return str(v)


def run_labels(runs: list[Any], differing: list[str] | None = None) -> list[str]:
    """One label per run, all of the same form: the settings that differ ("lr=3e-05"), after the
    name when names differ; runs that would still share a label get " #1", " #2", ... by position."""
    if differing is None:
        differing = differing_keys([run.config for run in runs])
    names_differ = len({run.name for run in runs}) > 1
    shown = differing[:MAX_LABEL_KEYS]
    exponent = {k: any(_needs_exponent(run.config.get(k)) for run in runs) for k in shown}
    labels = []
    for run in runs:
        parts = [f"{k}={_value(run.config.get(k), exponent[k])}" for k in shown]
        if len(differing) > len(shown):
            parts.append("...")
        label = ", ".join(parts)
        if names_differ or not label:
            label = f"{run.name} {label}".strip() if label else run.name
        labels.append(label)
    if len(set(labels)) < len(labels):
        labels = [f"{label} #{i}" for i, label in enumerate(labels, 1)]
    return labels


@check_kwargs
def compare(runs: Iterable[Any], metric: str = "eval_loss") -> Comparison:
    """Overlay `metric` (a history column: eval_loss, eval_accuracy, loss, ...) for several runs."""
    loaded = [_as_run(r) for r in runs]
    if not loaded:
        raise ValueError("compare() needs at least one run or run directory")
    differing = differing_keys([run.config for run in loaded])
    names = dict(zip(run_labels(loaded, differing), loaded, strict=True))
    histories = {name: run.history for name, run in names.items()}
    available = sorted({c for h in histories.values() for c in h.columns if c not in ("step", "epoch")})
    if metric not in available:
        hint = did_you_mean(metric, available)
        raise ValueError(f"no run has metric {metric!r}{hint}; available: {', '.join(available)}")
    from nbkit.core.train.metrics import lower_is_better as direction

    lower_is_better = direction(metric)
    rows = []
    for name, run in names.items():  # name: the run's label
        values = histories[name][metric].dropna() if metric in histories[name] else pd.Series(dtype=float)
        best = (values.min() if lower_is_better else values.max()) if len(values) else None
        rows.append({"run": name, "name": run.name, "status": run.status, **{k: run.config.get(k) for k in differing},
                     f"final {metric}": values.iloc[-1] if len(values) else None, f"best {metric}": best})
    table = pd.DataFrame(rows).set_index("run")
    differences = pd.DataFrame({name: [run.config.get(k) for k in differing] for name, run in names.items()},
                               index=pd.Index(differing, name="config key"))
    return Comparison(figure=compare_figure(histories, metric), table=table, metric=metric, histories=histories,
                      differences=differences)
