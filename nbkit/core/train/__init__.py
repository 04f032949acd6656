"""The training engine: `fit` (any torch module), `finetune` (model + data by name), the `Run` they
return, and the events the loop emits. Built on torch, transformers, datasets and accelerate only.
"""

from .events import CheckpointSaved, EpochEnd, EvalEnd, Event, RunEnd, RunStart, Samples, StepEnd
from .finetune import finetune
from .loop import fit
from .observers import EarlyStopping
from .run import Run

__all__ = [
    "fit", "finetune", "Run", "Event", "RunStart", "StepEnd", "EvalEnd", "EpochEnd", "CheckpointSaved",
    "Samples", "RunEnd", "EarlyStopping",
]
