"""Checkpoints in a run directory, written by the `Checkpointer` observer.

A checkpoint `checkpoints/step-NNNNNNN/` is a `from_pretrained` folder (safetensors weights, config,
tokenizer) plus `trainer_state.json` (step, data position, metric). The last checkpoint also holds
`training_state/`: optimizer, RNG of every process and (under FSDP/DeepSpeed) the sharded model,
written by accelerate's `save_state`, so every strategy accelerate supports saves correctly, plus the
schedule. Only the last and the best checkpoints are kept, the training state only in the last, and
when a run finishes that too goes (unless `keep_optimizer=True`): one model copy for a short trial.

Durability: a checkpoint is written under a temporary name, its files fsynced, then renamed;
`index.json` (naming the last and the best) is replaced the same way. A run killed at any moment,
or a disk that fills up, leaves the previous checkpoint loadable. Nothing is unpickled: weights are
safetensors, state is JSON or `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from .events import CheckpointSaved, EpochEnd, EvalEnd, RunEnd, TrainEnd

INDEX = "index.json"
STATE_DIR = "training_state"
_OURS = re.compile(r"^(\.tmp-)?step-\d{7}$")  # the only names under checkpoints/ we ever delete


class CheckpointError(RuntimeError):
    """A checkpoint could not be written; the message says which one was kept."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb+") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(root))


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=1))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_weights(model: torch.nn.Module, folder: Path, tokenizer: Any = None, state_dict: dict | None = None) -> None:
    """Weights (and, for Hugging Face models, config + tokenizer) in a from_pretrained-able folder.
    `state_dict`: the full weights when the model itself is sharded (FSDP gathers them)."""
    from safetensors.torch import save_file, save_model

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
    if state_dict is not None:
        tied = _tied_duplicates(model)
        save_file({k: v.contiguous() for k, v in state_dict.items() if k not in tied},
                  str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        # save_model drops duplicate names of shared (tied) tensors, which from_pretrained re-ties.
        save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(folder)


def _tied_duplicates(model: torch.nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters(remove_duplicate=False)} - {n for n, _ in model.named_parameters()}


def load_weights(model: torch.nn.Module, folder: str | Path) -> None:
    from safetensors.torch import load_model

    from ..llm.lora import is_adapter_folder, load_adapter_weights

    if is_adapter_folder(folder):
        load_adapter_weights(model, folder)
        return
    missing, unexpected = load_model(model, str(Path(folder) / "model.safetensors"), strict=False)
    if unexpected:
        raise ValueError(f"checkpoint {folder} does not match this model: unexpected keys {unexpected[:5]}")
    real = [k for k in missing if k not in _tied_duplicates(model)]  # tied duplicates are not saved
    if real:
        raise ValueError(f"checkpoint {folder} does not match this model: missing keys {real[:5]}")


def read_index(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "checkpoints" / INDEX
    return json.loads(path.read_text()) if path.exists() else {}


def checkpoint_path(run_dir: str | Path, which: str = "last") -> Path | None:
    name = read_index(run_dir).get(which)
    return Path(run_dir) / "checkpoints" / name if name else None


def _is_fsdp(acc) -> bool:
    return getattr(acc.distributed_type, "name", "") == "FSDP"


def _skip_model_in_state(acc) -> None:
    """accelerate's save_state would write the model a second time (it is in the from_pretrained
    folder already) except where the strategy needs its own format (FSDP, DeepSpeed)."""
    if getattr(acc, "_nbkit_hooks", False):
        return

    def drop_weights(models, weights, output_dir):
        weights.clear()

    def drop_models(models, input_dir):
        models.clear()

    acc.register_save_state_pre_hook(drop_weights)
    acc.register_load_state_pre_hook(drop_models)
    acc._nbkit_hooks = True


def restore(folder: Path, trainer) -> tuple[dict[str, Any], bool]:
    """Load a checkpoint into `trainer` (its prepared model, optimizer, schedule, RNG). Returns the
    trainer_state (step, epoch, consumed) and whether optimizer state was there to load (a finished
    run keeps none unless it was asked to)."""
    acc = trainer.acc
    state_dir = folder / STATE_DIR
    if not _is_fsdp(acc):
        load_weights(acc.unwrap_model(trainer.pmodel), folder)
    has_state = state_dir.exists()
    if has_state:
        # accelerate reads the RNG states with weights_only=True but, if that fails, goes on
        # without them: a planted or damaged file would quietly make the resume inexact.
        from accelerate.utils import load

        rng = state_dir / f"random_states_{acc.process_index}.pkl"
        try:
            load(rng)
        except Exception as exc:
            raise CheckpointError(f"refusing to resume from {folder}: {rng.name} is not a plain state file "
                                  f"(it holds more than tensors and numbers: {type(exc).__name__})") from None
        _skip_model_in_state(acc)
        acc.load_state(str(state_dir))
        sched = state_dir / "scheduler.pt"
        if trainer.sched is not None and sched.exists():
            trainer.sched.load_state_dict(torch.load(sched, weights_only=True))
    return json.loads((folder / "trainer_state.json").read_text()), has_state


class Checkpointer:
    """Observer that saves: at each evaluation (with its metric), at epoch ends without one, and
    when training ends; keeps the best and the last. Runs on every process (`all_processes`):
    accelerate's save_state is collective (FSDP gathers, each process writes its RNG)."""

    all_processes = True

    def __init__(self, run_dir: Path, trainer, *, best_metric: str, lower_is_better: bool,
                 save_at_epoch_end: bool, keep_optimizer: bool = False):
        self.dir = Path(run_dir) / "checkpoints"
        self.trainer = trainer
        self.best_metric, self.lower = best_metric, lower_is_better
        self.save_at_epoch_end, self.keep_optimizer = save_at_epoch_end, keep_optimizer
        self.index = read_index(run_dir)

    def __call__(self, event, run) -> None:
        if isinstance(event, EvalEnd) and event.split == "eval":
            self.save(run, metric=event.metrics.get(self.best_metric))
        elif isinstance(event, EpochEnd) and self.save_at_epoch_end or isinstance(event, TrainEnd):
            self.save(run)
        elif isinstance(event, RunEnd) and self._drops_state(event):
            shutil.rmtree(self.dir / self.index["last"] / STATE_DIR, ignore_errors=True)

    def _drops_state(self, end: RunEnd) -> bool:
        """A finished run needs no optimizer state (a stopped one keeps it, to continue)."""
        return (end.status == "finished" and not self.keep_optimizer and self.trainer.acc.is_main_process
                and bool(self.index.get("last")))

    def is_better(self, value: float | None) -> bool:
        if value is None or value != value:  # NaN never wins
            return False
        best = self.index.get("best_value")
        if best is None:
            return True
        return value < best if self.lower else value > best

    def save(self, run, metric: float | None = None) -> None:
        trainer, acc = self.trainer, self.trainer.acc
        position = trainer.position()
        name = f"step-{position['step']:07d}"
        if name == self.index.get("last"):  # this step is on disk already: at most one write per step
            if metric is not None and self.is_better(metric):
                self.index["best"], self.index["best_value"] = name, metric
                if acc.is_main_process:
                    write_json_atomic(self.dir / INDEX, self.index)
            return
        final, tmp = self.dir / name, self.dir / f".tmp-{name}"
        try:
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
            acc.wait_for_everyone()
            _skip_model_in_state(acc)
            acc.save_state(str(tmp / STATE_DIR))
            if acc.is_main_process:
                model = acc.unwrap_model(trainer.pmodel)
                full = acc.get_state_dict(trainer.pmodel) if _is_fsdp(acc) else None
                save_weights(model, tmp, trainer.tokenizer, state_dict=full)
                if trainer.sched is not None:
                    torch.save(trainer.sched.state_dict(), tmp / STATE_DIR / "scheduler.pt")
                (tmp / "trainer_state.json").write_text(json.dumps({**position, "metric": metric}, indent=1))
                _fsync_tree(tmp)
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
                _fsync_dir(self.dir)
            acc.wait_for_everyone()
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            kept = self.index.get("last")
            where = f"the previous checkpoint {self.dir / kept} is kept" if kept else "no earlier checkpoint exists"
            raise CheckpointError(f"saving checkpoint {name} failed ({exc.strerror or exc}); {where}") from exc
        # Every process keeps the same index in memory (the next save's "already on disk?" must
        # get the same answer everywhere, or one would wait for the others in vain); rank 0 writes it.
        best = self.is_better(metric) or (metric is None and self.index.get("best_value") is None)
        self.index["last"] = name
        if best:
            self.index["best"], self.index["best_value"] = name, metric
        self.index["best_metric"] = self.best_metric
        if not acc.is_main_process:
            return
        write_json_atomic(self.dir / INDEX, self.index)
        self._prune()
        run.emit(CheckpointSaved(step=position["step"], path=str(final), best=best))

    def _prune(self) -> None:
        last, best = self.index.get("last"), self.index.get("best")
        for p in self.dir.iterdir():
            if p.is_dir() and _OURS.match(p.name) and p.name not in (last, best):
                shutil.rmtree(p, ignore_errors=True)
        if best and best != last:  # the optimizer is only needed to continue from the last
            shutil.rmtree(self.dir / best / STATE_DIR, ignore_errors=True)
