"""nbkit.core.suggest: the one did-you-mean, and the Python twins rejecting unknown keyword arguments
with one line that lists the valid ones (as the magics do), before any work starts."""

from __future__ import annotations

import datasets
import pytest
import torch

import nbkit
from nbkit.core.config import ArgumentError, ConfigError
from nbkit.core.suggest import check_kwargs, closest, did_you_mean
from nbkit.testing import random_texts, tiny_bert

torch.set_num_threads(1)


@pytest.mark.parametrize(("value", "choices", "want"), [
    ("lrate", ["epochs", "lr", "seed"], "lr"),  # a prefix beats difflib's ratio for short keys
    ("epoch", ["epochs", "lr"], "epochs"),
    ("eval_acc", ["eval_loss", "eval_accuracy", "loss"], "eval_accuracy"),
    ("Text", ["label", "text"], "text"),  # case
    ("optimiser", ["optimizer", "scheduler"], "optimizer"),
    ("zzz", ["epochs", "lr"], None),
    ("x", ["xavier", "lr"], None),  # one letter is no prefix guess
])
def test_closest(value, choices, want):
    assert closest(value, choices) == want


def test_did_you_mean_template():
    assert did_you_mean("epoch", ["epochs"]) == " (did you mean 'epochs'?)"
    assert did_you_mean("df2", ["df", "model"], " (did you mean ${}?)") == " (did you mean $df?)"
    assert did_you_mean("zzz", ["epochs"]) == ""


def test_no_module_outside_the_suggest_module_calls_difflib():
    """One place per rule (STYLE 18): every did-you-mean goes through nbkit.core.suggest."""
    from pathlib import Path

    root = Path(nbkit.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "difflib" in p.read_text())
    assert users == ["core/suggest.py"]


def test_check_kwargs_renames_aliases_and_rejects_the_rest():
    @check_kwargs(aliases={"learning_rate": "lr"}, meant={"rate": "lr"})
    def train(model, *, lr=1.0, epochs=1):
        return lr, epochs

    assert train("m", learning_rate=0.5) == (0.5, 1)
    with pytest.raises(ArgumentError) as err:
        train("m", rate=3)
    assert str(err.value) == "train(): unknown argument 'rate'; did you mean 'lr'? valid: model, lr, epochs"
    with pytest.raises(ArgumentError, match="'learning_rate' and 'lr' are the same option; give one: lr"):
        train("m", lr=1, learning_rate=2)
    assert isinstance(err.value, TypeError) and isinstance(err.value, ConfigError)


def _twins(tmp_path):
    model, tok = tiny_bert()
    ds = datasets.Dataset.from_dict({"text": random_texts(8), "label": [0, 1] * 4})
    return [
        (lambda: nbkit.show_attention(model, tok, "a b c", decoder_text="x"), "show_attention", "target"),
        (lambda: nbkit.capture_attention(model, tok, "a b c", decoder_text="x"), "capture_attention", "target"),
        (lambda: nbkit.fit(model, ds, tokenizer=tok, run_dir=tmp_path / "r", epoch=2), "fit", "epochs"),
        (lambda: nbkit.lr_find(model, ds, tokenizer=tok, num_step=5), "lr_find", "num_steps"),
        (lambda: nbkit.finetune(model=(model, tok), data=ds, run_dir=tmp_path / "r", epoch=1), "finetune",
         "epochs"),
        (lambda: nbkit.load_model("minilm", num_classes=3), "load_model", "num_labels"),
        (lambda: nbkit.load_data(ds, text_column="text"), "load_data", "text"),
        (lambda: nbkit.compare([tmp_path], metrc="loss"), "compare", "metric"),
        (lambda: nbkit.fit(model, ds, tokenizer=tok, run_dir=tmp_path / "r", bf16=True), "fit", "precision"),
    ]


def test_python_twins_reject_unknown_keywords_in_one_line_before_any_work(tmp_path):
    import inspect

    for call, name, meant in _twins(tmp_path):
        with pytest.raises(ArgumentError) as err:
            call()
        message = str(err.value)
        assert message.startswith(f"{name}(): unknown argument "), message
        assert f"; did you mean {meant!r}? valid: " in message, message
        assert "\n" not in message
        valid = message.split(" valid: ")[1].split(", ")
        own = [p for p in inspect.signature(getattr(nbkit, name)).parameters
               if p not in ("capture", "options")]
        assert set(own) <= set(valid), name
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written


def test_show_attention_lists_what_capture_takes():
    model, tok = tiny_bert()
    with pytest.raises(ArgumentError) as err:
        nbkit.show_attention(model, tok, "a b", decoder_text="x")
    valid = str(err.value).split(" valid: ")[1].split(", ")
    assert valid == ["model", "tokenizer", "text", "text_pair", "view", "layer", "head", "kind", "top_k",
                     "compare", "source", "layers", "target", "max_new_tokens", "truncate", "chat", "max_memory"]
    widget = nbkit.show_attention(model, tok, "a b", layers=[0])  # a capture option still passes on
    assert widget.info["layers"] == [0]


def test_fit_takes_trainer_names_as_aliases(tmp_path):
    model, tok = tiny_bert()
    ds = datasets.Dataset.from_dict({"text": random_texts(16), "label": [0, 1] * 8})
    run = nbkit.fit(model, ds, tokenizer=tok, learning_rate=3e-4, num_train_epochs=2,
                    per_device_train_batch_size=8, warmup_ratio=0.25, run_dir=tmp_path / "r", progress=False)
    assert (run.config["lr"], run.config["epochs"], run.config["batch_size"], run.config["warmup"]) == (
        3e-4, 2, 8, 0.25)
    assert run.history["step"].max() == 4  # 16 rows / 8 per batch x 2 epochs
    assert "learning_rate" not in run.config
