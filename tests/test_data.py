"""Tests for nbkit.core.data: every source kind, split and label handling, each error, the bundled sample."""

from __future__ import annotations

import csv
import importlib.util
import json
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest

from nbkit.core.data import DataError, label_names, load_data, sample_data

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    {"text": "great film", "label": "pos", "extra": 1},
    {"text": "awful film", "label": "neg", "extra": 2},
    {"text": "lovely food", "label": "pos", "extra": 3},
    {"text": "cold food", "label": "neg", "extra": 4},
] * 5  # 20 rows, 10 per class


def frame(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame(rows)


def check_standard(ds: datasets.DatasetDict, n_rows: int = 20, names=("neg", "pos")) -> None:
    """The shape every labelled source must come out in."""
    assert list(ds) == ["train", "eval"]
    assert ds["train"].column_names == ["text", "label"]
    assert len(ds["train"]) + len(ds["eval"]) == n_rows
    assert label_names(ds) == list(names)
    assert ds["eval"].features["label"].names == list(names)
    pairs = {(r["text"], r["label"]) for split in ds.values() for r in split}
    want = {(r["text"], list(names).index(r["label"])) for r in ROWS}
    assert pairs == want


# --- sources -----------------------------------------------------------------------------------------


def test_dataframe_drops_other_columns_and_maps_string_labels():
    ds = load_data(frame())
    check_standard(ds)
    assert len(ds["eval"]) == 2  # 10% of 20


def test_list_of_dicts():
    check_standard(load_data(ROWS))


def test_dict_of_columns():
    check_standard(load_data({k: [r[k] for r in ROWS] for k in ("text", "label", "extra")}))


def test_list_of_strings_is_unlabelled_text():
    ds = load_data(["one line", "two lines", "three"], label=None, eval_split=1)
    assert ds["train"].column_names == ["text"]
    assert sorted([*ds["train"]["text"], *ds["eval"]["text"]]) == ["one line", "three", "two lines"]


@pytest.mark.parametrize("ext", ["csv", "tsv", "parquet", "jsonl"])
def test_files(tmp_path, ext):
    path = tmp_path / f"reviews.{ext}"
    df = frame()
    if ext == "csv":
        df.to_csv(path, index=False)
    elif ext == "tsv":
        df.to_csv(path, sep="\t", index=False)
    elif ext == "parquet":
        df.to_parquet(path)
    else:
        df.to_json(path, orient="records", lines=True)
    check_standard(load_data(path))
    check_standard(load_data(str(path)))


@pytest.mark.parametrize("orient", ["records", "columns-dict", "to_json"])
def test_json_layouts(tmp_path, orient):
    path = tmp_path / "reviews.json"
    if orient == "records":
        path.write_text(json.dumps(ROWS))
    elif orient == "columns-dict":
        path.write_text(json.dumps({k: [r[k] for r in ROWS] for k in ("text", "label")}))
    else:  # datasets writes JSON lines even under a .json name
        datasets.Dataset.from_list(ROWS).to_json(str(path))
    check_standard(load_data(path))


def test_csv_keeps_na_words_as_text(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\nNA,a\nnull,b\nfine,a\n")
    ds = load_data(path, eval_split=0)
    assert ds["train"]["text"] == ["NA", "null", "fine"]


def test_save_to_disk_directory_with_validation_split(tmp_path):
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(ROWS),
            "validation": datasets.Dataset.from_list(ROWS[:4]),
            "test": datasets.Dataset.from_list(ROWS[:2]),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    ds = load_data(tmp_path / "saved")
    assert list(ds) == ["train", "eval", "test"]
    assert [len(ds[s]) for s in ds] == [20, 4, 2]  # an eval split exists: nothing carved
    assert ds["test"]["label"] == [1, 0]  # ids from the names shared with train


def test_dataset_and_datasetdict_sources():
    check_standard(load_data(datasets.Dataset.from_list(ROWS)))
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(ROWS),
            "dev": datasets.Dataset.from_list(ROWS[:4]),
            "unsupervised": datasets.Dataset.from_list(ROWS[:3]),
        }
    )
    ds = load_data(dd)
    assert list(ds) == ["train", "eval"]
    assert len(ds["eval"]) == 4


