"""Generation for chat models and the `exact_match` metric of greedy answers.

`generate` applies the tokenizer's chat template to plain prompts (a string becomes one user turn; a
list of `{role, content}` turns is used as given), pads on the left so a batch of prompts of different
lengths generates together, and returns the new text only.
"""

from __future__ import annotations

import re
from typing import Any

from .chat import Conversation


def _as_messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, (list, tuple)) and all(isinstance(m, dict) for m in prompt):
        return list(prompt)
    raise TypeError(f"a prompt is a string or a list of {{role, content}} turns, not {type(prompt).__name__}")


def generate(model: Any, tokenizer: Any, prompts: Any, *, max_new_tokens: int = 64, temperature: float = 0.0,
             batch_size: int = 16, chat: bool | None = None) -> list[str] | str:
    """Answers of `model` to `prompts` (one string or a list). `temperature=0.0`: greedy decoding.
    `chat`: apply the chat template (default: when the tokenizer has one)."""
    import torch

    single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict))
    items = [prompts] if single else list(prompts)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    chat = bool(getattr(tokenizer, "chat_template", None)) if chat is None else chat
    if chat:
        texts = [tokenizer.apply_chat_template(_as_messages(p), tokenize=False, add_generation_prompt=True)
                 for p in items]
    else:
        texts = [p if isinstance(p, str) else " ".join(m["content"] for m in p) for p in items]
    device = next(model.parameters()).device
    eos = [t for t in {tokenizer.eos_token_id, *(_eot_ids(tokenizer))} if t is not None]
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "eos_token_id": eos or None,
                               "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        options.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                                add_special_tokens=not chat).to(device)
                ids = model.generate(**enc, **options)  # (B, T_prompt + T_new)
                new = ids[:, enc["input_ids"].shape[1]:]
                out += [s.strip() for s in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return out[0] if single else out


def _eot_ids(tokenizer: Any) -> list[int]:
    from .chat import end_of_turn

    token = end_of_turn(tokenizer)
    if token is None:
        return []
    tid = tokenizer.convert_tokens_to_ids(token)
    return [tid] if isinstance(tid, int) and tid != tokenizer.unk_token_id else []


LOGITS_BUDGET = 2**26  # bytes of float32 logits per evaluation batch (64 MB; the loss doubles it)


def logits_batch_size(batch_size: int, model: Any, max_length: int) -> int:
    """`batch_size`, lowered so one batch's logits (batch x tokens x vocabulary, float32) stay
    within LOGITS_BUDGET: smollm2's 49k vocabulary makes 25 MB of logits per 128-token example,
    and the loss's log-softmax as much again. Evaluation then fits where training fits."""
    config = getattr(model, "config", None)
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    vocab = getattr(head, "out_features", None) or getattr(config, "vocab_size", None) or 0
    if not vocab:
        return batch_size
    return max(1, min(batch_size, LOGITS_BUDGET // (max_length * vocab * 4)))


def normalize(text: str) -> str:
    """Whitespace-normalized text: what exact_match compares."""
    return re.sub(r"\s+", " ", text).strip()


def exact_match(predictions: list[str], references: list[str]) -> float:
    if not references:
        return float("nan")
    hits = sum(normalize(p) == normalize(r) for p, r in zip(predictions, references, strict=True))
    return hits / len(references)


class ExactMatch:
    """An evaluator for `fit(evaluators=[...])`: greedy answers to the first `n` eval conversations,
    scored against their reference answers. Called as `evaluator(model, prefix) -> {name: value}`."""

    def __init__(self, conversations: list[Conversation], tokenizer: Any, *, n: int = 32,
                 max_new_tokens: int | None = None, batch_size: int = 16):
        convs = [c for c in conversations if c.messages][:n]
        self.prompts = [c.prompt for c in convs]
        self.references = [c.answer for c in convs]
        if max_new_tokens is None:  # enough for the longest reference, plus a little
            longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in self.references),
                          default=16)
            max_new_tokens = longest + 8
        self.tokenizer, self.max_new_tokens, self.batch_size = tokenizer, max_new_tokens, batch_size
        self.last_predictions: list[str] = []

    def __call__(self, model: Any, prefix: str = "eval_") -> dict[str, float]:
        if not self.prompts:
            return {}
        model = getattr(model, "module", model)  # DDP wraps the model; generate lives on the inner one
        preds = generate(model, self.tokenizer, self.prompts, max_new_tokens=self.max_new_tokens,
                         batch_size=self.batch_size)
        self.last_predictions = preds
        return {f"{prefix}exact_match": exact_match(preds, self.references)}
