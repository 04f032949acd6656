"""Run a finetune config in worker processes under `accelerate launch` or `torchrun`, and follow it.

The notebook (or CLI) writes the run directory and its `config.yaml`, starts the launcher as a
subprocess running `python -m nbkit.core.train.worker RUN_DIR` (no fork of the kernel, so CUDA used
earlier in the notebook does not matter), and returns a `ProcessRun`. That run tails rank 0's
`metrics.jsonl` and replays each event to its observers, so the dashboard, `history`, `wait()` and
`model` (from the last checkpoint) behave as for an in-process run. `stop()` drops a stop file that
every worker checks at each step boundary; they agree on the step, save a checkpoint and end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import ConfigError
from .events import RunEnd, event_from_dict
from .observers import ProgressBar
from .run import Run

STOP_FILE = "STOP"
LOG_DIR = "logs"
WORKER_ENV = "NBKIT_WORKER"  # set for the workers: "you are the process, do not launch more"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(run_dir: Path, *, processes: int, launcher: str, accelerate_config: str | None = None,
                   hosts: int = 1, main_address: str = "127.0.0.1", port: int | None = None,
                   machine_rank: int = 0, resume: bool = False) -> list[str]:
    """The command line that starts `processes` workers on this machine (machine `machine_rank` of
    `hosts`). The same command with another `machine_rank` starts the other machines' share."""
    port = port or _free_port()
    worker = [str(run_dir)] + (["--resume"] if resume else [])
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                f"--nnodes={hosts}", f"--node_rank={machine_rank}", f"--master_addr={main_address}",
                f"--master_port={port}", "-m", "nbkit.core.train.worker", *worker]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes * hosts),
           "--num_machines", str(hosts), "--machine_rank", str(machine_rank),
           "--main_process_ip", main_address, "--main_process_port", str(port)]
    if accelerate_config:
        cmd += ["--config_file", str(accelerate_config)]
    else:
        # accelerate's multi-process launcher (torchrun underneath); on CPUs the workers join with
        # gloo. DDP/FSDP/DeepSpeed settings come from an accelerate config file instead.
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return cmd + ["--module", "nbkit.core.train.worker", *worker]


