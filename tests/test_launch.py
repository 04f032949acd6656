"""Scale-out: the same finetune config in 2 CPU worker processes (gloo) under torchrun / accelerate
launch, followed from the calling process: one log line per step, same result as one process with
the same global batch, Stop, a killed worker, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

import nbkit
from nbkit.core.train.launch import launch_command
from nbkit.testing import WORDS, save_tiny_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    model_dir = save_tiny_model(root / "model", kind="bert")
    cfg_path = model_dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["hidden_dropout_prob"] = cfg["attention_probs_dropout_prob"] = 0.0  # ranks draw different masks
    cfg_path.write_text(json.dumps(cfg))
    rows = []
    for i in range(256):
        y = i % 2
        words = WORDS[20:60] if y == 0 else WORDS[60:100]
        text = " ".join(words[(i * 7 + k) % 40] for k in range(3 + i % 20))
        rows.append({"text": text, "label": ["neg", "pos"][y]})
    csv = root / "data.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return str(model_dir), str(csv)


def common(setup, **kw):
    model, data = setup
    return {"model": model, "data": data, "lr": 3e-3, "epochs": 2, "progress": False, **kw}


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_match_one_with_the_same_global_batch(setup, tmp_path, launcher):
    two = nbkit.finetune(**common(setup, batch_size=8, processes=2, launcher=launcher, run_dir=tmp_path / "two"))
    # One process, 2 batches of 8 per step: the same examples per step as two processes of 8 each.
    one = nbkit.finetune(**common(setup, batch_size=8, grad_accum=2, run_dir=tmp_path / "one"))
    assert two.status == "finished" and one.status == "finished"
    start = two.events[0]
    assert start.processes == 2 and start.effective_batch_size == 16 and start.steps_per_epoch == 15
    h2, h1 = two.history, one.history
    assert list(h2["step"]) == list(range(1, 31))  # rank 0 alone writes: one line per step
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert sum('"event": "step"' in line for line in lines) == 30
    assert h2["loss"].iloc[-5:].mean() < h2["loss"].iloc[:5].mean()
    diff = (h2["loss"] - h1["loss"]).abs()
    # Identical steps until the odd last batch of epoch 1 (29 batches of 8): there accelerate pads
    # the second process with a repeated batch, which one process does not see; close after that.
    assert diff.iloc[:14].max() < 1e-4
    assert diff.max() < 0.05
    assert two.metrics["eval_loss"] == pytest.approx(one.metrics["eval_loss"], abs=0.03)
    assert sorted(p.name for p in (tmp_path / "two" / "logs").iterdir()) == ["launcher.log", "rank-0.log", "rank-1.log"]
    assert type(two.model).__name__ == "BertForSequenceClassification"  # from the last checkpoint


def test_stop_reaches_every_worker(setup, tmp_path):
    # 200 epochs (~5,800 steps): long enough that an idle machine cannot finish before Stop lands
    run = nbkit.finetune(**common(setup, batch_size=4, epochs=200, processes=2, launcher="torchrun",
                                  run_dir=tmp_path / "stop"), background=True)
    deadline = time.time() + 120
    while (run.history.empty or run.history["step"].max() < 3) and time.time() < deadline:
        time.sleep(0.02)
    run.stop()
    run.wait(120)
    assert run.status == "stopped" and run.returncode == 0  # a stop is a clean end
    assert run.history["step"].max() < run.events[0].total_steps
    assert run.last_checkpoint is not None and run.last_checkpoint.name == f"step-{run.history['step'].max():07d}"


def test_a_killed_worker_is_one_clear_error_and_leaves_a_checkpoint(setup, tmp_path):
    import psutil

    run = nbkit.finetune(**common(setup, batch_size=4, epochs=200, eval_every=5, processes=2,
                                  launcher="torchrun", run_dir=tmp_path / "kill"), background=True)
    deadline = time.time() + 120
    while run.last_checkpoint is None and time.time() < deadline:
        time.sleep(0.02)
    workers = [p for p in psutil.Process(run.process.pid).children(recursive=True)
               if "nbkit.core.train.worker" in " ".join(p.cmdline())]
    assert len(workers) == 2
    os.kill(workers[-1].pid, signal.SIGKILL)
    with pytest.raises(RuntimeError) as err:
        run.wait(120)
    message = str(err.value)
    assert "exit code" in message and len(message.splitlines()) < 25
    assert run.status == "failed"
    from nbkit.core.models import load_model

    model, tok = load_model(str(run.last_checkpoint))  # the last complete checkpoint loads
    assert model.config.num_labels == 2


def test_cli_runs_the_same_config_on_two_processes(setup, tmp_path):
    model, data = setup
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {model}\ndata: {data}\nepochs: 1\nbatch_size: 8\nprocesses: 2\nlauncher: torchrun\n")
    proc = subprocess.run([sys.executable, "-m", "nbkit.cli", "finetune", str(cfg), "--run-dir", str(tmp_path / "cli"),
                           "--no-progress"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = nbkit.Run.load(tmp_path / "cli")
    assert run.events[0].processes == 2 and run.status == "finished" and run.history["step"].max() == 15


def test_launch_commands():
    cmd = launch_command("/r", processes=4, launcher="torchrun", hosts=2, main_address="10.0.0.1", port=1234,
                         machine_rank=1)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node=4" in cmd and "--node_rank=1" in cmd
    acc = launch_command("/r", processes=2, launcher="accelerate", accelerate_config="fsdp.yaml", port=1)
    assert acc[acc.index("--config_file") + 1] == "fsdp.yaml" and "--multi_gpu" not in acc
    assert acc[-3:] == ["--module", "nbkit.core.train.worker", "/r"]


# --- nothing left running (issue 12, scenario 7) --------------------------------------------------


def _ended(pid: int) -> bool:
    """Gone, or a zombie (exited; only its exit status waits for a parent to collect it)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _still_running(pids, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if not _ended(p)]
        time.sleep(0.05)
    return left


