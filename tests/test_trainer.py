"""`nbkit.TrainerCallback` (nbkit/notebook/trainer.py): a Hugging Face `Trainer` run shows nbkit's
dashboard by itself in a notebook (checked in a real kernel through nbclient), a progress bar headless,
and one line when Trainer's logging interval would leave the loss chart empty."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from datasets import Dataset  # noqa: E402
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments  # noqa: E402

import nbkit  # noqa: E402
from nbkit.core.train.observers import ProgressBar  # noqa: E402
from nbkit.testing import random_texts  # noqa: E402
from nbkit.testing import tiny_bert as build_tiny_bert  # noqa: E402

torch.set_num_threads(1)

N_TRAIN, BATCH = 32, 8  # 4 optimizer steps per epoch
ROOT = Path(__file__).resolve().parents[1]

TRAINER_CELL = """\
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
import nbkit
from nbkit.testing import random_texts, tiny_bert
torch.set_num_threads(1)

def data(tokenizer, n, seed):
    enc = tokenizer(random_texts(n, seed=seed, max_words=12), truncation=True)
    return Dataset.from_dict({{**enc, "label": [i % 2 for i in range(n)]}})

model, tokenizer = tiny_bert()
cb = nbkit.TrainerCallback()
args = TrainingArguments(output_dir={out!r}, per_device_train_batch_size=8, num_train_epochs=2, report_to=[],
                         use_cpu=True, save_strategy="no", eval_strategy="epoch", logging_steps={logging},
                         seed=0)
trainer = Trainer(model=model, args=args, train_dataset=data(tokenizer, 32, 1), eval_dataset=data(tokenizer, 16, 2),
                  data_collator=DataCollatorWithPadding(tokenizer), callbacks=[cb])
