"""Scale-out: the same finetune config in 2 CPU worker processes (gloo) under torchrun / accelerate
launch, followed from the calling process: one log line per step, same result as one process with
the same global batch, Stop, a killed worker, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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
