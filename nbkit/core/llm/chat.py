"""Chat data for causal LMs: read it, detect its format, apply the tokenizer's chat template and
build labels that train on the answers only.

Three formats, detected from the columns (the same in YAML, Python and the CLI):
- `messages`: a list of `{role, content}` turns (system optional); every assistant turn is trained.
- `prompt` + `completion`: strings or message lists; the completion is the answer.
- `text`: plain text (continued pretraining); every token is trained, plus an end-of-sequence token.

Labels are the input ids with every token that is not trained set to -100 (what a Hugging Face causal
LM ignores in its loss). With `train_on="answers"` (the default) the trained tokens are each answer's
content and the end-of-turn token that closes it, so the model learns to stop. Examples whose answer
`max_length` cuts are counted (`ChatSplit.truncated`); an example left with no trained token is an
error before training starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..data import DataError

FORMATS = ("messages", "prompt-completion", "text")
ROLES = ("system", "user", "assistant", "tool")
TRAIN_ON = ("answers", "all")

# ChatML, which SmolLM2 and Qwen use: what `chat_template: chatml` gives a tokenizer that has none.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
# End-of-turn markers of common templates, tried after the tokenizer's eos token.
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>", "<|endoftext|>")


@dataclass
class Conversation:
    """One example: `messages` (chat formats) or `text`, and the format it came in."""

    format: str
    messages: list[dict[str, str]] | None = None
    text: str | None = None

    @property
    def prompt(self) -> list[dict[str, str]]:
        """The turns before the last assistant turn (what generation starts from)."""
        msgs = self.messages or []
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return msgs[:last]

    @property
    def answer(self) -> str:
        """The content of the last assistant turn (the reference for exact match)."""
        return [m for m in self.messages or [] if m["role"] == "assistant"][-1]["content"]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool  # max_length cut off trained tokens


@dataclass
class ChatSplit:
    """One split: the conversations, their token columns (input_ids, attention_mask, labels) and
    how many examples max_length cut."""

    conversations: list[Conversation]
    columns: dict[str, list]
    truncated: int = 0
    format: str = "messages"
    truncated_rows: list[bool] = field(default_factory=list)  # per example: were trained tokens cut

    def __len__(self) -> int:
        return len(self.conversations)


# --- reading and detecting ----------------------------------------------------------------------


# Bundled instruction tasks (made by scripts/make_llm_data.py): name -> file stem under llm/data/.
SAMPLES = {"reviews-json": "reviews_json"}


def bundled(name: str) -> dict[str, list[dict[str, Any]]]:
    """A bundled task's train and test rows. "reviews-json": the bundled sentiment reviews (1,200
    train / 400 test), each answered with one line of JSON naming its sentiment and topic."""
    import importlib.resources

    folder = importlib.resources.files("nbkit.core.llm") / "data"
    return {split: [json.loads(line) for line in (folder / f"{SAMPLES[name]}_{split}.jsonl")
                    .read_text(encoding="utf-8").splitlines() if line.strip()]
            for split in ("train", "test")}


def read_rows(source: Any) -> dict[str, list[dict[str, Any]]]:
    """Split name -> rows (dicts) for any source `load_data` reads: a file, a DataFrame, a list of
    dicts, a dict of columns, a `datasets.Dataset`/`DatasetDict` or a hub name; or a bundled task
    ("reviews-json")."""
    from ..data import _normalize_splits, _read_source

    if isinstance(source, str) and source in SAMPLES:
        return bundled(source)
    if isinstance(source, (list, tuple)) and source and all(isinstance(r, str) for r in source):
        return {"train": [{"text": t} for t in source]}
    splits = _normalize_splits(_read_source(source))
    out = {}
    for name, obj in splits.items():
        if hasattr(obj, "to_dict") and hasattr(obj, "column_names"):  # datasets.Dataset
            cols = obj.to_dict()
        else:  # a DataFrame
            cols = {str(c): obj[c].tolist() for c in obj.columns}
        n = len(next(iter(cols.values()))) if cols else 0
        out[name] = [{k: v[i] for k, v in cols.items()} for i in range(n)]
    return out


def detect_format(columns: list[str]) -> str:
    """The data format its columns imply, or a DataError listing what is accepted."""
    if "messages" in columns:
        return "messages"
    if "prompt" in columns and "completion" in columns:
        return "prompt-completion"
    if "text" in columns:
        return "text"
    raise DataError(
        f"cannot tell the format of this LLM data from its columns ({', '.join(columns) or 'none'}): "
        "give a 'messages' column (a list of {role, content} turns), 'prompt' and 'completion' "
        "columns, or a 'text' column for plain text"
    )


def _as_messages(value: Any, row: int, column: str, default_role: str) -> list[dict[str, str]]:
    if isinstance(value, str) and column == "messages":
        try:
            value = json.loads(value)  # a CSV cell holding JSON
        except json.JSONDecodeError:
            raise DataError(f"row {row}: 'messages' is a string that is not a JSON list of turns") from None
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if hasattr(value, "tolist"):  # a numpy array from parquet
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(
            f"row {row}: {column!r} must be a string or a non-empty list of {{role, content}} turns, "
            f"got {value!r}"
        )
    out = []
    for turn in value:
        if not isinstance(turn, Mapping) or "role" not in turn or "content" not in turn:
            raise DataError(f"row {row}: each turn of {column!r} needs 'role' and 'content', got {turn!r}")
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            raise DataError(
                f"row {row}: unknown role {role!r} in {column!r}; roles are {', '.join(ROLES)}"
            )
        if not isinstance(content, str):
            raise DataError(f"row {row}: the content of a {role} turn must be a string, got {content!r}")
        out.append({"role": role, "content": content})
    return out


def to_conversations(rows: list[dict[str, Any]], fmt: str, split: str = "train") -> list[Conversation]:
    """Validate rows of format `fmt` into conversations; errors name the split and row."""
    if not rows:
        raise DataError(f"the data is empty (split '{split}' has no rows); pass at least one example")
    out = []
    for i, row in enumerate(rows):
        where = f"split '{split}', row {i}"
        if fmt == "text":
            text = row.get("text")
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: 'text' must be a non-empty string, got {text!r}")
            out.append(Conversation("text", text=text))
            continue
        try:
            if fmt == "messages":
                msgs = _as_messages(row.get("messages"), i, "messages", "user")
            else:
                msgs = (_as_messages(row.get("prompt"), i, "prompt", "user")
                        + _as_messages(row.get("completion"), i, "completion", "assistant"))
        except DataError as e:
            raise DataError(f"split '{split}', {e}") from None
        answers = [m for m in msgs if m["role"] == "assistant"]
        if not answers:
            what = "completion" if fmt == "prompt-completion" else "assistant turn"
            raise DataError(f"{where} has no {what}: there is nothing to train on; add the answer")
        if any(not m["content"].strip() for m in answers):
            raise DataError(f"{where} has an empty assistant turn; give it the answer or drop the row")
        out.append(Conversation(fmt, messages=msgs))
    return out


# --- templates and masks ------------------------------------------------------------------------


def ensure_chat_template(tokenizer: Any, chat_template: str | None = None) -> None:
    """Give `tokenizer` the template `chat_template` ("chatml", a Jinja string or a file), or check
    it has one; a DataError says how to give one."""
    if chat_template:
        if chat_template.strip().lower() == "chatml":
            template = CHATML
            for token in ("<|im_start|>", "<|im_end|>"):
                if token not in tokenizer.get_vocab():
                    tokenizer.add_special_tokens({"additional_special_tokens": [token]})
        elif "{%" not in chat_template and "{{" not in chat_template and os.path.isfile(chat_template):
            with open(chat_template, encoding="utf-8") as f:
                template = f.read()
        else:
            template = chat_template
        tokenizer.chat_template = template
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise DataError(
            f"the tokenizer of {name!r} has no chat template, which chat data needs: set "
            "`chat_template: chatml` (or a Jinja template string or file), use an instruction-tuned "
            "model, or give the data a plain 'text' column"
        )


def end_of_turn(tokenizer: Any) -> str | None:
    """The token string that closes an assistant turn in this tokenizer's template."""
    template = getattr(tokenizer, "chat_template", "") or ""
    candidates = [t for t in _END_OF_TURN if t in template]
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos in template:
        candidates.insert(0, eos)
    return candidates[0] if candidates else eos


