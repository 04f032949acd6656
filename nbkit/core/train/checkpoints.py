"""Checkpoints in a run directory: weights as safetensors (a Hugging Face model's folder also gets its
config and tokenizer, so `load_model(path)` / `from_pretrained(path)` open it), optimizer, scheduler
and RNG state for an exact resume.

A checkpoint is written under a temporary name and renamed into place, and `index.json` (which
names the last and best checkpoints) is replaced atomically, so a run killed at any moment leaves
either the previous checkpoint or the new one, never half of one. Only the last and the best
checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

INDEX = "index.json"


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_weights(model: torch.nn.Module, folder: Path, tokenizer: Any = None) -> None:
    """Weights (and, for Hugging Face models, config + tokenizer) in a from_pretrained-able folder."""
    from safetensors.torch import save_model

    from ..llm.lora import is_peft, save_adapter

    folder.mkdir(parents=True, exist_ok=True)
    if is_peft(model):  # a LoRA run: the adapter only (megabytes); the base model is on disk already
        save_adapter(model, folder, tokenizer)
        return
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "save_pretrained"):
        # from_pretrained (and Run.load) picks the class by this; a model built from a config lacks it.
        config.architectures = [type(model).__name__]
        config.save_pretrained(folder)
        gen = getattr(model, "generation_config", None)
        if gen is not None and getattr(model, "can_generate", lambda: False)():
            gen.save_pretrained(folder)
    # save_model drops duplicate names of shared (tied) tensors, which from_pretrained re-ties.
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(folder)


def load_weights(model: torch.nn.Module, folder: str | Path) -> None:
    from safetensors.torch import load_model

    from ..llm.lora import is_adapter_folder, load_adapter_weights

    if is_adapter_folder(folder):
        load_adapter_weights(model, folder)
        return
    missing, unexpected = load_model(model, str(Path(folder) / "model.safetensors"), strict=False)
    if unexpected:
        raise ValueError(f"checkpoint {folder} does not match this model: unexpected keys {unexpected[:5]}")
    # save_model drops tied duplicates; anything else missing is a real mismatch.
    tied = {n for n, p in model.named_parameters(remove_duplicate=False)} - {n for n, _ in model.named_parameters()}
    real = [k for k in missing if k not in tied]
    if real:
        raise ValueError(f"checkpoint {folder} does not match this model: missing keys {real[:5]}")


class Checkpointer:
    """Writes and prunes checkpoints under `run_dir/checkpoints`, tracking the best by one metric."""

    def __init__(self, run_dir: Path, best_metric: str = "eval_loss"):
        self.dir = Path(run_dir) / "checkpoints"
        self.best_metric = best_metric
        self.mode = "min" if best_metric.endswith(("loss", "perplexity")) else "max"
        self.index = read_index(run_dir)

    def is_better(self, value: float | None) -> bool:
        if value is None or value != value:  # NaN never wins
            return False
        best = self.index.get("best_value")
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best

    def save(self, *, model, optimizer, scheduler, tokenizer, state: dict[str, Any],
             metric: float | None = None) -> tuple[Path, bool]:
        name = f"step-{state['step']:07d}"
        final = self.dir / name
        tmp = self.dir / f".tmp-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        save_weights(model, tmp, tokenizer)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({**state, "metric": metric}, indent=1))
        if final.exists():  # same step saved twice (eval then stop): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        # Until some checkpoint has a metric, the best is simply the latest.
        best = self.is_better(metric) or (metric is None and self.index.get("best_value") is None)
        self.index["last"] = name
        if best:
            self.index["best"], self.index["best_value"] = name, metric
        self.index["best_metric"] = self.best_metric
        _write_json_atomic(self.dir / INDEX, self.index)
        self._prune()
        return final, best

    def _prune(self) -> None:
        keep = {self.index.get("last"), self.index.get("best")}
        for p in self.dir.iterdir():
            if p.is_dir() and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)


def read_index(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "checkpoints" / INDEX
    return json.loads(path.read_text()) if path.exists() else {}


def checkpoint_path(run_dir: str | Path, which: str = "last") -> Path | None:
    name = read_index(run_dir).get(which)
    return Path(run_dir) / "checkpoints" / name if name else None


def load_training_state(folder: Path, *, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore everything a resumed run needs; returns trainer_state (step, epoch, batch position)."""
    load_weights(model, folder)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    if scheduler is not None and (folder / "scheduler.pt").exists():
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    set_rng_state(torch.load(folder / "rng.pt", weights_only=False))
    return json.loads((folder / "trainer_state.json").read_text())
