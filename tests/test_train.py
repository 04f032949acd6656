"""nbkit.fit end to end on tiny models: inputs it accepts, events, run directory, stop/pause/interrupt,
resume equivalence, a killed run, and the errors bad input gets before training starts."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time

import datasets
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nbkit.core.config import ConfigError
from nbkit.core.train import Run, fit
from nbkit.core.train.batching import DataError
from nbkit.core.train.checkpoints import load_weights
from nbkit.testing import WORDS, random_texts, tiny_bert


def length_data(n=96, seed=1):
    """An easily learnt task: class 0 texts use one half of a vocabulary, class 1 the other."""
    rng = random.Random(seed)
    halves = (WORDS[20:60], WORDS[60:100])
    labels = [i % 2 for i in range(n)]
    texts = [" ".join(rng.choices(halves[y], k=rng.randint(3, 30))) for y in labels]
    return datasets.Dataset.from_dict({"text": texts, "label": labels})


def kinds(run):
    return [e.kind for e in run.events]


def test_fit_hf_model_on_raw_text_learns_and_writes_run_dir(tmp_path):
    model, tok = tiny_bert()
    train, ev = length_data(160), length_data(48, seed=2)
    run = fit(model, train, ev, tokenizer=tok, epochs=4, batch_size=16, lr=3e-3, metrics=["accuracy", "f1"],
              run_dir=tmp_path / "run", progress=False)
    assert run.status == "finished"
    h = run.history
    assert list(h["step"]) == list(range(1, 41))  # 160/16 = 10 steps x 4 epochs
    assert h["loss"].iloc[-10:].mean() < h["loss"].iloc[:10].mean()
    assert run.metrics["eval_accuracy"] >= 0.75
    from sklearn.metrics import accuracy_score, f1_score

    names = run.label_names  # the tiny model's LABEL_0, LABEL_1: ids by position
    predicted = [names.index(x) for x in run.predict(ev["text"])["label"]]  # the final model, scored apart
    assert run.metrics["eval_f1"] == pytest.approx(f1_score(ev["label"], predicted, average="macro"))
    assert run.metrics["eval_accuracy"] == pytest.approx(accuracy_score(ev["label"], predicted))
    ks = kinds(run)
    assert ks[0] == "run_start" and ks[-1] == "run_end"
    assert ks.count("step") == 40 and ks.count("epoch") == 4 and ks.count("eval") == 4
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == ks
    assert (tmp_path / "run" / "config.yaml").read_text().count("lr: 0.003") == 1
    # last and best only; the best folder is a from_pretrained-able Hugging Face folder
    folders = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.is_dir())
    assert set(folders) == {run.best_checkpoint.name, run.last_checkpoint.name}
    assert run.last_checkpoint.name == "step-0000040"
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(run.last_checkpoint)
    for a, b in zip(reloaded.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b.detach().cpu())
    pred = run.predict(["the a of and to", " ".join(["word"] * 30)])
    assert list(pred.columns[:3]) == ["text", "label", "score"]
    assert pred["score"].between(0.5, 1).all()


def test_step_events_carry_throughput_and_lr_schedule(tmp_path):
    model, tok = tiny_bert()
    run = fit(model, length_data(64), tokenizer=tok, epochs=1, batch_size=16, lr=1e-3, warmup=0.5,
              run_dir=tmp_path / "r", progress=False)
    steps = [e for e in run.events if e.kind == "step"]
    assert len(steps) == 4
    assert all(s.samples_per_s > 0 and s.tokens_per_s > 0 for s in steps)
    lrs = [s.lr for s in steps]
    assert lrs[0] < lrs[1] and lrs[-1] == pytest.approx(0.0)  # warm-up, then linear decay to 0


def test_plain_module_with_tuple_batches_and_loss_fn(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    run = fit(model, TensorDataset(x, y), TensorDataset(x[:64], y[:64]),
              loss_fn=torch.nn.functional.cross_entropy, epochs=5, batch_size=32, lr=0.05,
              metrics=["accuracy"], run_dir=tmp_path / "m", progress=False)
    assert run.status == "finished"
    assert run.metrics["eval_accuracy"] > 0.9
    assert (run.last_checkpoint / "model.safetensors").exists()
    assert not (run.last_checkpoint / "config.json").exists()
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    load_weights(fresh, run.last_checkpoint)
    assert torch.equal(fresh[0].weight, model[0].weight.detach())


def test_user_dataloader_and_dict_batches_with_loss_fn(tmp_path):
    model, tok = tiny_bert()
    enc = tok(random_texts(32), padding="max_length", max_length=48, truncation=True, return_tensors="pt")
    rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
             "labels": torch.tensor(i % 2)} for i in range(32)]
    loader = DataLoader(rows, batch_size=8)
    calls = []

    def loss_fn(logits, labels):
        calls.append(logits.shape)
        return torch.nn.functional.cross_entropy(logits, labels)

    run = fit(model, loader, loss_fn=loss_fn, epochs=1, run_dir=tmp_path / "d", progress=False)
    assert run.status == "finished" and len(calls) == 4 and calls[0] == (8, 2)


def test_pretokenized_dataset_and_user_metric(tmp_path):
    model, tok = tiny_bert()
    ds = length_data(64).map(lambda b: tok(b["text"], truncation=True), batched=True).remove_columns("text")

    def always_half(preds, labels):
        return 0.5

    run = fit(model, ds, ds, epochs=1, batch_size=16, metrics=[always_half, "accuracy"],
              run_dir=tmp_path / "t", progress=False)
    assert run.metrics["eval_always_half"] == 0.5
    assert "eval_accuracy" in run.metrics


def test_causal_lm_gets_perplexity(tmp_path):
    from nbkit.testing import tiny_gpt2

    model, tok = tiny_gpt2()
    ds = datasets.Dataset.from_dict({"text": random_texts(48)})
    run = fit(model, ds, ds.select(range(16)), tokenizer=tok, epochs=1, batch_size=16, lr=1e-3,
              metrics=["perplexity", "accuracy"], run_dir=tmp_path / "lm", progress=False)
    m = run.metrics
    assert m["eval_perplexity"] == pytest.approx(math.exp(m["eval_loss"]), rel=1e-6)
    # next-token accuracy over the real (unpadded) tokens, computed here independently
    enc = tok(list(ds.select(range(16))["text"]), padding=True, truncation=True, max_length=256, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        pred = model(**enc).logits[:, :-1].argmax(-1)  # (B, T-1): the guess for each next token
    target, real = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:].bool()
    assert m["eval_accuracy"] == pytest.approx(float((pred == target)[real].float().mean()), abs=1e-6)


def test_grad_accum_counts_optimizer_steps(tmp_path):
    model, tok = tiny_bert()
    run = fit(model, length_data(80), tokenizer=tok, epochs=1, batch_size=8, grad_accum=3,
              run_dir=tmp_path / "ga", progress=False)
    steps = [e for e in run.events if e.kind == "step"]
    assert len(steps) == 4  # 10 batches -> ceil(10 / 3)
    assert run.events[0].effective_batch_size == 24


def test_observer_can_stop_at_a_step_boundary(tmp_path):
    model, tok = tiny_bert()

    def stop_at_3(event, run):
        if event.kind == "step" and event.step == 3:
            run.stop("enough")

    run = fit(model, length_data(96), tokenizer=tok, epochs=3, batch_size=16, callbacks=[stop_at_3],
              run_dir=tmp_path / "s", progress=False)
    assert run.status == "stopped"
    assert run.history["step"].max() == 3
    assert run.last_checkpoint.name == "step-0000003"
    assert run.events[-1].kind == "run_end" and run.events[-1].message == "enough"


def test_keyboard_interrupt_stops_cleanly_with_one_line(tmp_path, capsys):
    model, tok = tiny_bert()

    def interrupt(event, run):
        if event.kind == "step" and event.step == 2:
            raise KeyboardInterrupt

    run = fit(model, length_data(96), tokenizer=tok, epochs=2, batch_size=16, callbacks=[interrupt],
              run_dir=tmp_path / "k", progress=False)
    assert run.status == "stopped"
    assert run.last_checkpoint.name == "step-0000002"
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "stopped at step 2" in out[0] and "Traceback" not in out[0]
    saved = Run.load(tmp_path / "k")
    assert saved.status == "stopped" and saved.history["step"].max() == 2


def test_sigint_during_blocking_fit_becomes_a_stop(tmp_path, capsys):
    model, tok = tiny_bert()

    def send_sigint(event, run):
        if event.kind == "step" and event.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # what the notebook's stop square does to the kernel

    run = fit(model, length_data(96), tokenizer=tok, epochs=2, batch_size=16, callbacks=[send_sigint],
              run_dir=tmp_path / "i", progress=False)
    assert run.status == "stopped" and run.history["step"].max() == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_resume_matches_uninterrupted_run(tmp_path):
    train = length_data(100)
    opts = dict(tokenizer=None, epochs=3, batch_size=8, lr=1e-3, progress=False)  # dropout is on
    m1, tok = tiny_bert()
    opts["tokenizer"] = tok
    full = fit(m1, train, run_dir=tmp_path / "full", **opts)

    def stop_at(event, run):
        if event.kind == "step" and event.step == 17:  # mid-way through the second epoch
            run.stop()

    m2, _ = tiny_bert()
    part = fit(m2, train, run_dir=tmp_path / "part", callbacks=[stop_at], **opts)
    assert part.status == "stopped"
    m3, _ = tiny_bert()
    resumed = fit(m3, train, resume_from=tmp_path / "part", **opts)
    assert resumed.status == "finished"
    assert list(resumed.history["step"]) == list(range(1, 40))
    for a, b in zip(m1.parameters(), m3.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(full.history["loss"].values), torch.tensor(resumed.history["loss"].values))


def test_background_run_stop_pause_resume(tmp_path):
    import threading

    model, tok = tiny_bert()
    paused = threading.Event()

    def driver(event, run):  # acts from inside the training thread, at exact steps
        if event.kind == "step" and event.step == 5:
            run.pause()
            paused.set()
        elif event.kind == "step" and event.step == 8:
            run.stop()

    run = fit(model, length_data(320), tokenizer=tok, epochs=5, batch_size=8, callbacks=[driver],
              run_dir=tmp_path / "bg", background=True, progress=False)
    assert paused.wait(60)
    assert run.status == "paused" and run.control.paused
    time.sleep(0.3)  # while paused nothing moves (no false failure: a paused loop cannot step)
    assert run.history["step"].max() == 5
    run.resume()
    run.wait(60)
    assert run.status == "stopped" and run.history["step"].max() == 8
    assert run.last_checkpoint.name == "step-0000008"


def test_early_stopping_ends_run_as_finished(tmp_path):
    model, tok = tiny_bert()
    run = fit(model, length_data(64), length_data(32, seed=3), tokenizer=tok, epochs=30, batch_size=16,
              lr=0.5, optimizer="sgd", early_stopping=2, run_dir=tmp_path / "es", progress=False)
    assert run.status == "finished"
    assert "early stopping" in run.events[-1].message
    assert run.history["step"].max() < 30 * 4


def test_one_nan_loss_skips_that_step_and_training_goes_on(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    model = torch.nn.Linear(3, 1)
    calls = {"n": 0}
    seen = {}

    def loss_fn(out, target):
        calls["n"] += 1
        loss = torch.nn.functional.mse_loss(out, target)
        return loss * float("nan") if calls["n"] == 7 else loss

    def watch(event, run):  # the weights just before and after the bad step
        if event.kind == "step" and event.step in (6, 7):
            seen[event.step] = [p.detach().clone() for p in model.parameters()]

    run = fit(model, TensorDataset(x, y), loss_fn=loss_fn, epochs=2, batch_size=16,
              run_dir=tmp_path / "nan", progress=False, callbacks=[watch])
    assert run.status == "finished"
    h = run.history.set_index("step")
    assert math.isnan(h.loc[7, "loss"]) and h["loss"].drop(7).notna().all()
    assert all(torch.equal(a, b) for a, b in zip(seen[6], seen[7], strict=True))  # step 7 left them alone
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_losses_in_a_row_fail_with_step_and_keep_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    model = torch.nn.Linear(3, 1)
    calls = {"n": 0}

    def loss_fn(out, target):
        calls["n"] += 1
        loss = torch.nn.functional.mse_loss(out, target)
        return loss * float("nan") if calls["n"] >= 7 else loss

    run = fit(model, TensorDataset(x, y), loss_fn=loss_fn, epochs=30, batch_size=16,
              run_dir=tmp_path / "nan", progress=False)
    assert run.status == "failed"
    msg = run.events[-1].message
    assert re.search(r"not finite for \d+ steps in a row \(up to step \d+\)", msg), msg
    assert "lower learning rate" in msg
    assert run.history["step"].max() < 120  # it did not train on to the end
    assert all(torch.isfinite(p).all() for p in model.parameters())
    from safetensors.torch import load_file

    saved = load_file(run.last_checkpoint / "model.safetensors")  # every checkpoint is finite too
    assert all(torch.isfinite(v).all() for v in saved.values())


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        (dict(batch_size=0), ConfigError, "'batch_size' must be an integer >= 1"),
        (dict(optimizer="adamx"), ConfigError, "adamw, adam, sgd"),
        (dict(scheduler="cosin"), ConfigError, "did you mean 'cosine'"),
        (dict(metrics=["acc"]), ConfigError, "accuracy, f1, perplexity"),
        (dict(lr=-1.0), ConfigError, "'lr' must be a number > 0"),
        (dict(precision="fp8"), ConfigError, "auto, fp32, bf16, fp16"),
    ],
)
def test_bad_options_fail_before_training(tmp_path, kwargs, error, needle):
    model, tok = tiny_bert()
    with pytest.raises(error, match=needle.replace("(", r"\(")):
        fit(model, length_data(16), tokenizer=tok, run_dir=tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_bad_data_fails_before_training(tmp_path):
    model, tok = tiny_bert()
    with pytest.raises(DataError, match="empty"):
        fit(model, length_data(16).select([]), tokenizer=tok, run_dir=tmp_path / "a", progress=False)
    bad_text = datasets.Dataset.from_dict({"text": ["fine", None, "ok"], "label": [0, 1, 0]})
    with pytest.raises(DataError, match="row 1"):
        fit(model, bad_text, tokenizer=tok, run_dir=tmp_path / "b", progress=False)
    out_of_range = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 5]})
    with pytest.raises(DataError, match="label 5 is out of range for a model with 2 labels"):
        fit(model, out_of_range, tokenizer=tok, run_dir=tmp_path / "c", progress=False)
    with pytest.raises(DataError, match="pass tokenizer"):
        fit(model, length_data(16), run_dir=tmp_path / "d", progress=False)
    with pytest.raises(ConfigError, match="loss_fn"):
        fit(torch.nn.Linear(2, 2), TensorDataset(torch.randn(4, 2), torch.zeros(4).long()),
            run_dir=tmp_path / "e", progress=False)
    assert not any((tmp_path / d).exists() for d in "abcde")


def test_model_without_loss_gets_a_clear_error(tmp_path):
    model, tok = tiny_bert()
    unlabeled = datasets.Dataset.from_dict({"text": random_texts(8)})
    run_dir = tmp_path / "nl"
    with pytest.raises(ConfigError, match="returned no loss"):
        fit(model, unlabeled, tokenizer=tok, run_dir=run_dir, progress=False)


KILLED_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch, datasets
    torch.set_num_threads(1)
    from nbkit.testing import tiny_bert, random_texts
    from nbkit.core.train import fit
    texts = random_texts(400, seed=1)
    ds = datasets.Dataset.from_dict({"text": texts, "label": [len(t) % 2 for t in texts]})
    model, tok = tiny_bert()
    slow = lambda e, r: time.sleep(0.05) if e.kind == "step" else None
    fit(model, ds, ds.select(range(16)), tokenizer=tok, epochs=20, batch_size=8, eval_every=5,
        run_dir=sys.argv[1], callbacks=[slow], progress=False)
    """
)


