"""Turn what the user passes to `fit` (a `datasets.Dataset` of raw text or tokens, a torch `Dataset`, a
`DataLoader`) into batches: tokenize once, pad each batch only to its own longest example, and by
default group examples of similar length so little compute goes to padding.

The batch order is a pure function of (seed, epoch), owned here rather than by the global RNG, so a
resumed run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..config import ConfigError
from ..data import DataError  # one error type for bad data, whether load_data or fit finds it

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels", "decoder_input_ids")
# Examples per "megabatch" that are sorted together when grouping by length: big enough that
# neighbours have similar lengths, small enough that batch order stays well shuffled.
MEGABATCH_FACTOR = 50


class TokenizedDataset(Dataset):
    """Columns of python lists: indexing a row is a few list lookups, not an Arrow row decode."""

    def __init__(self, columns: dict[str, list]):
        self.columns = columns
        self.lengths = [len(x) for x in columns["input_ids"]]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.columns.items()}


class BatchOrder:
    """Batches of indices for one epoch: shuffled, optionally grouped by length, resumable.

    `set_epoch(e)` fixes the order; `skip` drops the first batches of the next pass (resume).
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int,
                 lengths: Sequence[int] | None = None, drop_last: bool = False):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.lengths, self.drop_last = lengths, drop_last
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        if not self.shuffle:
            idx = list(range(self.n))
            return self._chunk(idx)
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        idx = torch.randperm(self.n, generator=g).tolist()
        if self.lengths is None:
            return self._chunk(idx)
        # Sort within megabatches, then shuffle the batches: similar lengths per batch, random order.
        mega = self.batch_size * MEGABATCH_FACTOR
        lengths = self.lengths
        grouped: list[int] = []
        for start in range(0, self.n, mega):
            grouped += sorted(idx[start:start + mega], key=lambda i: -lengths[i])
        batches = self._chunk(grouped)
        # Only the very last batch may be short: accelerate's sharding across processes relies on it.
        tail = batches.pop() if batches and len(batches[-1]) < self.batch_size else None
        if batches:
            order = torch.randperm(len(batches), generator=g).tolist()
            longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
            # The longest batch goes first so an out-of-memory error shows at step 1, not at step 900.
            order.remove(longest)
            batches = [batches[longest]] + [batches[b] for b in order]
        return batches + ([tail] if tail else [])

    def _chunk(self, idx: list[int]) -> list[list[int]]:
        out = [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        yield from self.batches()[skip:]

    def __len__(self) -> int:
        full = self.n // self.batch_size
        return full if self.drop_last else math.ceil(self.n / self.batch_size)


class PadCollator:
    """Pad a list of tokenized examples to the batch's longest one.

    Does what `DataCollatorWithPadding` does for the columns nbkit produces, without the per-batch
    `tokenizer.pad` round trip (measured in benchmarks/bench_loop.py). `lm_labels` builds causal-LM
    labels from the inputs with padding ignored (-100).
    """

    def __init__(self, pad_id: int = 0, *, lm_labels: bool = False, pad_to_multiple_of: int | None = None):
        self.pad_id, self.lm_labels, self.multiple = pad_id, lm_labels, pad_to_multiple_of

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        n = len(rows)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((n, width), dtype=torch.long)  # (B, T)
        for i, r in enumerate(rows):
            t = len(r["input_ids"])
            ids[i, :t] = torch.as_tensor(r["input_ids"])
            mask[i, :t] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in rows[0]:
            tt = torch.zeros((n, width), dtype=torch.long)  # (B, T)
            for i, r in enumerate(rows):
                tt[i, :len(r["token_type_ids"])] = torch.as_tensor(r["token_type_ids"])
            batch["token_type_ids"] = tt
        if "labels" in rows[0]:
            first = rows[0]["labels"]
            if isinstance(first, (list, tuple)):  # token labels or target token ids: pad with -100
                lw = max(len(r["labels"]) for r in rows)
                lab = torch.full((n, lw), -100, dtype=torch.long)  # (B, T_labels)
                for i, r in enumerate(rows):
                    lab[i, :len(r["labels"])] = torch.as_tensor(r["labels"])
                batch["labels"] = lab
            else:
                dtype = torch.float32 if isinstance(first, float) else torch.long
                batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=dtype)  # (B,)
        elif self.lm_labels:
            batch["labels"] = ids.masked_fill(mask == 0, -100)  # (B, T)
        return batch


