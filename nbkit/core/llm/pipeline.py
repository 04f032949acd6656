"""What `finetune` does for `task: causal-lm`: load the model (GGUF alias, hub id, folder, or a
`(model, tokenizer)` pair), read and mask the chat data, add LoRA, and build the exact-match
evaluator. `finetune` then hands the token columns to `fit` like any tokenized data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError
from .chat import ChatSplit, load_chat_data
from .lora import apply_lora, lora_options

# What `task: causal-lm` on chat data reports when `metrics` is not given.
CHAT_METRICS = ["perplexity", "exact_match"]


@dataclass
class LLMData:
    """The splits of LLM data (name -> ChatSplit), as `prepare` returns them for causal-lm."""

    splits: dict[str, ChatSplit]
    format: str
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> ChatSplit:
        return self.splits[name]

    def __contains__(self, name: str) -> bool:
        return name in self.splits

    def get(self, name: str, default: Any = None) -> Any:
        return self.splits.get(name, default)

    def items(self):
        return self.splits.items()

    def dataset(self, name: str):
        """The split as fit's TokenizedDataset (input_ids, attention_mask, labels with -100)."""
        from ..train.batching import TokenizedDataset

        split = self.splits.get(name)
        return None if split is None else TokenizedDataset(split.columns)


def load_llm(cfg: Any) -> tuple[Any, Any]:
    """(model, tokenizer) for a causal-lm config, 4-bit applied (LoRA comes after the data, whose
    chat template may add tokens); errors before loading."""
    from ..models import load_model
    from .lora import check_4bit, quantization_config

    options = lora_options(cfg.lora)
    if cfg.load_in_4bit:
        check_4bit()
        if options is None:
            raise ConfigError("load_in_4bit trains adapters on a frozen 4-bit model: set lora: true too")
    if isinstance(cfg.model, tuple):
        model, tokenizer = cfg.model
        if cfg.load_in_4bit:
            raise ConfigError("load_in_4bit quantizes while loading: give model a name, not a loaded model")
    elif isinstance(cfg.model, str):
        quant = quantization_config() if cfg.load_in_4bit else None
        model, tokenizer = load_model(cfg.model, "causal-lm", quantization_config=quant)
    else:
        raise ConfigError(
            "model must be a name ('smollm2', a hub id, a folder, a .gguf file) or a (model, tokenizer) "
            f"pair from nbkit.load_model, not {type(cfg.model).__name__}"
        )
    if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None):
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def prepare_llm(cfg: Any) -> tuple[LLMData, Any, Any]:
    """Model first (its tokenizer and chat template shape the data), then the masked data."""
    options = lora_options(cfg.lora)  # a bad lora block fails before the model loads
    model, tokenizer = load_llm(cfg)
    splits = load_chat_data(cfg.data, tokenizer, max_length=cfg.max_length, train_on=cfg.train_on,
                            eval_split=cfg.eval_split, seed=cfg.seed, chat_template=cfg.chat_template)
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:  # `chat_template: chatml` added <|im_start|>/<|im_end|>
        model.resize_token_embeddings(len(tokenizer))
    model = apply_lora(model, options, gradient_checkpointing=cfg.gradient_checkpointing,
                       quantized=cfg.load_in_4bit, seed=cfg.seed)
    fmt = splits["train"].format
    notes = []
    for name, split in splits.items():
        if split.truncated:
            notes.append(f"{split.truncated} of {len(split)} {name} examples have answers cut by "
                         f"max_length={cfg.max_length} (raise it to train on whole answers)")
    return LLMData(splits, fmt, notes), model, tokenizer


def chat_metrics(cfg: Any, data: LLMData) -> list:
    """The metrics of a causal-lm run: the configured ones, else perplexity (+ exact_match on chat data)."""
    if cfg.metrics:
        metrics = list(cfg.metrics)
    else:
        metrics = ["perplexity"] + (["exact_match"] if data.format != "text" and cfg.generate_eval else [])
    if "exact_match" in metrics and data.format == "text":
        raise ConfigError("exact_match scores answers: it needs messages or prompt/completion data, not text")
    return metrics


def evaluators(cfg: Any, data: LLMData, tokenizer: Any, metrics: list) -> list:
    from .generate import ExactMatch

    eval_split = data.get("eval")
    if "exact_match" not in metrics or eval_split is None or not cfg.generate_eval:
        return []
    return [ExactMatch(eval_split.conversations, tokenizer, n=cfg.generate_eval,
                       max_new_tokens=cfg.max_new_tokens)]


def sample_answers(cfg: Any, data: LLMData, tokenizer: Any, evaluators: list) -> list:
    """The observer answering the `samples:` prompts (none when the data is plain text and no
    prompts are given, or `samples: 0`)."""
    from .generate import ExactMatch
    from .samples import SampleAnswers, sample_prompts

    eval_split = data.get("eval")
    prompts = sample_prompts(cfg.samples, eval_split.conversations if eval_split is not None else None)
    if not prompts:
        return []
    shared = next((e for e in evaluators if isinstance(e, ExactMatch)), None)
    return [SampleAnswers(prompts, tokenizer, max_new_tokens=cfg.max_new_tokens, shared=shared,
                          has_eval=eval_split is not None)]