def _workers(launcher_pid: int) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(launcher_pid).children(recursive=True)
            if "nbkit.core.train.worker" in " ".join(p.cmdline())]


def test_killing_the_notebook_ends_every_worker(setup, tmp_path):
    model, data = setup
    run_dir = tmp_path / "orphan"
    notebook = textwrap.dedent(f"""
        import time, nbkit
        run = nbkit.finetune(model={model!r}, data={data!r}, lr=3e-3, epochs=200, batch_size=4, processes=2,
                             launcher="torchrun", run_dir={str(run_dir)!r}, progress=False, background=True)
        print(run.process.pid, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", notebook], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    launcher = int(proc.stdout.readline())
    log = run_dir / "metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and (not log.exists() or log.read_text().count('"event": "step"') < 3):
        time.sleep(0.05)
    workers = _workers(launcher)
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)  # the kernel dies: no handler, no cleanup of its own
    killed = time.monotonic()
    proc.wait(10)
    assert _still_running([launcher, *workers], timeout=15) == []
    print(f"launcher and 2 workers ended {time.monotonic() - killed:.1f} s after the notebook was killed")
    # They stopped at a step boundary and saved: nothing lost, the run can be resumed.
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[-1]["event"] == "run_end" and events[-1]["status"] == "stopped"
    # (Its message depends on which rank saw the stop file first: the loop broadcasts rank 0's.)
    assert nbkit.Run.load(run_dir).last_checkpoint.name == f"step-{events[-1]['step']:07d}"



FAKE_LAUNCHER = """
import subprocess, sys, time
from pathlib import Path
# Like torch elastic: two "workers" in sessions of their own, which ignore the stop file.
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        for _ in range(2)]
Path(sys.argv[1]).write_text(" ".join(str(k.pid) for k in kids))
for k in kids:
    k.wait()
