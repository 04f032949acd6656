"""`fit`: one readable training loop on top of accelerate (device placement, autocast, gradient
accumulation, clipping, and the same code under `accelerate launch`). It emits events to observers
(`events.py`) and knows nothing about displays; `Run` (run.py) is what the user holds.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ConfigError, TrainConfig, build_config
from . import checkpoints as ckpt
from .batching import DataError, TokenizedDataset, make_loader
from .events import CheckpointSaved, EpochEnd, EvalEnd, RunEnd, RunStart, StepEnd
from .metrics import compute_metrics, resolve_metrics
from .observers import EarlyStopping, JsonlLog, ProgressBar
from .run import Run, write_config


def fit(model: torch.nn.Module, train: Any, eval: Any = None, *, tokenizer: Any = None,
        collate_fn: Callable | None = None, loss_fn: Callable | None = None, epochs: int = 1,
        max_steps: int | None = None, lr: float = 5e-5, batch_size: int = 16, grad_accum: int = 1,
        optimizer: str = "adamw", weight_decay: float = 0.0, scheduler: str = "linear",
        warmup: float = 0.0, max_grad_norm: float | None = 1.0, precision: str = "auto",
        group_by_length: bool | None = None, max_length: int = 256, eval_every: int | None = None,
        metrics: Sequence[Any] = (), best_metric: str = "eval_loss", early_stopping: int | None = None,
        seed: int = 0, scale_lr: bool = False, callbacks: Sequence[Callable] = (), name: str | None = None,
        run_dir: str | os.PathLike | None = None, test: Any = None, resume_from: str | os.PathLike | None = None,
        background: bool = False, progress: bool = True, config_extra: dict | None = None,
        stop_file: str | os.PathLike | None = None, evaluators: Sequence[Callable] = ()) -> Run:
    """Train `model` on `train` and return a `Run` (see the module docstring of nbkit.core.train).

    `model` is a Hugging Face model (returns `.loss` when the batch has labels) or any
    `torch.nn.Module`: dict batches are passed as `model(**batch)`, tuple batches `(inputs, targets)`
    as `model(inputs)` and scored with `loss_fn(outputs, targets)`. Text data is tokenized once and
    grouped by length (`group_by_length=False` turns that off). `background=True` trains in a thread
    and returns at once; `resume_from=run_dir` continues an interrupted run exactly. `stop_file`: a
    path whose appearance stops the run at the next step boundary (how a notebook stops worker
    processes it launched). `evaluators`: callables `fn(model, prefix) -> {name: value}` whose metrics
    join each evaluation's (e.g. exact match of generated answers).
    """
    options = {k: v for k, v in locals().items() if k in TrainConfig.__dataclass_fields__}
    options["metrics"] = list(metrics)
    if resume_from is not None:
        options["run_dir"] = str(resume_from)
    cfg = build_config(TrainConfig, options)
    loop = _Loop(model, train, eval, test=test, cfg=cfg, tokenizer=tokenizer, collate_fn=collate_fn,
                 loss_fn=loss_fn, callbacks=callbacks, resume=resume_from is not None,
                 progress=progress, config_extra=config_extra or {}, stop_file=stop_file)
    loop.evaluators = list(evaluators)
    run = loop.run
    if background:
        run.status = "running"  # from the moment fit returns, not from the thread's first line
        run._thread = threading.Thread(target=loop.execute, name=f"nbkit-{run.name}", daemon=True)
        run._thread.start()
    else:
        loop.execute()
    return run


def _precision(requested: str) -> str:
    """accelerate's mixed_precision for `requested`; "auto" is bf16 where the GPU has it."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    return {"fp32": "no"}.get(requested, requested)


def _accelerator(mixed_precision: str, grad_accum: int):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1  # set by torchrun / accelerate launch
    if state and single and state.get("_mixed_precision") not in (None, mixed_precision):
        # accelerate keeps one process-wide state; in a notebook the next run may want another
        # precision. With one process nothing else depends on it, so start it afresh.
        AcceleratorState._reset_state()
    # Without a GPU, accelerate joins the processes of a torchrun/accelerate launch (gloo) only
    # when told it runs on the CPU; for one process this changes nothing.
    on_cpu = not torch.cuda.is_available() and not torch.backends.mps.is_available()
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum, cpu=on_cpu)


