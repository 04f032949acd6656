"""The loop under faults and bad input: a directory holding a run, resume with changed keys,
one run per process, a failed run releases its memory, non-finite gradients with a finite loss,
and early stopping ending the same way whatever `eval_every` is."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch
from torch.utils.data import TensorDataset

from nbkit.core.config import ConfigError
from nbkit.core.train import Run, fit


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True))


def mse(out, y):
    return torch.nn.functional.mse_loss(out, y)


def quick(tmp_path, name="r", model=None, **kw):
    torch.manual_seed(0)
    opts = dict(loss_fn=mse, epochs=2, batch_size=16, lr=1e-2, run_dir=tmp_path / name, progress=False)
    opts.update(kw)
    return fit(model or torch.nn.Linear(3, 1), data(), data(32, 1), **opts)


def test_second_run_into_the_same_directory_is_refused_and_nothing_changes(tmp_path):
    first = quick(tmp_path)
    files = {p: p.read_bytes() for p in first.run_dir.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"already holds a run: continue it with resume_from=.*overwrite=True"):
        quick(tmp_path)
    assert {p: p.read_bytes() for p in first.run_dir.rglob("*") if p.is_file()} == files  # byte for byte
    again = quick(tmp_path, overwrite=True, epochs=1)
    assert [e.kind for e in again.events].count("run_start") == 1  # never two runs in one history
    assert Run.load(again.run_dir).history["step"].max() == 4


def test_resume_refuses_a_changed_batch_size_and_applies_longer_epochs(tmp_path, capsys):
    stop = lambda e, r: r.stop() if e.kind == "step" and e.step == 3 else None  # noqa: E731
    run = quick(tmp_path, epochs=2, callbacks=[stop])
    assert run.status == "stopped"
    with pytest.raises(ConfigError, match=r"cannot resume with batch_size=8: the run in .* used batch_size=16"):
        fit(torch.nn.Linear(3, 1), data(), data(32, 1), loss_fn=mse, epochs=2, batch_size=8, lr=1e-2,
            resume_from=run.run_dir, progress=False)
    resumed = fit(torch.nn.Linear(3, 1), data(), data(32, 1), loss_fn=mse, epochs=3, batch_size=16, lr=1e-2,
                  resume_from=run.run_dir, progress=False)
    assert "resuming r with epochs: 2 -> 3" in capsys.readouterr().out
    assert resumed.status == "finished" and resumed.history["step"].max() == 12


def test_one_training_run_at_a_time(tmp_path):
    import threading

    release = threading.Event()
    hold = lambda e, r: release.wait(30) if e.kind == "step" and e.step == 1 else None  # noqa: E731
    bg = quick(tmp_path, "bg", background=True, callbacks=[hold])
    try:
        with pytest.raises(ConfigError, match=r"run 'Linear' is still training in this process.*run.wait\(\)"):
            quick(tmp_path, "second")
        assert not (tmp_path / "second").exists()  # refused before anything was written
    finally:
        release.set()
        bg.wait()
    assert quick(tmp_path, "third").status == "finished"  # free again once it ended


def test_failed_run_keeps_the_message_not_the_frames(tmp_path):
    class Boom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("CUDA out of memory (simulated)")
            return self.lin(x)

    model = Boom()
    run = quick(tmp_path, model=model, background=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        run.wait()
    assert run.status == "failed" and "out of memory" in run.events[-1].message
    frames, tb = [], run.error.__traceback__  # only wait()'s re-raise: no frame of the loop or the model
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "forward" not in frames and "train" not in frames and "_update" not in frames
    assert "Traceback" in run.traceback and "in forward" in run.traceback
    # the loop's optimizer is gone: its state tensors are no longer referenced by anyone
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on every live object wakes deprecated torch aliases
        warnings.simplefilter("ignore")
        optimizers = [o for o in gc.get_objects() if isinstance(o, torch.optim.Optimizer)]
    assert not [o for o in optimizers if any(p is model.lin.weight for g in o.param_groups for p in g["params"])]


class NanGrad(torch.autograd.Function):
    """Identity forward; a NaN gradient backward: a finite loss with non-finite gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def test_finite_loss_with_nan_gradients_never_reaches_the_weights(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 1)
            self.calls = 0

        def forward(self, x):
            self.calls += self.training  # training forward passes only (evaluations run too)
            out = self.lin(x)
            return NanGrad.apply(out) if self.training and self.calls == 5 else out

    model = Net()
    run = quick(tmp_path, model=model, epochs=3)
    assert run.status == "finished"
    h = run.history.set_index("step")
    assert h["loss"].notna().all()  # the loss was finite throughout
    assert h["grad_norm"].isna().tolist() == [s == 5 for s in h.index]  # step 5's norm: NaN, skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("eval_every", [None, 4])