"""


def _fake_run(tmp_path, observers=None):
    from nbkit.core.train.launch import ProcessRun

    script = tmp_path / "launcher.py"
    script.write_text(FAKE_LAUNCHER)
    pids = tmp_path / "pids"
    run = ProcessRun(run_dir=tmp_path / "run", name="fake", config={}, observers=observers,
                     command=[sys.executable, str(script), str(pids)], poll=0.02)
    deadline = time.time() + 60
    while not pids.exists() and time.time() < deadline:
        time.sleep(0.02)
    return run, [int(p) for p in pids.read_text().split()]


def test_kill_ends_the_launcher_and_every_worker(tmp_path):
    seen = []
    run, workers = _fake_run(tmp_path, observers=[lambda e, r: seen.append(e)])
    assert not any(_ended(p) for p in [run.process.pid, *workers])
    run.kill()
    assert _still_running([run.process.pid, *workers], timeout=1) == []
    assert run.status == "interrupted" and run.done
    assert [(e.kind, e.status, e.message) for e in seen] == [("run_end", "interrupted", "killed")]
    assert run.wait(1) is run  # no error to raise: the user asked for it


def test_a_second_ctrl_c_while_waiting_kills_the_workers(tmp_path):
    for name, text in (("launcher.py", FAKE_LAUNCHER),):
        (tmp_path / name).write_text(text)
    notebook = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from nbkit.core.train.launch import ProcessRun
        run = ProcessRun(run_dir=Path({str(tmp_path / "run")!r}), name="fake", config={{}}, poll=0.02,
                         command=[sys.executable, {str(tmp_path / "launcher.py")!r}, {str(tmp_path / "pids")!r}])
        print(run.process.pid, flush=True)
        print("interrupted:", run.join_foreground(), run.status, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", notebook], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    launcher = int(proc.stdout.readline())
    deadline = time.time() + 60
    while not (tmp_path / "pids").exists() and time.time() < deadline:
        time.sleep(0.02)
    workers = [int(p) for p in (tmp_path / "pids").read_text().split()]
    os.kill(proc.pid, signal.SIGINT)  # first: a stop request, which these workers ignore
    stop = tmp_path / "run" / "STOP"
    while not stop.exists() and time.time() < deadline:
        time.sleep(0.02)
    assert stop.read_text() == "interrupted"
    os.kill(proc.pid, signal.SIGINT)  # second: end them
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["nbkit: fake killed (a second interrupt); last checkpoint: none",
                                "interrupted: True interrupted"]
    assert _still_running([launcher, *workers], timeout=1) == []


# --- a resumed multi-process run follows its own attempt only (issue 12, Build 7) -----------------


def _previous_attempt(run_dir) -> bytes:
    from nbkit.core.train.events import RunEnd, RunStart, StepEnd

    run_dir.mkdir(parents=True)
    events = [RunStart(name="r", run_dir=str(run_dir), total_steps=10, steps_per_epoch=5, epochs=2),
              StepEnd(step=1, epoch=0.2, loss=1.0, lr=1e-3, samples_per_s=1.0, tokens_per_s=None),
              RunEnd(status="stopped", step=1, message="stopped by user")]
    text = "".join(json.dumps(e.to_dict()) + "\n" for e in events).encode()
    (run_dir / "metrics.jsonl").write_bytes(text)
    return text


def test_a_resumed_attempt_follows_only_its_own_events(tmp_path):
    from nbkit.core.train.events import RunEnd, RunStart, StepEnd
    from nbkit.core.train.launch import ProcessRun

    run_dir = tmp_path / "run"
    before = _previous_attempt(run_dir)
    new = [RunStart(name="r", run_dir=str(run_dir), total_steps=10, steps_per_epoch=5, epochs=2, start_step=1),
           StepEnd(step=2, epoch=0.4, loss=0.9, lr=1e-3, samples_per_s=1.0, tokens_per_s=None),
           RunEnd(status="finished", step=2)]
    lines = "".join(json.dumps(e.to_dict()) + "\n" for e in new)
    writer = f"open({str(run_dir / 'metrics.jsonl')!r}, 'a').write({lines!r})"
    seen = []
    run = ProcessRun(run_dir=run_dir, name="r", config={}, command=[sys.executable, "-c", writer],
                     observers=[lambda e, r: seen.append(e)], poll=0.02)
    run.wait(60)
    assert [(e.kind, getattr(e, "step", None)) for e in seen] == [("run_start", None), ("step", 2), ("run_end", 2)]
    assert run.status == "finished"
    assert list(run.history["step"]) == [1, 2]  # the whole run's history, as for an in-process resume
    assert (run_dir / "metrics.jsonl").read_bytes().startswith(before)


def test_a_crashed_resume_is_failed_not_the_previous_attempts_stopped(tmp_path):
    from nbkit.core.train.launch import ProcessRun

    run_dir = tmp_path / "run"
    _previous_attempt(run_dir)
    seen = []
    run = ProcessRun(run_dir=run_dir, name="r", config={}, command=[sys.executable, "-c", "raise SystemExit(3)"],
                     observers=[lambda e, r: seen.append(e)], poll=0.02)
    with pytest.raises(RuntimeError, match="exit code 3"):
        run.wait(60)
    assert run.status == "failed"
    assert [(e.kind, e.status) for e in seen] == [("run_end", "failed")]
