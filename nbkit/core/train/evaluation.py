"""Evaluation: the loss and metrics of a model over a loader (predictions gathered across
processes), used by the loop at each evaluation and by `Run.evaluate` after training."""

from __future__ import annotations

import numpy as np
import torch

from .batching import DataError
from .metrics import compute_metrics
from .step import batch_size


def model_kind(model: torch.nn.Module) -> str:
    """What the loop must know about a model: a plain module, an encoder-decoder, a causal or
    masked LM, or another Hugging Face model (classifiers). A peft model is judged by its base."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(inner, "config", None)
    if config is None:
        return "module"
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    cls = type(inner).__name__
    if cls.endswith(("LMHeadModel", "ForCausalLM")):
        return "causal-lm"
    if cls.endswith("ForMaskedLM"):
        return "masked-lm"
    return "hf"


def evaluate_model(model, loader, specs, *, loss_fn=None, kind="hf", prefix="eval_",
                   accelerator=None) -> dict[str, float]:
    """Loss and metrics of `model` over `loader`. The loss is summed on the device and read once;
    a causal LM's is the mean over all trained tokens (what perplexity is defined on), others' the
    mean over examples."""
    was_training = model.training
    model.eval()
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    total = torch.zeros((), device=device, dtype=torch.float64)
    tokens = torch.zeros((), device=device, dtype=torch.int64)  # trained tokens (causal LMs) ...
    count = 0  # ... or examples (every other model)
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
            if kind == "causal-lm" and y is not None and loss_fn is None:
                # the model's loss is the mean over the batch's trained tokens: weigh it by them, so
                # eval_loss (and perplexity) is per token over the whole split, whatever the batching
                n = (y[..., 1:] != -100).sum()
                total += torch.where(n > 0, loss.detach().double() * n, 0.0)
                tokens += n
            else:
                n = batch_size(batch)
                total += loss.detach().double() * n
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
    sums = torch.stack([total, tokens.double() + count])
    if accelerator is not None and accelerator.num_processes > 1:
        sums = accelerator.reduce(sums, "sum")
    total_loss, count = sums.tolist()
    if count == 0:
        raise DataError("the evaluation data is empty")
    cat = (lambda xs: np.concatenate(xs)) if preds else (lambda xs: None)
    return compute_metrics(specs, cat(preds), cat(labels), total_loss / count, prefix=prefix)


class DeviceLoader:
    """Moves each batch to `device` (for evaluating outside accelerate's prepared loaders)."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __iter__(self):
        for batch in self.loader:
            if isinstance(batch, dict):
                yield {k: v.to(self.device) for k, v in batch.items()}
            else:
                yield [b.to(self.device) for b in batch]
