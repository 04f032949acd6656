"""Learning-rate range test: curve, divergence stop, suggestion, model restored, curve on disk."""

from __future__ import annotations

import json
import random

import datasets
import pytest
import torch

from nbkit.core.config import ConfigError
from nbkit.testing import WORDS, tiny_bert
from nbkit.core.train.lr_find import lr_find, suggest_lr


def topic_data(n=160):
    rng = random.Random(0)
    labels = [i % 2 for i in range(n)]
    texts = [" ".join(rng.choices((WORDS[20:60], WORDS[60:100])[y], k=rng.randint(3, 30))) for y in labels]
    return datasets.Dataset.from_dict({"text": texts, "label": labels})


def test_lr_find_restores_model_suggests_a_rate_and_saves_curve(tmp_path):
    model, tok = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    res = lr_find(model, topic_data(), tokenizer=tok, num_steps=60, end_lr=10.0, run_dir=tmp_path / "lr",
                  callbacks=[lambda e, r: seen.append(e.kind)], progress=False)
    assert res.stopped_early  # lr 10 diverges long before the 60th step
    assert len(res.lrs) < 60 and res.lrs == sorted(res.lrs)
    assert res.lrs[0] == pytest.approx(1e-7)
    assert 1e-4 < res.suggestion < 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    saved = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert saved["suggestion"] == res.suggestion and len(saved["losses"]) == len(res.lrs)
    assert seen[0] == "run_start" and seen[-1] == "run_end" and seen.count("step") == len(res.lrs)
    fig = res.figure()
    assert fig.layout.xaxis.type == "log" and len(fig.data) == 2


def test_suggestion_is_the_steepest_descent_capped_below_the_minimum():
    lrs = [10 ** (-6 + i * 0.25) for i in range(25)]  # 1e-6 .. 1
    # flat, then a fall between 1e-3 and 1e-2, minimum at 0.1, then divergence
    smoothed = [1.0 if lr < 1e-3 else (0.2 if lr >= 0.05 else 1.0 - 0.8 * (lr - 1e-3) / 0.049) for lr in lrs]
    smoothed[-3:] = [0.5, 2.0, 9.0]
    sug = suggest_lr(lrs, smoothed)
    assert sug == pytest.approx(lrs[smoothed.index(min(smoothed))] / 10) or 1e-3 <= sug <= 0.05
    assert suggest_lr(lrs[:3], smoothed[:3]) is None  # too short to say anything


def test_bad_ranges_are_rejected(tmp_path):
    model, tok = tiny_bert()
    with pytest.raises(ConfigError, match="start_lr < end_lr"):
        lr_find(model, topic_data(16), tokenizer=tok, start_lr=1.0, end_lr=1e-3, progress=False)
    with pytest.raises(ConfigError, match="num_steps"):
        lr_find(model, topic_data(16), tokenizer=tok, num_steps=2, progress=False)


def test_texts_longer_than_the_models_positions_are_cut_with_a_note(tmp_path, capsys):
    model, tok = tiny_bert(max_positions=16)
    tok.model_max_length = int(1e30)  # only the model's position table knows
    rng = random.Random(1)
    data = datasets.Dataset.from_dict({"text": [" ".join(rng.choices(WORDS, k=40)) for _ in range(32)],
                                       "label": [i % 2 for i in range(32)]})
    res = lr_find(model, data, tokenizer=tok, num_steps=5, batch_size=8, max_length=64, run_dir=tmp_path / "lr",
                  progress=False)
    assert len(res.lrs) == 5
    assert capsys.readouterr().out.splitlines()[0] == (
        "nbkit: max_length 64 is more than BertForSequenceClassification takes (16 positions): texts are "
        "cut to 16 tokens")