trainer.train()
"""


def _data(tokenizer, n: int, seed: int) -> Dataset:
    enc = tokenizer(random_texts(n, seed=seed, max_words=12), truncation=True)
    return Dataset.from_dict({**enc, "label": [i % 2 for i in range(n)]})


def _trainer(tmp_path, callback, **overrides) -> Trainer:
    model, tokenizer = build_tiny_bert()
    options = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH, num_train_epochs=2,
                   logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0)
    options.update(overrides)
    return Trainer(model=model, args=TrainingArguments(**options),
                   train_dataset=_data(tokenizer, N_TRAIN, seed=1), eval_dataset=_data(tokenizer, 16, seed=2),
                   data_collator=DataCollatorWithPadding(tokenizer), callbacks=[callback])


def test_the_public_callback_is_the_notebook_one():
    from nbkit.core.integrations import TrainerCallback as Adapter
    from nbkit.notebook.trainer import TrainerCallback

    assert nbkit.TrainerCallback is TrainerCallback
    assert issubclass(TrainerCallback, Adapter)


def test_headless_with_trainers_bar_off_gets_nbkits_bar(tmp_path, capsys):
    cb = nbkit.TrainerCallback(name="bar-run")
    _trainer(tmp_path, cb).train()
    assert isinstance(cb.view, ProgressBar)
    err = capsys.readouterr().err
    assert "bar-run: 100%" in err and "8/8" in err  # 2 epochs x 4 steps
    assert cb.run.status == "finished" and list(cb.run.history["step"]) == list(range(1, 9))


def test_headless_with_trainers_own_bar_adds_no_second_one(tmp_path, capsys):
    cb = nbkit.TrainerCallback(name="quiet-run")
    _trainer(tmp_path, cb, disable_tqdm=False).train()
    assert cb.view is None
    assert "quiet-run" not in capsys.readouterr().err  # only Trainer's bar (named by its own desc)
    cb = nbkit.TrainerCallback(name="off", progress=False)
    _trainer(tmp_path, cb).train()
    assert cb.view is None and cb.run.status == "finished"


def test_a_long_logging_interval_gets_one_line_once(tmp_path, capsys):
    cb = nbkit.TrainerCallback(progress=False)
    trainer = _trainer(tmp_path, cb, logging_steps=500)
    trainer.train()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("nbkit:")]
    assert lines == ['nbkit: Trainer logs the training loss every 500 steps and this run has 8 steps, so the '
                     'loss chart stays empty for long; pass TrainingArguments(logging_strategy="steps", logging_steps=1) for '
                     'a point at every step.']
    assert cb.run.history["loss"].isna().all()  # what the line warns about: no training loss at all
    trainer.train()  # a second run with the same callback: no second line
    assert "nbkit:" not in capsys.readouterr().out


def test_an_evaluation_before_the_first_logged_loss_gets_the_line(tmp_path, capsys):
    cb = nbkit.TrainerCallback(progress=False)
    # 40 steps, a loss every 4 (a tenth: not long), but an evaluation every 2 steps comes first.
    _trainer(tmp_path, cb, num_train_epochs=10, logging_steps=4, eval_strategy="steps", eval_steps=2).train()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("nbkit:")]
    assert lines == ['nbkit: Trainer logs the training loss every 4 steps, so the chart has no loss before the '
                     'evaluation at step 2; pass TrainingArguments(logging_strategy="steps", logging_steps=1) '
                     'for a point at every step.']


@pytest.mark.parametrize("logging", [1, 2])
def test_a_short_logging_interval_gets_no_line(tmp_path, capsys, logging):
    cb = nbkit.TrainerCallback(progress=False)
    _trainer(tmp_path, cb, num_train_epochs=5, logging_steps=logging).train()  # 20 steps
    assert "nbkit:" not in capsys.readouterr().out
    assert cb.run.history["loss"].notna().sum() == 20 // logging


def test_headless_use_imports_no_notebook_ui(tmp_path):
    code = (
        "import sys, nbkit\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from pathlib import Path\n"
        "from test_trainer import _trainer\n"
        f"cb = nbkit.TrainerCallback()\n_trainer(Path({str(tmp_path)!r}), cb).train()\n"
        "print(cb.run.status, [m for m in ('IPython', 'ipywidgets', 'anywidget', 'plotly') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "finished []"


@pytest.mark.slow
def test_in_a_notebook_the_callback_shows_the_dashboard_by_itself(tmp_path, monkeypatch):
    """A real kernel (nbclient): the Trainer cell's output holds nbkit's dashboard widget, then its
    static copy; the one-line logging hint comes first, in the same cell."""
    import nbclient
    import nbformat

    spec = tmp_path / "jupyter" / "kernels" / "nbkit-trainer-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nbkit test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "nbkit-trainer-test", "display_name": "nbkit test", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(TRAINER_CELL.format(out=str(tmp_path / "out"), logging=500)),
        nbformat.v4.new_code_cell("print(type(cb.view).__name__, cb.view.status, cb.view.last, "
                                  "len(cb.view.eval_rows), cb.run.status)"),
    ]
    nbclient.NotebookClient(nb, timeout=600, kernel_name="nbkit-trainer-test",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs if o.output_type == "error"] == []
    hint = outputs[0]
    assert hint.output_type == "stream" and hint.text.startswith("nbkit: Trainer logs the training loss every 500")
    assert hint.text.count("\n") == 1  # one line
    # The live view was there, and at the end left its result in its place: the status line and the
    # evaluations table (no training loss was logged, so there is no chart to draw).
    html_outputs = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    summaries = [h for h in html_outputs if h.startswith("<div class='nbkit-summary'")]
    assert len(summaries) == 1 and "finished" in summaries[0] and "eval_loss" in summaries[0]
    summary = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    # No loss logged (logging_steps=500 of 8 steps), two evaluations, one per epoch.
    assert summary.strip() == "Dashboard finished None 2 finished"


def test_a_trainer_run_reopens_from_trainers_checkpoint(tmp_path):
    model, tokenizer = build_tiny_bert()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH,
                             num_train_epochs=2, logging_steps=1, report_to=[], use_cpu=True,
                             save_strategy="epoch", disable_tqdm=True, seed=0, learning_rate=1e-3)
    cb = nbkit.TrainerCallback(progress=False)
    Trainer(model=model, args=args, train_dataset=_data(tokenizer, N_TRAIN, seed=1), processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer), callbacks=[cb]).train()
    back = nbkit.Run.load(cb.run.run_dir)
    assert back._model is None and back.tokenizer is not None  # from Trainer's checkpoint-8 folder
    texts = random_texts(6, seed=9, max_words=10)
    live, again = cb.run.predict(texts), back.predict(texts)
    assert list(again["label"]) == list(live["label"])
    assert again["score"].to_numpy() == pytest.approx(live["score"].to_numpy(), abs=1e-6)
    held = _data(tokenizer, 16, seed=4)
    assert back.evaluate(held)["loss"] == pytest.approx(cb.run.evaluate(held)["loss"], abs=1e-6)
    pd_texts = [(t, i % 2) for i, t in enumerate(random_texts(8, seed=5))]
    assert back.evaluate(pd_texts)["loss"] == pytest.approx(cb.run.evaluate(pd_texts)["loss"], abs=1e-6)