def test_dataset_with_classlabel_keeps_names_and_ids():
    feats = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["zz", "aa"])}
    )
    src = datasets.Dataset.from_dict(
        {"sentence": ["x", "y", "z", "w"], "label": [0, 1, 0, 1]}, feats
    )
    ds = load_data(src, text="sentence", eval_split=0)
    assert label_names(ds) == ["zz", "aa"]  # existing order kept, not re-sorted
    assert ds["train"]["label"] == [0, 1, 0, 1]
    assert ds["train"]["text"] == ["x", "y", "z", "w"]


def test_text_pair_and_renamed_columns():
    df = pd.DataFrame(
        {
            "premise": ["a", "b", "c", "d"],
            "hypothesis": ["e", "f", "g", "h"],
            "y": ["yes", "no", "yes", "no"],
        }
    )
    ds = load_data(df, text="premise", text_pair="hypothesis", label="y", eval_split=0)
    assert ds["train"].column_names == ["text", "text_pair", "label"]
    assert ds["train"][0] == {"text": "a", "text_pair": "e", "label": 1}


def test_label_none_drops_labels():
    ds = load_data(frame(), label=None, eval_split=5)
    assert ds["train"].column_names == ["text"]
    assert (len(ds["train"]), len(ds["eval"])) == (15, 5)
    assert label_names(ds) is None


def test_sentiment_name_loads_bundled_sample():
    ds = load_data("sentiment")
    assert list(ds) == ["train", "eval", "test"]
    assert (len(ds["train"]), len(ds["eval"]), len(ds["test"])) == (1080, 120, 400)
    assert Counter(ds["eval"]["label"]) == {0: 60, 1: 60}
    assert label_names(ds) == ["negative", "positive"]


def test_hub_name_uses_load_dataset(monkeypatch):
    hub = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"sentence": ["a", "b", "c"], "label": [0, 1, 0]}),
            "validation": datasets.Dataset.from_dict({"sentence": ["d"], "label": [1]}),
        }
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name: calls.append(name) or hub)
    ds = load_data("someone/reviews", text="sentence")
    assert calls == ["someone/reviews"]
    assert list(ds) == ["train", "eval"]
    assert ds["eval"]["text"] == ["d"]
    assert label_names(ds) == ["0", "1"]


# --- splits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["validation", "valid", "val", "dev", "eval", "Validation"])
def test_eval_split_names(name):
    dd = {"train": frame(), name: frame(ROWS[:2]), "extra": frame(ROWS[:1])}
    ds = load_data(
        datasets.DatasetDict({k: datasets.Dataset.from_pandas(v) for k, v in dd.items()})
    )
    assert list(ds) == ["train", "eval"]
    assert ds["eval"]["text"] == ["great film", "awful film"]


def test_validation_wins_over_dev():
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(ROWS),
            "dev": datasets.Dataset.from_list(ROWS[:3]),
            "validation": datasets.Dataset.from_list(ROWS[:2]),
        }
    )
    assert len(load_data(dd)["eval"]) == 2


def test_stratified_carve_keeps_class_ratio_and_is_seeded():
    rows = [{"text": f"row {i}", "label": "rare" if i % 10 == 0 else "common"} for i in range(200)]
    ds = load_data(rows, eval_split=0.2, seed=1)
    names = label_names(ds)
    assert Counter(names[i] for i in ds["eval"]["label"]) == {"common": 36, "rare": 4}
    assert Counter(names[i] for i in ds["train"]["label"]) == {"common": 144, "rare": 16}
    assert not set(ds["train"]["text"]) & set(ds["eval"]["text"])
    assert load_data(rows, eval_split=0.2, seed=1)["eval"]["text"] == ds["eval"]["text"]
    assert load_data(rows, eval_split=0.2, seed=2)["eval"]["text"] != ds["eval"]["text"]


