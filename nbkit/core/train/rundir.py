"""Run names and run directories: one rule for naming, atomic creation of auto-named directories
(parallel sweeps never share one), and the refusal to mix two runs in one directory."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError

ROOT = "nbkit-runs"
_MARKERS = ("metrics.jsonl", "checkpoints")  # what training writes; config.yaml alone is a launch in progress


def run_name(model: Any) -> str:
    """A run's default name: the model's folder or hub name, else its class. A model loaded from a
    temporary folder (tests, a converted checkpoint) is named by its class."""
    if isinstance(model, str):
        path = model
    else:
        path = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    base = Path(str(path)).name if path and not str(path).startswith(("/tmp", os.path.realpath("/tmp"))) else ""
    return base or (type(model).__name__ if not isinstance(model, str) else "run")


def holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in _MARKERS)


def new_run_dir(name: str, root: str | Path = ROOT) -> Path:
    """Create and return `root/<name>-<time>[-k]`. `mkdir` without exist_ok is the atomic claim: two
    processes starting in the same second get different directories."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
    base = (Path(root) / f"{safe[:60]}-{stamp}").absolute()
    base.parent.mkdir(parents=True, exist_ok=True)
    path, i = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            path, i = base.with_name(f"{base.name}-{i}"), i + 1


def claim_run_dir(run_dir: str | Path | None, name: str, *, resume: bool, overwrite: bool) -> Path:
    """The absolute run directory for a new run or a resumed one (so a later `%cd` changes nothing).

    A new run never goes into a directory that holds another run: that is an error offering
    `resume_from=` or `overwrite=True` (which empties the directory first: never a mix)."""
    if run_dir is None:
        if resume:
            raise ConfigError("resume needs the run directory: resume_from='nbkit-runs/<run>'")
        return new_run_dir(name)
    path = Path(run_dir).expanduser().absolute()
    if resume:
        return path
    if holds_run(path):
        if not overwrite:
            raise ConfigError(
                f"{path} already holds a run: continue it with resume_from='{run_dir}', "
                "or pass overwrite=True to replace it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
