"""`nbkit.TrainerCallback`: the core's Hugging Face `Trainer` adapter plus a live view of the run.

In a Jupyter kernel each `trainer.train()` shows nbkit's dashboard in its cell (chart, progress,
metrics, Stop/Pause); elsewhere it adds a text progress bar when Trainer's own is off
(`disable_tqdm=True`), so a terminal never gets two bars. The adapter itself
(`nbkit.core.integrations.TrainerCallback`) stays free of widgets; this module imports them only
inside a kernel, at `train()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nbkit.core.integrations import TrainerCallback as _Adapter
from nbkit.core.integrations import logging_interval, steps_per_epoch
from nbkit.core.train.observers import ProgressBar
from nbkit.notebook.twins import in_notebook

__all__ = ["TrainerCallback", "in_notebook"]


class TrainerCallback(_Adapter):
    """Turn a Hugging Face `Trainer` run into an nbkit `Run`, with the dashboard in a notebook.

        cb = nbkit.TrainerCallback()
        trainer = Trainer(model, args, train_dataset=..., callbacks=[cb])
        trainer.train()           # notebook: the live dashboard; terminal: Trainer's progress bar
        cb.run.history            # the same DataFrame nbkit.fit gives

    `progress=False` shows nothing (events still reach `metrics.jsonl` and `observers`). The other
    arguments are those of `nbkit.core.integrations.TrainerCallback`.
    """

    def __init__(self, observers: Sequence[Callable] = (), *, run_dir: str | Path | None = None,
                 name: str | None = None, handle_interrupt: bool = True, progress: bool = True,
                 report_to: Any = ()):
        super().__init__(observers, run_dir=run_dir, name=name, handle_interrupt=handle_interrupt,
                         report_to=report_to)
        self.progress = progress
        self.view: Any = None  # the Dashboard or ProgressBar of the latest train()

    def on_train_begin(self, args, state, control, **kwargs):
        if self.view is not None:
            self.run.remove_observer(self.view)  # a second train(): a fresh view in its own cell
        if state.is_world_process_zero:  # the logging hint (once) above the dashboard, not below it
            per_epoch = steps_per_epoch(kwargs.get("train_dataloader"), args, state)
            self._hint_logging(logging_interval(args, state.max_steps, per_epoch), state.max_steps)
        self.view = self._make_view(args) if self.progress and state.is_world_process_zero else None
        if self.view is not None:
            self.run.add_observer(self.view)
        return super().on_train_begin(args, state, control, **kwargs)

    @staticmethod
    def _make_view(args) -> Any:
        if in_notebook():
            try:
                from nbkit.notebook.widgets.dashboard import Dashboard
            except ImportError:  # widgets not installed: a tqdm bar (a widget or text) instead
                return ProgressBar()
            return Dashboard().show()
        # Headless, Trainer draws its own tqdm bar unless told not to; two bars would fight.
        return ProgressBar() if getattr(args, "disable_tqdm", False) else None
