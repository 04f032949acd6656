"""Typed events the training loop emits.

The loop knows nothing about displays: progress bars, the JSONL log, checkpoints, early stopping and
the live dashboard all receive these records (see `Run` for how observers are called). Every event
is plain data and serialises to one JSON line with `to_dict()`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Event:
    kind = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        d = {"event": self.kind, **asdict(self)}
        # JSON has no NaN/inf: a diverged loss is still logged, as null, rather than breaking the file.
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass
class RunStart(Event):
    kind = "run_start"
    name: str
    run_dir: str | None
    total_steps: int
    steps_per_epoch: int
    epochs: int
    start_step: int = 0
    effective_batch_size: int = 0
    processes: int = 1
    lr: float | None = None  # the peak learning rate in effect (after scale_lr)
    trainable_params: int | None = None  # parameters the optimizer updates (LoRA: the adapters)
    total_params: int | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepEnd(Event):
    kind = "step"
    step: int
    epoch: float
    loss: float
    lr: float
    samples_per_s: float
    tokens_per_s: float | None
    grad_norm: float | None = None
    elapsed: float = 0.0


@dataclass
class EvalEnd(Event):
    kind = "eval"
    step: int
    epoch: float
    metrics: dict[str, float]


@dataclass
class EpochEnd(Event):
    kind = "epoch"
    step: int
    epoch: int


@dataclass
class CheckpointSaved(Event):
    kind = "checkpoint"
    step: int
    path: str
    best: bool = False


@dataclass
class RunEnd(Event):
    kind = "run_end"
    status: str
    step: int
    message: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (RunStart, StepEnd, EvalEnd, EpochEnd, CheckpointSaved, RunEnd)
}


def event_from_dict(d: dict[str, Any]) -> Event:
    """Rebuild an event from one `metrics.jsonl` line (used by `Run.load` and process followers)."""
    d = dict(d)
    cls = EVENT_TYPES[d.pop("event")]
    if cls is StepEnd and d.get("loss") is None:
        d["loss"] = float("nan")
    return cls(**d)
