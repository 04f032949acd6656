"""Learning-rate range test: curve, divergence stop, suggestion, model restored, curve on disk."""

from __future__ import annotations

import json
import random

import datasets
import pytest
import torch

from nbkit.core.config import ConfigError
from nbkit.core.train.lr_find import lr_find, suggest_lr
from nbkit.testing import WORDS, tiny_bert


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
    from nbkit.figures import lr_find_figure

    fig = lr_find_figure(res)
    assert fig.layout.xaxis.type == "log" and len(fig.data) == 2


def test_suggestion_is_the_steepest_descent_capped_below_the_minimum():
    lrs = [10 ** (-6 + i * 0.25) for i in range(25)]  # 1e-6 .. 1, four points a decade
    # flat, one steep fall into index 10, a gentle slope down to the minimum at 16, then divergence
    smoothed = [1.0] * 10 + [0.5] + [0.5 - 0.01 * k for k in range(1, 7)] + [0.6, 1.0, 2.0, 4.0, 8.0, 9.0, 9.5, 9.9]
    assert smoothed.index(min(smoothed)) == 16
    assert suggest_lr(lrs, smoothed) == pytest.approx(lrs[10])  # below the cap lrs[16] / 10 == lrs[12]
    # the same fall at index 15: steeper than anything, but a tenth of the minimum's rate is the cap
    late = [1.0] * 15 + [0.45, 0.44, 0.8, 2.0, 5.0, 9.0, 9.0, 9.0, 9.0, 9.0]
    assert suggest_lr(lrs, late) == pytest.approx(lrs[16] / 10)
    assert suggest_lr(lrs[:3], smoothed[:3]) is None  # too short to say anything


def test_bad_ranges_are_rejected(tmp_path):
    model, tok = tiny_bert()
    with pytest.raises(ConfigError, match="start_lr < end_lr"):
        lr_find(model, topic_data(16), tokenizer=tok, start_lr=1.0, end_lr=1e-3, progress=False)
    with pytest.raises(ConfigError, match="num_steps"):
        lr_find(model, topic_data(16), tokenizer=tok, num_steps=2, progress=False)


def test_lr_find_leaves_no_trace(tmp_path):
    import numpy as np

    model, tok = tiny_bert()
    model.eval()
    model.bert.embeddings.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    lr_find(model, topic_data(64), tokenizer=tok, num_steps=12, run_dir=tmp_path / "lr", progress=False)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    assert not model.training and not any(m.training for m in model.modules())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
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
