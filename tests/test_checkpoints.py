"""Checkpoints: what each one holds, what is kept, durability under a full disk, one write per
step, and nothing unpickled unsafely on resume."""

from __future__ import annotations

import errno
import json
import pickle

import pytest
import torch
from torch.utils.data import TensorDataset

from nbkit.core.train import Run, fit
from nbkit.core.train import checkpoints as ckpt


def linear_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True))


def mse(out, y):
    return torch.nn.functional.mse_loss(out, y)


def train(tmp_path, name="r", **kw):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opts = dict(loss_fn=mse, epochs=2, batch_size=16, lr=1e-2, run_dir=tmp_path / name, progress=False)
    opts.update(kw)
    return model, fit(model, linear_data(), linear_data(32, 1), **opts)


def test_finished_run_keeps_one_model_copy_and_no_optimizer(tmp_path):
    _, run = train(tmp_path)
    folders = sorted(p.name for p in (run.run_dir / "checkpoints").iterdir() if p.is_dir())
    index = json.loads((run.run_dir / "checkpoints" / "index.json").read_text())
    assert run.status == "finished"
    # eval loss falls on this task, so the last is the best: one folder, one copy of the weights
    assert folders == ["step-0000008"] and index["last"] == index["best"] == "step-0000008"
    assert not (run.last_checkpoint / ckpt.STATE_DIR).exists()  # optimizer state gone at the end
    assert sorted(p.name for p in run.last_checkpoint.iterdir()) == ["model.safetensors", "trainer_state.json"]


def test_keep_optimizer_keeps_accelerate_training_state(tmp_path):
    _, run = train(tmp_path, keep_optimizer=True)
    state = run.last_checkpoint / ckpt.STATE_DIR
    assert {"optimizer.bin", "random_states_0.pkl", "scheduler.pt"} <= {p.name for p in state.iterdir()}
    assert not (state / "model.safetensors").exists()  # the weights are stored once, beside it


def test_stopped_run_keeps_state_in_last_only(tmp_path):
    seen = []

    def stop_at_6(event, run):
        if event.kind == "step" and event.step == 6:
            run.stop("enough")
        seen.append(event.kind)

    _, run = train(tmp_path, epochs=4, callbacks=[stop_at_6], eval_every=2, best_metric="eval_loss")
    assert run.status == "stopped" and run.last_checkpoint.name == "step-0000006"
    assert (run.last_checkpoint / ckpt.STATE_DIR / "optimizer.bin").exists()
    best = run.best_checkpoint
    if best != run.last_checkpoint:
        assert not (best / ckpt.STATE_DIR).exists()


def test_only_nbkit_folders_are_pruned(tmp_path):
    notes = tmp_path / "r" / "checkpoints" / "my-notes"

    def write_notes(event, run):
        if event.kind == "checkpoint" and not notes.exists():
            notes.mkdir()
            (notes / "keep.txt").write_text("mine")

    _, run = train(tmp_path, epochs=3, callbacks=[write_notes])
    assert len([e for e in run.events if e.kind == "checkpoint"]) == 3  # two were pruned meanwhile
    assert (notes / "keep.txt").read_text() == "mine"


def test_each_step_is_written_once(tmp_path, monkeypatch):
    writes = []
    real = ckpt.save_weights
    monkeypatch.setattr(ckpt, "save_weights", lambda model, folder, *a, **k: writes.append(folder.name) or real(model, folder, *a, **k))
    # eval_every=4 on 4 steps per epoch: evaluation, epoch end and the end all fall on steps 4 and 8
    _, run = train(tmp_path, eval_every=4)
    assert writes == [".tmp-step-0000004", ".tmp-step-0000008"]
    assert [e.step for e in run.events if e.kind == "checkpoint"] == [4, 8]


def test_full_disk_keeps_previous_checkpoint_and_says_the_save_failed(tmp_path, monkeypatch):
    real = ckpt.save_weights
    calls = {"n": 0}

    def full_disk(model, folder, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(model, folder, *a, **k)

    monkeypatch.setattr(ckpt, "save_weights", full_disk)
    with pytest.raises(ckpt.CheckpointError) as err:
        train(tmp_path, epochs=3)
    run = Run.load(tmp_path / "r")
    assert run.status == "failed" and run.events[-1].message == str(err.value)
    msg = str(err.value)
    assert "saving checkpoint step-0000008 failed (No space left on device)" in msg
    assert "step-0000004 is kept" in msg
    assert run.last_checkpoint.name == "step-0000004"
    assert [p.name for p in (run.run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp")] == []
    reloaded = torch.nn.Linear(3, 1)
    ckpt.load_weights(reloaded, run.last_checkpoint)  # still loadable
    assert not [e for e in run.events if e.kind == "checkpoint" and e.step == 8]  # "saved" never said


class _Planted:
    def __reduce__(self):
        import pathlib

        return (pathlib.Path.write_text, (pathlib.Path(_Planted.target), "pwned"))


def test_resume_never_unpickles_code(tmp_path):
    _, run = train(tmp_path, epochs=4, keep_optimizer=True,
                   callbacks=[lambda e, r: r.stop() if e.kind == "step" and e.step == 5 else None])
    assert run.status == "stopped"
    _Planted.target = str(tmp_path / "planted")
    rng = run.last_checkpoint / ckpt.STATE_DIR / "random_states_0.pkl"
    rng.write_bytes(pickle.dumps({"step": 0, "random_state": _Planted()}))
    torch.manual_seed(0)
    with pytest.raises(ckpt.CheckpointError, match="random_states_0.pkl is not a plain state file"):
        fit(torch.nn.Linear(3, 1), linear_data(), loss_fn=mse, epochs=4, batch_size=16, lr=1e-2,
            resume_from=run.run_dir, progress=False)
    assert not (tmp_path / "planted").exists()