def test_carve_keeps_a_singleton_class_in_train():
    rows = [{"text": f"t{i}", "label": "a" if i else "b"} for i in range(10)] + [
        {"text": "t10", "label": "c"}
    ]
    ds = load_data(rows, eval_split=3)
    assert len(ds["eval"]) == 3
    assert "c" in [label_names(ds)[i] for i in ds["train"]["label"]]


def test_eval_split_zero_and_count():
    assert list(load_data(frame(), eval_split=0)) == ["train"]
    ds = load_data(frame(), eval_split=7)
    assert (len(ds["train"]), len(ds["eval"])) == (13, 7)


def test_float_labels_carve_without_stratifying():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(10)], "label": [i / 10 for i in range(10)]})
    ds = load_data(df, eval_split=0.3)
    assert ds["train"].features["label"] == datasets.Value("float32")
    assert len(ds["eval"]) == 3
    assert label_names(ds) is None


# --- labels ------------------------------------------------------------------------------------------


def test_string_label_mapping_is_shared_across_splits():
    train = [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}]
    test = [{"text": "c", "label": "neutral"}, {"text": "d", "label": "pos"}]
    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(test)}
    )
    ds = load_data(dd, eval_split=0)
    assert label_names(ds) == ["neg", "neutral", "pos"]
    assert ds["train"]["label"] == [2, 0]
    assert ds["test"]["label"] == [1, 2]
    assert ds["test"].features["label"] == ds["train"].features["label"]


def test_int_labels_zero_based_keep_ids():
    df = pd.DataFrame({"text": list("abcdef"), "label": [2, 0, 1, 2, 0, 1]})
    ds = load_data(df, eval_split=0)
    assert label_names(ds) == ["0", "1", "2"]
    assert ds["train"]["label"] == [2, 0, 1, 2, 0, 1]


def test_int_labels_not_zero_based_become_dense_ids():
    df = pd.DataFrame({"text": list("abcd"), "label": [5, 1, 3, 10]})
    ds = load_data(df, eval_split=0)
    assert label_names(ds) == ["1", "3", "5", "10"]  # numeric order, not "10" < "3"
    assert ds["train"]["label"] == [2, 0, 1, 3]


def test_bool_labels():
    ds = load_data({"text": ["a", "b", "c"], "label": [True, False, True]}, eval_split=0)
    assert label_names(ds) == ["false", "true"]
    assert ds["train"]["label"] == [1, 0, 1]


def test_label_names_of_a_single_dataset():
    ds = load_data(frame(), eval_split=0)
    assert label_names(ds["train"]) == ["neg", "pos"]


# --- errors ------------------------------------------------------------------------------------------


def test_missing_text_column_suggests_close_name():
    df = frame().rename(columns={"text": "review"})
    with pytest.raises(DataError) as e:
        load_data(df, text="reveiw")
    msg = str(e.value)
    assert "no text column 'reveiw'" in msg
    assert "(columns: review, label, extra)" in msg
    assert "did you mean text='review'?" in msg


def test_missing_label_column_suggests_label_none():
    with pytest.raises(DataError, match="did you mean label='sentiment'") as e:
        load_data(pd.DataFrame({"text": ["a"], "sentiment": ["x"]}))
    assert "label=None for unlabelled text" in str(e.value)


@pytest.mark.parametrize("source", [pd.DataFrame({"text": [], "label": []}), []])
def test_empty_data(source):
    with pytest.raises(DataError, match=r"the data is empty \(split 'train' has no rows\)"):
        load_data(source)


def test_empty_files(tmp_path):
    (tmp_path / "blank.csv").write_text("")
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="blank.csv' is empty"):
        load_data(tmp_path / "blank.csv")
    with pytest.raises(DataError, match="the data is empty"):
        load_data(tmp_path / "header.csv")