def test_killed_run_leaves_readable_log_and_loadable_checkpoint(tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SCRIPT, str(run_dir)])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            idx = run_dir / "checkpoints" / "index.json"
            if idx.exists() and json.loads(idx.read_text()).get("last", "") >= "step-0000010":
                break
            time.sleep(0.1)
        else:
            pytest.fail("the child run never wrote its second checkpoint")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    run = Run.load(run_dir)
    assert run.status == "interrupted"
    assert run.history["step"].max() >= 10
    assert "eval_loss" in run.history
    # index.json only ever names a complete checkpoint (a .tmp-* folder may be mid-write)
    assert {"model.safetensors", "training_state", "trainer_state.json"} <= {
        p.name for p in run.last_checkpoint.iterdir()}
    assert {"optimizer.bin", "random_states_0.pkl", "scheduler.pt"} <= {
        p.name for p in (run.last_checkpoint / "training_state").iterdir()}
    model = run.model  # rebuilt from the last complete checkpoint
    assert type(model).__name__ == "BertForSequenceClassification"
    from nbkit.core.models import load_model

    loaded, tok = load_model(str(run.last_checkpoint))
    assert tok is not None and loaded.config.num_labels == 2


def test_texts_longer_than_the_models_positions_are_cut_with_a_note(tmp_path, capsys):
    # Issue 12, scenario 4: 80-word texts, a model with 32 positions and a tokenizer that does not
    # know it; before, step 1 failed inside the model ("The size of tensor a (82) must match ... (32)").
    model, tok = tiny_bert(max_positions=32)
    tok.model_max_length = int(1e30)
    rng = random.Random(0)
    rows = {"text": [" ".join(rng.choices(WORDS, k=80)) for _ in range(16)], "label": [i % 2 for i in range(16)]}
    data = datasets.Dataset.from_dict(rows)
    run = fit(model, data, tokenizer=tok, batch_size=8, max_length=300, run_dir=tmp_path / "r", progress=False)
    assert run.status == "finished" and run.history["step"].tolist() == [1, 2]
    assert capsys.readouterr().out.splitlines()[0] == (
        "nbkit: max_length 300 is more than BertForSequenceClassification takes (32 positions): texts are "
        "cut to 32 tokens")
    assert run.config["max_length"] == 32
    default = fit(model, data, tokenizer=tok, batch_size=8, max_steps=1, run_dir=tmp_path / "d", progress=False)
    assert default.status == "finished" and default.config["max_length"] == 32  # the default follows quietly
    assert "max_length" not in capsys.readouterr().out
    enc = tok(rows["text"][:1], truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        expected = run.model.eval()(**enc).logits.softmax(-1)[0]  # (C,)
    predicted = run.predict(rows["text"][:1])  # predict cuts at 32 tokens too
    assert predicted["score"][0] == pytest.approx(float(expected.max()), abs=1e-6)


def test_fit_follows_the_models_label_order_and_the_checkpoint_keeps_it(tmp_path):
    # Issue 12, scenario 3 (ids): a head whose row 0 means "pos", data whose ClassLabel says neg = 0.
    model, tok = tiny_bert()
    model.config.id2label, model.config.label2id = {0: "pos", 1: "neg"}, {"pos": 0, "neg": 1}
    data = length_data(32).cast_column("label", datasets.ClassLabel(names=["neg", "pos"]))
    texts = data["text"][:8]
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    before = [model.config.id2label[int(k)] for k in logits.argmax(-1)]
    run = fit(model, data, tokenizer=tok, max_steps=1, lr=1e-12, batch_size=8, run_dir=tmp_path / "r",
              progress=False)
    assert run.status == "finished"
    reloaded = Run.load(tmp_path / "r")
    assert reloaded.model.config.id2label == {0: "pos", 1: "neg"}
    assert list(reloaded.predict(texts)["label"]) == before
