"""`fit`: one readable training loop on accelerate (device placement, autocast, gradient
accumulation, clipping, and the same code under `accelerate launch`).

`Loop.train` is the whole algorithm on one screen: epochs, batches, one train step (`step.py`),
the step event, evaluation when due, stop when asked. Named helpers do the rest. The loop emits
events to observers (`events.py`); checkpoints, the JSONL log, progress and early stopping are
observers; `Control` (control.py) owns stop, pause, the stop file and the agreement between
processes. The loop knows nothing about displays: the notebook layer passes its dashboard in as
an observer factory (`progress=`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import (
    TRAINER_ALIASES,
    TRAINER_MEANT,
    ConfigError,
    TrainConfig,
    build_config,
    yaml_safe,
)
from ..models import cap_max_length
from ..suggest import check_kwargs
from . import checkpoints as ckpt
from .batching import DataError, TokenizedDataset, make_loader
from .control import Control
from .evaluation import evaluate_model, model_kind
from .events import DeviceScalars, EpochEnd, EvalEnd, RunStart, StepEnd, TrainEnd
from .metrics import check_best_metric, lower_is_better, resolve_metrics
from .observers import EarlyStopping, JsonlLog, ProgressBar
from .run import Run, write_config
from .rundir import claim_run_dir, run_name
from .step import TrainStep, make_accelerator, make_optimizer, precision
from .trackers import tracker_observers

READ_EVERY = 0.25  # seconds between bulk reads of the step values from the device
MAX_SKIPPED = 3  # consecutive steps with non-finite gradients before the run fails

# Keys a resumed run must share with the stored one (else it is another run), and keys it may change.
FIXED_ON_RESUME = ("batch_size", "grad_accum", "seed", "max_length", "optimizer", "lr", "scheduler",
                   "warmup", "weight_decay", "group_by_length", "scale_lr", "model", "data", "task",
                   "text", "text_pair", "label", "eval_split")
CHANGEABLE_ON_RESUME = ("epochs", "max_steps", "eval_every", "early_stopping", "metrics", "test",
                        "best_metric", "keep_optimizer")

_active_lock = threading.Lock()
_active: list[Run] = []  # the run training in this process, if any


# Unknown keywords fail in one line listing the valid ones; Trainer's names (learning_rate...) are aliases.
@check_kwargs(aliases=TRAINER_ALIASES, meant=TRAINER_MEANT)
def fit(model: torch.nn.Module, train: Any, eval: Any = None, *, tokenizer: Any = None,
        collate_fn: Callable | None = None, loss_fn: Callable | None = None, epochs: int = 1,
        max_steps: int | None = None, lr: float = 5e-5, batch_size: int = 16, grad_accum: int = 1,
        optimizer: str = "adamw", weight_decay: float = 0.0, scheduler: str = "linear",
        warmup: float = 0.0, max_grad_norm: float | None = 1.0, precision: str = "auto",
        group_by_length: bool | None = None, max_length: int = 256, eval_every: int | None = None,
        metrics: Sequence[Any] = (), best_metric: str = "eval_loss", early_stopping: int | None = None,
        seed: int = 0, scale_lr: bool = False, keep_optimizer: bool = False, callbacks: Sequence[Callable] = (),
        name: str | None = None, run_dir: str | os.PathLike | None = None, overwrite: bool = False,
        report_to: str | Sequence[str] = (), evaluators: Sequence[Callable] = (),
        test: Any = None, resume_from: str | os.PathLike | None = None, background: bool = False,
        progress: bool | Callable = True, config_extra: dict | None = None,
        stop_file: str | os.PathLike | None = None) -> Run:
    """Train `model` on `train` and return a `Run` (see the module docstring of nbkit.core.train).

    `model` is a Hugging Face model (returns `.loss` when the batch has labels) or any
    `torch.nn.Module`: dict batches are passed as `model(**batch)`, tuple batches `(inputs, targets)`
    as `model(inputs)` and scored with `loss_fn(outputs, targets)`. Text data is tokenized once and
    grouped by length (`group_by_length=False` turns that off). `background=True` trains in a thread
    and returns at once; `resume_from=run_dir` continues an interrupted run exactly. A `run_dir`
    that holds a run is refused unless `overwrite=True`. `progress`: True (a progress bar), False,
    or a zero-argument factory returning an observer (how the notebook passes its dashboard in).
    `stop_file`: a path whose appearance stops the run at the next step boundary.
    `report_to`: "tensorboard", "trackio", "mlflow" (or a list, or "all" installed) also logs
    the run there (nbkit.core.train.trackers). `evaluators`: callables `fn(model, prefix) ->
    {name: value}` whose metrics join each evaluation's (e.g. exact match of generated answers).
    """
    options = {k: v for k, v in locals().items() if k in TrainConfig.__dataclass_fields__}
    options["metrics"] = list(metrics)
    if resume_from is not None:
        options["run_dir"] = str(resume_from)
    cfg = build_config(TrainConfig, options)
    cfg.max_length = cap_max_length(cfg.max_length, model, tokenizer, default=TrainConfig.max_length)
    train, eval, test = _reconcile_labels(model, train, eval, test)
    loop = Loop(model, train, eval, test=test, cfg=cfg, tokenizer=tokenizer, collate_fn=collate_fn,
                loss_fn=loss_fn, callbacks=callbacks, resume=resume_from is not None,
                progress=progress, config_extra=config_extra or {}, stop_file=stop_file,
                evaluators=evaluators)
    if background:
        if callable(loop.progress):
            # A display made from the training thread can arrive after this cell has ended, when
            # the front end no longer takes outputs for it: show it here, in the caller's thread.
            loop.progress_observer = loop.progress()
        loop.run.start_in_background(loop.train)
    else:
        loop.train()
        if loop.run.error is not None:
            raise loop.run.error
    return loop.run


def _claim_process(run: Run | None) -> None:
    """One training run at a time per process: accelerate's state, the global seeds and (on a GPU)
    the memory are process-wide, so a second run beside a background one would corrupt both.
    Refused rather than queued: a queued cell would look hung. `None`: only check."""
    with _active_lock:
        busy = [r for r in _active if not r.done and r is not run]
        if busy:
            raise ConfigError(
                f"run {busy[0].name!r} is still training in this process (in the background): wait for "
                "it with run.wait() or end it with run.stop() before starting another"
            )
        if run is not None:
            _active[:] = [run]


def _reconcile_labels(model, train, eval, test):
    """The model's label names and the data's agree before training, and the checkpoint carries
    them: otherwise predictions after reloading can be swapped (issue 12)."""
    from ..models import reconcile_model_labels

    return reconcile_model_labels(model, train, eval, test)


class Loop:
    """The state of one training run, all of it created here: bad input fails before any step;
    `train` then runs to the end (in the caller's thread or a background one)."""

    def __init__(self, model, train, eval, *, test, cfg: TrainConfig, tokenizer, collate_fn, loss_fn,
                 callbacks, resume: bool, progress, config_extra: dict, stop_file=None, evaluators=()):
        self.cfg, self.loss_fn, self.tokenizer, self.model = cfg, loss_fn, tokenizer, model
        self.evaluators = list(evaluators)  # fn(model, prefix) -> more metrics (generation, ...)
        self.kind = model_kind(model)
        if self.kind == "module" and loss_fn is None:
            raise ConfigError(
                f"{type(model).__name__} is a plain torch module, which returns no loss: pass "
                "loss_fn=... (e.g. torch.nn.functional.cross_entropy), or use a Hugging Face model"
            )
        self.metric_specs = resolve_metrics(cfg.metrics)
        if eval is not None:
            check_best_metric(cfg.best_metric, self.metric_specs)
        name = cfg.name or run_name(model)
        common = dict(tokenizer=tokenizer, collate_fn=collate_fn, max_length=cfg.max_length, seed=cfg.seed,
                      lm_labels=self.kind == "causal-lm", seq2seq=self.kind == "seq2seq")
        self.train_loader, self.order = make_loader(train, batch_size=cfg.batch_size, shuffle=True,
                                                    group_by_length=cfg.group_by_length, **common)
        self.eval_loader = self._eval_loader(eval, common)
        self.test_loader = self._eval_loader(test, common)
        self._check_labels(model)
        config = {**cfg.to_dict(), **config_extra}
        self.resume_ckpt = None
        stored_events: list = []
        if resume:
            self.resume_ckpt, stored_events = self._check_resume(Path(cfg.run_dir).absolute(), config)
        trackers = tracker_observers(cfg)  # report_to: a tracker not installed fails here, before any write
        _claim_process(None)  # before the run directory exists: refused means nothing written
        run_dir = claim_run_dir(cfg.run_dir, name, resume=resume, overwrite=cfg.overwrite)
        config["run_dir"] = str(run_dir)
        self.run = Run(name=name, run_dir=run_dir, config=config, model=model, tokenizer=tokenizer,
                       kind=self.kind, control=Control(stop_file), label_names=_label_names(train),
                       events=stored_events)
        # Sizes on the unsharded data; recomputed on the prepared (sharded) loader in _setup.
        self.batches_per_epoch = len(self.train_loader)
        self._size_schedule(self.batches_per_epoch)
        self.step = self.epoch = self.consumed = self.skip = 0
        self.last_eval_step = -1
        self.acc = self.pmodel = self.opt = self.sched = self.step_fn = None
        self.pending = DeviceScalars()
        self._unchecked: list[StepEnd] = []  # steps read from the device but not yet checked for skips
        self.skipped = 0  # steps skipped in a row, as of the last read
        self.t0 = self.t_last = self.t_read = 0.0
        self.checkpointer = ckpt.Checkpointer(
            run_dir, self, best_metric=cfg.best_metric,
            lower_is_better=lower_is_better(cfg.best_metric, self.metric_specs),
            save_at_epoch_end=self.eval_loader is None or cfg.eval_every is not None,
            keep_optimizer=cfg.keep_optimizer)
        self.observers: list[Callable] = [JsonlLog(run_dir / "metrics.jsonl"),
                                          *trackers,
                                          self.checkpointer]
        if cfg.early_stopping:
            self.observers.append(EarlyStopping(cfg.early_stopping, cfg.best_metric,
                                                lower_is_better=lower_is_better(cfg.best_metric, self.metric_specs)))
        self.progress = progress
        self.progress_observer = None  # made early by fit(background=True), else in _setup
        self.observers.extend(callbacks)

    # -- the algorithm ------------------------------------------------------------------------------

    def train(self) -> None:
        run, cfg, control = self.run, self.cfg, self.run.control
        _claim_process(run)
        old_handler = self._install_sigint()
        status, message = "failed", ""
        try:
            self._setup()  # accelerator, prepared model/optimizer/loaders, schedule, resume position
            run.emit(self._run_start())
            for epoch in range(self.epoch, self.epochs):
                self.epoch = epoch
                for batch in self._batches(epoch):
                    if not self.step_fn(batch):
                        continue  # gradient accumulation: more batches make this step
                    self.step += 1
                    run.emit(self._step_event())
                    if cfg.eval_every and self.step % cfg.eval_every == 0:
                        self._evaluate()
                    if self.step >= self.total_steps or control.should_stop(self.acc):
                        break
                    control.wait_if_paused()
                if self.consumed >= self.batches_per_epoch:  # a whole epoch, not a break half-way
                    run.emit(EpochEnd(step=self.step, epoch=epoch + 1))
                    if self.eval_loader is not None and not cfg.eval_every:
                        self._evaluate()
                if self.step >= self.total_steps or control.should_stop(self.acc) or control.after_epoch:
                    break
            status, message = self._end_of_training()
        except KeyboardInterrupt:  # a second Ctrl-C: out now, but keep what can be kept
            status, message = "stopped", "interrupted"
            with contextlib.suppress(Exception):
                self._read_device()
                run.emit(TrainEnd(step=self.step, status=status))
        except BaseException as exc:
            run.fail(exc)
            status, message = "failed", str(exc) if isinstance(exc, ckpt.CheckpointError) else f"{type(exc).__name__}: {exc}"
        finally:
            self._restore_sigint(old_handler)
            with contextlib.suppress(Exception):
                self.pending.read()
            run.finish(status, self.step, message)
            self._release_memory()
        if status == "stopped" and message == "interrupted" and self.run.last_checkpoint is not None:
            print(f"nbkit: {run.name} stopped at step {self.step} (interrupted); checkpoint "
                  f"{self.run.last_checkpoint} and the history are saved")

    def _end_of_training(self) -> tuple[str, str]:
        """Final evaluation, test and save. A stop by a person ends "stopped" (no test); early
        stopping and the natural end end "finished", with the test, whatever `eval_every` is."""
        control = self.run.control
        self._read_device()
        if control.stop_requested:
            status, message = control.status, control.reason
        elif control.after_epoch:
            status, message = "stopped", "stopped after the epoch"
        else:
            status, message = "finished", ""
        if status == "failed":
            return status, message
        final_eval = status == "finished" and self.eval_loader is not None and self.last_eval_step != self.step
        doing = ", ".join([*(["evaluating"] if final_eval else []),
                           *(["testing"] if status == "finished" and self.test_loader is not None else [])])
        self.run.emit(TrainEnd(step=self.step, status=status,  # the checkpointer saves here
                               doing=f"{doing} and saving" if doing else "saving"))
        if status == "finished":
            if self.eval_loader is not None and self.last_eval_step != self.step:
                self._evaluate()
            if self.test_loader is not None:
                metrics = self._metrics(self.test_loader, prefix="test_")
                self.run.emit(EvalEnd(step=self.step, epoch=self.step / self.steps_per_epoch,
                                      metrics=metrics, split="test"))
        return status, message

    # -- named helpers ------------------------------------------------------------------------------

    def _setup(self) -> None:
        from accelerate.utils import set_seed

        cfg, run = self.cfg, self.run
        set_seed(cfg.seed)
        acc = self.acc = make_accelerator(precision(cfg.precision), cfg.grad_accum)
        observers = self.observers
        if not acc.is_main_process:  # one process logs, draws and writes: rank 0; all take part in saving
            observers = [o for o in observers if getattr(o, "all_processes", False)]
        elif self.progress:
            shown = self.progress_observer or (self.progress() if callable(self.progress) else ProgressBar())
            observers = [*observers, shown]
        for observer in observers:
            run.add_observer(observer)
        optimizer = make_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay)
        if acc.num_processes == 1 and acc.device.type == "cpu" and cfg.grad_accum == 1:
            # Nothing to shard, move or accumulate over: accelerate's loader wrapper would only add ~40 us a batch.
            self.pmodel, self.opt = acc.prepare(self.model, optimizer)
        else:
            loaders = [x for x in (self.eval_loader, self.test_loader) if x is not None]
            self.pmodel, self.opt, self.train_loader, *rest = acc.prepare(self.model, optimizer,
                                                                          self.train_loader, *loaders)
            self.eval_loader = rest.pop(0) if self.eval_loader is not None else None
            self.test_loader = rest.pop(0) if self.test_loader is not None else None
        # With several processes each sees a shard: count steps on the prepared loader.
        self.batches_per_epoch = len(self.train_loader)
        self._size_schedule(self.batches_per_epoch)
        if cfg.scale_lr and acc.num_processes > 1:
            for group in self.opt.optimizer.param_groups:
                group["lr"] = cfg.lr * acc.num_processes
        # Not handed to accelerate.prepare: its wrapper steps a schedule once per process, for
        # schedules sized on the unsharded data. This one is sized on the shard.
        self.sched = self._scheduler(self.opt.optimizer)
        self.step_fn = TrainStep(acc, self.pmodel, self.opt, self.sched, loss_fn=self.loss_fn,
                                 max_grad_norm=cfg.max_grad_norm, model_name=type(self.model).__name__)
        if self.resume_ckpt is not None:
            self._resume_position()
        if acc.is_main_process:
            write_config(run.run_dir, run.config)
        self.pmodel.train()
        # A resumed run continues the clock of the steps it already logged.
        before = [e.elapsed for e in run.events if isinstance(e, StepEnd) and e.step <= self.step]
        self.t_last = self.t_read = time.perf_counter()
        self.t0 = self.t_last - (before[-1] if before else 0.0)

    def _resume_position(self) -> None:
        state, had_optimizer = ckpt.restore(self.resume_ckpt, self)
        self.step, self.epoch, self.skip = state["step"], state["epoch"], state["consumed"]
        self.checkpointer.index["last"] = self.resume_ckpt.name  # this step is on disk
        if not had_optimizer:
            print(f"nbkit: {self.resume_ckpt} has no optimizer state (the run had finished); continuing "
                  "from its weights with a fresh optimizer (keep_optimizer: true keeps it)")

    def _batches(self, epoch: int):
        """This epoch's batches; a resumed run starts where its checkpoint left off."""
        skip, self.skip = self.skip, 0  # batches of this epoch a resumed run has done already
        loader = self.train_loader
        if hasattr(loader, "set_epoch"):
            # accelerate's loader counts its own passes and pushes that count into the batch
            # sampler on each one; after a resume that count is wrong, so set it explicitly.
            loader.set_epoch(epoch)
        if self.order is not None:
            self.order.set_epoch(epoch)
            self.order.skip = skip * self.acc.num_processes  # the order is global; shards interleave
            batches = loader
        else:
            from accelerate import skip_first_batches

            batches = skip_first_batches(loader, skip) if skip else loader
        self.consumed = skip
        for batch in batches:
            self.consumed += 1
            yield batch

    def _step_event(self) -> StepEnd:
        now = time.perf_counter()
        dt = max(now - self.t_last, 1e-9)
        event = StepEnd.deferred(self.step_fn.values, self.pending, dt, step=self.step,
                                 epoch=self.epoch + self.consumed / self.batches_per_epoch,
                                 lr=self.sched.get_last_lr()[0], samples_per_s=self.step_fn.take_samples() / dt,
                                 elapsed=now - self.t0)
        self._unchecked.append(event)
        if now - self.t_read >= READ_EVERY:
            self._read_device()
        self.t_last = time.perf_counter()
        return event

    def _read_device(self) -> None:
        """The bulk read: every pending step's values; then count the steps skipped in a row (a
        non-finite gradient norm: the optimizer left the weights alone)."""
        self.t_read = time.perf_counter()
        self.pending.read()
        for event in self._unchecked:
            self.skipped = self.skipped + 1 if event.grad_norm is None or not math.isfinite(event.grad_norm) else 0
        self._unchecked = []
        skipped = self.skipped
        if skipped >= MAX_SKIPPED:
            self.run.request_stop(
                f"the gradients were not finite for {skipped} steps in a row (up to step {self.step}); "
                f"those steps were skipped, so the weights are still finite. Try a lower learning rate "
                f"(lr={self.cfg.lr:g}), max_grad_norm, or fp32 precision", status="failed")

    def _evaluate(self) -> None:
        if self.eval_loader is None:  # eval_every without eval data: nothing to evaluate on
            return
        metrics = self._metrics(self.eval_loader)
        self.last_eval_step = self.step
        self.run.emit(EvalEnd(step=self.step, epoch=self.step / self.steps_per_epoch, metrics=metrics))
        self.pmodel.train()

    def _metrics(self, loader, prefix: str = "eval_") -> dict[str, float]:
        self._read_device()  # the step values up to here, before the evaluation's own reads
        metrics = evaluate_model(self.pmodel, loader, self.metric_specs, loss_fn=self.loss_fn,
                                 kind=self.kind, prefix=prefix, accelerator=self.acc)
        if prefix == "eval_":
            for evaluator in self.evaluators:
                metrics.update(evaluator(self.acc.unwrap_model(self.pmodel), prefix))
        return metrics

    def position(self) -> dict[str, int]:
        """Where a checkpoint taken now resumes: the step, the epoch and its batches done."""
        epoch, consumed = self.epoch, self.consumed
        if consumed >= self.batches_per_epoch:
            epoch, consumed = epoch + 1, 0
        return {"step": self.step, "epoch": epoch, "consumed": consumed}

    def _run_start(self) -> RunStart:
        cfg, acc = self.cfg, self.acc
        params = list(self.model.parameters())
        return RunStart(name=self.run.name, run_dir=str(self.run.run_dir), total_steps=self.total_steps,
                        steps_per_epoch=self.steps_per_epoch, epochs=self.epochs, start_step=self.step,
                        config=self.run.config, processes=acc.num_processes,
                        effective_batch_size=cfg.batch_size * cfg.grad_accum * acc.num_processes,
                        lr=cfg.lr * (acc.num_processes if cfg.scale_lr else 1),
                        trainable_params=sum(p.numel() for p in params if p.requires_grad),
                        total_params=sum(p.numel() for p in params))

    def _size_schedule(self, batches: int) -> None:
        self.steps_per_epoch = max(1, math.ceil(batches / self.cfg.grad_accum))
        self.total_steps = self.cfg.max_steps or self.cfg.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)

    def _scheduler(self, opt):
        from transformers import get_scheduler

        warm = self.cfg.warmup
        warmup_steps = int(warm * self.total_steps) if warm < 1 else int(warm)
        name = {"constant": "constant_with_warmup"}.get(self.cfg.scheduler, self.cfg.scheduler)
        return get_scheduler(name, opt, num_warmup_steps=warmup_steps, num_training_steps=self.total_steps)

    def _eval_loader(self, data, common):
        if data is None:
            return None
        size = self.cfg.batch_size * 2  # no gradients to keep: twice the training batch fits
        if self.kind == "causal-lm":  # ... except that a causal LM's logits grow with its vocabulary
            from ..llm.generate import logits_batch_size

            size = logits_batch_size(size, self.model, self.cfg.max_length)
        loader, _ = make_loader(data, batch_size=size, shuffle=False,
                                group_by_length=None, **common)
        return loader

    def _check_labels(self, model) -> None:
        num = getattr(getattr(model, "config", None), "num_labels", None)
        if num is None or self.kind != "hf" or not type(model).__name__.endswith("SequenceClassification"):
            return
        data = self.train_loader.dataset
        if not isinstance(data, TokenizedDataset) or "labels" not in data.columns:
            return
        labels = data.columns["labels"]
        if not labels or not isinstance(labels[0], int):
            return
        lo, hi = min(labels), max(labels)
        if lo < 0 or hi >= num:
            raise DataError(
                f"label {hi if hi >= num else lo} is out of range for a model with {num} labels "
                f"(ids 0..{num - 1}); load the model with num_labels={hi + 1} or labels=[...]"
            )

    def _check_resume(self, run_dir: Path, config: dict) -> tuple[Path, list]:
        """The checkpoint to continue from, after comparing the stored config with this one: keys
        that define the run must match; the ones that may change are applied and reported."""
        import yaml

        from .run import read_events

        last = ckpt.checkpoint_path(run_dir, "last")
        if last is None:
            raise ConfigError(f"nothing to resume in {run_dir}: it has no checkpoints/index.json")
        stored_path = run_dir / "config.yaml"
        stored = yaml.safe_load(stored_path.read_text()) if stored_path.exists() else {}
        for key in FIXED_ON_RESUME:
            if key in stored and key in config and _plain(stored[key]) != _plain(config[key]):
                raise ConfigError(
                    f"cannot resume with {key}={_plain(config[key])!r}: the run in {run_dir} used "
                    f"{key}={stored[key]!r}, and continuing with another value is a different run. "
                    f"Start a new run, or resume with {key}={stored[key]!r}"
                )
        changed = [f"{k}: {stored[k]!r} -> {_plain(config[k])!r}" for k in CHANGEABLE_ON_RESUME
                   if k in stored and k in config and _plain(stored[k]) != _plain(config[k])]
        step = json.loads((last / "trainer_state.json").read_text())["step"]
        if self.cfg.max_steps is not None and self.cfg.max_steps < step:
            raise ConfigError(f"max_steps={self.cfg.max_steps} is below step {step}, where {run_dir.name} "
                              "already is: give a larger max_steps (or epochs) to continue")
        if changed:
            print(f"nbkit: resuming {run_dir.name} with " + "; ".join(changed))
        return last, read_events(run_dir / "metrics.jsonl")

    # -- Ctrl-C / the notebook's stop square --------------------------------------------------------

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        control = self.run.control

        def handler(signum, frame):
            if control.stop_requested:
                raise KeyboardInterrupt  # a second interrupt: the user really wants out now
            control.request_stop("interrupted", status="stopped")

        # The interrupt becomes a stop request honoured at the next step boundary, so the optimizer
        # is never cut off half-way through an update.
        return signal.signal(signal.SIGINT, handler)

    def _restore_sigint(self, old) -> None:
        if old is not None:
            signal.signal(signal.SIGINT, old)

    def _release_memory(self) -> None:
        """Hand the optimizer's state (twice the model's size for Adam), the prepared loaders and the
        activations back: in a notebook the next run starts from a smaller process, which matters
        on 1-2 GB machines, and after an out-of-memory error the retry gets the memory back."""
        self.opt = self.sched = self.step_fn = self.pmodel = None
        self.train_loader = self.eval_loader = self.test_loader = None
        self.acc = None
        gc.collect()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        if sys.platform.startswith("linux"):
            import ctypes

            with contextlib.suppress(OSError):  # not glibc (e.g. musl): nothing to trim
                ctypes.CDLL("libc.so.6").malloc_trim(0)


def _plain(value: Any) -> Any:
    """A config value as config.yaml stores it, for comparing a stored config with a new one."""
    return yaml_safe({"v": value})["v"]


def _label_names(data) -> list[str] | None:
    features = getattr(data, "features", None)
    label = features.get("label") if features is not None else None
    return list(label.names) if label is not None and hasattr(label, "names") else None