def test_early_stopping_ends_finished_with_the_test_whatever_eval_every(tmp_path, eval_every):
    torch.manual_seed(0)
    run = fit(torch.nn.Linear(3, 1), data(), data(32, 1), loss_fn=mse, epochs=40, batch_size=16, lr=1e-9,
              early_stopping=1, eval_every=eval_every, test=data(32, 2), run_dir=tmp_path / "r", progress=False)
    assert run.status == "finished"
    assert run.events[-1].message.startswith("early stopping: eval_loss did not improve")
    assert "test_loss" in run.metrics and run.history["step"].max() < 160


def test_host_reads_are_bulk_not_per_step(tmp_path, monkeypatch):
    """200 steps, the periodic read pushed out of reach: the loop reads device values only at the
    evaluation and the end (each read one transfer), never once per step."""
    from nbkit.core.train import loop, observers

    monkeypatch.setattr(loop, "READ_EVERY", 1e9)
    monkeypatch.setattr(observers, "FLUSH_EVERY", 1e9)
    reads = {"n": 0}
    for name in ("item", "__float__", "__bool__", "tolist", "__int__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, **k):
            reads["n"] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    torch.manual_seed(0)
    x = torch.randn(800, 3)
    run = fit(torch.nn.Linear(3, 1), TensorDataset(x, x.sum(1, keepdim=True)), data(16, 1), loss_fn=mse,
              epochs=1, batch_size=4, run_dir=tmp_path / "r", progress=False)
    monkeypatch.undo()
    assert run.status == "finished" and run.history["step"].max() == 200
    assert run.history["loss"].notna().all()  # every step's loss arrived, in bulk
    assert reads["n"] <= 12, reads


def test_a_callback_stopping_at_step_k_stops_at_exactly_k(tmp_path):
    for k in (1, 7, 13):
        run = quick(tmp_path, f"k{k}", epochs=5, callbacks=[lambda e, r, k=k: r.stop() if e.kind == "step" and e.step == k else None])
        assert run.status == "stopped" and run.history["step"].max() == k
        assert run.last_checkpoint.name == f"step-{k:07d}"


def test_eval_every_without_eval_data_trains_without_evaluating(tmp_path):
    from nbkit.core.train import fit
    from nbkit.core.train.events import EvalEnd
    from nbkit.testing import random_texts, tiny_bert

    model, tok = tiny_bert()
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(random_texts(16))]
    import datasets

    run = fit(model, datasets.Dataset.from_list(rows), None, tokenizer=tok, max_steps=4, batch_size=4,
              eval_every=2, run_dir=tmp_path / "r", progress=False)
    assert run.status == "finished" and not [e for e in run.events if isinstance(e, EvalEnd)]


def test_a_background_run_makes_its_display_in_the_callers_thread(tmp_path):
    """A notebook takes a cell's outputs only while the cell runs: the dashboard of a background run
    is made (and shown) before fit returns, not later from the training thread."""
    import threading

    import datasets

    from nbkit.core.train import fit
    from nbkit.core.train.events import RunEnd
    from nbkit.testing import random_texts, tiny_bert

    made, seen = [], []

    def factory():
        made.append(threading.current_thread())
        return lambda event, run: seen.append(type(event))

    model, tok = tiny_bert()
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(random_texts(16))]
    run = fit(model, datasets.Dataset.from_list(rows), None, tokenizer=tok, max_steps=3, batch_size=4,
              run_dir=tmp_path / "r", progress=factory, background=True)
    assert made == [threading.current_thread()]  # before fit returned, in this thread
    run.wait()
    assert seen[-1] is RunEnd and len(made) == 1
