"""Turn any text data source into one shape: a ``DatasetDict`` with train/eval (and test) splits.

``load_data`` reads paths, hub names, the bundled sample, DataFrames, lists and ``datasets`` objects
and standardizes columns (``text``, ``text_pair``, ``label``), so models.py and train/ never look at
sources. Class names travel with the data as a ``ClassLabel`` feature. ``datasets`` and ``pandas`` are
imported inside functions so that ``import nbkit.core.data`` (e.g. to catch ``DataError``) stays cheap.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.resources
import io
import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .suggest import check_kwargs, closest

if TYPE_CHECKING:
    import datasets
    import pandas as pd

__all__ = ["DataError", "align_labels", "label_names", "load_data", "load_split", "sample_data"]

# Bundled samples and their class names in id order (the order is part of the data).
SAMPLES: dict[str, list[str]] = {"sentiment": ["negative", "positive"]}

# Split aliases in priority order: when a source has both "validation" and "dev", the first wins.
_SPLITS = {"train": "train", "test": "test"}
_SPLITS |= dict.fromkeys(("eval", "validation", "valid", "val", "dev"), "eval")
_READABLE = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
# A missing "x.xlsx" is a typo'd path, not a hub name; hub names such as "org/data-2.5" have dots too.
_PATH_SUFFIXES = {*_READABLE, ".txt", ".xlsx", ".xls", ".gz", ".zip", ".arrow", ".pkl", ".feather"}
_HINTS = {
    "text": ("sentence", "review", "content", "document", "comment", "body", "question", "tweet"),
    "label": ("labels", "sentiment", "target", "class", "category", "rating", "stars", "score"),
}


class DataError(ValueError):
    """A data source cannot be turned into train/eval splits; the message says what to change."""


@check_kwargs(meant={"text_column": "text", "label_column": "label", "test_size": "eval_split"})
def load_data(
    source: Any,
    *,
    text: str = "text",
    label: str | None = "label",
    text_pair: str | None = None,
    eval_split: float | int = 0.1,
    seed: int = 0,
    allow_rare_labels: bool = False,
) -> datasets.DatasetDict:
    """Load ``source`` as a ``DatasetDict`` with splits ``train``, ``eval`` and, if present, ``test``.

    ``source``: a .csv/.tsv/.json/.jsonl/.parquet path, a directory written by ``save_to_disk``, a
    bundled sample name (``"sentiment"``), a Hugging Face Hub dataset name, a pandas DataFrame, a list
    of dicts, of strings or of ``(text, label)`` pairs (``(text, text_pair, label)`` with
    ``text_pair=``), a dict of columns, or a ``datasets.Dataset``/``DatasetDict``.

    Output columns: ``text``, ``text_pair`` (only with ``text_pair=``) and ``label`` (unless
    ``label=None``, for unlabelled text); others are dropped. String and integer labels become one
    ``ClassLabel`` shared by all splits, names sorted (``label_names(ds)`` is id2label); float labels
    stay float32 (regression). validation/valid/val/dev become ``eval``; other splits are dropped.
    Without an eval split, ``eval_split`` rows (fraction or count; 0 for none) are carved from train
    with ``seed``, stratified by class.

    A string label with very few rows whose name is close to a much larger class's (``postive`` once
    next to 600 ``positive``: another case or spacing, or an edit or two) looks like a typo and is a
    ``DataError`` naming both; ``allow_rare_labels=True`` keeps it as a class of its own.
    """
    import datasets

    cols = _check_args(text, label, text_pair, eval_split)
    splits = _normalize_splits(_read_source(source, _tuple_columns(cols)))
    with _quiet():
        out = {name: _standardize(name, obj, cols) for name, obj in splits.items()}
        if label is not None:
            out = _encode_labels(out, label, allow_rare_labels)
        if "eval" not in out and eval_split:
            out["train"], out["eval"] = _carve(out["train"], eval_split, seed)
    return datasets.DatasetDict({k: out[k] for k in ("train", "eval", "test") if k in out})


@check_kwargs
def sample_data(name: str = "sentiment") -> datasets.DatasetDict:
    """The bundled sample ``name`` as a ``DatasetDict`` with a fixed ``train``/``test`` split.

    ``"sentiment"``: 1,600 short English review sentences (1,200 train / 400 test, balanced), columns
    ``text`` and ``label`` (``ClassLabel`` names ``["negative", "positive"]``). The data is synthetic,
    generated from templates by ``scripts/make_sample_data.py`` over films, restaurants, gadgets,
    books, hotels and games, with negations ("not bad at all") and contrastive "X, but Y" sentences
    whose label follows the final clause. It ships inside the package and works offline.
    """
    if name not in SAMPLES:
        raise DataError(f"unknown sample '{name}'; available samples: {', '.join(SAMPLES)}")
    import datasets

    names = SAMPLES[name]
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
    )
    info = datasets.DatasetInfo(
        description=f"nbkit '{name}' sample: synthetic, from templates in scripts/make_sample_data.py",
        features=features,
    )
    out = {}
    for split in ("train", "test"):
        path = importlib.resources.files("nbkit.core") / "sample_data" / f"{name}_{split}.csv"
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        data = {"text": [r["text"] for r in rows], "label": [names.index(r["label"]) for r in rows]}
        out[split] = datasets.Dataset.from_dict(data, features=features, info=info)
    return datasets.DatasetDict(out)


def label_names(ds: datasets.Dataset | datasets.DatasetDict) -> list[str] | None:
    """Class names in id order (id2label) of the ``label`` column; None if unlabelled or regression."""
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    feature = ds.features.get("label")
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


_SPLIT_PREFERENCE = ("test", "eval", "train")  # what load_split reads when no split is named


@check_kwargs
def load_split(
    source: Any,
    *,
    text: str = "text",
    label: str | None = "label",
    text_pair: str | None = None,
    split: str | None = None,
    classes: list[str] | None = None,
    with_labels: bool = True,
) -> datasets.Dataset:
    """One split of ``source`` for a trained model to evaluate or predict on (``Run.evaluate``/``predict``).

    Takes every source ``load_data`` takes, with the same column options and errors. ``split``: a
    split name (validation/dev/... count as ``eval``); by default ``test``, else ``eval``, else the
    only one. Labels are encoded with ``classes`` (the model's names in id order, id2label): string
    labels and ``ClassLabel`` names map to those ids, integer labels must be valid ids, float labels
    stay float32 (regression). Unlike training data, a split may hold one class; nothing is carved off.
    ``with_labels=False`` (for predicting) drops the label column, present or not.
    """
    import datasets

    cols = _check_args(text, label, text_pair, 0)
    raw = _read_source(source, _tuple_columns(cols))
    if not with_labels:
        cols.pop("label", None)
        label = None
    named: dict[str, Any] = {}
    for alias, std in _SPLITS.items():
        for name, obj in raw.items():
            if str(name).lower() == alias and std not in named:
                named[std] = obj
    if split is not None:
        want = _SPLITS.get(str(split).lower(), str(split))
        if want not in named:
            found = ", ".join(map(str, raw)) or "none"
            guess = closest(split, [*raw, *named])
            hint = f"did you mean split='{guess}'?" if guess else "leave split=None for the test split"
            raise DataError(f"no split '{split}' in the data (found: {found}); {hint}")
        chosen = want
    else:
        present = [s for s in _SPLIT_PREFERENCE if s in named]
        if not present and len(raw) != 1:
            raise DataError(f"no test, eval or train split (found: {', '.join(map(str, raw))}); pass split='...'")
        chosen = present[0] if present else next(iter(raw))
        named.setdefault(chosen, raw.get(chosen))
    with _quiet():
        ds = _standardize(chosen, named[chosen], cols)
        if label is not None:
            ds = _encode_for_model(ds, chosen, label, classes)
    assert isinstance(ds, datasets.Dataset)
    return ds


def _encode_for_model(ds: Any, split: str, column: str, classes: list[str] | None) -> Any:
    """Labels as the model's ids: names looked up in ``classes``, ids checked against its size."""
    import datasets

    feature = ds.features["label"]
    values = ds.select_columns(["label"]).to_dict()["label"]
    if isinstance(feature, datasets.ClassLabel):
        if not classes and all(v is not None and v >= 0 for v in values):
            return ds  # the data's own ids: nothing to map them to
        values = [feature.names[v] if v is not None and v >= 0 else None for v in values]
    missing = next((i for i, v in enumerate(values) if _is_missing(v)), None)
    if missing is not None:
        raise DataError(
            f"row {missing} of split '{split}' has no label in column '{column}'; drop or fill "
            f"those rows first, e.g. df.dropna(subset=['{column}']), or pass label=None"
        )
    kinds = {type(v) for v in values}
    if kinds <= {float} or (float in kinds and kinds <= {int, float}):  # a regression target
        return ds.cast_column("label", datasets.Value("float32"))
    if kinds <= {bool, int} and not isinstance(feature, datasets.ClassLabel):
        ids = [int(v) for v in values]
        size = len(classes) if classes else None
        bad = next((i for i, v in enumerate(ids) if v < 0 or (size is not None and v >= size)), None)
        if bad is not None:
            raise DataError(
                f"row {bad} of split '{split}' has label {ids[bad]}, not a class id of this model "
                f"(0..{size - 1 if size else '?'}: {', '.join(classes or [])})"
            )
    elif kinds <= {str}:
        if not classes:
            raise DataError(
                f"split '{split}' has text labels ({values[0]!r}, ...) but the model has no class "
                "names; pass integer labels (class ids)"
            )
        index = {name: i for i, name in enumerate(classes)}
        lowered = {name.lower(): i for i, name in enumerate(classes)}
        ids = []
        for row, v in enumerate(values):
            i = index.get(v, lowered.get(v.lower()))
            if i is None:
                raise DataError(
                    f"row {row} of split '{split}' has label {v!r}, which is not one of the model's "
                    f"classes: {', '.join(classes)}"
                )
            ids.append(i)
    else:
        shown = ", ".join(sorted(k.__name__ for k in kinds))
        raise DataError(
            f"label column '{column}' in split '{split}' mixes value types ({shown}); make the "
            "labels all strings or all numbers"
        )
    feature = datasets.ClassLabel(names=list(classes)) if classes else datasets.Value("int64")
    return ds.remove_columns("label").add_column("label", ids, feature=feature)


# --- reading sources: split name -> Dataset or DataFrame ---------------------------------------------


def _tuple_columns(cols: dict[str, str]) -> list[str]:
    """The columns a list of tuples fills, in order: (text, label) or (text, text_pair, label)."""
    return [cols[k] for k in ("text", "text_pair", "label") if k in cols]


def _read_source(source: Any, tuple_columns: list[str] | None = None) -> dict[str, Any]:
    import datasets
    import pandas as pd

    if isinstance(source, datasets.DatasetDict):
        return dict(source)
    if isinstance(source, (datasets.Dataset, pd.DataFrame)):
        return {"train": source}
    if isinstance(source, (str, os.PathLike)):
        return _read_path_or_name(source)
    if isinstance(source, (list, tuple)) and all(isinstance(r, str) for r in source):
        return {"train": pd.DataFrame({"text": list(source)})}  # bare texts, e.g. for LM
    if isinstance(source, (list, tuple)) and source and all(isinstance(r, (tuple, list)) for r in source):
        names = tuple_columns or ["text", "label"]
        shape = "(" + ", ".join(names) + ")"
        bad = next((i for i, r in enumerate(source) if len(r) != len(names)), None)
        if bad is not None:
            raise DataError(
                f"item {bad} of the list has {len(source[bad])} values; pass {shape} tuples, "
                "or rows like {'text': ..., 'label': ...}"
            )
        return {"train": pd.DataFrame([list(r) for r in source], columns=names)}
    if isinstance(source, (list, tuple)):
        bad = next((i for i, r in enumerate(source) if not isinstance(r, Mapping)), None)
        if bad is not None:
            kind = type(source[bad]).__name__
            raise DataError(
                f"item {bad} of the list is a {kind}, not a dict; pass rows like "
                "{'text': ..., 'label': ...} or (text, label) pairs"
            )
        return {"train": pd.DataFrame(list(source))}
    if isinstance(source, Mapping):  # a dict of columns, as Dataset.from_dict takes
        try:
            return {"train": pd.DataFrame(dict(source))}
        except ValueError as e:
            raise DataError(
                f"cannot build a table from this dict ({e}); pass equal-length "
                "columns, e.g. {'text': [...], 'label': [...]}"
            ) from None
    if isinstance(source, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise DataError("streaming datasets are not supported; load it without streaming=True")
    raise DataError(
        f"cannot load data from a {type(source).__name__}; pass a file path, a hub "
        "name, 'sentiment', a DataFrame, a list of dicts or a datasets.Dataset"
    )


def _read_path_or_name(source: str | os.PathLike) -> dict[str, Any]:
    import datasets

    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "dataset_dict.json").exists() and not (path / "state.json").exists():
            raise DataError(
                f"directory '{path}' is not a dataset saved with save_to_disk; pass a "
                "CSV/JSON/Parquet file path instead"
            )
        loaded = datasets.load_from_disk(str(path))
        return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if path.exists():
        return {"train": _read_file(path)}
    name = os.fspath(source)
    if name in SAMPLES:
        return dict(sample_data(name))
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_like_path or path.suffix.lower() in _PATH_SUFFIXES:
        raise DataError(
            f"file '{name}' does not exist (relative paths start at {os.getcwd()}); check the path"
        )
    return _load_hub(name)


def _read_file(path: Path) -> pd.DataFrame:
    import pandas as pd

    ext = path.suffix.lower()
    if ext not in _READABLE:
        raise DataError(
            f"cannot read '{path.name}': unknown extension '{ext}'; use .csv, .tsv, "
            ".json, .jsonl or .parquet, or pass a DataFrame"
        )
    try:
        if ext in (".csv", ".tsv"):
            # Only empty cells are missing: a review that says "NA" or "null" is still text.
            sep = "\t" if ext == ".tsv" else ","
            return pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""])
        if ext == ".parquet":
            return pd.read_parquet(path)
        raw = path.read_text(encoding="utf-8")
        if ext == ".json" and raw.lstrip()[:1] in ("[", "{"):
            try:  # a list of rows or a dict of columns
                return pd.DataFrame(json.loads(raw))
            except json.JSONDecodeError as e:
                if not e.msg.startswith("Extra data"):  # else JSON lines, as Dataset.to_json writes
                    raise
        return pd.DataFrame([json.loads(line) for line in raw.splitlines() if line.strip()])
    except pd.errors.EmptyDataError:
        raise DataError(f"'{path}' is empty; it needs a header row and at least one row") from None
    except (ValueError, OSError) as e:  # also JSON, unicode and arrow errors
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"cannot read '{path}' as {ext[1:].upper()} ({why}); fix the file or "
            "load it with pandas and pass the DataFrame"
        ) from None