def _default_name(model: torch.nn.Module) -> str:
    path = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    base = Path(path).name if path and not str(path).startswith("/tmp") else ""
    return base or type(model).__name__


def _new_run_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
    base = Path("nbkit-runs") / f"{safe[:60]}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def _model_kind(model: torch.nn.Module) -> str:
    config = getattr(model, "config", None)
    if config is None:
        return "module"
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    cls = type(model).__name__
    if cls.endswith(("LMHeadModel", "ForCausalLM")):
        return "causal-lm"
    if cls.endswith("ForMaskedLM"):
        return "masked-lm"
    return "hf"


class _Loop:
    """The state of one training run. Built and validated eagerly, so bad input fails before any
    step; `execute` then runs to the end (in the caller's thread or a background one)."""

    def __init__(self, model, train, eval, *, test, cfg: TrainConfig, tokenizer, collate_fn, loss_fn,
                 callbacks, resume: bool, progress: bool, config_extra: dict, stop_file=None):
        self.cfg, self.loss_fn, self.tokenizer = cfg, loss_fn, tokenizer
        self.stop_file = Path(stop_file) if stop_file else None
        self.kind = _model_kind(model)
        self.metric_specs = resolve_metrics(cfg.metrics)
        name = cfg.name or _default_name(model)
        run_dir = Path(cfg.run_dir) if cfg.run_dir else _new_run_dir(name)
        self.resume_ckpt = None
        if resume:
            self.resume_ckpt = ckpt.checkpoint_path(run_dir, "last")
            if self.resume_ckpt is None:
                raise ConfigError(f"nothing to resume in {run_dir}: it has no checkpoints/index.json")
        lm = self.kind == "causal-lm"
        common = dict(tokenizer=tokenizer, collate_fn=collate_fn, max_length=cfg.max_length, seed=cfg.seed,
                      lm_labels=lm, seq2seq=self.kind == "seq2seq")
        self.train_loader, self.order = make_loader(train, batch_size=cfg.batch_size, shuffle=True,
                                                    group_by_length=cfg.group_by_length, **common)
        self.eval_loader = self._eval_loader(eval, common)
        self.test_loader = self._eval_loader(test, common)
        self._check_labels(model)
        self.needs_loss_fn = self.kind == "module" and loss_fn is None
        if self.needs_loss_fn:
            raise ConfigError(
                f"{type(model).__name__} is a plain torch module, which returns no loss: pass "
                "loss_fn=... (e.g. torch.nn.functional.cross_entropy), or use a Hugging Face model"
            )
        n_batches = len(self.train_loader)
        self.steps_per_epoch = max(1, math.ceil(n_batches / cfg.grad_accum))
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        observers: list[Callable] = []
        self.run = Run(name=name, run_dir=run_dir, config={**cfg.to_dict(), **config_extra},
                       model=model, tokenizer=tokenizer, observers=observers, kind=self.kind)
        self.run._label_names = _label_names(train)
        if resume:
            self.run._load_events()
        observers.append(JsonlLog(run_dir / "metrics.jsonl"))
        if cfg.early_stopping:
            observers.append(EarlyStopping(cfg.early_stopping, cfg.best_metric))
        if progress:
            observers.append(_progress_observer())
        observers.extend(callbacks)
        self.model = model

    def _eval_loader(self, data, common):
        if data is None:
            return None
        loader, order = make_loader(data, batch_size=self.cfg.batch_size * 2, shuffle=False,
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

    # -- the loop ---------------------------------------------------------------------------------

    def execute(self) -> None:
        run, cfg = self.run, self.cfg
        from accelerate.utils import set_seed

        old_handler = self._install_sigint()
        status, message = "failed", ""
        try:
            set_seed(cfg.seed)
            acc = self.acc = _accelerator(_precision(cfg.precision), cfg.grad_accum)
            if not acc.is_main_process:
                run._observers.clear()  # one process logs, draws and checkpoints: rank 0
            prepared = acc.prepare(self.model, self._optimizer(), self.train_loader,
                                   *[x for x in (self.eval_loader, self.test_loader) if x is not None])
            self.pmodel, self.opt, train_loader = prepared[:3]
            rest = list(prepared[3:])
            self.eval_loader = rest.pop(0) if self.eval_loader is not None else None
            self.test_loader = rest.pop(0) if self.test_loader is not None else None
            # With several processes each sees a shard: count steps on the prepared loader.
            self.batches_per_epoch = len(train_loader)
            self.steps_per_epoch = max(1, math.ceil(self.batches_per_epoch / cfg.grad_accum))
            self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
            self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
            # Not handed to accelerate.prepare: its wrapper steps a scheduler once per process, for
            # schedules sized on the unsharded data. This one is sized on the shard; it steps once
            # per real optimizer step.
            if cfg.scale_lr and acc.num_processes > 1:
                for group in self.opt.optimizer.param_groups:
                    group["lr"] = cfg.lr * acc.num_processes
            self.sched = self._scheduler(self.opt.optimizer)
            self.checkpointer = ckpt.Checkpointer(run.run_dir, cfg.best_metric)
            self.step, start_epoch, self.consumed = 0, 0, 0
            if self.resume_ckpt is not None:
                state = ckpt.load_training_state(self.resume_ckpt, model=acc.unwrap_model(self.pmodel),
                                                 optimizer=self.opt, scheduler=self.sched)
                self.step, start_epoch, self.consumed = state["step"], state["epoch"], state["consumed"]
                self.saved_step = self.step
            run.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(run.run_dir, run.config)
            run.status = "running"
            trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            run._emit(RunStart(name=run.name, run_dir=str(run.run_dir), total_steps=self.total_steps,
                               steps_per_epoch=self.steps_per_epoch, epochs=self.epochs,
                               start_step=self.step, config=run.config,
                               effective_batch_size=cfg.batch_size * cfg.grad_accum * acc.num_processes,
                               processes=acc.num_processes,
                               lr=cfg.lr * (acc.num_processes if cfg.scale_lr else 1),
                               trainable_params=trainable,
                               total_params=sum(p.numel() for p in self.model.parameters())))
            status, message = self._train(train_loader, start_epoch)
        except KeyboardInterrupt:
            status, message = "stopped", "interrupted"
            self._save(final=True)
        except BaseException as exc:
            run.error = exc
            status, message = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._restore_sigint(old_handler)
            run.status = status
            run._stop_event.set()
            try:
                run._emit(RunEnd(status=status, step=getattr(self, "step", 0), message=message))
            finally:
                run._done.set()
            if status == "stopped" and message == "interrupted":
                print(f"nbkit: {run.name} stopped at step {self.step} ({message}); "
                      f"checkpoint and history saved in {run.run_dir}")
            self._release_memory()
        return None

    def _release_memory(self) -> None:
        """Hand the optimizer's state (twice the model's size for Adam) back to the system: in a
        notebook the next run starts from a smaller process, which matters on 1-2 GB machines."""
        import contextlib
        import ctypes
        import gc

        self.opt = self.sched = None
        gc.collect()
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):  # not glibc (e.g. musl): nothing to trim
                ctypes.CDLL("libc.so.6").malloc_trim(0)

    def _train(self, train_loader, start_epoch: int) -> tuple[str, str]:
        run, cfg, acc = self.run, self.cfg, self.acc
        model = self.pmodel
        per_epoch_batches = self.batches_per_epoch
        multi = acc.num_processes > 1
        t_last = time.perf_counter()
        # A resumed run continues the clock of the steps it already logged.
        before = [e.elapsed for e in run.events if isinstance(e, StepEnd) and e.step <= self.step]
        t0 = t_last - (before[-1] if before else 0.0)
        samples = tokens = 0
        losses: list[torch.Tensor] = []
        self.last_eval_step = -1
        for epoch in range(start_epoch, self.epochs):
            self.epoch = epoch
            skip = self.consumed if epoch == start_epoch else 0
            if hasattr(train_loader, "set_epoch"):
                # accelerate's loader counts its own iterations and pushes that count into the batch
                # sampler on every pass; after a resume that count is wrong, so set it explicitly.
                train_loader.set_epoch(epoch)
            if self.order is not None:
                self.order.set_epoch(epoch)
                self.order.skip = skip * acc.num_processes  # the order is global; shards interleave
                batches = train_loader
            else:
                from accelerate import skip_first_batches

                batches = skip_first_batches(train_loader, skip) if skip else train_loader
            self.consumed = skip
            model.train()
            for batch in batches:
                with acc.accumulate(model):
                    loss = self._loss(model, batch)
                    if not torch.isfinite(loss):
                        self.opt.zero_grad()
                        return "failed", (
                            f"the loss became {loss.item()} at step {self.step + 1}; try a lower "
                            f"learning rate (lr={cfg.lr:g}) or max_grad_norm. The last good "
                            "checkpoint is kept."
                        )
                    acc.backward(loss)
                    grad_norm = None
                    if acc.sync_gradients and cfg.max_grad_norm:
                        grad_norm = acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    self.opt.step()
                    if acc.sync_gradients and not acc.optimizer_step_was_skipped:
                        self.sched.step()
                    self.opt.zero_grad()
                losses.append(loss.detach())
                samples += _batch_size(batch)
                tokens += _token_count(batch)
                if not acc.sync_gradients:
                    continue
                self.step += 1
                self.consumed += len(losses)
                now = time.perf_counter()
                dt = max(now - t_last, 1e-9)
                step_loss, samples, tokens = self._step_totals(losses, samples, tokens, multi)
                run._emit(StepEnd(step=self.step, epoch=epoch + self.consumed / per_epoch_batches,
                                  loss=step_loss, lr=self.sched.get_last_lr()[0],
                                  samples_per_s=samples / dt, tokens_per_s=(tokens / dt) if tokens else None,
                                  grad_norm=None if grad_norm is None else float(grad_norm),
                                  elapsed=now - t0))
                losses, samples, tokens = [], 0, 0
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    self._evaluate_and_save()
                    model.train()
                if self.step >= self.total_steps or self._should_stop(multi):
                    break
                self._wait_if_paused()
                t_last = time.perf_counter()
            if run._stop_event.is_set() and run._stop_status == "stopped":
                self._save(final=True)
                return "stopped", run._stop_reason
            if self.consumed >= per_epoch_batches:  # a whole epoch, not a break half-way
                run._emit(EpochEnd(step=self.step, epoch=epoch + 1))
                if self.eval_loader is not None and not cfg.eval_every:
                    self._evaluate_and_save()
                else:
                    self._save()
            if self._should_stop(multi) or self.step >= self.total_steps:
                break
            if run._stop_after_epoch:
                self._save(final=True)
                return "stopped", "stopped after the epoch"
        if self.eval_loader is not None and self.last_eval_step != self.step:
            self._evaluate_and_save()
        self._save(final=True)
        if self.test_loader is not None:
            metrics = self.evaluate(self.test_loader, prefix="test_")
            run._emit(EvalEnd(step=self.step, epoch=self.step / self.steps_per_epoch, metrics=metrics))
        return "finished", run._stop_reason or ""

    def _step_totals(self, losses, samples: int, tokens: int, multi: bool) -> tuple[float, int, int]:
        """Mean loss of the step and the samples/tokens it saw, over all processes (one all-reduce)."""
        local = torch.stack(losses).mean()
        if not multi:
            return float(local), samples, tokens
        packed = torch.tensor([float(local), 1.0, samples, tokens], device=self.acc.device)
        total = self.acc.reduce(packed, reduction="sum")
        return float(total[0] / total[1]), int(total[2]), int(total[3])

    def _should_stop(self, multi: bool) -> bool:
        """Has anyone asked to stop: an observer, a button, Ctrl-C, the stop file, or (with several
        processes) any other process? Every process must reach the same answer at the same step,
        or they would wait for each other forever."""
        run = self.run
        if self.stop_file is not None and not run._stop_event.is_set() and self.stop_file.exists():
            run._request_stop("stopped (stop file)", status="stopped")
        if not multi:
            return run._stop_event.is_set()
        if run._stop_event.is_set():
            self.acc.set_trigger()
        if not self.acc.check_trigger():
            return False
        from accelerate.utils import broadcast_object_list

        decision = broadcast_object_list([run._stop_reason or "stopped", run._stop_status])
        run._request_stop(decision[0], status=decision[1])
        run._stop_reason, run._stop_status = decision[0], decision[1]
        return True

    def _loss(self, model, batch) -> torch.Tensor:
        return compute_loss(model, batch, self.loss_fn, type(self.model).__name__)

    def _wait_if_paused(self) -> None:
        run = self.run
        while not run._running.wait(0.1):
            if run._stop_event.is_set():
                return

    # -- optimizer and schedule -------------------------------------------------------------------

    def _optimizer(self):
        cfg = self.cfg
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                # Biases and norm gains are 1-D; decaying them hurts and is not what AdamW papers do.
                (decay if p.ndim >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer in ("adamw", "adam"):
            cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
            try:  # one fused kernel per step; the default on CPU loops over tensors (2.4 -> 0.6 ms/step)
                return cls(groups, lr=cfg.lr, fused=True)
            except (RuntimeError, TypeError):  # no fused kernel for these parameters' device/dtype
                return cls(groups, lr=cfg.lr)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)

    def _scheduler(self, opt):
        from transformers import get_scheduler

        warm = self.cfg.warmup
        warmup_steps = int(warm * self.total_steps) if warm < 1 else int(warm)
        name = {"constant": "constant_with_warmup"}.get(self.cfg.scheduler, self.cfg.scheduler)
        return get_scheduler(name, opt, num_warmup_steps=warmup_steps, num_training_steps=self.total_steps)

    # -- evaluation and checkpoints ---------------------------------------------------------------

    def evaluate(self, loader, prefix: str = "eval_") -> dict[str, float]:
        metrics = evaluate_model(self.pmodel, loader, self.metric_specs, loss_fn=self.loss_fn,
                                 kind=self.kind, prefix=prefix, accelerator=self.acc)
        if prefix == "eval_":
            for evaluator in getattr(self, "evaluators", ()):
                metrics.update(evaluator(self.acc.unwrap_model(self.pmodel), prefix))
        return metrics

    def _evaluate_and_save(self) -> None:
        metrics = self.evaluate(self.eval_loader)
        self.last_eval_step = self.step
        self.run._emit(EvalEnd(step=self.step, epoch=self.step / self.steps_per_epoch, metrics=metrics))
        self._save(metric=metrics.get(self.cfg.best_metric))

    def _save(self, metric: float | None = None, final: bool = False) -> None:
        if not hasattr(self, "checkpointer"):
            return  # failed before training started: nothing worth saving
        if final and getattr(self, "saved_step", None) == self.step:
            return  # this step is already on disk (every process knows, so none waits in vain)
        self.saved_step = self.step
        # Where to pick up: the epoch and how many of its batches are done (a full epoch: the next).
        epoch, consumed = getattr(self, "epoch", 0), self.consumed
        if consumed >= self.batches_per_epoch:
            epoch, consumed = epoch + 1, 0
        state = {"step": self.step, "epoch": epoch, "consumed": consumed}
        self.acc.wait_for_everyone()
        if not self.acc.is_main_process:
            return
        path, best = self.checkpointer.save(model=self.acc.unwrap_model(self.pmodel), optimizer=self.opt,
                                            scheduler=self.sched, tokenizer=self.tokenizer, state=state,
                                            metric=metric)
        self.run._emit(CheckpointSaved(step=self.step, path=str(path), best=best))

    # -- Ctrl-C / the notebook's stop square --------------------------------------------------------

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        run = self.run

        def handler(signum, frame):
            if run._stop_event.is_set():
                raise KeyboardInterrupt  # a second interrupt: the user really wants out now
            run._request_stop("interrupted", status="stopped")

        # The interrupt becomes a stop request honoured at the next step boundary, so the optimizer
        # is never cut off half-way through an update.
        return signal.signal(signal.SIGINT, handler)

    def _restore_sigint(self, old) -> None:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def compute_loss(model, batch, loss_fn=None, model_name: str = "model") -> torch.Tensor:
    """The loss of one batch: a dict batch goes to `model(**batch)` (its `.loss`, or `loss_fn` on its
    logits and the labels); a tuple `(inputs, targets)` is scored as `loss_fn(model(inputs), targets)`."""
    if isinstance(batch, dict) or hasattr(batch, "keys"):
        if loss_fn is None:
            out = model(**batch)
            loss = out.get("loss") if hasattr(out, "get") else getattr(out, "loss", None)
            if loss is None:
                raise ConfigError(
                    f"{model_name} returned no loss: give the data a 'label' column or pass loss_fn=..."
                )
            return loss
        batch = dict(batch)
        labels = batch.pop("labels")
        out = model(**batch)
        return loss_fn(getattr(out, "logits", out), labels)
    inputs, targets = batch[0], batch[1]
    return loss_fn(model(inputs), targets)


