"""nbkit.finetune (the Python twin of %%finetune), the worker process and the CLI, on a tiny model
folder and CSV data; plus the real thing: MiniLM on the bundled sentiment data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import nbkit
from nbkit.core.config import ConfigError
from nbkit.testing import WORDS, save_tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A saved tiny BERT and a CSV with string labels."""
    root = tmp_path_factory.mktemp("ft")
    model_dir = save_tiny_model(root / "model", kind="bert")
    rows = []
    for i in range(96):
        label = "pos" if i % 2 else "neg"
        words = WORDS[20:60] if label == "neg" else WORDS[60:100]
        rows.append({"review": " ".join(words[(i * 7 + k) % 40] for k in range(3 + i % 20)), "stars": label})
    csv = root / "reviews.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return model_dir, csv


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def test_finetune_labels_travel_to_the_model_and_run_dir(tiny_setup, tmp_path):
    model_dir, csv = tiny_setup
    run = nbkit.finetune(str(model_dir), str(csv), text="review", label="stars", epochs=2, batch_size=16,
                         lr=3e-3, metrics=["accuracy"], run_dir=tmp_path / "run", progress=False)
    assert run.status == "finished"
    assert run.model.config.id2label == {0: "neg", 1: "pos"}
    assert set(run.predict(["anything at all"])["label"]) <= {"neg", "pos"}
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"] == str(model_dir) and saved["text"] == "review" and saved["label"] == "stars"
    assert saved["epochs"] == 2 and saved["metrics"] == ["accuracy"]
    assert "eval_accuracy" in run.metrics


def test_finetune_rejects_bad_config_before_loading_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        nbkit.finetune("minilm", "sentiment", epoch=3)
    assert list(tmp_path.iterdir()) == []


def test_finetune_resume_continues_from_the_run_dir(tiny_setup, tmp_path):
    model_dir, csv = tiny_setup

    def stop_at_4(event, run):
        if event.kind == "step" and event.step == 4:
            run.stop()

    first = nbkit.finetune(str(model_dir), str(csv), text="review", label="stars", epochs=2, batch_size=16,
                           run_dir=tmp_path / "r", callbacks=[stop_at_4], progress=False)
    assert first.status == "stopped"
    resumed = nbkit.finetune(resume_from=tmp_path / "r", progress=False)
    assert resumed.status == "finished"
    assert list(resumed.history["step"]) == list(range(1, resumed.history["step"].max() + 1))
    assert resumed.history["step"].max() == first.events[0].total_steps


def test_worker_process_runs_a_config_in_its_run_dir(tiny_setup, tmp_path):
    model_dir, csv = tiny_setup
    run_dir = tmp_path / "w"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"model": str(model_dir), "data": str(csv), "text": "review", "label": "stars", "epochs": 1,
         "batch_size": 32}))
    proc = subprocess.run([sys.executable, "-m", "nbkit.core.train.worker", str(run_dir)], env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = nbkit.Run.load(run_dir)
    assert run.status == "finished" and run.history["step"].max() == 3  # 86 train rows / 32


def test_cli_finetune_with_overrides_writes_report(tiny_setup, tmp_path):
    model_dir, csv = tiny_setup
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {model_dir}\ndata: {csv}\ntext: review\nlabel: stars\nepochs: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "nbkit.cli", "finetune", str(cfg), "--set", "epochs=1", "--set", "lr=1e-3",
         "--run-dir", str(tmp_path / "cli"), "--no-progress"],
        env=env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "status: finished" in proc.stdout and "report: " in proc.stdout
    assert (tmp_path / "cli" / "report.html").exists()
    saved = yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["lr"] == 1e-3


