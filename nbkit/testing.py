"""Tiny random models and texts for tests, benchmarks and tutorials, built offline in milliseconds.

Every builder returns `(model, tokenizer)` in eval() mode, seeded so two calls give the same weights, and
never downloads anything. One tokenizer serves all three architectures: a word-level `BertTokenizerFast`
over a few hundred common English words (unknown words become [UNK]). It wraps each text as
`[CLS] ... [SEP]`; GPT-2 and T5 use [CLS] as bos, [SEP] as eos and [PAD] as pad (and T5's decoder start),
and their tokenizers drop token_type_ids, which those models do not accept. `generate()` works on all of
them; the output is random words, since the weights are random.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbkit.core.models import TASKS, ModelError, _did_you_mean, resolve_task

__all__ = [
    "SPECIAL_TOKENS",
    "WORDS",
    "random_texts",
    "save_tiny_model",
    "tiny_bert",
    "tiny_gpt2",
    "tiny_llama",
    "chat_tokenizer",
    "tiny_t5",
    "tiny_tokenizer",
]

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_PUNCTUATION = [".", ",", "!", "?", "'", "-", ":", ";", "(", ")"]

_COMMON_WORDS = """
the of and to a in is it you that he was for on are with as i his they be at one have this from or had
by not word but what some we can out other were all there when up use your how said an each she which do
their time if will way about many then them write would like so these her long make thing see him two
has look more day could go come did number sound no most people my over know water than call first who
may down side been now find any new work part take get place made live where after back little only
round man year came show every good me give our under name very through just form sentence great think
say help low line differ turn cause much mean before move right boy old too same tell does set three
want air well also play small end put home read hand port large spell add even land here must big high
such follow act why ask men change went light kind off need house picture try us again animal point
mother world near build self earth father head stand own page should country found answer school grow
study still learn plant cover food sun four between state keep eye never last let thought city tree
cross farm hard start might story saw far sea draw left late run while press close night real life few
north open seem together next white children begin got walk example ease paper group always music those
both mark often letter until mile river car feet care second book carry took science eat room friend
began idea fish mountain stop once base hear horse cut sure watch color face wood main enough plain girl
usual young ready above ever red list though feel talk bird soon body dog family direct pose leave song
measure door product black short numeral class wind question happen complete ship area half rock order
fire south problem piece told knew pass since top whole king space heard best hour better true during
hundred five remember step early hold west ground interest reach fast verb sing listen six table travel
less morning ten simple several vowel toward war lay against pattern slow center love person money serve
appear road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry
dark machine note wait plan figure star box noun field rest correct able pound done beauty drive stood
contain front teach week final gave green oh quick develop ocean warm free minute strong special mind
behind clear tail produce fact street inch multiply nothing course stay wheel full force blue object
decide surface deep moon island foot system busy test record boat common gold possible plane age dry
wonder laugh thousand ago ran check game shape yes hot miss brought heat snow bed bring sit perhaps fill
east weight language among
cat sat mat hello movie film review plot actor scene great terrible awful excellent boring wonderful bad
happy sad loved hated fun funny dull nice worst brilliant
"""
WORDS: list[str] = list(dict.fromkeys(_COMMON_WORDS.split()))  # drops repeats, keeps order

_DEFAULT_MAX_LENGTH = 128


def _vocabulary(words: list[str] | None) -> dict[str, int]:
    tokens: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *_PUNCTUATION, *WORDS, *(w.lower() for w in words or [])]:
        tokens.setdefault(token, len(tokens))  # first occurrence wins, so ids are stable
    return tokens


def tiny_tokenizer(
    words: list[str] | None = None,
    *,
    token_type_ids: bool = True,
    max_length: int = _DEFAULT_MAX_LENGTH,
) -> Any:
    """A word-level `BertTokenizerFast` over WORDS plus `words` (lowercased), with [PAD] = id 0.

    bos/eos are [CLS]/[SEP] so decoder models can use it too; `token_type_ids=False` drops that input
    for models that reject it (GPT-2 generate, T5).
    """
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]

    input_names = ["input_ids", "token_type_ids", "attention_mask"]
    return BertTokenizerFast(
        vocab=_vocabulary(words),
        do_lower_case=True,
        bos_token="[CLS]",
        eos_token="[SEP]",
        model_max_length=max_length,
        model_input_names=input_names if token_type_ids else ["input_ids", "attention_mask"],
    )


def _build(config: Any, task: str, seed: int, allowed: tuple[str, ...], kind: str) -> Any:
    import torch
    import transformers

    task = resolve_task(task)
    if task not in allowed:
        raise ModelError(f"{kind} builds tasks {', '.join(allowed)}; got {task!r}.")
    auto_cls = getattr(transformers, TASKS[task])
    # fork_rng keeps the caller's random stream untouched while making the weights reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto_cls.from_config(config)
    return model.eval()


def _vocab_size(tokenizer: Any, vocab_size: int | None) -> int:
    if vocab_size is None:
        return len(tokenizer)
    if vocab_size < len(tokenizer):
        raise ModelError(
            f"vocab_size={vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens."
        )
    return vocab_size


def _special_ids(tokenizer: Any, **more: Any) -> dict[str, Any]:
    # Config keywords as one dict: transformers' typed config signatures omit the generic ones.
    return {
        **more,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def _suppress_specials(model: Any, tokenizer: Any) -> None:
    # A random model often argmaxes onto [PAD] or [CLS]; suppressing them keeps generate() output
    # readable words in tutorials. eos stays allowed so generation can stop.
    if getattr(model, "generation_config", None) is not None:
        ids = [tokenizer.convert_tokens_to_ids(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[MASK]")]
        model.generation_config.suppress_tokens = ids


def tiny_bert(
    num_labels: int = 2,
    task: str = "sequence-classification",
    layers: int = 2,
    heads: int = 2,
    hidden: int = 32,
    vocab_size: int | None = None,
    *,
    words: list[str] | None = None,
    max_positions: int = _DEFAULT_MAX_LENGTH,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random BERT (2 layers, hidden 32 by default) for any task but seq2seq, with its tokenizer."""
    from transformers import BertConfig

    tokenizer = tiny_tokenizer(words, max_length=max_positions)
    task = resolve_task(task)
    config = BertConfig(
        vocab_size=_vocab_size(tokenizer, vocab_size),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max_positions,
        is_decoder=task == "causal-lm",  # BertLMHeadModel insists on it
        **_special_ids(tokenizer, num_labels=num_labels),
    )
    allowed = ("sequence-classification", "token-classification", "masked-lm", "causal-lm", "base")
    model = _build(config, task, seed, allowed, "tiny_bert")
    return model, tokenizer


