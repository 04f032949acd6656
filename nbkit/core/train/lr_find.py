"""Learning-rate range test (Smith 2015, as popularised by fastai): train for a short while with a
learning rate growing exponentially from `start_lr` to `end_lr`, record the loss, stop when it
diverges, suggest the rate where the smoothed loss falls fastest, and put the model back as it was.

Each step is a `StepEnd` event, so the notebook draws the curve live with the same observers as
`fit`, and each step is `fit`'s own train step (`step.TrainStep`); the curve is saved in the run
directory (`lr_find.json`).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import TRAINER_ALIASES, TRAINER_MEANT, ConfigError
from ..models import cap_max_length
from ..suggest import check_kwargs
from .batching import make_loader
from .evaluation import model_kind
from .events import RunStart, StepEnd
from .observers import ProgressBar
from .run import Run
from .rundir import claim_run_dir, run_name
from .step import TrainStep, make_accelerator


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    run_dir: str | None = None
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        sug = f"{self.suggestion:.2e}" if self.suggestion else "none"
        return f"<LRFindResult {len(self.lrs)} steps, suggested lr {sug}>"


def suggest_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """The rate where the smoothed loss falls fastest against log(lr) (ignoring the noisy first tenth
    and everything after the minimum), but no more than a tenth of the rate at the minimum: the
    steepest point often sits right at the edge of divergence, and a run there is a gamble."""
    n = len(lrs)
    if n < 5:
        return None
    stop = min(range(n), key=lambda i: smoothed[i]) + 1
    start = min(n // 10, max(stop - 2, 0))
    best, best_slope = None, 0.0
    for i in range(max(start, 1), stop):
        slope = (smoothed[i] - smoothed[i - 1]) / (math.log(lrs[i]) - math.log(lrs[i - 1]))
        if slope < best_slope:
            best, best_slope = lrs[i], slope
    return None if best is None else min(best, lrs[stop - 1] / 10)


# Unknown keywords fail in one line listing the valid ones; Trainer's names (learning_rate...) are aliases.
@check_kwargs(aliases=TRAINER_ALIASES, meant=TRAINER_MEANT)
def lr_find(model: torch.nn.Module, data: Any, *, tokenizer: Any = None, collate_fn: Callable | None = None,
            loss_fn: Callable | None = None, start_lr: float = 1e-7, end_lr: float = 1.0, num_steps: int = 100,
            batch_size: int = 16, max_length: int = 256, smoothing: float = 0.05, diverge: float = 4.0,
            seed: int = 0, callbacks: Sequence[Callable] = (), run_dir: str | Path | None = None,
            progress: bool | Callable = True) -> LRFindResult:
    """Run the range test on `model` with `data` (anything `fit` accepts) and return the curve.

    It leaves no trace: the model's weights, train/eval mode and requires-grad flags, and the global
    random generators (Python, NumPy, torch, CUDA) are as before, so the model can go straight into
    `fit(lr=suggestion)`. `nbkit.figures.lr_find_figure(result)` draws the curve.
    """
    if not 0 < start_lr < end_lr:
        raise ConfigError(f"lr_find needs 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if num_steps < 5:
        raise ConfigError(f"'num_steps' must be an integer >= 5, got {num_steps!r}")
    kind = model_kind(model)
    if kind == "module" and loss_fn is None:
        raise ConfigError("a plain torch module returns no loss: pass loss_fn=...")
    max_length = cap_max_length(max_length, model, tokenizer, default=256)  # never more tokens than positions
    loader, _ = make_loader(data, tokenizer=tokenizer, collate_fn=collate_fn, batch_size=batch_size,
                            shuffle=True, seed=seed, group_by_length=False, max_length=max_length,
                            lm_labels=kind == "causal-lm", seq2seq=kind == "seq2seq")
    name = f"lr_find-{run_name(model)}"
    run_dir = claim_run_dir(run_dir, name, resume=False, overwrite=True)
    run = Run(name=name, run_dir=run_dir, config={"start_lr": start_lr, "end_lr": end_lr,
                                                   "num_steps": num_steps, "batch_size": batch_size},
              model=model, tokenizer=tokenizer, kind=kind)
    if progress:
        run.add_observer(progress() if callable(progress) else ProgressBar())
    for callback in callbacks:
        run.add_observer(callback)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    status, message = "failed", ""
    from accelerate.utils import set_seed

    with _leaves_no_trace(model):
        try:
            set_seed(seed)
            acc = make_accelerator("no", 1)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=start_lr)
            pmodel, opt, loader = acc.prepare(model, opt, loader)
            step = TrainStep(acc, pmodel, opt, loss_fn=loss_fn, model_name=type(model).__name__)
            ratio = (end_lr / start_lr) ** (1 / (num_steps - 1))
            run.begin()
            run.emit(RunStart(name=name, run_dir=str(run_dir), total_steps=num_steps,
                              steps_per_epoch=len(loader), epochs=math.ceil(num_steps / max(len(loader), 1)),
                              config=run.config))
            t0 = time.perf_counter()
            pmodel.train()
            epoch = 0
            while len(lrs) < num_steps and status == "failed":
                loader.set_epoch(epoch)
                for batch in loader:
                    for group in opt.optimizer.param_groups:
                        group["lr"] = start_lr * ratio ** len(lrs)
                    lrs.append(opt.optimizer.param_groups[0]["lr"])
                    step(batch)
                    value = float(step.values[0])  # the curve needs every step's loss: a short test
                    smoothed.append(value if not smoothed else smoothed[-1] + smoothing * (value - smoothed[-1]))
                    losses.append(value)
                    run.emit(StepEnd(step=len(lrs), epoch=epoch, loss=value, lr=lrs[-1], samples_per_s=0.0,
                                     tokens_per_s=None, elapsed=time.perf_counter() - t0))
                    diverged = not math.isfinite(value) or smoothed[-1] > diverge * min(smoothed)
                    if diverged or run.stop_requested or len(lrs) >= num_steps:
                        status = "finished"
                        break
                epoch += 1
        except BaseException as exc:
            run.fail(exc)
            message = f"{type(exc).__name__}: {exc}"
        finally:
            if status == "failed":
                run.finish("failed", len(lrs), message)
    if run.error is not None:
        raise run.error
    finite = [(lr, s) for lr, s in zip(lrs, smoothed, strict=True) if math.isfinite(s)]
    suggestion = suggest_lr([a for a, _ in finite], [b for _, b in finite])
    result = LRFindResult(lrs=lrs, losses=losses, smoothed=smoothed, suggestion=suggestion,
                          run_dir=str(run_dir), stopped_early=len(lrs) < num_steps)
    (run_dir / "lr_find.json").write_text(json.dumps(asdict(result), indent=1))
    run.finish("finished", len(lrs), f"suggested lr {suggestion:.2e}" if suggestion else "no suggestion")
    return result


@contextlib.contextmanager
def _leaves_no_trace(model: torch.nn.Module):
    """Put back what the range test changes: weights, mode, requires-grad flags, global RNG states."""
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        model.load_state_dict(weights)  # the test must not leave the model half-trained
        for name, m in model.named_modules():
            m.training = modes.get(name, m.training)
        for name, p in model.named_parameters():
            p.requires_grad_(flags.get(name, p.requires_grad))
            p.grad = None
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
