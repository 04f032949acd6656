"""Adapters that let other training loops feed nbkit's events, so a Hugging Face `Trainer` run gets the
same `Run` (history, metrics.jsonl, stop/pause, live dashboard) as `nbkit.fit`.

`TrainerCallback` translates `transformers.Trainer` callbacks into `nbkit.core.train.events`; it is core
code (torch/transformers only, never IPython, ipywidgets or plotly). The public `nbkit.TrainerCallback`
(nbkit/notebook/trainer.py) is this adapter plus the dashboard in a notebook.
"""

from __future__ import annotations

import functools
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import transformers

from .config import yaml_safe
from .train.events import CheckpointSaved, EpochEnd, EvalEnd, Event, RunStart, StepEnd
from .train.observers import JsonlLog
from .train.run import Run, write_config
from .train.rundir import run_name
from .train.trackers import tracker_observers

__all__ = ["TrainerCallback"]

# Trainer adds these to every evaluation; they describe the eval pass, not the model, and `fit`'s
# EvalEnd has no such keys, so dropping them keeps the two histories alike.
_EVAL_SPEED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


class TrainerCallback(transformers.TrainerCallback):
    """Turn a Hugging Face `Trainer` run into an nbkit `Run`.

        cb = TrainerCallback()
        trainer = Trainer(model, args, train_dataset=..., callbacks=[cb])
        trainer.train()
        cb.run.history            # the same DataFrame nbkit.fit gives

    Events go to `run_dir/metrics.jsonl` (default: `<output_dir>/nbkit`), to `observers`
    (callables `fn(event, run)`) and to anything `cb.run.subscribe(...)` adds later. `cb.run.stop()`
    (from an observer, a button or another thread) ends training at the next step boundary;
    `cb.run.pause()` holds it there until `resume()`. The run exists from construction, so observers
    can subscribe before `trainer.train()`; its directory and name are filled in when the Trainer is
    built (or `add_callback`-ed and started), its config and model when training starts.
    `report_to=["tensorboard", "trackio", "mlflow"]` (or "all"): nbkit's trackers, as for `fit`
    (on the main process; RUN_DIR/tensorboard, trackers.json), checked here, before training.
    """

    def __init__(self, observers: Sequence[Callable[[Event, Run], Any]] = (), *,
                 run_dir: str | Path | None = None, name: str | None = None,
                 handle_interrupt: bool = True, report_to: str | Sequence[str] | None = None):
        self._trackers = tracker_observers(report_to)
        self._given_run_dir = Path(run_dir) if run_dir is not None else None
        self._given_name = name
        self.handle_interrupt = handle_interrupt
        self.run = Run(name=name or "trainer", run_dir=self._given_run_dir or Path("nbkit-run"),
                       config={}, observers=list(observers), kind="hf")
        self._log: JsonlLog | None = None
        self._old_sigint: Any = None
        self._hinted = False
        self._reset_clock()

    def _reset_clock(self) -> None:
        now = time.perf_counter()
        self._t0 = now
        self._mark = now  # the end of the last thing that was not training (a step, a log, an eval)
        self._train_time = 0.0  # seconds spent training since the last logged step
        self._last_logged_step = 0
        self._last_tokens = 0

    # -- Trainer callbacks ------------------------------------------------------------------------

    def on_init_end(self, args, state, control, model=None, **kwargs):
        # Trainer(..., callbacks=[cb]) calls this: the run's directory is known before train().
        self._identify(args, model)
        trainer = _calling_trainer()
        if trainer is not None:
            self._guard_train(trainer)
        return control

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        run = self.run
        self._identify(args, model)
        run.config = _plain_config(args)
        if model is not None:
            run.model = model
        if kwargs.get("processing_class") is not None:
            run.tokenizer = kwargs["processing_class"]
        run.begin()  # a second train() on the same callback (e.g. resuming) starts afresh
        if state.is_world_process_zero:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(run.run_dir, run.config)
            if self._log is not None:
                self._log.close()
                run.remove_observer(self._log)
            # First, so the file has the event even if a later observer raises.
            self._log = JsonlLog(run.run_dir / "metrics.jsonl")
            run.add_observer(self._log, first=True)
            for tracker in self._trackers:  # after the log: they read what it wrote
                if tracker not in run.observers:
                    run.add_observer(tracker, after=self._log)
        self._install_sigint()
        world = max(1, getattr(args, "world_size", 1))
        self._batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
        per_epoch = steps_per_epoch(train_dataloader, args, state)
        self._reset_clock()
        self._last_logged_step = state.global_step
        self._last_tokens = state.num_input_tokens_seen or 0
        if state.is_world_process_zero:
            self._hint_logging(logging_interval(args, state.max_steps, per_epoch), state.max_steps)
        run.emit(RunStart(name=run.name, run_dir=str(run.run_dir), total_steps=state.max_steps,
                           steps_per_epoch=per_epoch,
                           epochs=math.ceil(state.max_steps / per_epoch) if per_epoch else 0,
                           start_step=state.global_step, effective_batch_size=self._batch,
                           processes=world, lr=float(args.learning_rate), config=run.config))
        return self._control(control)

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self._train_time += now - self._mark
        self._mark = now
        self._wait_if_paused()
        return self._control(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs and state.global_step > self._last_logged_step:
            self._emit_step(state, logs)
        self._mark = time.perf_counter()
        return self._control(control)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and not any(isinstance(e, StepEnd) for e in self.run.events):
            # An evaluation before the first logged loss: the chart shows eval points only.
            self._hint_logging(logging_interval(args, state.max_steps, 0), state.max_steps,
                               before_eval=state.global_step)
        numbers = {k: float(v) for k, v in (metrics or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"
                   and not k.endswith(_EVAL_SPEED_SUFFIXES)}
        self.run.emit(EvalEnd(step=state.global_step, epoch=float(state.epoch or 0.0), metrics=numbers))
        self._mark = time.perf_counter()
        return self._control(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = state.epoch or 0.0
        # Trainer also calls this when it breaks out half-way (stop, max_steps): fit only reports
        # whole epochs, and so do we.
        if epoch >= 1 and abs(epoch - round(epoch)) < 1e-6:
            self.run.emit(EpochEnd(step=state.global_step, epoch=round(epoch)))
        self._mark = time.perf_counter()
        return self._control(control)

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        best = state.best_model_checkpoint is not None and Path(state.best_model_checkpoint) == path
        self.run.emit(CheckpointSaved(step=state.global_step, path=str(path), best=best))
        self._mark = time.perf_counter()
        return self._control(control)

    def on_train_end(self, args, state, control, **kwargs):
        run = self.run
        self._restore_sigint()
        if run.stop_requested:
            status, message = run.control.status, run.control.reason
        elif state.global_step < state.max_steps:
            # Another callback (e.g. transformers.EarlyStoppingCallback) ended training early.
            status, message = "stopped", "stopped by a Trainer callback"
        else:
            status, message = "finished", ""
        run.finish(status, state.global_step, message)
        return control

    # -- helpers ----------------------------------------------------------------------------------

    def _hint_logging(self, interval: float, total: int, before_eval: int | None = None) -> None:
        """Once per callback: one line when Trainer's logging interval leaves the loss chart empty."""
        if self._hinted or total <= 0:
            return
        if before_eval is None and interval <= max(1, total / 10):
            return
        self._hinted = True
        every = max(1, total // 50)
        when = ("logs no training loss" if math.isinf(interval)
                else f"logs the training loss every {interval:g} steps")
        why = (f", so the chart has no loss before the evaluation at step {before_eval}" if before_eval is not None
               else f" and this run has {total} steps, so the loss chart stays empty for long")
        where = f"every {every} steps" if every > 1 else "at every step"
        print(f"nbkit: Trainer {when}{why}; pass TrainingArguments(logging_strategy=\"steps\", "
              f"logging_steps={every}) for a point {where}.")

    def _identify(self, args, model) -> None:
        self.run.run_dir = self._given_run_dir or Path(args.output_dir) / "nbkit"
        self.run.name = self._given_name or getattr(args, "run_name", None) or run_name(model)

    def _emit_step(self, state, logs: dict[str, Any]) -> None:
        steps = state.global_step - self._last_logged_step
        # Time spent training since the last log; evaluation, saving and observers are left out,
        # as in fit. Before any on_step_end (cannot happen in Trainer) fall back to the wall clock.
        dt = max(self._train_time or (time.perf_counter() - self._mark), 1e-9)
        tokens = state.num_input_tokens_seen or 0
        tokens_per_s = (tokens - self._last_tokens) / dt if tokens > self._last_tokens else None
        grad_norm = logs.get("grad_norm")
        self.run.emit(StepEnd(
            step=state.global_step, epoch=float(logs.get("epoch", state.epoch or 0.0)),
            loss=float(logs["loss"]), lr=float(logs.get("learning_rate", float("nan"))),
            samples_per_s=steps * self._batch / dt, tokens_per_s=tokens_per_s,
            grad_norm=None if grad_norm is None else float(grad_norm),
            elapsed=time.perf_counter() - self._t0,
        ))
        self._last_logged_step, self._last_tokens, self._train_time = state.global_step, tokens, 0.0

    def _control(self, control):
        if self.run.stop_requested:
            control.should_training_stop = True
        return control

    def _wait_if_paused(self) -> None:
        self.run.control.wait_if_paused()
        self._mark = time.perf_counter()  # time spent paused is not training time

    def _install_sigint(self) -> None:
        if not self.handle_interrupt or threading.current_thread() is not threading.main_thread():
            return
        run = self.run
        old = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if not _training(frame):  # train() raised (and add_callback left no guard): step aside
                self._restore_sigint()
                if callable(old):
                    return old(signum, frame)
                raise KeyboardInterrupt
            if run.done or run.stop_requested:
                # Not training any more, or a second interrupt: behave as before we were installed.
                if callable(old):
                    return old(signum, frame)
                raise KeyboardInterrupt
            # Like fit: the interrupt becomes a stop at the next step boundary, never mid-update.
            run.request_stop("interrupted", status="stopped")

        self._old_sigint = old
        signal.signal(signal.SIGINT, handler)

    def _guard_train(self, trainer) -> None:
        """Make `trainer.train()` end our run and put the SIGINT handler back when it raises:
        Trainer has no callback for an exception, so on_train_end never comes."""
        train = trainer.train
        if getattr(train, "_nbkit_callback", None) is self:
            return

        @functools.wraps(train)
        def train_and_clean_up(*args, **kwargs):
            try:
                return train(*args, **kwargs)
            except BaseException as exc:
                self._restore_sigint()
                run = self.run
                if run.status in ("running", "paused"):
                    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                    run.finish(status, trainer.state.global_step, f"{type(exc).__name__}: {exc}")
                raise

        train_and_clean_up._nbkit_callback = self  # type: ignore[attr-defined]
        trainer.train = train_and_clean_up

    def _restore_sigint(self) -> None:
        if self._old_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._old_sigint)
        self._old_sigint = None


def logging_interval(args, total_steps: int, steps_per_epoch: int) -> float:
    """Steps between the training losses Trainer logs (inf when it logs none)."""
    strategy = getattr(getattr(args, "logging_strategy", "steps"), "value", getattr(args, "logging_strategy", "steps"))
    if strategy == "no":
        return math.inf
    if strategy == "epoch":
        return float(steps_per_epoch or total_steps)
    steps = float(args.logging_steps)
    return float(max(1, math.ceil(steps * total_steps))) if steps < 1 else steps
def _calling_trainer():
    """The `Trainer` whose __init__ is calling our on_init_end (callbacks are not handed it)."""
    frame = sys._getframe(1)
    for _ in range(8):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, transformers.Trainer):
            return candidate
        frame = frame.f_back
    return None


def _training(frame) -> bool:
    """Is a Trainer's train() on the interrupted thread's stack?"""
    while frame is not None:
        if frame.f_code.co_name in ("train", "_inner_training_loop") and isinstance(
                frame.f_locals.get("self"), transformers.Trainer):
            return True
        frame = frame.f_back
    return False


def steps_per_epoch(loader, args, state) -> int:
    try:
        batches = len(loader)
    except TypeError:  # no loader, or an iterable dataset without a length
        return max(1, math.ceil(state.max_steps / max(1, math.ceil(args.num_train_epochs))))
    return max(1, math.ceil(batches / args.gradient_accumulation_steps))


def _plain_config(args) -> dict[str, Any]:
    """TrainingArguments as plain values (tokens are masked by `to_dict`)."""
    return yaml_safe(args.to_dict())