def tiny_gpt2(
    task: str = "causal-lm",
    layers: int = 2,
    heads: int = 2,
    hidden: int = 32,
    vocab_size: int | None = None,
    num_labels: int = 2,
    *,
    words: list[str] | None = None,
    max_positions: int = _DEFAULT_MAX_LENGTH,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random GPT-2 (GPT2LMHeadModel for "causal-lm") with a tokenizer whose pad token is [PAD]."""
    from transformers import GPT2Config

    tokenizer = tiny_tokenizer(words, token_type_ids=False, max_length=max_positions)
    config = GPT2Config(
        vocab_size=_vocab_size(tokenizer, vocab_size),
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        n_positions=max_positions,
        **_special_ids(tokenizer, num_labels=num_labels),
    )
    allowed = ("causal-lm", "sequence-classification", "token-classification", "base")
    model = _build(config, task, seed, allowed, "tiny_gpt2")
    _suppress_specials(model, tokenizer)
    return model, tokenizer


def tiny_t5(
    task: str = "seq2seq",
    layers: int = 2,
    heads: int = 2,
    hidden: int = 32,
    vocab_size: int | None = None,
    *,
    words: list[str] | None = None,
    max_positions: int = _DEFAULT_MAX_LENGTH,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random T5 (T5ForConditionalGeneration for "seq2seq"); its decoder starts from [PAD] as in T5."""
    from transformers import T5Config

    if hidden % heads:
        raise ModelError(f"hidden={hidden} must be divisible by heads={heads}.")
    tokenizer = tiny_tokenizer(words, token_type_ids=False, max_length=max_positions)
    config = T5Config(
        vocab_size=_vocab_size(tokenizer, vocab_size),
        d_model=hidden,
        d_kv=hidden // heads,
        d_ff=4 * hidden,
        num_layers=layers,
        num_heads=heads,
        **_special_ids(tokenizer, decoder_start_token_id=tokenizer.pad_token_id),
    )
    model = _build(config, task, seed, ("seq2seq", "base"), "tiny_t5")
    _suppress_specials(model, tokenizer)
    return model, tokenizer


CHAT_SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]


