"""One training step on accelerate, shared by `fit` and `lr_find`: the loss of a batch, backward,
gradient accumulation, clipping, the optimizer and the schedule, with nothing read back to the host.

What it adds to a hand-written step:
- A guard against non-finite gradients that needs no device sync: the gradient norm's finiteness
  goes to the fused optimizer as its `found_inf` flag (the mechanism `torch.amp.GradScaler` uses),
  so a bad step leaves weights and optimizer state untouched. Consecutive skips are counted on the
  device too; the loop reads the count with the step values.
- The loss and gradient norm of each optimizer step stay on the device as one small tensor
  (`values`), read in bulk later (see `events.DeviceScalars`).
- The optimizer is stepped directly where accelerate's wrapper only adds per-step overhead
  (`AcceleratedOptimizer.step` looks up an optional package on every call: ~180 us here).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..config import ConfigError

# Where accelerate's optimizer wrapper does real work in step(): loss scaling, and engines that own
# the update themselves.
_WRAPPER_NEEDED = ("DEEPSPEED", "MEGATRON_LM", "XLA")


def precision(requested: str) -> str:
    """accelerate's mixed_precision for `requested`; "auto" is bf16 where the GPU has it."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    return {"fp32": "no"}.get(requested, requested)


def make_accelerator(mixed_precision: str, grad_accum: int):
    import os

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


def make_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float = 0.0):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # Biases and norm gains are 1-D; decaying them hurts and is not what AdamW papers do.
            (decay if p.ndim >= 2 else no_decay).append(p)
    if weight_decay:
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
    else:  # one group, one fused kernel call per step
        groups = [{"params": decay + no_decay, "weight_decay": 0.0}]
    if name in ("adamw", "adam"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        try:  # one fused kernel per step (2.4 -> 0.6 ms/step on CPU), and it honours found_inf
            return cls(groups, lr=lr, fused=True)
        except (RuntimeError, TypeError):  # no fused kernel for these parameters' device/dtype
            return cls(groups, lr=lr)
    try:
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)


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


def batch_size(batch) -> int:
    first = next(iter(batch.values())) if hasattr(batch, "values") else batch[0]
    return int(first.shape[0]) if hasattr(first, "shape") else len(first)


class TrainStep:
    """Feeds batches through `model`; `__call__` returns True when an optimizer step completed
    (every `grad_accum` batches). After that, `values` is a device tensor [mean loss, gradient
    norm, tokens] of the step; a non-finite norm means the step was skipped."""

    def __init__(self, accelerator, model, optimizer, scheduler=None, *, loss_fn: Callable | None = None,
                 max_grad_norm: float | None = None, model_name: str = "model"):
        self.acc, self.model, self.opt, self.sched = accelerator, model, optimizer, scheduler
        self.loss_fn, self.model_name = loss_fn, model_name
        self.max_norm = max_grad_norm if max_grad_norm else math.inf  # inf: measure, never clip
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.inner = getattr(optimizer, "optimizer", optimizer)
        self.device_guard = bool(self.inner.defaults.get("fused"))  # fused kernels take found_inf
        kind = getattr(accelerator.distributed_type, "name", str(accelerator.distributed_type))
        self.direct = accelerator.scaler is None and kind not in _WRAPPER_NEEDED
        self.multi = accelerator.num_processes > 1
        # One process, no accumulation, no loss scaling: accelerate's per-batch bookkeeping
        # (accumulate, backward, clip) does nothing for us there, so skip it.
        self.simple = self.direct and not self.multi and accelerator.gradient_accumulation_steps == 1
        device = accelerator.device
        self.values = torch.zeros(3, device=device)
        self._no_tokens = torch.tensor(math.nan, device=device)
        self._micro: list[torch.Tensor] = []
        self._tokens: list[torch.Tensor] = []
        self.samples = 0

    def __call__(self, batch) -> bool:
        if self.simple:
            loss = compute_loss(self.model, batch, self.loss_fn, self.model_name)
            loss.backward()
            self._record(batch, loss)
            self._update()
            return True
        acc = self.acc
        with acc.accumulate(self.model):
            loss = compute_loss(self.model, batch, self.loss_fn, self.model_name)
            acc.backward(loss)
            self._record(batch, loss)
            if not acc.sync_gradients:
                return False
            self._update()
        return True

    def _record(self, batch, loss) -> None:
        self._micro.append(loss.detach())
        mask = batch.get("attention_mask") if hasattr(batch, "get") else None
        if mask is not None:
            self._tokens.append(mask.sum())
        self.samples += batch_size(batch)

    def _grad_norm(self) -> torch.Tensor:
        if not self.simple:
            norm = self.acc.clip_grad_norm_(self.params, self.max_norm)  # unscales, FSDP-aware
            return norm if isinstance(norm, torch.Tensor) else torch.tensor(float(norm), device=self.acc.device)
        if self.max_norm == math.inf:
            return torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        return torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)

    def _update(self) -> None:
        acc = self.acc
        norm = self._grad_norm().float()
        loss = self._micro[0] if len(self._micro) == 1 else torch.stack(self._micro).mean()
        tokens = self._no_tokens if not self._tokens else (
            self._tokens[0] if len(self._tokens) == 1 else torch.stack(self._tokens).sum())
        if self.multi:  # one reduction: mean loss, the norm (equal on all processes after DDP), tokens
            packed = acc.reduce(torch.stack([loss.float(), norm, tokens.float()]), "sum")
            loss, norm, tokens = packed[0] / acc.num_processes, packed[1] / acc.num_processes, packed[2]
        if self.direct and self.device_guard:
            # The fused kernel skips the whole update (weights and moments) when found_inf is 1.
            # norm - norm is 0 for a finite norm and NaN otherwise: two cheap ops (isfinite is ~4x dearer).
            self.inner.found_inf = torch.nan_to_num(norm - norm, nan=1.0)
            self.inner.step()
            self.inner.found_inf = None
        elif self.direct:
            if bool(torch.isfinite(norm)):  # a host read: only optimizers without a fused kernel pay it
                self.inner.step()
        else:
            self.opt.step()  # accelerate's wrapper: loss scaling or an engine that steps itself
        if self.sched is not None and (self.simple or not acc.optimizer_step_was_skipped):
            self.sched.step()
        self.inner.zero_grad(set_to_none=True)
        self.values = torch.stack([loss.float(), norm, tokens.float()])
        self._micro, self._tokens = [], []

    def take_samples(self) -> int:
        """Samples seen since the last call, over all processes (their batches are the same size)."""
        n, self.samples = self.samples * self.acc.num_processes, 0
        return n