class ProcessRun(Run):
    """A run whose training happens in worker processes; this object follows rank 0's log."""

    def __init__(self, *, run_dir: Path, name: str, config: dict[str, Any], command: list[str],
                 observers: list[Callable] | None = None, poll: float = 0.2):
        super().__init__(name=name, run_dir=run_dir, config=config, observers=observers or [])
        self.command = command
        self.poll = poll
        self.returncode: int | None = None
        logs = run_dir / LOG_DIR
        logs.mkdir(parents=True, exist_ok=True)
        (run_dir / STOP_FILE).unlink(missing_ok=True)
        self._launcher_log = open(logs / "launcher.log", "ab")  # noqa: SIM115 (closed by the follower)
        env = {**os.environ, WORKER_ENV: "1", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(command, stdout=self._launcher_log, stderr=subprocess.STDOUT, env=env,
                                        cwd=os.getcwd(), start_new_session=True)
        self.status = "running"
        self.start_in_background(self._follow)

    # -- controls: files the workers look for at each step boundary -------------------------------

    def stop(self, reason: str = "stopped by user") -> None:
        (self.run_dir / STOP_FILE).write_text(reason)
        self.control.request_stop(reason)

    def pause(self) -> None:
        raise NotImplementedError(
            "pause() is not available for a multi-process run (the processes wait on each other); "
            "use stop() and continue later with resume_from=run_dir"
        )

    def stop_after_epoch(self) -> None:
        raise NotImplementedError("stop_after_epoch() is not available for a multi-process run; use stop()")

    # -- following --------------------------------------------------------------------------------

    def _follow(self) -> None:
        path = self.run_dir / "metrics.jsonl"
        offset, pending = 0, b""
        ended = False
        while True:
            exited = self.process.poll() is not None
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    try:
                        event = event_from_dict(json.loads(line))
                    except (ValueError, KeyError, TypeError):
                        continue
                    if isinstance(event, RunEnd):
                        ended = True
                        self.status = event.status
                    self.emit(event)
            if exited:
                break
            time.sleep(self.poll)
        self.returncode = self.process.wait()
        self._launcher_log.close()
        if self.returncode != 0 or not ended:
            self.error = RuntimeError(self.failure_message())
            self.status = "failed" if not ended or self.status == "finished" else self.status
        if not ended:
            self.finish("failed", self._last_step(), str(self.error))
        else:
            self.finish_quietly()

    def _last_step(self) -> int:
        steps = [e.step for e in self.events if getattr(e, "kind", "") == "step"]
        return max(steps) if steps else 0

    def failure_message(self, lines: int = 15) -> str:
        """One readable error: which rank failed and its last lines of output."""
        logs = sorted((self.run_dir / LOG_DIR).glob("rank-*.log"))
        for log in logs:
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                tail = "\n".join(text.rstrip().splitlines()[-lines:])
                return f"worker {log.stem} failed (exit code {self.returncode}); its last lines:\n{tail}"
        last = self.last_checkpoint
        launcher = (self.run_dir / LOG_DIR / "launcher.log")
        tail = "\n".join(launcher.read_text(errors="replace").rstrip().splitlines()[-lines:]) if launcher.exists() else ""
        where = f"; last checkpoint: {last}" if last else ""
        return (f"worker processes ended with exit code {self.returncode} without finishing (killed or out "
                f"of memory?){where}. Launcher output:\n{tail}")

    def wait(self, timeout: float | None = None) -> Run:
        self.join(timeout)
        if self.error is not None and self.wait_done(0):
            raise self.error
        return self


def launch_finetune(cfg: Any, *, callbacks: Sequence[Callable] = (), progress: bool | Callable = True,
                    background: bool = False, resume: bool = False) -> ProcessRun:
    """Start `cfg` (a FinetuneConfig with processes > 1 or hosts > 1) in worker processes."""
    import dataclasses

    from .run import write_config
    from .rundir import claim_run_dir, run_name

    for key in ("model", "data"):
        if not isinstance(getattr(cfg, key), str):
            raise ConfigError(f"processes > 1 needs '{key}' as a name or path (the workers load it), "
                              f"not a {type(getattr(cfg, key)).__name__} from the notebook")
    name = cfg.name or run_name(cfg.model)
    run_dir = claim_run_dir(cfg.run_dir, name, resume=resume, overwrite=cfg.overwrite)
    config = {**dataclasses.asdict(cfg), "name": name, "run_dir": str(run_dir)}
    if not resume:
        write_config(run_dir, config)
    where = dict(processes=cfg.processes, launcher=cfg.launcher, accelerate_config=cfg.accelerate_config,
                 hosts=cfg.hosts, main_address=cfg.main_address, port=_free_port(), resume=resume)
    command = launch_command(run_dir, **where)
    if cfg.hosts > 1:
        others = launch_command(run_dir, **where, machine_rank=1)
        print(f"nbkit: started machine 0 of {cfg.hosts}; on each other machine (same run directory path "
              f"and data), run this with its own --machine_rank / --node_rank:\n  {' '.join(others)}")
    observers: list[Callable] = []
    if progress:
        observers.append(progress() if callable(progress) else ProgressBar())
    observers.extend(callbacks)
    run = ProcessRun(run_dir=run_dir, name=name, config=config, command=command, observers=observers)
    if not background:
        try:
            run.join()
        except KeyboardInterrupt:
            run.stop("interrupted")  # the workers stop at a step boundary and save a checkpoint
            run.join()
            print(f"nbkit: {name} stopped ({run.run_dir})")
            return run
        if run.error is not None:
            raise run.error
    return run
