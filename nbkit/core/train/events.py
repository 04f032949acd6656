"""Typed events the training loop emits.

The loop knows nothing about displays: progress bars, the JSONL log, checkpoints, early stopping and
the live dashboard all receive these records (see `Run` for how observers are called). Every event
is plain data and serialises to one JSON line with `to_dict()`.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Event:
    kind = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        d = {"event": self.kind, **self._fields()}
        # JSON has no NaN/inf: a diverged loss is still logged, as null, rather than breaking the file.
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


    def _fields(self) -> dict[str, Any]:
        return asdict(self)


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
    """One optimizer step. `loss` and `grad_norm` of a step built by the loop stay on the device until
    someone reads them; the first read brings every unread step's values to the host at once (one
    device sync for many steps, see `DeviceScalars`)."""

    kind = "step"
    step: int
    epoch: float
    loss: float
    lr: float
    samples_per_s: float
    tokens_per_s: float | None
    grad_norm: float | None = None
    elapsed: float = 0.0

    @classmethod
    def deferred(cls, values: Any, pending: DeviceScalars, seconds: float, **fields: Any) -> StepEnd:
        """A step whose `loss`, `grad_norm` and `tokens_per_s` come from the device tensor
        `values` = [loss, grad_norm, tokens] (tokens: NaN when not counted) of `seconds` of work."""
        event = cls.__new__(cls)
        event.__dict__.update(time=time.time(), **fields)
        pending.add(event, values, seconds)
        return event

    def _fields(self) -> dict[str, Any]:  # flat: no deep copy for the event written most often
        return {name: getattr(self, name) for name in _STEP_FIELDS}

    @property
    def ready(self) -> bool:
        """True when `loss`/`grad_norm` are on the host: reading them costs nothing. The loop reads
        a few times a second; an observer that waits for a ready step never forces a device sync."""
        return "_pending" not in self.__dict__

    def __getattr__(self, name: str) -> Any:
        # Only reached while these are not yet in the instance (a deferred step).
        pending = self.__dict__.get("_pending")
        if name in _DEFERRED and pending is not None:
            pending.read()
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_DEFERRED = ("loss", "grad_norm", "tokens_per_s")
_STEP_FIELDS = tuple(StepEnd.__dataclass_fields__)

# The default lives in __init__; as a class attribute it would hide a deferred step's grad norm
# from __getattr__.
del StepEnd.grad_norm


class DeviceScalars:
    """The device values of steps nobody has read yet. `read()` moves all of them to the host in one
    transfer and fills in their events; the loop calls it a few times a second at most (and at
    evaluations and the end), so a GPU is never made to wait once per step."""

    def __init__(self) -> None:
        self._events: list[StepEnd] = []
        self._values: list[Any] = []
        self._seconds: list[float] = []
        self._lock = threading.Lock()

    def add(self, event: StepEnd, values: Any, seconds: float) -> None:
        with self._lock:
            event.__dict__["_pending"] = self
            self._events.append(event)
            self._values.append(values)
            self._seconds.append(seconds)

    def __len__(self) -> int:
        return len(self._events)

    def read(self) -> None:
        import torch

        with self._lock:
            events, values, seconds = self._events, self._values, self._seconds
            self._events, self._values, self._seconds = [], [], []
            if not events:
                return
            rows = torch.stack(values).tolist()  # (n, 3): one host transfer for n steps
            for event, (loss, norm, tokens), dt in zip(events, rows, seconds, strict=True):
                event.__dict__.update(loss=loss, grad_norm=None if math.isnan(norm) else norm,
                                      tokens_per_s=None if math.isnan(tokens) else tokens / dt)
                del event.__dict__["_pending"]


@dataclass
class EvalEnd(Event):
    kind = "eval"
    step: int
    epoch: float
    metrics: dict[str, float]
    split: str = "eval"  # or "test": the held-out evaluation after training


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
class TrainEnd(Event):
    """The last optimizer step is done; the final evaluation, the test evaluation and the final save
    follow (they can take a while: the dashboard says so)."""

    kind = "train_end"
    step: int
    status: str
    doing: str = "saving"  # what follows, for a display: "evaluating, testing and saving", ...


@dataclass
class Samples(Event):
    """What the model answers to the `samples:` prompts at `step` (greedy): `answers` by the model
    being trained, `base` by the model it started from (None when unknown), `references` when the
    data has them. Written to metrics.jsonl like every event (nbkit.core.llm.samples)."""

    kind = "samples"
    step: int
    prompts: list[str]
    answers: list[str]
    base: list[str] | None = None
    references: list[str | None] = field(default_factory=list)


@dataclass
class RunEnd(Event):
    kind = "run_end"
    status: str
    step: int
    message: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (RunStart, StepEnd, EvalEnd, EpochEnd, CheckpointSaved, TrainEnd, Samples, RunEnd)
}


def event_from_dict(d: dict[str, Any]) -> Event:
    """Rebuild an event from one `metrics.jsonl` line (used by `Run.load` and process followers)."""
    d = dict(d)
    cls = EVENT_TYPES[d.pop("event")]
    if cls is StepEnd and d.get("loss") is None:
        d["loss"] = float("nan")
    return cls(**d)
