"""Run one finetune config as its own process: `python -m nbkit.train.worker RUN_DIR`.

The run directory must hold a `config.yaml` (the keys of `FinetuneConfig`). The worker trains into
that directory, so a notebook (or `accelerate launch` / `torchrun`, later) can start it and follow
`metrics.jsonl`. It has no global state beyond the process itself. Exit status: 0 finished,
3 stopped, 1 failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_CODES = {"finished": 0, "stopped": 3}


def load_run_config(run_dir: Path) -> dict:
    import yaml

    path = run_dir / "config.yaml"
    if not path.exists():
        raise SystemExit(f"nbkit worker: {path} not found; write the config there first")
    return yaml.safe_load(path.read_text()) or {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbkit.train.worker", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--progress", action="store_true", help="show a terminal progress bar")
    args = parser.parse_args(argv)

    from ..config import FinetuneConfig
    from .finetune import finetune

    config = load_run_config(args.run_dir)
    if args.resume:
        run = finetune(resume_from=args.run_dir, progress=args.progress)
    else:
        config = {k: v for k, v in config.items() if k in FinetuneConfig.__dataclass_fields__}
        config["run_dir"] = str(args.run_dir)
        run = finetune(config=config, progress=args.progress)
    return EXIT_CODES.get(run.status, 1)


if __name__ == "__main__":
    sys.exit(main())