@pytest.mark.parametrize(
    ("body", "sets", "needle"),
    [
        ("model: minilm\nepoch: 3\n", [], "unknown key 'epoch' (did you mean 'epochs'?)"),
        ("model: minilm\n", ["lr=-1"], "'lr' must be a number > 0"),
        ("model: [unclosed\n", [], "is not valid YAML"),
        ("- just\n- a list\n", [], "must be a mapping of config keys"),
        ("model: minilm\n", ["lr"], "--set expects key=value"),
    ],
)
def test_cli_bad_config_is_one_line_and_writes_nothing(tmp_path, body, sets, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(body)
    args = [sys.executable, "-m", "nbkit.cli", "finetune", str(cfg)]
    for s in sets:
        args += ["--set", s]
    proc = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_cli_help_lists_every_config_key():
    proc = subprocess.run([sys.executable, "-m", "nbkit.cli", "finetune", "--help"], env=env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for key in ("model", "data", "epochs", "lr", "batch_size", "group_by_length", "early_stopping"):
        assert f"\n  {key} " in proc.stdout


@pytest.mark.slow
def test_minilm_on_the_sample_data_beats_85_percent(tmp_path):
    """The claim `make demo` makes, with the demo's own config (shorter texts to fit the budget)."""
    import torch

    config = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    try:
        run = nbkit.finetune(config={**config, "max_length": 64, "run_dir": str(tmp_path / "minilm")},
                             progress=False)
    finally:
        torch.set_num_threads(1)
    assert run.status == "finished"
    assert run.metrics["test_accuracy"] > 0.85


# --- label names: the model's and the data's (issue 12, scenario 3 / Build 3) ----------------------


def _labelled_frame(n: int = 48) -> pd.DataFrame:
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = WORDS[20:60] if label == "neg" else WORDS[60:100]
        rows.append({"text": " ".join(words[(i * 7 + k) % 40] for k in range(3 + i % 9)), "label": label})
    return pd.DataFrame(rows)


def _predicted_names(model, tokenizer, texts):
    import torch

    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    return [model.config.id2label[int(k)] for k in logits.argmax(-1)]


def test_a_models_own_label_order_wins_and_predictions_after_reload_are_not_swapped(tmp_path):
    from nbkit.testing import tiny_bert

    model, tok = tiny_bert()
    model.config.id2label, model.config.label2id = {0: "pos", 1: "neg"}, {"pos": 0, "neg": 1}
    folder = tmp_path / "pos-first"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    df = _labelled_frame()
    texts = list(df["text"][:16])
    before = _predicted_names(model, tok, texts)
    # lr so small the weights stay put: the head's row 0 still means "pos" after training.
    run = nbkit.finetune(str(folder), df, max_steps=1, lr=1e-12, batch_size=8, eval_split=0.2,
                         run_dir=tmp_path / "run", progress=False)
    assert run.status == "finished"
    reloaded = nbkit.Run.load(tmp_path / "run")
    assert reloaded.model.config.id2label == {0: "pos", 1: "neg"}
    assert list(reloaded.predict(texts)["label"]) == before


def test_data_follows_the_models_ids_and_a_generic_head_takes_the_datas_names():
    from nbkit.core.train.finetune import prepare, resolve_config
    from nbkit.testing import tiny_bert

    df = _labelled_frame()
    model, tok = tiny_bert()
    model.config.id2label = {0: "pos", 1: "neg"}
    data, _, _ = prepare(resolve_config(model=(model, tok), data=df, eval_split=0))
    assert data["train"].features["label"].names == ["pos", "neg"]
    ids = dict(zip(data["train"]["text"], data["train"]["label"], strict=True))
    assert ids == {t: (0 if y == "pos" else 1) for t, y in zip(df["text"], df["label"], strict=True)}
    generic, tok = tiny_bert()  # LABEL_0, LABEL_1
    prepare(resolve_config(model=(generic, tok), data=df, eval_split=0))
    assert generic.config.id2label == {0: "neg", 1: "pos"} and generic.config.label2id == {"neg": 0, "pos": 1}


def test_a_model_with_other_label_names_is_an_error_naming_both():
    from nbkit.core.models import ModelError
    from nbkit.core.train.finetune import prepare, resolve_config
    from nbkit.testing import tiny_bert

    model, tok = tiny_bert()
    model.config.id2label = {0: "NEGATIVE", 1: "POSITIVE"}
    with pytest.raises(ModelError) as err:
        prepare(resolve_config(model=(model, tok), data=_labelled_frame()))
    assert str(err.value).startswith("the model's labels (NEGATIVE, POSITIVE) are not the data's (neg, pos)")
    assert "model.config.id2label = {0: 'neg', 1: 'pos'}" in str(err.value)
    three, tok = tiny_bert(num_labels=3)
    with pytest.raises(ModelError, match=r"the model's head has 3 classes \(3 unnamed classes\) but the data has 2"):
        prepare(resolve_config(model=(three, tok), data=_labelled_frame()))


def test_a_model_object_is_trained_in_place_and_says_so(tmp_path, capsys):
    # Issue 12, Build 9: `model: $model` / finetune(model=(model, tok)) across a sweep.
    from nbkit.testing import tiny_bert

    model, tok = tiny_bert()
    df = _labelled_frame()
    first = nbkit.finetune((model, tok), df, max_steps=1, batch_size=8, name="a", run_dir=tmp_path / "a",
                           progress=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("nbkit: training your BertForSequenceClassification in place (run.model is that "
                      "object); for a fresh start each run, load it again or pass a copy (copy.deepcopy)")
    assert first.model is model
    nbkit.finetune((model, tok), df, max_steps=1, batch_size=8, name="b", run_dir=tmp_path / "b", progress=False)
    assert capsys.readouterr().out.splitlines()[0] == (
        "nbkit: training your BertForSequenceClassification in place (run.model is that object); it was "
        "already trained by run 'a', so this run starts from those weights; for a fresh start each run, "
        "load it again or pass a copy (copy.deepcopy)")