def _load_hub(name: str) -> dict[str, Any]:
    import datasets
    from huggingface_hub import constants

    where = f"dataset '{name}' is not a local file, not a bundled sample ({', '.join(SAMPLES)})"
    try:
        loaded = datasets.load_dataset(name)
    except ConnectionError:  # what datasets raises offline (OfflineModeIsEnabled) or unreachable
        offline = datasets.config.HF_HUB_OFFLINE or constants.is_offline_mode()
        raise DataError(
            f"{where} and the Hugging Face Hub cannot be reached "
            f"({'offline' if offline else 'no network'}); pass a CSV/JSON/Parquet "
            "path, a DataFrame, or 'sentiment'"
        ) from None
    except datasets.exceptions.DatasetNotFoundError:
        raise DataError(
            f"{where} and not on the Hugging Face Hub (or it needs a login); check the name"
        ) from None
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


# --- standardizing ------------------------------------------------------------------------------------


def _check_args(text: Any, label: Any, text_pair: Any, eval_split: Any) -> dict[str, str]:
    """Standard column name -> the source's column name, for the columns we keep."""
    given = {"text": text, "text_pair": text_pair, "label": label}
    cols = {k: v for k, v in given.items() if v is not None}
    for k, v in cols.items():
        if not isinstance(v, str):
            raise DataError(f"{k}= must be a column name (a str), got {v!r}")
    if len(set(cols.values())) < len(cols):
        raise DataError(f"text, text_pair and label must be different columns, got {cols}")
    ok = isinstance(eval_split, numbers.Real) and not isinstance(eval_split, bool)
    if ok:  # a count (any int >= 0) or a fraction in [0, 1)
        value = float(eval_split)
        ok = value >= 0 if isinstance(eval_split, numbers.Integral) else 0 <= value < 1
    if not ok:
        raise DataError(
            f"eval_split must be a fraction in (0, 1), a row count, or 0 for no eval "
            f"split; got {eval_split!r}"
        )
    return cols