def chat_tokenizer(words: list[str] | None = None, *, chat_template: bool = True,
                   max_length: int = _DEFAULT_MAX_LENGTH) -> Any:
    """A word-level fast tokenizer with ChatML's `<|im_start|>`/`<|im_end|>` and (by default) its
    chat template, as instruction-tuned models have. eos is `<|im_end|>`, pad `<pad>` (id 0).
    Offsets are exact, so answer-only masks can be checked token by token."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from nbkit.core.llm.chat import CHATML

    vocab = {t: i for i, t in enumerate(CHAT_SPECIAL_TOKENS)}
    for token in [*_PUNCTUATION, '"', "{", "}", "/", "_", "<", ">", "&", "system", "user", "assistant", *WORDS, *(w.lower() for w in words or [])]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
        bos_token="<|im_start|>", model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if chat_template:
        tokenizer.chat_template = CHATML
    return tokenizer


def tiny_llama(
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    hidden: int = 32,
    vocab_size: int | None = None,
    *,
    words: list[str] | None = None,
    chat_template: bool = True,
    max_positions: int = _DEFAULT_MAX_LENGTH,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random Llama (LlamaForCausalLM, grouped-query attention) with `chat_tokenizer()`: the shape of
    an instruction-tuned LLM such as SmolLM2, in a few hundred kilobytes."""
    from transformers import LlamaConfig

    tokenizer = chat_tokenizer(words, chat_template=chat_template, max_length=max_positions)
    config = LlamaConfig(
        vocab_size=_vocab_size(tokenizer, vocab_size),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        # 0.02 (the default) bounds a tied head's logits near 1 at this width: too flat to learn from
        initializer_range=0.2,
        **_special_ids(tokenizer),
    )
    model = _build(config, "causal-lm", seed, ("causal-lm",), "tiny_llama")
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.suppress_tokens = [tokenizer.pad_token_id, tokenizer.unk_token_id]
    return model, tokenizer


_BUILDERS: dict[str, Callable[..., tuple[Any, Any]]] = {
    "bert": tiny_bert,
    "gpt2": tiny_gpt2,
    "t5": tiny_t5,
    "llama": tiny_llama,
}


def save_tiny_model(path: str | os.PathLike[str], kind: str = "bert", **kw: Any) -> Path:
    """Build a tiny model (`kind` = "bert", "gpt2", "t5" or "llama"; `kw` go to its builder) and save it with its
    tokenizer into `path`, a folder that `load_model(path, task)` loads. Returns the folder."""
    if kind not in _BUILDERS:
        raise ModelError(
            f"Unknown kind {kind!r}.{_did_you_mean(kind, list(_BUILDERS))} Use one of {list(_BUILDERS)}."
        )
    model, tokenizer = _BUILDERS[kind](**kw)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def random_texts(n: int, seed: int = 0, min_words: int = 4, max_words: int = 40) -> list[str]:
    """`n` reproducible sentences of WORDS, each `min_words`..`max_words` words, ending with a period."""
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(min_words, max_words))
        texts.append(" ".join(words).capitalize() + ".")
    return texts
