"""Adapters that let other training loops feed nbkit's events, so a Hugging Face `Trainer` run gets the
same `Run` (history, metrics.jsonl, stop/pause, live dashboard) as `nbkit.fit`.

`TrainerCallback` translates `transformers.Trainer` callbacks into `nbkit.core.train.events`; it is core
code (torch/transformers only, never IPython, ipywidgets or plotly).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import transformers

from .train.events import CheckpointSaved, EpochEnd, EvalEnd, Event, RunEnd, RunStart, StepEnd
from .train.observers import JsonlLog
from .train.run import Run, write_config
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
        self._observers: list[Callable] = list(observers)
        self.run = Run(name=name or "trainer", run_dir=self._given_run_dir or Path("nbkit-run"),
                       config={}, observers=self._observers, kind="hf")
        self._log: JsonlLog | None = None
        self._old_sigint: Any = None
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
        return control

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        run = self.run
        self._identify(args, model)
        run.config = _plain_config(args)
        if model is not None:
            run._model = model
        if kwargs.get("processing_class") is not None:
            run.tokenizer = kwargs["processing_class"]
        if run.done:  # a second train() on the same callback (e.g. resuming): a fresh start
            run._stop_event.clear()
            run._done.clear()
            run._running.set()
            run._stop_reason, run._stop_status = "", "stopped"
        if state.is_world_process_zero:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(run.run_dir, run.config)
            if self._log is not None:
                self._log.close()
                self._observers.remove(self._log)
            # First, so the file has the event even if a later observer raises.
            self._log = JsonlLog(run.run_dir / "metrics.jsonl")
            self._observers.insert(0, self._log)
            for i, tracker in enumerate([t for t in self._trackers if t not in self._observers]):
                self._observers.insert(1 + i, tracker)  # after the log: they read what it wrote
        self._install_sigint()
        run.status = "running"
        world = max(1, getattr(args, "world_size", 1))
        self._batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
        steps_per_epoch = _steps_per_epoch(train_dataloader, args, state)
        self._reset_clock()
        self._last_logged_step = state.global_step
        self._last_tokens = state.num_input_tokens_seen or 0
        run._emit(RunStart(name=run.name, run_dir=str(run.run_dir), total_steps=state.max_steps,
                           steps_per_epoch=steps_per_epoch,
                           epochs=math.ceil(state.max_steps / steps_per_epoch) if steps_per_epoch else 0,
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
        numbers = {k: float(v) for k, v in (metrics or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"
                   and not k.endswith(_EVAL_SPEED_SUFFIXES)}
        self.run._emit(EvalEnd(step=state.global_step, epoch=float(state.epoch or 0.0), metrics=numbers))
        self._mark = time.perf_counter()
        return self._control(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = state.epoch or 0.0
        # Trainer also calls this when it breaks out half-way (stop, max_steps): fit only reports
        # whole epochs, and so do we.
        if epoch >= 1 and abs(epoch - round(epoch)) < 1e-6:
            self.run._emit(EpochEnd(step=state.global_step, epoch=round(epoch)))
        self._mark = time.perf_counter()
        return self._control(control)

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        best = state.best_model_checkpoint is not None and Path(state.best_model_checkpoint) == path
        self.run._emit(CheckpointSaved(step=state.global_step, path=str(path), best=best))
        self._mark = time.perf_counter()
        return self._control(control)

    def on_train_end(self, args, state, control, **kwargs):
        run = self.run
        self._restore_sigint()
        if run._stop_event.is_set():
            status, message = run._stop_status, run._stop_reason
        elif state.global_step < state.max_steps:
            # Another callback (e.g. transformers.EarlyStoppingCallback) ended training early.
            status, message = "stopped", "stopped by a Trainer callback"
        else:
            status, message = "finished", ""
        run.status = status
        run._stop_event.set()
        try:
            run._emit(RunEnd(status=status, step=state.global_step, message=message))
        finally:
            run._done.set()
        return control

    # -- helpers ----------------------------------------------------------------------------------

    def _identify(self, args, model) -> None:
        self.run.run_dir = self._given_run_dir or Path(args.output_dir) / "nbkit"
        self.run.name = self._given_name or getattr(args, "run_name", None) or _model_name(model)

    def _emit_step(self, state, logs: dict[str, Any]) -> None:
        steps = state.global_step - self._last_logged_step
        # Time spent training since the last log; evaluation, saving and observers are left out,
        # as in fit. Before any on_step_end (cannot happen in Trainer) fall back to the wall clock.
        dt = max(self._train_time or (time.perf_counter() - self._mark), 1e-9)
        tokens = state.num_input_tokens_seen or 0
        tokens_per_s = (tokens - self._last_tokens) / dt if tokens > self._last_tokens else None
        grad_norm = logs.get("grad_norm")
        self.run._emit(StepEnd(
            step=state.global_step, epoch=float(logs.get("epoch", state.epoch or 0.0)),
            loss=float(logs["loss"]), lr=float(logs.get("learning_rate", float("nan"))),
            samples_per_s=steps * self._batch / dt, tokens_per_s=tokens_per_s,
            grad_norm=None if grad_norm is None else float(grad_norm),
            elapsed=time.perf_counter() - self._t0,
        ))
        self._last_logged_step, self._last_tokens, self._train_time = state.global_step, tokens, 0.0

    def _control(self, control):
        if self.run._stop_event.is_set():
            control.should_training_stop = True
        return control

    def _wait_if_paused(self) -> None:
        run = self.run
        while not run._running.wait(0.1):
            if run._stop_event.is_set():
                return
        self._mark = time.perf_counter()  # time spent paused is not training time

    def _install_sigint(self) -> None:
        if not self.handle_interrupt or threading.current_thread() is not threading.main_thread():
            return
        run = self.run
        old = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if run.done or run._stop_event.is_set():
                # Not training any more, or a second interrupt: behave as before we were installed.
                if callable(old):
                    return old(signum, frame)
                raise KeyboardInterrupt
            # Like fit: the interrupt becomes a stop at the next step boundary, never mid-update.
            run._request_stop("interrupted", status="stopped")

        self._old_sigint = old
        signal.signal(signal.SIGINT, handler)

    def _restore_sigint(self) -> None:
        if self._old_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._old_sigint)
        self._old_sigint = None


def _steps_per_epoch(loader, args, state) -> int:
    try:
        batches = len(loader)
    except TypeError:  # no loader, or an iterable dataset without a length
        return max(1, math.ceil(state.max_steps / max(1, math.ceil(args.num_train_epochs))))
    return max(1, math.ceil(batches / args.gradient_accumulation_steps))


def _model_name(model) -> str:
    path = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    return Path(path).name if path and not str(path).startswith("/tmp") else type(model).__name__


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return _plain(value.value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return repr(value)


def _plain_config(args) -> dict[str, Any]:
    """TrainingArguments as plain values (tokens are masked by `to_dict`)."""
    return {k: _plain(v) for k, v in args.to_dict().items()}