def _normalize_splits(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for alias, std in _SPLITS.items():
        for name, obj in raw.items():
            if str(name).lower() == alias and std not in out:
                out[std] = obj
    if "train" not in out:
        first = next(iter(raw), "train")
        raise DataError(
            f"no 'train' split (found: {', '.join(raw) or 'none'}); pass the split to "
            f"train on, e.g. load_data(ds['{first}'])"
        )
    return out


def _standardize(split: str, obj: Any, cols: dict[str, str]) -> datasets.Dataset:
    """Keep and rename the wanted columns; check that text columns hold strings."""
    import datasets
    import pyarrow as pa

    is_ds = isinstance(obj, datasets.Dataset)
    columns = [str(c) for c in (obj.column_names if is_ds else obj.columns)]
    if len(obj) == 0:
        raise DataError(f"the data is empty (split '{split}' has no rows); pass at least one row")
    for std, name in cols.items():
        if name not in columns:
            raise _missing_column(std, name, columns, split)
    texts = [std for std in ("text", "text_pair") if std in cols]
    if is_ds:
        ds = obj.select_columns(list(cols.values()))
        ds = ds.rename_columns({v: k for k, v in cols.items() if k != v})
        for std in texts:
            _check_text_arrow(ds.with_format("arrow")[std], split, cols[std])
        return ds
    data = {std: obj[name].tolist() for std, name in cols.items()}
    for std in texts:  # before arrow, which would refuse a stray number without naming its row
        bad = next((i for i, v in enumerate(data[std]) if not isinstance(v, str)), None)
        if bad is not None:
            raise _bad_text(split, cols[std], bad, data[std][bad])
    if "label" in data:  # NaN/NA/NaT -> null, reported with its row by _encode_labels
        data["label"] = [None if _is_missing(v) else v for v in data["label"]]
    try:
        return datasets.Dataset.from_dict(data)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(
            f"label column '{cols['label']}' in split '{split}' mixes value types "
            f"({e}); make the labels all strings or all numbers"
        ) from None


def _missing_column(role: str, name: str, columns: list[str], split: str) -> DataError:
    found = closest(name, columns)
    guess = [found] if found else [c for c in _HINTS.get(role, ()) if c in columns][:1]
    hint = f"did you mean {role}='{guess[0]}'?" if guess else f"pass {role}='<column name>'"
    if role == "label":
        hint += " (or label=None for unlabelled text)"
    shown = ", ".join(columns[:20]) + (", ..." if len(columns) > 20 else "")
    return DataError(f"no {role} column '{name}' in split '{split}' (columns: {shown}); {hint}")


def _is_missing(v: Any) -> bool:
    import pandas as pd

    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def _bad_text(split: str, column: str, row: int, value: Any) -> DataError:
    if _is_missing(value):
        return DataError(
            f"row {row} of split '{split}' has no text in column '{column}' ({value}); "
            f"drop or fill those rows first, e.g. df.dropna(subset=['{column}'])"
        )
    return DataError(
        f"row {row} of split '{split}' has a {type(value).__name__} ({value!r}) in "
        f"text column '{column}', not a string; convert it, e.g. "
        f"df['{column}'].astype(str)"
    )


def _check_text_arrow(arr: Any, split: str, column: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if arr.null_count:
        raise _bad_text(split, column, pc.index(pc.is_null(arr), True).as_py(), None)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise _bad_text(split, column, 0, arr[0].as_py())


def _encode_labels(splits: dict[str, Any], column: str, allow_rare: bool = False) -> dict[str, Any]:
    """One label representation in every split: a shared ClassLabel, or float32 for regression."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    features = {name: ds.features["label"] for name, ds in splits.items()}
    class_labels = [f for f in features.values() if isinstance(f, datasets.ClassLabel)]
    if class_labels:  # already encoded (hub or sample data): keep ids and names as they are
        if len(class_labels) < len(features) or len({tuple(f.names) for f in class_labels}) > 1:
            shown = "; ".join(f"{n}: {f}" for n, f in features.items())
            raise DataError(
                f"the splits store labels differently ({shown}); cast '{column}' to "
                "one ClassLabel in every split first"
            )
        return _check_classes(splits, class_labels[0].names)
    kinds: dict[str, str] = {}
    values: set = set()
    counts: dict[Any, int] = {}
    for name, ds in splits.items():
        arr = ds.with_format("arrow")["label"]
        missing = pc.is_null(arr, nan_is_null=True)
        if pc.any(missing).as_py():
            row = pc.index(missing, True).as_py()
            raise DataError(
                f"row {row} of split '{name}' has no label in column '{column}'; drop "
                f"or fill those rows first, e.g. df.dropna(subset=['{column}'])"
            )
        t = arr.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            kinds[name] = "str"
        elif pa.types.is_integer(t) or pa.types.is_boolean(t):
            kinds[name] = "int"
        elif pa.types.is_floating(t):
            kinds[name] = "float"
        else:
            raise DataError(
                f"label column '{column}' in split '{name}' holds {t} values; labels "
                "must be strings, integers or floats (multi-label is not supported)"
            )
        if kinds[name] == "str":
            for item in pc.value_counts(arr).to_pylist():
                counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
        if kinds[name] != "float":
            values.update(pc.unique(arr).to_pylist())
    found = set(kinds.values())
    if "float" in found and found <= {"int", "float"}:  # a regression target
        return {n: ds.cast_column("label", datasets.Value("float32")) for n, ds in splits.items()}
    if len(found) > 1:
        shown = ", ".join(f"{k} in '{n}'" for n, k in kinds.items())
        raise DataError(
            f"label column '{column}' has different types across splits ({shown}); "
            "use one label type in every split"
        )
    if found == {"str"} and not allow_rare:
        _check_rare_labels(counts, column)
    ordered = sorted(values)  # strings alphabetically, ints numerically, False before True
    names = [str(v).lower() if isinstance(v, bool) else str(v) for v in ordered]
    if found == {"int"} and ordered != list(range(len(ordered))):
        # Ids must be 0..n-1: going through arrow's strings ("3", "true") maps e.g. star ratings
        # 1..5 to ids 0..4 while the names keep the original values.
        splits = {n: ds.cast_column("label", datasets.Value("string")) for n, ds in splits.items()}
    label = datasets.ClassLabel(names=names)
    return _check_classes({n: ds.cast_column("label", label) for n, ds in splits.items()}, names)


# A class at most this share of a close-named class's rows looks like a typo of it.
RARE_SHARE = 0.05


def _check_rare_labels(counts: dict[str, int], column: str) -> None:
    """Refuse a label value that looks like a typo of another: few rows, and a name that differs
    from a class with at least 20x its rows only in case or spacing, or by an edit or two."""
    by_size = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    for rare, n in reversed(by_size):  # the rarest first
        for big, m in by_size:
            if n > m * RARE_SHARE:
                break  # the rest are smaller still
            if _close_names(rare, big):
                raise DataError(
                    f"label {rare!r} has {n} row{'s' if n != 1 else ''} in column '{column}' and "
                    f"its name is close to {big!r} ({m} rows): a typo would become a class of its "
                    f"own. Fix the value (e.g. df['{column}'].replace({{{rare!r}: {big!r}}})), or "
                    "pass allow_rare_labels=True (config key allow_rare_labels: true) if it is a "
                    "class on purpose"
                )


def _close_names(a: str, b: str) -> bool:
    def norm(x: str) -> str:
        return " ".join(x.replace("_", " ").replace("-", " ").split()).casefold()

    a, b = norm(a), norm(b)
    if a == b:
        return True  # differs in case, spaces, _ or - only
    if a.strip("0123456789") == b.strip("0123456789") and a != b:
        return False  # "class1" and "class2", "v10" and "v11": numbered classes, not typos
    limit = 1 if max(len(a), len(b)) <= 6 else 2
    return _edit_distance(a, b, limit) <= limit


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (insert, delete, substitute, swap two neighbours), or
    ``limit + 1`` as soon as it is known to exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def align_labels(data: Any, names: list[str]) -> Any:
    """Renumber the ``label`` ClassLabel of a ``Dataset`` (or of every split of a ``DatasetDict``)
    to the id order of ``names`` (a model's id2label holding the same names, compared
    case-insensitively); the rows keep their meaning."""
    import datasets

    old = label_names(data)
    if old is None or old == names:
        return data
    index = {n.casefold(): i for i, n in enumerate(names)}
    lookup = [index[n.casefold()] for n in old]

    def remap(batch: dict[str, list]) -> dict[str, list]:
        batch["label"] = [lookup[i] if i is not None and i >= 0 else i for i in batch["label"]]
        return batch

    def one(ds: datasets.Dataset) -> datasets.Dataset:
        features = ds.features.copy()
        features["label"] = datasets.ClassLabel(names=list(names))
        return ds.map(remap, batched=True, features=features)

    with _quiet():
        if isinstance(data, datasets.DatasetDict):
            return datasets.DatasetDict({split: one(ds) for split, ds in data.items()})
        return one(data)


def _check_classes(splits: dict[str, Any], names: list[str]) -> dict[str, Any]:
    import pyarrow.compute as pc

    ids = pc.unique(splits["train"].with_format("arrow")["label"]).to_pylist()
    ids = [i for i in ids if i is not None and i >= 0]  # -1 marks "no label" in ClassLabel data
    if len(ids) < 2:
        only = names[ids[0]] if ids else "none"
        raise DataError(
            f"the train labels hold a single class ('{only}'); a classifier needs at "
            "least two, so check the label column or pass label=None for plain text"
        )
    return splits


def _carve(train: Any, eval_split: float | int, seed: int) -> tuple[Any, Any]:
    """Split ``eval_split`` rows off ``train``, stratified when the labels are classes.

    Not ``train_test_split(stratify_by_column=...)``: it raises when a class has a single row or the
    eval set is smaller than the number of classes, and takes seconds per 100k rows.
    """
    import datasets
    import numpy as np

    n = len(train)
    k = (
        int(eval_split)
        if isinstance(eval_split, numbers.Integral)
        else max(1, round(n * eval_split))
    )
    if k >= n:
        raise DataError(
            f"eval_split={eval_split!r} leaves no training rows (train has {n}); use "
            "a smaller count or a fraction such as 0.1"
        )
    rng = np.random.default_rng(seed)
    eval_idx = np.empty(0, dtype=np.int64)
    if isinstance(train.features.get("label"), datasets.ClassLabel):
        labels = train.with_format("arrow")["label"].to_numpy()
        classes, counts = np.unique(labels, return_counts=True)
        quota = k * counts / n
        take = np.floor(quota).astype(int)
        # Largest remainders get the leftover rows so the eval set has exactly k rows, unless
        # that would leave a class with no training row.
        take[np.argsort(take - quota, kind="stable")[: k - take.sum()]] += 1
        take = np.minimum(take, np.maximum(counts - 1, 0))
        parts = [
            rng.permutation(np.flatnonzero(labels == c))[:t]
            for c, t in zip(classes, take, strict=True)
        ]
        eval_idx = rng.permutation(np.concatenate(parts))
    if len(eval_idx) == 0:  # regression, unlabelled, or every class has a single row
        eval_idx = rng.permutation(n)[:k]
    keep = np.ones(n, dtype=bool)
    keep[eval_idx] = False
    return train.select(rng.permutation(np.flatnonzero(keep))), train.select(eval_idx)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide datasets' per-cast progress bars, which would fill a notebook cell with a dozen bars."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
