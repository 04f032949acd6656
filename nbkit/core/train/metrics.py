"""Evaluation metrics as plain functions of predictions and labels (numpy), plus the registry that
maps the names users write (`metrics: [accuracy, f1]`) to them. A user callable
`fn(predictions, labels) -> float | dict` works wherever a name does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import METRICS, ConfigError
from ..suggest import did_you_mean


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    mask = labels != -100
    return float((preds[mask] == labels[mask]).mean()) if mask.any() else float("nan")


def f1_macro(preds: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
    mask = labels != -100
    p, y = preds[mask], labels[mask]
    scores = []
    for c in np.union1d(np.unique(p), np.unique(y)):
        tp = np.sum((p == c) & (y == c))
        fp = np.sum((p == c) & (y != c))
        fn = np.sum((p != c) & (y == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def perplexity(eval_loss: float) -> float:
    return math.exp(eval_loss) if eval_loss < 700 else float("inf")


# Direction of each built-in metric, and of the losses every run reports.
LOWER_IS_BETTER = {"loss": True, "perplexity": True, "accuracy": False, "f1": False, "exact_match": False}


def lower_is_better(metric: str, specs: Sequence[tuple[str, Any]] = ()) -> bool:
    """Whether a smaller value of `metric` ("eval_accuracy", "test_loss", "f1"...) is better. A user
    metric declares it with an attribute: `fn.lower_is_better = True` (default: higher is better)."""
    base = metric.split("_", 1)[1] if metric.startswith(("eval_", "test_")) else metric
    for name, fn in specs:
        if name == base and callable(fn):
            return bool(getattr(fn, "lower_is_better", False))
    if base in LOWER_IS_BETTER:
        return LOWER_IS_BETTER[base]
    return base.endswith(("loss", "perplexity", "error"))


def resolve_metrics(metrics: Sequence[Any]) -> list[tuple[str, Any]]:
    """Check metric names before training starts; callables pass through under their own name."""
    out = []
    for m in metrics:
        if callable(m):
            out.append((getattr(m, "__name__", "metric"), m))
        elif m in METRICS:
            out.append((m, m))
        else:
            hint = did_you_mean(m, METRICS)
            raise ConfigError(f"unknown metric {m!r}{hint}; valid: {', '.join(METRICS)}, or a callable")
    return out


def compute_metrics(specs: list[tuple[str, Any]], preds: np.ndarray | None, labels: np.ndarray | None,
                    eval_loss: float, prefix: str = "eval_") -> dict[str, float]:
    out = {f"{prefix}loss": eval_loss}
    builtin: dict[str, Callable[..., float]] = {"accuracy": accuracy, "f1": f1_macro}
    for name, fn in specs:
        if fn == "perplexity":
            out[f"{prefix}perplexity"] = perplexity(eval_loss)
        elif fn == "exact_match":
            continue  # generated answers, not logits: fit's evaluators (nbkit.core.llm.generate) add it
        elif preds is None or labels is None:
            continue  # no labels in the eval data: only loss-based metrics apply
        elif isinstance(fn, str):
            out[f"{prefix}{name}"] = builtin[fn](preds, labels)
        else:
            value = fn(preds, labels)
            if isinstance(value, dict):
                out.update({f"{prefix}{k}": float(v) for k, v in value.items()})
            else:
                out[f"{prefix}{name}"] = float(value)
    return out


def check_best_metric(best_metric: str, specs: list[tuple[str, Any]], prefixes: Sequence[str] = ("eval_",)) -> None:
    """Raise ConfigError when `best_metric` (which picks the best checkpoint and drives early stopping)
    is not a name the evaluations will report; a user callable may report any name, so then anything goes.

    For `fit` to call before training (a misspelled name would otherwise be ignored in silence)."""
    if any(not isinstance(fn, str) for _, fn in specs):
        return
    names = [f"{p}{n}" for p in prefixes for n in ("loss", *(name for name, _ in specs))]
    if best_metric not in names:
        raise ConfigError(f"'best_metric' {best_metric!r} is not reported by this run"
                          f"{did_you_mean(best_metric, names)}; the evaluations report {', '.join(names)}")
