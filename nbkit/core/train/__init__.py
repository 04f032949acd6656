"""The training engine: `fit` (any torch module), `finetune` (model + data by name), the `Run` they
return, and the events the loop emits. Built on torch, transformers, datasets and accelerate only.
"""

from ..config import TRAINER_ALIASES, TRAINER_MEANT
from ..suggest import check_kwargs
from .events import CheckpointSaved, EpochEnd, EvalEnd, Event, RunEnd, RunStart, StepEnd
from .finetune import finetune
from .loop import fit as _fit
from .lr_find import lr_find as _lr_find
from .observers import EarlyStopping
from .run import Run

# Unknown keyword arguments fail in one line listing the valid ones; Trainer's names (learning_rate,
# ...) are aliases. (To move onto `def fit` / `def lr_find` as decorators when those files settle.)
fit = check_kwargs(_fit, aliases=TRAINER_ALIASES, meant=TRAINER_MEANT)
lr_find = check_kwargs(_lr_find, aliases=TRAINER_ALIASES, meant=TRAINER_MEANT)

__all__ = [
    "fit", "finetune", "lr_find", "Run", "Event", "RunStart", "StepEnd", "EvalEnd", "EpochEnd", "CheckpointSaved",
    "RunEnd", "EarlyStopping",
]