def is_hf_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("datasets.") and hasattr(data, "column_names")


def tokenize_dataset(ds: Any, tokenizer: Any, *, max_length: int, seq2seq: bool = False) -> TokenizedDataset:
    """Tokenize a `datasets.Dataset` with a `text` column (and `text_pair`, `label`) once."""
    if len(ds) == 0:
        raise DataError("the data set is empty: pass at least one example")
    cols = ds.column_names
    if "input_ids" in cols:
        keep = [c for c in cols if c in MODEL_INPUTS or c == "label"]
        columns = {("labels" if c == "label" else c): v for c, v in ds.select_columns(keep).to_dict().items()}
        return TokenizedDataset(columns)
    if "text" not in cols:
        raise DataError(
            f"no 'text' column to tokenize (columns: {', '.join(cols)}); rename your text column to "
            "'text', load it with nbkit.load_data(..., text='your_column'), or pass tokenized data"
        )
    if tokenizer is None:
        raise DataError("the data is raw text: pass tokenizer=... so fit can tokenize it")
    # One Arrow-to-Python conversion for all columns (datasets 5 reads a column row by row: 7x slower).
    raw = ds.select_columns([c for c in ("text", "text_pair", "label") if c in cols]).to_dict()
    texts = raw["text"]
    for name in ("text", "text_pair"):
        if name in cols:
            values = raw[name]
            bad = next((i for i, t in enumerate(values) if not isinstance(t, str)), None)
            if bad is not None:
                raise DataError(
                    f"column {name!r} must hold strings; row {bad} holds {values[bad]!r} "
                    f"({type(values[bad]).__name__}). Drop or fill missing rows first."
                )
    pairs = raw.get("text_pair")
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    columns = {k: list(v) for k, v in enc.items() if k in MODEL_INPUTS}
    if "label" in cols:
        labels = raw["label"]
        if seq2seq and labels and isinstance(labels[0], str):
            columns["labels"] = tokenizer(text_target=labels, truncation=True, max_length=max_length)["input_ids"]
        else:
            columns["labels"] = labels
    return TokenizedDataset(columns)


def make_loader(data: Any, *, tokenizer: Any, collate_fn: Any, batch_size: int, shuffle: bool, seed: int,
                group_by_length: bool | None, max_length: int, lm_labels: bool = False,
                seq2seq: bool = False) -> tuple[DataLoader, BatchOrder | None]:
    """A DataLoader for `data` and the BatchOrder that drives it (None for a user's own DataLoader)."""
    if isinstance(data, DataLoader):
        return data, None
    if batch_size <= 0:
        raise ConfigError(f"'batch_size' must be an integer >= 1, got {batch_size!r}")
    lengths = None
    if is_hf_dataset(data):
        data = tokenize_dataset(data, tokenizer, max_length=max_length, seq2seq=seq2seq)
    if isinstance(data, TokenizedDataset):
        if collate_fn is None:
            pad_id = getattr(tokenizer, "pad_token_id", None) or 0
            collate_fn = PadCollator(pad_id, lm_labels=lm_labels and "labels" not in data.columns)
        if group_by_length is None or group_by_length:
            lengths = data.lengths
    elif group_by_length:
        raise ConfigError("group_by_length=True needs text or tokenized data (a datasets.Dataset)")
    try:
        n = len(data)
    except TypeError:
        raise DataError("the data has no length: pass a map-style Dataset or your own DataLoader") from None
    if n == 0:
        raise DataError("the data set is empty: pass at least one example")
    order = BatchOrder(n, batch_size, shuffle=shuffle, seed=seed, lengths=lengths if shuffle else None)
    # Its own generator: otherwise each epoch's iterator draws a seed from the global RNG, and a run
    # resumed mid-epoch would see different dropout masks than an uninterrupted one.
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_sampler=order, collate_fn=collate_fn, generator=gen), order
