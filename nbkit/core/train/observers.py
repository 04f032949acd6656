"""Built-in observers of training events: the JSONL log, a terminal/notebook progress bar and early
stopping. An observer is any callable `observer(event, run)`; it may call `run.stop(...)`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .events import EvalEnd, Event, RunEnd, RunStart, Samples, StepEnd

FLUSH_EVERY = 1.0  # seconds: the longest step lines wait to be written (the loop reads every 0.25 s)


class JsonlLog:
    """Appends one line per event to `metrics.jsonl`. Step events are written in bulk a few times a
    second (their values are read from the device together); every other event is written and
    flushed at once, with the steps before it. A crash loses at most FLUSH_EVERY of step lines, and
    a follower (another process, the dashboard) can tail the file."""

    def __init__(self, path: str | Path, flush_every: float | None = None):
        self.path = Path(path)
        self.flush_every = FLUSH_EVERY if flush_every is None else flush_every
        self._file = None
        self._steps: list[StepEnd] = []
        self._t_flush = time.monotonic()

    def __call__(self, event: Event, run: Any) -> None:
        if isinstance(event, StepEnd):
            self._steps.append(event)
            # Write when the loop has read the values (never forcing a read of its own), or at the
            # latest after flush_every.
            if not event.ready and time.monotonic() - self._t_flush < self.flush_every:
                return
            self._write([])
        else:
            self._write([event])
        if isinstance(event, RunEnd):
            self.close()

    def _write(self, events: list[Event]) -> None:
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed at RunEnd)
        lines = [json.dumps(e.to_dict(), default=str) for e in [*self._steps, *events]]
        self._steps = []
        self._file.write("".join(line + "\n" for line in lines))
        self._file.flush()
        self._t_flush = time.monotonic()

    def close(self) -> None:
        if self._steps:
            self._write([])
        if self._file is not None:
            self._file.close()
            self._file = None


class ProgressBar:
    """A `tqdm.auto` bar: a widget in notebooks, text in a terminal. Updates are throttled by tqdm."""

    def __init__(self, **tqdm_kwargs: Any):
        self.kwargs = tqdm_kwargs
        self.bar = None
        self._t_postfix = 0.0

    def __call__(self, event: Event, run: Any) -> None:
        if isinstance(event, RunStart):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=event.total_steps, initial=event.start_step, desc=event.name,
                            unit="step", dynamic_ncols=True, **self.kwargs)
        elif self.bar is None:
            return
        elif isinstance(event, StepEnd):
            self.bar.update(event.step - self.bar.n)
            now = time.monotonic()
            if event.ready and now - self._t_postfix >= 0.5:  # its values are on the host: free to read
                self._t_postfix = now
                self.bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.2e}", refresh=False)
        elif isinstance(event, EvalEnd):
            shown = {k: f"{v:.4f}" for k, v in event.metrics.items() if isinstance(v, float)}
            self.bar.write(f"step {event.step}: " + "  ".join(f"{k}={v}" for k, v in shown.items()))
        elif isinstance(event, Samples):
            from ..llm.samples import describe_samples

            self.bar.write(describe_samples(event))
        elif isinstance(event, RunEnd):
            self.bar.close()
            self.bar = None


class EarlyStopping:
    """Stop when `metric` has not improved for `patience` evaluations (lower is better for losses)."""

    def __init__(self, patience: int, metric: str = "eval_loss", min_delta: float = 0.0,
                 lower_is_better: bool | None = None):
        from .metrics import lower_is_better as direction

        self.patience, self.metric, self.min_delta = patience, metric, min_delta
        self.lower_is_better = direction(metric) if lower_is_better is None else lower_is_better
        self.best: float | None = None
        self.bad = 0

    def __call__(self, event: Event, run: Any) -> None:
        if not isinstance(event, EvalEnd) or event.split != "eval" or self.metric not in event.metrics:
            return
        value = event.metrics[self.metric]
        sign = 1 if self.lower_is_better else -1
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best, self.bad = value, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            # A normal end (status "finished", with the test evaluation), not a person's stop.
            run.request_stop(f"early stopping: {self.metric} did not improve for {self.patience} evaluations",
                             status="finished")