def evaluate_model(model, loader, specs, *, loss_fn=None, kind="hf", prefix="eval_",
                   accelerator=None) -> dict[str, float]:
    """Loss and metrics of `model` over `loader` (predictions gathered across processes)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    preds, labels = [], []
    want_preds = any(fn != "perplexity" for _, fn in specs)
    with torch.no_grad():
        for batch in loader:
            if isinstance(batch, dict) or hasattr(batch, "keys"):
                batch = dict(batch)
                y = batch.get("labels")
                if loss_fn is None:
                    out = model(**batch)
                    loss, logits = out.loss, getattr(out, "logits", None)
                else:
                    y = batch.pop("labels")
                    out = model(**batch)
                    logits = getattr(out, "logits", out)
                    loss = loss_fn(logits, y)
            else:
                x, y = batch[0], batch[1]
                logits = model(x)
                loss = loss_fn(logits, y)
            n = _batch_size(batch)
            total += float(loss) * n
            count += n
            if want_preds and logits is not None and y is not None:
                if kind == "causal-lm":
                    logits, y = logits[:, :-1], y[:, 1:]  # (B, T-1, V), (B, T-1): next-token targets
                p = logits.argmax(-1) if logits.ndim > 1 and logits.shape[-1] > 1 else logits.squeeze(-1)
                if accelerator is not None:
                    p, y = accelerator.gather_for_metrics((p, y))
                preds.append(p.reshape(-1).cpu().numpy())
                labels.append(y.reshape(-1).cpu().numpy())
    if was_training:
        model.train()
    if accelerator is not None and accelerator.num_processes > 1:
        sums = accelerator.reduce(torch.tensor([total, float(count)], device=accelerator.device), "sum")
        total, count = float(sums[0]), int(sums[1])
    if count == 0:
        raise DataError("the evaluation data is empty")
    cat = (lambda xs: np.concatenate(xs)) if preds else (lambda xs: None)
    return compute_metrics(specs, cat(preds), cat(labels), total / count, prefix=prefix)


def _batch_size(batch) -> int:
    first = next(iter(batch.values())) if hasattr(batch, "values") else batch[0]
    return int(first.shape[0]) if hasattr(first, "shape") else len(first)


def _token_count(batch) -> int:
    if hasattr(batch, "get") and batch.get("attention_mask") is not None:
        return int(batch["attention_mask"].sum())
    return 0


def _label_names(data) -> list[str] | None:
    features = getattr(data, "features", None)
    label = features.get("label") if features is not None else None
    return list(label.names) if label is not None and hasattr(label, "names") else None


def _in_notebook() -> bool:
    """True inside a Jupyter kernel. Looks at sys.modules only: the core never imports IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _progress_observer(**dashboard_options):
    """The live dashboard in a notebook, a terminal progress bar elsewhere.

    The one place the core reaches up to the widget layer, and only at run time inside a kernel,
    where IPython and ipywidgets are loaded already.
    """
    if _in_notebook():
        try:
            from nbkit.notebook.widgets.dashboard import Dashboard
        except ImportError:  # widgets missing (a minimal install): fall back to the text bar
            return ProgressBar()
        return Dashboard(**dashboard_options).show()
    return ProgressBar()
