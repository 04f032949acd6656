"""Run one finetune config as its own process: `python -m nbkit.core.train.worker RUN_DIR`.

The run directory must hold a `config.yaml` (the keys of `FinetuneConfig`). The worker trains into
that directory, so a notebook (or `accelerate launch` / `torchrun`, later) can start it and follow
`metrics.jsonl`. It has no global state beyond the process itself. Exit status: 0 when the run
finished or was stopped (a clean end), 1 when it failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

EXIT_CODES = {"finished": 0, "stopped": 0}  # a stop is a clean end: launchers must not see a crash


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
    from .launch import LOG_DIR, STOP_FILE

    rank = os.environ.get("RANK", "0")
    _tee_output(args.run_dir / LOG_DIR / f"rank-{rank}.log")
    stop_file = args.run_dir / STOP_FILE
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
    return EXIT_CODES.get(run.status, 1)


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