def render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def answer_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans to train: each assistant turn's content
    through the end-of-turn token that follows it."""
    full = render(tokenizer, messages)
    eot = end_of_turn(tokenizer)
    spans, cursor = [], 0
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prefix = render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        start_at = len(prefix) if full.startswith(prefix) else cursor
        content = msg["content"].strip()
        start = full.find(content, max(start_at, cursor))
        if start < 0:
            raise DataError(
                f"the chat template does not reproduce assistant turn {i} verbatim, so its tokens "
                "cannot be found; use train_on: all or another chat template"
            )
        end = start + len(content)
        if eot:
            at = full.find(eot, end)
            # The end-of-turn marker right after the answer (only whitespace between): train it too.
            if at >= 0 and not full[end:at].strip():
                end = at + len(eot)
        spans.append((start, end))
        cursor = end
    return full, spans


def encode(conv: Conversation, tokenizer: Any, *, max_length: int, train_on: str = "answers") -> Encoded:
    """Token ids and labels (-100 where not trained) of one conversation, cut to max_length."""
    if conv.format == "text":
        ids = tokenizer(conv.text, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids = ids + [tokenizer.eos_token_id]
        labels = list(ids)
    else:
        text, spans = answer_spans(tokenizer, conv.messages or [])
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        if train_on == "all":
            labels = list(ids)
        else:
            labels = [-100] * len(ids)
            for k, (a, b) in enumerate(enc["offset_mapping"]):
                if b > a and any(a < e and b > s for s, e in spans):
                    labels[k] = ids[k]
    trained_before = sum(1 for v in labels if v != -100)
    ids, labels = ids[:max_length], labels[:max_length]
    trained_after = sum(1 for v in labels if v != -100)
    return Encoded(ids, labels, truncated=trained_after < trained_before)


def encode_split(conversations: list[Conversation], tokenizer: Any, *, max_length: int,
                 train_on: str = "answers", split: str = "train") -> ChatSplit:
    ids, labels, masks, cut = [], [], [], []
    for i, conv in enumerate(conversations):
        e = encode(conv, tokenizer, max_length=max_length, train_on=train_on)
        if all(v == -100 for v in e.labels):
            why = (f"max_length={max_length} cuts off its answer (the prompt alone fills it); raise "
                   "max_length or shorten the prompt") if e.truncated else "none of its tokens is trained"
            raise DataError(f"split '{split}', row {i} has no trained token: {why}")
        cut.append(e.truncated)
        ids.append(e.input_ids)
        labels.append(e.labels)
        masks.append([1] * len(e.input_ids))
    return ChatSplit(conversations, {"input_ids": ids, "attention_mask": masks, "labels": labels},
                     truncated=sum(cut), format=conversations[0].format, truncated_rows=cut)


def load_chat_data(source: Any, tokenizer: Any, *, max_length: int = 256, train_on: str = "answers",
                   eval_split: float | int = 0.1, seed: int = 0, chat_template: str | None = None,
                   ) -> dict[str, ChatSplit]:
    """Read, validate and tokenize LLM data: split name ("train", "eval", "test") -> ChatSplit."""
    import random

    if train_on not in TRAIN_ON:
        raise DataError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
    raw = read_rows(source)
    columns = sorted({k for r in raw["train"][:100] for k in r})
    fmt = detect_format(columns)
    if fmt != "text":
        ensure_chat_template(tokenizer, chat_template)
    convs = {name: to_conversations(rows, fmt, name) for name, rows in raw.items()}
    if "eval" not in convs and eval_split:
        train = convs["train"]
        k = int(eval_split) if eval_split >= 1 else max(1, round(len(train) * eval_split))
        if k >= len(train):
            raise DataError(f"eval_split={eval_split!r} leaves no training rows (train has {len(train)})")
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        convs["eval"] = [train[i] for i in order[:k]]
        convs["train"] = [train[i] for i in sorted(order[k:])]
    return {name: encode_split(c, tokenizer, max_length=max_length, train_on=train_on, split=name)
            for name, c in convs.items()}
