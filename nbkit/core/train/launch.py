"""Run a finetune config in worker processes under `accelerate launch` or `torchrun`, and follow it.

The notebook (or CLI) writes the run directory and its `config.yaml`, starts the launcher as a
subprocess running `python -m nbkit.core.train.worker RUN_DIR` (no fork of the kernel, so CUDA used
earlier in the notebook does not matter), and returns a `ProcessRun`. That run tails rank 0's
`metrics.jsonl` and replays each event to its observers, so the dashboard, `history`, `wait()` and
`model` (from the last checkpoint) behave as for an in-process run. `stop()` drops a stop file that
every worker checks at each step boundary; they agree on the step, save a checkpoint and end.

Workers never outlive the process that launched them: it passes its pid in `NOTEBOOK_PID_ENV`, and
every worker watches that pid (worker.py), stops at a step boundary when it is gone and exits soon
after even if training hangs; each worker also asks Linux to end it with its launcher
(`PR_SET_PDEATHSIG`). `ProcessRun.kill()` ends the launcher and every worker at once, and a second
Ctrl-C while the notebook waits does that too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
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
# The launching process (a notebook kernel, the CLI): its pid and start time (so that a reused pid
# is not mistaken for it). Workers end when it is gone.
NOTEBOOK_PID_ENV = "NBKIT_NOTEBOOK_PID"
NOTEBOOK_START_ENV = "NBKIT_NOTEBOOK_START"


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
        # This attempt's events start at the log's current end: a resumed run must not replay the
        # previous attempt's events (its RunEnd would end the new dashboard at once). They stay in
        # `events`, so `history` covers the whole run as for an in-process resume.
        self._offset = _attempt_start(run_dir / "metrics.jsonl")
        if self._offset:
            self.events = _events_before(run_dir / "metrics.jsonl", self._offset)
        self._killed = False
        import psutil

        me = psutil.Process()
        env = {**os.environ, WORKER_ENV: "1", "PYTHONUNBUFFERED": "1",
               NOTEBOOK_PID_ENV: str(me.pid), NOTEBOOK_START_ENV: repr(me.create_time())}
        # Its own session, so that Ctrl-C in a terminal reaches this process, which stops the
        # workers at a step boundary, rather than killing them mid-step.
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

    def kill(self, timeout: float = 5.0) -> None:
        """End the launcher and every worker now (SIGTERM, then SIGKILL after `timeout` seconds):
        no checkpoint is written; the last one on disk stays loadable. `stop()` is the clean way."""
        import psutil

        self._killed = True
        try:
            launcher = psutil.Process(self.process.pid)
            procs = [launcher, *launcher.children(recursive=True)]  # workers have sessions of their own
        except psutil.NoSuchProcess:
            procs = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=timeout)
        self.wait_done(timeout)

    def join_foreground(self) -> bool:
        """Wait for the workers in the caller's thread: a first Ctrl-C stops them at a step
        boundary (with a checkpoint), a second one kills them. True when interrupted.

        It waits on `_done`, not `Thread.join`: on Python 3.11 a join cut short by Ctrl-C marks the
        thread as ended (bpo-45274's fix), so a second join returns at once, workers still running.
        """
        try:
            self.wait_done()
            return False
        except KeyboardInterrupt:
            self.stop("interrupted")  # the workers stop at a step boundary and save a checkpoint
            try:
                self.wait_done()
            except KeyboardInterrupt:
                self.kill()
                print(f"nbkit: {self.name} killed (a second interrupt); last checkpoint: "
                      f"{self.last_checkpoint or 'none'}")
                return True
            print(f"nbkit: {self.name} stopped ({self.run_dir})")
            return True

    # -- following --------------------------------------------------------------------------------

    def _follow(self) -> None:
        path = self.run_dir / "metrics.jsonl"
        offset, pending = self._offset, b""
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
        if self._killed and not ended:
            self.finish("interrupted", self._last_step(), "killed")
            return
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
    if not background and not run.join_foreground() and run.error is not None:
        raise run.error
    return run


def _attempt_start(path: Path) -> int:
    """Where a new attempt's events will begin in `path`: its size now (0 when there is none yet)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _events_before(path: Path, offset: int) -> list:
    """The events of earlier attempts: the complete lines among `path`'s first `offset` bytes."""
    with open(path, "rb") as f:
        head = f.read(offset)
    events = []
    for line in head.split(b"\n"):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            events.append(event_from_dict(json.loads(line)))
    return events
