"""`Run` after training: `Run.load(run_dir)` answers like the live run (tokenizer, model, predictions,
metrics, history, report), and `evaluate` / `predict` take every data shape `finetune(data=...)` takes,
with the same column options and errors."""

from __future__ import annotations

import datasets
import pandas as pd
import pytest
import torch

import nbkit
from nbkit.core.data import DataError
from nbkit.testing import WORDS, save_tiny_model

torch.set_num_threads(1)

NEG, POS = WORDS[20:60], WORDS[60:100]


def _text(i: int, words: list[str]) -> str:
    return " ".join(words[(i * 7 + k) % 40] for k in range(3 + i % 9))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finetune run on a CSV whose two classes use different words, so the model learns them."""
    root = tmp_path_factory.mktemp("run")
    model_dir = save_tiny_model(root / "model", kind="bert")
    rows = [{"review": _text(i, POS if i % 2 else NEG), "stars": "pos" if i % 2 else "neg"} for i in range(96)]
    csv = root / "reviews.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    run = nbkit.finetune(str(model_dir), str(csv), text="review", label="stars", epochs=3, batch_size=16,
                         lr=3e-3, metrics=["accuracy"], run_dir=root / "run", progress=False)
    assert run.status == "finished"
    return run, csv


@pytest.fixture(scope="module")
def held_out():
    """Unseen texts of both classes, as a DataFrame with the training data's column names."""
    return pd.DataFrame({"review": [_text(i, POS if i % 2 else NEG) for i in range(200, 240)],
                         "stars": ["pos" if i % 2 else "neg" for i in range(200, 240)]})


def test_run_load_gives_the_tokenizer_without_loading_the_model(trained):
    run, _ = trained
    back = nbkit.Run.load(run.run_dir)
    assert back._model is None
    tok = back.tokenizer
    assert back._model is None  # read from the checkpoint on its own
    assert tok("alpha beta")["input_ids"] == run.tokenizer("alpha beta")["input_ids"]


def test_run_load_predicts_and_evaluates_like_the_live_run(trained, held_out):
    run, _ = trained
    back = nbkit.Run.load(run.run_dir)
    texts = list(held_out["review"][:6])
    live, again = run.predict(texts), back.predict(texts)  # predict first: nothing touched before
    assert list(again.columns) == ["text", "label", "score", "neg", "pos"]
    assert list(again["label"]) == list(live["label"])
    assert again[["score", "neg", "pos"]].to_numpy() == pytest.approx(live[["score", "neg", "pos"]].to_numpy(),
                                                                      abs=1e-6)
    assert list(live["label"]) == list(held_out["stars"][:6])  # it learned the two vocabularies
    live_metrics, back_metrics = run.evaluate(held_out), back.evaluate(held_out)
    assert set(back_metrics) == {"loss", "accuracy"}
    assert back_metrics["loss"] == pytest.approx(live_metrics["loss"], abs=1e-6)
    assert back_metrics["accuracy"] == live_metrics["accuracy"] == 1.0
    assert back.label_names == ["neg", "pos"]


def test_run_load_history_model_and_report(trained):
    run, _ = trained
    back = nbkit.Run.load(run.run_dir)
    assert back.status == "finished"
    pd.testing.assert_frame_equal(back.history, run.history)
    assert back.metrics == pytest.approx(run.metrics)
    live_weights, back_weights = run.model.state_dict(), back.model.state_dict()
    assert set(back_weights) == set(live_weights)
    for name, tensor in live_weights.items():
        assert torch.equal(back_weights[name].cpu(), tensor.cpu()), name
    path = back.report()
    assert path == back.run_dir / "report.html"
    assert back.name in path.read_text(encoding="utf-8")


def test_evaluate_takes_every_data_shape_finetune_takes(trained, held_out, tmp_path):
    run, csv = trained
    want = run.evaluate(held_out)
    held_out.to_csv(tmp_path / "held.csv", index=False)
    pairs = list(zip(held_out["review"], held_out["stars"], strict=True))
    dicts = held_out.to_dict("records")
    plain = held_out.rename(columns={"review": "text", "stars": "label"})
    shapes = {
        "path": (str(tmp_path / "held.csv"), {}),
        "Path": (tmp_path / "held.csv", {}),
        "pairs": (pairs, {}),
        "dicts": (dicts, {}),
        "Dataset": (datasets.Dataset.from_pandas(held_out), {}),
        "DatasetDict test split": (datasets.DatasetDict({"train": datasets.Dataset.from_pandas(held_out[:4]),
                                                         "test": datasets.Dataset.from_pandas(held_out)}), {}),
        "other columns": (plain, {"text": "text", "label": "label"}),
    }
    for what, (data, cols) in shapes.items():
        got = run.evaluate(data, **cols)
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-6), what
        assert got["accuracy"] == want["accuracy"], what
    # Labels map to the model's classes by name: one class only, in another order, as ClassLabel ids.
    only_pos = held_out[held_out["stars"] == "pos"]
    assert run.evaluate(only_pos)["accuracy"] == 1.0
    reordered = datasets.Dataset.from_pandas(held_out).cast_column(
        "stars", datasets.ClassLabel(names=["pos", "neg"]))
    assert reordered.features["stars"].str2int("pos") == 0
    assert run.evaluate(reordered)["accuracy"] == 1.0
    # Integer labels are class ids.
    ids = [(t, 1 if s == "pos" else 0) for t, s in pairs]
    assert run.evaluate(ids)["loss"] == pytest.approx(want["loss"], abs=1e-6)
    # What fit takes as eval data still works: the whole training CSV, through load_data.
    assert run.evaluate(nbkit.load_data(str(csv), text="review", label="stars")["eval"])["accuracy"] == 1.0


