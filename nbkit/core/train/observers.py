"""Built-in observers of training events: the JSONL log, a terminal/notebook progress bar and early
stopping. An observer is any callable `observer(event, run)`; it may call `run.stop(...)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .events import EvalEnd, Event, RunEnd, RunStart, StepEnd


class JsonlLog:
    """Appends one line per event to `metrics.jsonl`, flushed as written: a crash loses at most the
    event in flight, and a follower (another process, the dashboard) can tail the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = None

    def __call__(self, event: Event, run: Any) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed at RunEnd)
        self._file.write(json.dumps(event.to_dict(), default=str) + "\n")
        self._file.flush()
        if isinstance(event, RunEnd):
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressBar:
    """A `tqdm.auto` bar: a widget in notebooks, text in a terminal. Updates are throttled by tqdm."""

    def __init__(self, **tqdm_kwargs: Any):
        self.kwargs = tqdm_kwargs
        self.bar = None

    def __call__(self, event: Event, run: Any) -> None:
        if isinstance(event, RunStart):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=event.total_steps, initial=event.start_step, desc=event.name,
                            unit="step", dynamic_ncols=True, **self.kwargs)
        elif self.bar is None:
            return
        elif isinstance(event, StepEnd):
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.2e}", refresh=False)
        elif isinstance(event, EvalEnd):
            shown = {k: f"{v:.4f}" for k, v in event.metrics.items() if isinstance(v, float)}
            self.bar.write(f"step {event.step}: " + "  ".join(f"{k}={v}" for k, v in shown.items()))
        elif isinstance(event, RunEnd):
            self.bar.close()
            self.bar = None


class EarlyStopping:
    """Stop when `metric` has not improved for `patience` evaluations (lower is better for losses)."""

    def __init__(self, patience: int, metric: str = "eval_loss", min_delta: float = 0.0):
        self.patience, self.metric, self.min_delta = patience, metric, min_delta
        self.lower_is_better = metric.endswith(("loss", "perplexity"))
        self.best: float | None = None
        self.bad = 0

    def __call__(self, event: Event, run: Any) -> None:
        if not isinstance(event, EvalEnd) or self.metric not in event.metrics:
            return
        value = event.metrics[self.metric]
        sign = 1 if self.lower_is_better else -1
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            run.stop(f"early stopping: {self.metric} did not improve for {self.patience} evaluations")
