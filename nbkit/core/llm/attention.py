"""What attention capture needs from chat models: readable token text and chat-template inputs.

`nbkit.core.attention.capture_attention` calls these for causal LMs. Byte-level BPE tokens ('Ġthe',
'Ċ') become the text they stand for (' the', '\\n'); SentencePiece's '▁' becomes a space. A prompt is
rendered with the tokenizer's chat template, and each token is marked as the user's text (segment 0),
template scaffolding or special token (-1), so the views can show the template distinctly.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

SEGMENT_TEMPLATE = -1  # special tokens and the chat template's own text (roles, system prompt, newlines)
SEGMENT_PROMPT = 0  # the user's text
SEGMENT_ANSWER = 1  # what the model generated


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _decoder_kind(tokenizer: Any) -> str:
    """'bytelevel', 'metaspace' or '' (tokens are already readable, e.g. WordPiece or word level)."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is None:
        return "metaspace" if type(tokenizer).__name__.startswith(("Llama", "T5")) else ""
    try:
        spec = json.dumps(json.loads(decoder.__getstate__()))
    except (TypeError, ValueError, AttributeError):
        return ""
    if '"ByteLevel"' in spec:
        return "bytelevel"
    if '"Metaspace"' in spec or "\\u2581" in spec or "\u2581" in spec:
        return "metaspace"
    return ""


def special_ids(tokenizer: Any) -> set[int]:
    """Ids of special tokens, including added ones flagged special (ChatML's <|im_start|>)."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for i, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(i))
    return ids


def readable_tokens(tokenizer: Any, ids: list[int]) -> list[str]:
    """The text each token stands for. Special and added tokens keep their names; a byte-level token
    holding part of a multi-byte character shows U+FFFD, as decoding it alone would."""
    raw = tokenizer.convert_ids_to_tokens(list(ids))
    kind = _decoder_kind(tokenizer)
    if not kind:
        return [str(t) for t in raw]
    added = {int(i) for i in (getattr(tokenizer, "added_tokens_decoder", None) or {})}
    table = _byte_decoder()
    out = []
    for i, token in zip(ids, raw, strict=True):
        token = str(token)
        if int(i) in added:
            out.append(token)
        elif kind == "bytelevel" and all(c in table for c in token):
            out.append(bytes(table[c] for c in token).decode("utf-8", errors="replace"))
        else:
            out.append(token.replace("\u2581", " "))
    return out


def as_messages(text: Any) -> list[dict[str, str]]:
    """A prompt as chat turns: a string is one user turn; a list of {role, content} is used as given."""
    if isinstance(text, str):
        return [{"role": "user", "content": text}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in text]


def encode_chat(tokenizer: Any, text: Any) -> tuple[Any, list[int], list[int | None]]:
    """Tokenize `text` through the chat template with the assistant's turn opened (what the model sees
    before it answers). Returns (encoding, segments, word ids): the tokens inside a turn's content are
    SEGMENT_PROMPT, the rest of the template and special tokens SEGMENT_TEMPLATE."""
    messages = as_messages(text)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    spans, cursor = [], 0
    for m in messages:  # where each turn's content sits in the rendered string
        at = rendered.find(m["content"], cursor) if m["content"] else -1
        if at >= 0:
            spans.append((at, at + len(m["content"])))
            cursor = at + len(m["content"])
    fast = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(rendered, add_special_tokens=False, return_tensors="pt",
                    return_offsets_mapping=fast)
    offsets = enc.pop("offset_mapping")[0].tolist() if fast else None
    ids = enc["input_ids"][0].tolist()
    specials = special_ids(tokenizer)
    segments = []
    for pos, tid in enumerate(ids):
        inside = offsets is not None and any(a <= offsets[pos][0] and offsets[pos][1] <= b and
                                             offsets[pos][1] > offsets[pos][0] for a, b in spans)
        segments.append(SEGMENT_PROMPT if inside and tid not in specials else SEGMENT_TEMPLATE)
    word_ids = enc.word_ids(0) if hasattr(enc, "word_ids") else [None] * len(ids)
    word_ids = [None if tid in specials else w for tid, w in zip(ids, word_ids, strict=True)]
    return enc, segments, word_ids


def generation_options(model: Any, tokenizer: Any) -> dict[str, Any]:
    """Greedy decoding that stops at eos or the template's end-of-turn token (as `nbkit.core.llm.generate`)."""
    from .chat import end_of_turn

    eos = {tokenizer.eos_token_id}
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos |= set(config_eos) if isinstance(config_eos, (list, tuple)) else {config_eos}
    turn = end_of_turn(tokenizer)
    if turn is not None:
        tid = tokenizer.convert_tokens_to_ids(turn)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            eos.add(tid)
    eos_ids = sorted(t for t in eos if t is not None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos_ids or [None])[0]
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None,
            "eos_token_id": eos_ids or None, "pad_token_id": pad}