def test_single_class():
    with pytest.raises(DataError, match=r"single class \('pos'\).*label=None"):
        load_data([{"text": "a", "label": "pos"}, {"text": "b", "label": "pos"}])


def test_missing_text_in_csv_names_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('text,label\nfine,a\n"",b\ngood,a\n')
    with pytest.raises(DataError) as e:
        load_data(path)
    assert str(e.value).startswith("row 1 of split 'train' has no text in column 'text'")
    assert "df.dropna(subset=['text'])" in str(e.value)


def test_none_and_non_string_text_name_row():
    rows = [{"text": "a", "label": 0}, {"text": "b", "label": 1}, {"text": None, "label": 0}]
    with pytest.raises(DataError, match="row 2 of split 'train' has no text"):
        load_data(rows)
    rows[2]["text"] = 42
    with pytest.raises(DataError, match=r"row 2 of split 'train' has a int \(42\) in text column"):
        load_data(rows)


def test_none_text_in_a_dataset_names_row():
    ds = datasets.Dataset.from_dict({"text": ["a", "b", None], "label": [0, 1, 0]})
    with pytest.raises(DataError, match="row 2 of split 'train' has no text"):
        load_data(ds)
    ds = datasets.Dataset.from_dict({"text": [1, 2], "label": [0, 1]})
    with pytest.raises(DataError, match="row 0 of split 'train' has a int"):
        load_data(ds)


def test_missing_label_names_row():
    df = pd.DataFrame({"text": ["a", "b", "c"], "label": [1.0, None, 0.0]})
    with pytest.raises(DataError, match="row 1 of split 'train' has no label in column 'label'"):
        load_data(df)


def test_mixed_label_types():
    with pytest.raises(DataError, match="label column 'label' in split 'train' mixes value types"):
        load_data([{"text": "a", "label": "pos"}, {"text": "b", "label": 1}])


