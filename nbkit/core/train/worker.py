"""Run one finetune config as its own process: `python -m nbkit.core.train.worker RUN_DIR`.

The run directory must hold a `config.yaml` (the keys of `FinetuneConfig`). The worker trains into
that directory, so a notebook (or `accelerate launch` / `torchrun`, later) can start it and follow
`metrics.jsonl`. It has no global state beyond the process itself. Exit status: 0 when the run
finished or was stopped (a clean end), 1 when it failed.

Started by a notebook (`NBKIT_NOTEBOOK_PID` set), a worker never outlives it: Linux ends the worker
with its launcher (`PR_SET_PDEATHSIG`; the launcher is the parent under `accelerate launch` and
`torchrun`), and a watchdog thread on the notebook's pid, which works on any OS, stops the run at
the next step boundary when the notebook is gone (a checkpoint is saved) and ends the process
`ORPHAN_GRACE` seconds later (`NBKIT_ORPHAN_GRACE` in the environment), whatever it is doing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

EXIT_CODES = {"finished": 0, "stopped": 0}  # a stop is a clean end: launchers must not see a crash
ORPHAN_EXIT = 3  # the notebook went away and the run did not stop in time
ORPHAN_GRACE = 10.0  # seconds from the notebook's end to a forced exit (env NBKIT_ORPHAN_GRACE)
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_orphaned = threading.Event()  # set by the watchdog once the notebook is gone


def load_run_config(run_dir: Path) -> dict:
    import yaml

    path = run_dir / "config.yaml"
    if not path.exists():
        raise SystemExit(f"nbkit worker: {path} not found; write the config there first")
    return yaml.safe_load(path.read_text()) or {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbkit.core.train.worker", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--progress", action="store_true", help="show a terminal progress bar")
    args = parser.parse_args(argv)

    from ..config import FinetuneConfig
    from .finetune import finetune
    from .launch import LOG_DIR, NOTEBOOK_PID_ENV, NOTEBOOK_START_ENV, STOP_FILE

    stop_file = args.run_dir / STOP_FILE
    if os.environ.get(NOTEBOOK_PID_ENV):
        die_with_parent()
        watch_notebook(int(os.environ[NOTEBOOK_PID_ENV]), float(os.environ.get(NOTEBOOK_START_ENV) or 0),
                       stop_file, grace=float(os.environ.get("NBKIT_ORPHAN_GRACE") or ORPHAN_GRACE))
    rank = os.environ.get("RANK", "0")
    _tee_output(args.run_dir / LOG_DIR / f"rank-{rank}.log")
    try:
        config = load_run_config(args.run_dir)
        if args.resume:
            run = finetune(resume_from=args.run_dir, progress=args.progress, stop_file=stop_file)
        else:
            config = {k: v for k, v in config.items() if k in FinetuneConfig.__dataclass_fields__}
            config["run_dir"] = str(args.run_dir)
            config["overwrite"] = False  # the launcher already claimed (and emptied) the directory
            run = finetune(config=config, progress=args.progress, stop_file=stop_file)
    except BaseException:
        traceback.print_exc()  # into this rank's log, where the notebook looks for it
        raise
    code = EXIT_CODES.get(run.status, 1)
    if _orphaned.is_set():
        # Nobody waits for a tidy exit, and the interpreter's teardown (torch, gloo) takes seconds
        # on a busy machine: every file is written and closed by now, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send `sig` to this process when its parent (the launcher) ends. False where
    there is no prctl (not Linux); the notebook watchdog still applies there."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent ended before prctl took effect
        os.kill(os.getpid(), sig)
    return True


def _alive(pid: int, started: float) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        # A pid the system has given to a new process is not the notebook.
        return (not started or abs(proc.create_time() - started) < 1.0) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def watch_notebook(pid: int, started: float, stop_file: Path, *, every: float = 0.5,
                   grace: float = ORPHAN_GRACE) -> threading.Thread:
    """A daemon thread that, once process `pid` (started at `started`, from psutil's create_time)
    is gone, drops `stop_file` (every rank stops at the next step boundary and rank 0 saves a
    checkpoint) and ends this process `grace` seconds later if it is still running."""

    def watch() -> None:
        while _alive(pid, started):
            threading.Event().wait(every)
        _orphaned.set()
        with contextlib.suppress(OSError):
            stop_file.write_text(f"the notebook (pid {pid}) ended")
        print(f"nbkit worker: the notebook (pid {pid}) ended; stopping", file=sys.stderr, flush=True)
        threading.Event().wait(grace)
        print(f"nbkit worker: still running {grace:g} s later; exiting", file=sys.stderr, flush=True)
        os._exit(ORPHAN_EXIT)

    thread = threading.Thread(target=watch, name="nbkit-notebook-watchdog", daemon=True)
    thread.start()
    return thread


class _Tee:
    """Write to the console and to this rank's log file (Python-level output)."""

    def __init__(self, stream, file):
        self.stream, self.file = stream, file

    def write(self, text):
        self.file.write(text)
        self.file.flush()
        return self.stream.write(text)

    def flush(self):
        self.file.flush()
        self.stream.flush()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _tee_output(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", encoding="utf-8")  # noqa: SIM115 (lives as long as the process)
    sys.stdout = _Tee(sys.stdout, log)
    sys.stderr = _Tee(sys.stderr, log)


if __name__ == "__main__":
    sys.exit(main())
