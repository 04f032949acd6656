"""nbkit.core.integrations.TrainerCallback: a real Hugging Face `Trainer` on a tiny BERT feeds an nbkit Run
(events, history, metrics.jsonl) and obeys `run.stop()`."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading

import pytest
import torch

pytest.importorskip("transformers")

from datasets import Dataset  # noqa: E402
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments  # noqa: E402

from nbkit.core.integrations import TrainerCallback  # noqa: E402
from nbkit.core.train import Run  # noqa: E402
from nbkit.testing import random_texts  # noqa: E402
from nbkit.testing import tiny_bert as build_tiny_bert  # noqa: E402

# Two intra-op threads on a busy 2-core machine are far slower than one (OpenMP spinning).
torch.set_num_threads(1)

N_TRAIN, BATCH = 32, 8  # 4 optimizer steps per epoch


def _data(tokenizer, n: int, seed: int) -> Dataset:
    texts = random_texts(n, seed=seed, max_words=12)
    enc = tokenizer(texts, truncation=True)
    return Dataset.from_dict({**enc, "label": [i % 2 for i in range(n)]})


def _trainer(tmp_path, callback, **overrides) -> Trainer:
    model, tokenizer = build_tiny_bert()
    options = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH,
                   per_device_eval_batch_size=16, num_train_epochs=2, logging_steps=1, report_to=[],
                   use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0)
    options.update(overrides)
    return Trainer(model=model, args=TrainingArguments(**options),
                   train_dataset=_data(tokenizer, N_TRAIN, seed=1), eval_dataset=_data(tokenizer, 16, seed=2),
                   data_collator=DataCollatorWithPadding(tokenizer), callbacks=[callback])


def test_trainer_run_becomes_nbkit_events_history_and_jsonl(tmp_path):
    seen = []
    cb = TrainerCallback(observers=[lambda event, run: seen.append(event.kind)])
    late = []
    cb.run.subscribe(lambda event, run: late.append(event.kind))  # before train(): the dashboard's way
    trainer = _trainer(tmp_path, cb, eval_strategy="epoch", save_strategy="epoch")
    trainer.train()

    per_epoch = ["step"] * 4 + ["epoch", "eval", "checkpoint"]
    assert seen == ["run_start", *per_epoch, *per_epoch, "run_end"]
    assert late == seen

    run = cb.run
    assert run.status == "finished"
    assert run.run_dir == tmp_path / "out" / "nbkit"
    start, end = run.events[0], run.events[-1]
    assert (start.total_steps, start.steps_per_epoch, start.epochs, start.effective_batch_size) == (8, 4, 2, 8)
    assert (start.processes, start.lr) == (1, trainer.args.learning_rate)
    assert start.config["per_device_train_batch_size"] == BATCH
    assert (end.status, end.step) == ("finished", 8)

    # One StepEnd per logged step, with the values Trainer logged.
    logged = [h for h in trainer.state.log_history if "loss" in h]
    hist = run.history
    assert hist["step"].tolist() == list(range(1, 9))
    steps = hist.set_index("step")
    for h in logged:
        row = steps.loc[h["step"]]
        assert row["loss"] == pytest.approx(h["loss"])
        assert row["lr"] == pytest.approx(h["learning_rate"])
        assert row["grad_norm"] == pytest.approx(h["grad_norm"])
        assert row["epoch"] == pytest.approx(h["epoch"])
    assert (hist["samples_per_s"] > 0).all()
    assert hist["lr"].is_monotonic_decreasing  # linear schedule
    assert hist["elapsed"].is_monotonic_increasing

    # Eval metrics at the end of each epoch, without Trainer's timing fields.
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert steps.loc[4, "eval_loss"] == pytest.approx(evals[0]["eval_loss"])
    assert steps.loc[8, "eval_loss"] == pytest.approx(evals[1]["eval_loss"])
    assert math.isnan(steps.loc[3, "eval_loss"])
    assert "eval_runtime" not in hist.columns
    assert run.metrics == {"eval_loss": pytest.approx(evals[1]["eval_loss"])}

    epochs = [e for e in run.events if e.kind == "epoch"]
    assert [(e.step, e.epoch) for e in epochs] == [(4, 1), (8, 2)]
    ckpts = [e for e in run.events if e.kind == "checkpoint"]
    assert [e.path for e in ckpts] == [str(tmp_path / "out" / f"checkpoint-{s}") for s in (4, 8)]
    assert all(os.path.isdir(e.path) for e in ckpts)

    # metrics.jsonl: one flushed line per event, and a reopened run gives the same history.
    lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == seen
    assert (run.run_dir / "config.yaml").exists()
    reopened = Run.load(run.run_dir)
    assert reopened.status == "finished"
    assert reopened.history.equals(hist)


def test_run_stop_from_an_observer_ends_training_at_that_step(tmp_path):
    def stop_at_2(event, run):
        if event.kind == "step" and event.step == 2:
            run.stop("enough")

    cb = TrainerCallback(observers=[stop_at_2], run_dir=tmp_path / "mine", name="stopper")
    trainer = _trainer(tmp_path, cb)
    trainer.train()

    assert trainer.state.global_step == 2
    run = cb.run
    assert (run.status, run.name, run.run_dir) == ("stopped", "stopper", tmp_path / "mine")
    assert run.history["step"].tolist() == [1, 2]
    end = run.events[-1]
    assert (end.kind, end.status, end.step, end.message) == ("run_end", "stopped", 2, "enough")
    assert "epoch" not in [e.kind for e in run.events]  # half an epoch is not an epoch
    last = json.loads((tmp_path / "mine" / "metrics.jsonl").read_text().splitlines()[-1])
    assert (last["event"], last["status"], last["step"]) == ("run_end", "stopped", 2)


def test_pause_holds_training_and_is_not_counted_as_training_time(tmp_path):
    pause_s = 0.4

    def pause_at_2(event, run):
        if event.kind == "step" and event.step == 2:
            run.pause()
            assert run.status == "paused"
            threading.Timer(pause_s, run.resume).start()  # what a dashboard button would do

    cb = TrainerCallback(observers=[pause_at_2])
    trainer = _trainer(tmp_path, cb, num_train_epochs=1)
    assert cb.run.run_dir == tmp_path / "out" / "nbkit"  # known as soon as the Trainer is built
    trainer.train()

    assert (cb.run.status, trainer.state.global_step) == ("finished", 4)
    steps = {e.step: e for e in cb.run.events if e.kind == "step"}
    assert steps[3].time - steps[2].time >= pause_s  # it did wait...
    # ...but step 3's throughput counts only its own training time, not the pause.
    assert BATCH / steps[3].samples_per_s < pause_s / 2


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to self")
def test_interrupt_stops_at_a_step_boundary_and_restores_the_handler(tmp_path):
    before = signal.getsignal(signal.SIGINT)

    def interrupt_at_3(event, run):
        if event.kind == "step" and event.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # what the notebook's stop square sends

    cb = TrainerCallback(observers=[interrupt_at_3])
    trainer = _trainer(tmp_path, cb)
    trainer.train()  # no KeyboardInterrupt escapes

    assert trainer.state.global_step == 3
    assert (cb.run.status, cb.run.events[-1].message) == ("stopped", "interrupted")
    assert signal.getsignal(signal.SIGINT) is before


def test_early_stop_by_another_trainer_callback_is_reported_as_stopped(tmp_path):
    import transformers

    class StopAt5(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                control.should_training_stop = True

    cb = TrainerCallback()
    trainer = _trainer(tmp_path, cb)
    trainer.add_callback(StopAt5())
    trainer.train()
    assert (cb.run.status, cb.run.events[-1].step) == ("stopped", 5)
    # Stopped mid-epoch 2: only the first, complete epoch is reported.
    assert [e.epoch for e in cb.run.events if e.kind == "epoch"] == [1]


def test_integrations_imports_no_notebook_ui():
    code = ("import sys, nbkit.core.integrations\n"
            "print([m for m in ('IPython', 'ipywidgets', 'anywidget', 'plotly') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


class _Boom(RuntimeError):
    pass


def _raise_at_2(event, run):
    if event.kind == "step" and event.step == 2:
        raise _Boom("bad batch")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to self")
def test_a_train_that_raises_restores_the_handler_and_ends_the_run(tmp_path):
    # Issue 12, Build 12: before, our handler stayed installed and swallowed every later Ctrl-C.
    before = signal.getsignal(signal.SIGINT)
    cb = TrainerCallback(observers=[_raise_at_2])
    trainer = _trainer(tmp_path, cb)
    with pytest.raises(_Boom):
        trainer.train()
    assert signal.getsignal(signal.SIGINT) is before
    assert (cb.run.status, cb.run.done) == ("failed", True)
    assert (cb.run.events[-1].kind, cb.run.events[-1].message) == ("run_end", "_Boom: bad batch")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to self")
def test_after_a_raise_with_add_callback_ctrl_c_is_an_interrupt_again(tmp_path):
    # add_callback: no on_init_end, so no guard on train(); the handler steps aside by itself.
    before = signal.getsignal(signal.SIGINT)
    cb = TrainerCallback(observers=[_raise_at_2])
    trainer = _trainer(tmp_path, TrainerCallback(handle_interrupt=False))
    trainer.add_callback(cb)
    with pytest.raises(_Boom):
        trainer.train()
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait(5)  # the handler runs at the next bytecode; never reached
    assert signal.getsignal(signal.SIGINT) is before