@pytest.mark.parametrize("path", ["data/train.csv", "./reviews", "missing.parquet", "a/b/c"])
def test_missing_file(path):
    with pytest.raises(DataError, match=f"file '{path}' does not exist"):
        load_data(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "reviews.xlsx"
    path.write_bytes(b"not really excel")
    with pytest.raises(DataError, match=r"unknown extension '\.xlsx'; use \.csv, \.tsv"):
        load_data(path)


def test_plain_directory_is_not_a_dataset(tmp_path):
    with pytest.raises(DataError, match="is not a dataset saved with save_to_disk"):
        load_data(tmp_path)


def test_bad_json(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('[{"text": "a", "label": 1},')
    with pytest.raises(DataError, match="cannot read .* as JSON"):
        load_data(path)


@pytest.mark.parametrize("value", [1.5, -1, True, "0.1", 1.0])
def test_bad_eval_split(value):
    with pytest.raises(DataError, match="eval_split must be a fraction in"):
        load_data(frame(), eval_split=value)


def test_eval_split_too_large():
    with pytest.raises(DataError, match="eval_split=20 leaves no training rows"):
        load_data(frame(), eval_split=20)


def test_no_train_split():
    dd = datasets.DatasetDict({"full": datasets.Dataset.from_list(ROWS)})
    with pytest.raises(
        DataError, match=r"no 'train' split \(found: full\).*load_data\(ds\['full'\]\)"
    ):
        load_data(dd)


def test_unsupported_source():
    with pytest.raises(DataError, match="cannot load data from a int"):
        load_data(42)
    with pytest.raises(DataError, match="item 1 of the list is a int, not a dict"):
        load_data([{"text": "a"}, 3])


def test_hub_name_offline_is_one_short_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # Both libraries read the variables at import time; patch the values they consult now.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise AssertionError("load_data tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(DataError) as e:
        load_data("nbkit-test/no-such-dataset")
    assert str(e.value) == (
        "dataset 'nbkit-test/no-such-dataset' is not a local file, not a bundled sample "
        "(sentiment) and the Hugging Face Hub cannot be reached (offline); pass a "
        "CSV/JSON/Parquet path, a DataFrame, or 'sentiment'"
    )
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained traceback


def test_hub_not_found_and_unreachable(monkeypatch):
    def raiser(exc):
        def load_dataset(name):
            raise exc

        return load_dataset

    monkeypatch.setattr(
        datasets, "load_dataset", raiser(datasets.exceptions.DatasetNotFoundError())
    )
    with pytest.raises(DataError, match="and not on the Hugging Face Hub"):
        load_data("someone/typo")
    monkeypatch.setattr(datasets, "load_dataset", raiser(ConnectionError("boom")))
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(DataError, match=r"cannot be reached \(no network\)"):
        load_data("someone/typo")


def test_unknown_sample():
    with pytest.raises(DataError, match="unknown sample 'movies'; available samples: sentiment"):
        sample_data("movies")


def test_import_is_light():
    code = "import sys, nbkit.core.data; print(sorted({'datasets', 'pandas', 'torch', 'IPython'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- bundled sample ----------------------------------------------------------------------------------


def test_sample_data_counts_balance_and_no_overlap():
    ds = sample_data()
    assert list(ds) == ["train", "test"]
    assert ds["train"].column_names == ["text", "label"]
    assert ds["train"].features["label"].names == ["negative", "positive"]
    assert Counter(ds["train"]["label"]) == {0: 600, 1: 600}
    assert Counter(ds["test"]["label"]) == {0: 200, 1: 200}
    train, test = ds["train"]["text"], ds["test"]["text"]
    assert len(set(train)) == 1200 and len(set(test)) == 400
    assert not {t.lower() for t in train} & {t.lower() for t in test}
    lengths = [len(t.split()) for t in list(train) + list(test)]
    assert min(lengths) >= 5 and max(lengths) <= 40
    assert "synthetic" in ds["train"].info.description
    assert (
        "synthetic" in sample_data.__doc__ and "scripts/make_sample_data.py" in sample_data.__doc__
    )


def test_sample_data_is_what_the_script_generates():
    spec = importlib.util.spec_from_file_location(
        "make_sample_data", ROOT / "scripts/make_sample_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train, test = module.generate()
    for split, rows in (("train", train), ("test", test)):
        with (ROOT / f"nbkit/core/sample_data/sentiment_{split}.csv").open(
            newline="", encoding="utf-8"
        ) as f:
            assert [tuple(r) for r in csv.reader(f)][1:] == rows


def test_sample_data_needs_more_than_keywords():
    ds = sample_data()["train"]
    rows = list(zip(ds["text"], ds["label"], strict=True))
    # Negations and "X, but Y" sentences appear in both classes, so single words are unreliable.
    for cue in (" not ", ", but "):
        labels = Counter(label for t, label in rows if cue in f" {t} ")
        assert min(labels[0], labels[1]) > 50, (cue, labels)
    assert {label for t, label in rows if "not bad at all" in t.lower()} == {1}


# -- (text, label) pairs and load_split ---------------------------------------------------------------


def test_lists_of_pairs_and_triples():
    pairs = [("good film", "pos"), ("bad film", "neg"), ("fine film", "pos")]
    ds = load_data(pairs, eval_split=0)["train"]
    assert ds.to_dict() == {"text": ["good film", "bad film", "fine film"], "label": [1, 0, 1]}
    assert label_names(ds) == ["neg", "pos"]
    triples = [("a", "b", 0), ("c", "d", 1)]
    ds = load_data(triples, text_pair="second", eval_split=0)["train"]
    assert ds.to_dict() == {"text": ["a", "c"], "text_pair": ["b", "d"], "label": [0, 1]}
    with pytest.raises(DataError, match=r"item 1 of the list has 3 values; pass \(text, label\) tuples"):
        load_data([("a", 0), ("b", 1, 2)])


def test_load_split_maps_labels_to_the_models_classes():
    from nbkit.core.data import load_split

    sample = sample_data("sentiment")
    test = load_split("sentiment", classes=["negative", "positive"])
    assert len(test) == 400 and test["label"][:5] == sample["test"]["label"][:5]
    flipped = load_split("sentiment", classes=["positive", "negative"])
    assert [1 - v for v in flipped["label"][:50]] == sample["test"]["label"][:50]
    assert len(load_split("sentiment", split="train")) == 1200
    one_class = load_split([("x", "positive"), ("y", "positive")], classes=["negative", "positive"])
    assert one_class["label"] == [1, 1]  # a single class is fine for evaluation
    assert load_split([("x", "Positive")], classes=["negative", "positive"])["label"] == [1]
    assert load_split([("x", 0.5)])["label"] == [0.5]  # regression targets stay floats
    assert load_split([("x", "pos")], with_labels=False).column_names == ["text"]
    with pytest.raises(DataError, match="text labels .* but the model has no class names"):
        load_split([("x", "pos")])
# --- a typo'd label value (issue 12, scenario 3) --------------------------------------------------


def typo_frame(typo: str = "postive", n: int = 600) -> pd.DataFrame:
    labels = ["positive"] * n + ["negative"] * n + [typo]
    return pd.DataFrame({"text": [f"review {i}" for i in range(len(labels))], "label": labels})


def test_a_rare_label_close_to_a_big_one_is_an_error_naming_both_and_their_counts(tmp_path):
    path = tmp_path / "reviews.csv"
    typo_frame().to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_data(path)
    assert str(err.value) == (
        "label 'postive' has 1 row in column 'label' and its name is close to 'positive' (600 rows): a "
        "typo would become a class of its own. Fix the value (e.g. df['label'].replace({'postive': "
        "'positive'})), or pass allow_rare_labels=True (config key allow_rare_labels: true) if it is a "
        "class on purpose"
    )


@pytest.mark.parametrize("typo", ["Positive", " positive ", "positive_", "negatvie", "posittive"])
def test_case_spacing_and_small_edits_are_caught(typo):
    with pytest.raises(DataError, match=f"label {typo!r} has 1 row"):
        load_data(typo_frame(typo, n=100))


def test_counts_add_up_over_the_splits():
    train = typo_frame(n=100)
    test = pd.DataFrame({"text": ["a", "b", "c"], "label": ["postive", "positive", "negative"]})
    with pytest.raises(DataError, match=r"'postive' has 2 rows .* 'positive' \(101 rows\)"):
        load_data(datasets.DatasetDict({"train": datasets.Dataset.from_pandas(train),
                                        "test": datasets.Dataset.from_pandas(test)}))


def test_allow_rare_labels_keeps_the_class():
    ds = load_data(typo_frame(), allow_rare_labels=True, eval_split=0)
    assert label_names(ds) == ["negative", "positive", "postive"]
    assert Counter(ds["train"]["label"]) == {0: 600, 1: 600, 2: 1}


@pytest.mark.parametrize("labels", [
    ["cat"] * 300 + ["car"] * 30,  # 10% of the other: a class, not a typo
    ["class1"] * 300 + ["class2"],  # numbered classes
    ["positive"] * 300 + ["negative"],  # far apart
])
def test_rare_but_distinct_labels_are_kept(labels):
    df = pd.DataFrame({"text": [f"t {i}" for i in range(len(labels))], "label": labels})
    assert label_names(load_data(df, eval_split=0)) == sorted(set(labels))


def test_align_labels_renumbers_to_the_models_order():
    from nbkit.core.data import align_labels

    ds = load_data(frame(), eval_split=0)  # names sorted: neg = 0, pos = 1
    before = dict(zip(ds["train"]["text"], ds["train"].features["label"].int2str(ds["train"]["label"]),
                      strict=True))
    out = align_labels(ds, ["POS", "NEG"])  # a model's names, another case
    assert label_names(out) == ["POS", "NEG"]
    after = dict(zip(out["train"]["text"], out["train"]["label"], strict=True))
    assert after == {t: 0 if name == "pos" else 1 for t, name in before.items()}