def test_evaluate_on_the_sample_name_uses_its_test_split(tmp_path):
    from nbkit.testing import tiny_bert

    model, tok = tiny_bert()
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    data = nbkit.sample_data("sentiment")
    run = nbkit.fit(model, data["train"].select(range(32)), tokenizer=tok, epochs=1, batch_size=16,
                    metrics=["accuracy"], run_dir=tmp_path / "run", progress=False)
    by_name = run.evaluate("sentiment")
    assert by_name == pytest.approx(run.evaluate(data["test"]))
    assert by_name == pytest.approx(nbkit.Run.load(tmp_path / "run").evaluate("sentiment"))
    assert len(run.predict("sentiment")) == 400  # the name, not the one-word text "sentiment"
    assert len(run.predict("sentiment", split="train")) == 1200
    assert len(run.predict("not a data set name")) == 1


def test_predict_takes_texts_and_data(trained, held_out):
    run, _ = trained
    texts = list(held_out["review"])
    want = run.predict(texts)
    assert list(run.predict(texts[0])["label"]) == [want["label"][0]]
    for data in (held_out, held_out.to_dict("records"), list(zip(texts, held_out["stars"], strict=True)),
                 datasets.Dataset.from_pandas(held_out), held_out[["review"]]):
        got = run.predict(data)
        assert list(got["text"]) == texts
        assert list(got["label"]) == list(want["label"])
    with_text = held_out.rename(columns={"review": "body"})
    assert list(run.predict(with_text, text="body")["label"]) == list(want["label"])


@pytest.mark.parametrize(("data", "options", "needle"), [
    (pd.DataFrame({"words": ["alpha"], "stars": ["pos"]}), {}, "no text column 'review' in split 'train' "
                                                                "(columns: words, stars); pass text="),
    (pd.DataFrame({"reviw": ["alpha"], "stars": ["pos"]}), {}, "did you mean text='reviw'?"),
    ([("alpha", "great")], {}, "label 'great', which is not one of the model's classes: neg, pos"),
    ([("alpha", 7)], {}, "has label 7, not a class id of this model (0..1: neg, pos)"),
    ([("alpha", "pos", "extra")], {}, "item 0 of the list has 3 values; pass (review, stars) tuples"),
    ([3, 4], {}, "item 0 of the list is a int, not a dict"),
    ("no/such/file.csv", {}, "file 'no/such/file.csv' does not exist"),
    (nbkit.sample_data("sentiment"), {"split": "tset", "text": "text", "label": "label"},
     "no split 'tset' in the data (found: train, test); did you mean split='test'?"),
    (42, {}, "cannot load data from a int"),
])
def test_evaluate_bad_data_fails_in_one_line(trained, data, options, needle):
    run, _ = trained
    with pytest.raises(DataError) as err:
        run.evaluate(data, **options)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_a_causal_lm_run_evaluates_plain_texts_after_load(tmp_path):
    from nbkit.testing import random_texts, tiny_gpt2

    model, tok = tiny_gpt2()
    texts = random_texts(16, seed=3, max_words=10)
    ds = datasets.Dataset.from_dict({"text": texts})
    run = nbkit.fit(model, ds, ds, tokenizer=tok, epochs=1, batch_size=8, metrics=["perplexity"],
                    run_dir=tmp_path / "lm", progress=False)
    want = {"loss": run.metrics["eval_loss"], "perplexity": run.metrics["eval_perplexity"]}
    assert run.evaluate(texts) == pytest.approx(want, rel=1e-6)
    assert nbkit.Run.load(tmp_path / "lm").evaluate(texts) == pytest.approx(want, rel=1e-6)
    assert nbkit.Run.load(tmp_path / "lm").evaluate(pd.DataFrame({"text": texts})) == pytest.approx(want, rel=1e-6)


def test_evaluate_and_predict_reject_unknown_keywords(trained, held_out):
    from nbkit.core.config import ArgumentError

    run, _ = trained
    with pytest.raises(ArgumentError, match=r"^evaluate\(\): unknown argument 'text_column'; did you mean 'text'\? "
                                            r"valid: data, metrics, batch_size, text, label, text_pair, split$"):
        run.evaluate(held_out, text_column="review")
    with pytest.raises(ArgumentError, match=r"^predict\(\): unknown argument 'txt'; did you mean 'text'\? valid: "
                                            r"texts, text_pairs, batch_size, text, text_pair, split$"):
        run.predict(["a"], txt="x")
