"""Learning-rate range test (Smith 2015, as popularised by fastai): train for a short while with a
learning rate growing exponentially from `start_lr` to `end_lr`, record the loss, stop when it
diverges, suggest the rate where the smoothed loss falls fastest, and put the model back as it was.

Each step is a `StepEnd` event, so the notebook draws the curve live with the same observers as
`fit`; the curve is saved in the run directory (`lr_find.json`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from .batching import make_loader
from .events import RunEnd, RunStart, StepEnd


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    run_dir: str | None = None
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)

    def figure(self):
        """The curve as a plotly figure (log-scale learning rate), with the suggestion marked."""
        import plotly.graph_objects as go

        fig = go.Figure([
            go.Scatter(x=self.lrs, y=self.losses, mode="lines", name="loss", opacity=0.35),
            go.Scatter(x=self.lrs, y=self.smoothed, mode="lines", name="loss (smoothed)"),
        ])
        if self.suggestion:
            fig.add_vline(x=self.suggestion, line={"dash": "dash", "color": "#d62728"},
                          annotation_text=f"suggested {self.suggestion:.2e}")
        fig.update_layout(xaxis={"type": "log", "title": {"text": "learning rate"}},
                          yaxis={"title": {"text": "loss"}}, template="plotly_white", height=340)
        return fig

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


def lr_find(model: torch.nn.Module, data: Any, *, tokenizer: Any = None, collate_fn: Callable | None = None,
            loss_fn: Callable | None = None, start_lr: float = 1e-7, end_lr: float = 1.0, num_steps: int = 100,
            batch_size: int = 16, max_length: int = 256, smoothing: float = 0.05, diverge: float = 4.0,
            seed: int = 0, callbacks: Sequence[Callable] = (), run_dir: str | Path | None = None,
            progress: bool = True) -> LRFindResult:
    """Run the range test on `model` with `data` (anything `fit` accepts) and return the curve.

    The model's weights are restored afterwards, so it can go straight into `fit(lr=suggestion)`.
    """
    from accelerate.utils import set_seed

    from .loop import (
        _accelerator,
        _cap_max_length,
        _default_name,
        _model_kind,
        _new_run_dir,
        _progress_observer,
        compute_loss,
    )
    from .run import Run

    if not 0 < start_lr < end_lr:
        raise ConfigError(f"lr_find needs 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if num_steps < 5:
        raise ConfigError(f"'num_steps' must be an integer >= 5, got {num_steps!r}")
    kind = _model_kind(model)
    if kind == "module" and loss_fn is None:
        raise ConfigError("a plain torch module returns no loss: pass loss_fn=...")
    max_length = _cap_max_length(max_length, model, tokenizer)  # never more tokens than positions
    loader, order = make_loader(data, tokenizer=tokenizer, collate_fn=collate_fn, batch_size=batch_size,
                                shuffle=True, seed=seed, group_by_length=False, max_length=max_length,
                                lm_labels=kind == "causal-lm", seq2seq=kind == "seq2seq")
    name = f"lr_find-{_default_name(model)}"
    run_dir = Path(run_dir) if run_dir else _new_run_dir(name)
    observers: list[Callable] = []
    run = Run(name=name, run_dir=run_dir, config={"start_lr": start_lr, "end_lr": end_lr,
                                                   "num_steps": num_steps, "batch_size": batch_size},
              model=model, tokenizer=tokenizer, observers=observers, kind=kind)
    if progress:
        observers.append(_progress_observer(x_axis="lr"))
    observers.extend(callbacks)

    saved = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    set_seed(seed)
    acc = _accelerator("no", 1)
    opt = torch.optim.AdamW(model.parameters(), lr=start_lr)
    pmodel, opt, loader = acc.prepare(model, opt, loader)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    ratio = (end_lr / start_lr) ** (1 / (num_steps - 1))
    run.status = "running"
    run._emit(RunStart(name=name, run_dir=str(run_dir), total_steps=num_steps, steps_per_epoch=len(loader),
                       epochs=math.ceil(num_steps / max(len(loader), 1)), config=run.config))
    t0 = time.perf_counter()
    stopped_early = False
    pmodel.train()
    try:
        epoch = 0
        while len(lrs) < num_steps and not stopped_early:
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            for batch in loader:
                lr = start_lr * ratio ** len(lrs)
                for group in opt.param_groups:
                    group["lr"] = lr
                loss = compute_loss(pmodel, batch, loss_fn, type(model).__name__)
                acc.backward(loss)
                opt.step()
                opt.zero_grad()
                value = float(loss.detach())
                avg = value if not smoothed else smoothed[-1] + smoothing * (value - smoothed[-1])
                lrs.append(lr)
                losses.append(value)
                smoothed.append(avg)
                run._emit(StepEnd(step=len(lrs), epoch=epoch, loss=value, lr=lr, samples_per_s=0.0,
                                  tokens_per_s=None, elapsed=time.perf_counter() - t0))
                if not math.isfinite(value) or avg > diverge * min(smoothed) or run._stop_event.is_set():
                    stopped_early = True
                    break
                if len(lrs) >= num_steps:
                    break
            epoch += 1
    finally:
        model.load_state_dict(saved)  # the test must not leave the model half-trained
        opt.zero_grad(set_to_none=True)
    finite = [(lr, s) for lr, s in zip(lrs, smoothed, strict=True) if math.isfinite(s)]
    suggestion = suggest_lr([a for a, _ in finite], [b for _, b in finite])
    result = LRFindResult(lrs=lrs, losses=losses, smoothed=smoothed, suggestion=suggestion,
                          run_dir=str(run_dir), stopped_early=stopped_early)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "lr_find.json").write_text(json.dumps(asdict(result), indent=1))
    run.status = "finished"
    run._emit(RunEnd(status="finished", step=len(lrs),
                     message=f"suggested lr {suggestion:.2e}" if suggestion else "no suggestion"))
    return result
