"""Attention of chat LLMs (Llama with grouped-query attention): capture through the chat template and
across generate(), base vs tuned (peft) comparisons, their widget state and figures. tiny_llama has 4
query heads sharing 2 kv heads; the slow test runs the real smollm2 (9 heads / 3 kv heads, 30 layers).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets

from nbkit.core.attention import AttentionError, capture_attention
from nbkit.core.attention_compare import AttentionComparison, compare_attention
from nbkit.core.llm.attention import readable_tokens
from nbkit.notebook.widgets.attention import show_attention

torch.set_num_threads(1)
PROMPT = "what is the time ?"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def llama():
    from nbkit.testing import tiny_llama

    return tiny_llama(layers=2, heads=4, kv_heads=2, hidden=32)


def _lora(model, b_std: float = 0.0):
    """A peft LoRA model on all attention projections; B = 0 (peft's init) leaves it equal to its base."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    if b_std:
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * b_std)
    return peft_model


def _chat_ids(tok, prompt):
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]  # (1, T)


def _eager(model, ids):
    """The model's own eager attentions on `ids`, as (L, H, T, T) numpy."""
    original = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True)
    finally:
        model.set_attn_implementation(original)
    return np.stack([a[0].numpy() for a in out.attentions])


# ------------------------------------------------------------------------------------------ capture
def test_gqa_capture_is_per_query_head_causal_and_restores_sdpa(llama):
    model, tok = llama
    model.train()
    assert model.config._attn_implementation == "sdpa"
    att = capture_attention(model, tok, PROMPT)
    assert model.config._attn_implementation == "sdpa" and model.training  # both given back
    ids = _chat_ids(tok, PROMPT)
    t = ids.shape[1]
    w = att.weights["self"]
    assert w.shape == (2, 4, t, t)  # 4 query heads, though the model has 2 kv heads
    assert att.num_heads == 4 and att.causal is True
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert not np.triu(w, k=1).any()  # the future is masked: exactly 0 above the diagonal
    model.eval()
    np.testing.assert_array_equal(w, _eager(model, ids))
    # heads 0 and 1 share a kv head yet attend differently: the weights are per query head
    assert np.abs(w[:, 0] - w[:, 1]).max() > 1e-3
    # the chat template is part of the input, marked apart from the user's words
    assert att.tokens == ["<|im_start|>", "user", "what", "is", "the", "time", "?", "<|im_end|>",
                          "<|im_start|>", "assistant"]
    assert att.segments.tolist() == [-1, -1, 0, 0, 0, 0, 0, -1, -1, -1]
    assert att.prompt_length is None


def test_the_implementation_is_restored_when_the_pass_fails(llama, monkeypatch):
    model, tok = llama
    layer = model.model.layers[1].self_attn

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(layer, "forward", broken)
    with pytest.raises(RuntimeError, match="boom"):
        capture_attention(model, tok, PROMPT)
    assert model.config._attn_implementation == "sdpa"


def test_generate_capture_equals_one_forward_pass_over_prompt_and_answer(llama):
    from nbkit.core.llm.attention import generation_options
    from nbkit.core.llm.generate import generate

    model, tok = llama
    att = capture_attention(model, tok, PROMPT, max_new_tokens=6)
    ids = _chat_ids(tok, PROMPT)
    with torch.no_grad():
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                             **generation_options(model, tok))  # (1, T + N)
    assert att.prompt_length == ids.shape[1] and len(att.tokens) == gen.shape[1]
    np.testing.assert_array_equal(att.weights["self"], _eager(model, gen))
    answer = tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert answer == generate(model, tok, PROMPT, max_new_tokens=6)  # the answer nbkit's generate gives
    assert att.segments[att.prompt_length:].tolist() == [
        -1 if i in tok.all_special_ids else 1 for i in gen[0, ids.shape[1]:].tolist()]
    assert model.config._attn_implementation == "sdpa"


def test_messages_and_plain_text(llama):
    model, tok = llama
    turns = [{"role": "system", "content": "be short"}, {"role": "user", "content": "the time ?"}]
    att = capture_attention(model, tok, turns)
    assert att.tokens[:5] == ["<|im_start|>", "system", "be", "short", "<|im_end|>"]
    assert att.segments.tolist()[:5] == [-1, -1, 0, 0, -1]
    plain = capture_attention(model, tok, PROMPT, chat=False)
    assert plain.tokens == ["what", "is", "the", "time", "?"] and plain.segments.tolist() == [0] * 5
    with pytest.raises(AttentionError, match="a list of {'role': ..., 'content': ...} turns"):
        capture_attention(model, tok, [{"text": "x"}])


def test_byte_level_tokens_read_as_text():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<|im_start|>", "Ġthe", "Ġcat", "Ċ", "Ã©", "t", "Ġ"])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    ids = [tok.convert_tokens_to_ids(t) for t in ["<|im_start|>", "Ġthe", "Ġcat", "Ċ", "Ã©", "t"]]
    assert readable_tokens(tok, ids) == ["<|im_start|>", " the", " cat", "\n", "é", "t"]


# ------------------------------------------------------------------------------------ peft and runs
def test_peft_model_and_run_capture_like_the_plain_model(llama, tmp_path):
    from nbkit.core.train.run import Run

    model, tok = llama
    plain = capture_attention(model, tok, PROMPT)
    peft_model = _lora(model)  # B = 0: the same function as the base
    att = capture_attention(peft_model, tok, PROMPT)
    np.testing.assert_allclose(att.weights["self"], plain.weights["self"], atol=1e-6)
    assert att.model_name == "LlamaForCausalLM + LoRA"
    run = Run(name="r", run_dir=tmp_path, config={}, model=peft_model, tokenizer=tok)
    from_run = capture_attention(run, PROMPT)
    np.testing.assert_array_equal(from_run.weights["self"], att.weights["self"])
    assert peft_model.base_model.model.config._attn_implementation == "sdpa"


# ------------------------------------------------------------------------------------ comparisons
def test_a_model_compared_with_itself_differs_by_zero(llama):
    model, tok = llama
    c = compare_attention(model, tok, PROMPT, base=model, max_new_tokens=4)
    assert isinstance(c, AttentionComparison)
    assert not c.difference().any() and not c.change().any()
    assert c.prompt_length is not None and c.tuned.tokens == c.base.tokens


def test_base_vs_lora_differs_only_when_b_is_nonzero(llama):
    model, tok = llama
    zero = compare_attention(_lora(model), tok, PROMPT)
    np.testing.assert_allclose(zero.difference(), 0.0, atol=1e-6)
    from nbkit.testing import tiny_llama

    model2, tok2 = tiny_llama(layers=2, heads=4, kv_heads=2, hidden=32)
    tuned = _lora(model2, b_std=0.5)
    c = compare_attention(tuned, tok2, PROMPT, max_new_tokens=5)
    d = c.difference()  # (L, H, T, T)
    assert d.shape == (2, 4, len(c.tokens), len(c.tokens))
    np.testing.assert_allclose(d.sum(-1), 0.0, atol=1e-5)  # both rows sum to 1
    assert not np.triu(d, k=1).any()
    change = c.change()
    np.testing.assert_allclose(change, 0.5 * np.abs(d).sum(-1).mean(-1), rtol=1e-5)
    assert change.min() > 0.01
    # the base side is the adapter-disabled model on the very same tokens, and the adapter is back on
    ids = torch.tensor([tok2.convert_tokens_to_ids(c.tokens)])  # word-level: tokens are vocabulary entries
    with tuned.disable_adapter():
        base_ref = _eager(tuned, ids)
    np.testing.assert_allclose(c.base.weights["self"], base_ref, atol=1e-6)
    again = capture_attention(tuned, tok2, PROMPT, max_new_tokens=5)
    np.testing.assert_array_equal(again.weights["self"], c.tuned.weights["self"])
    assert c.base.model_name == "LlamaForCausalLM + LoRA (adapter disabled)"
    assert c.most_changed() == (c.layers[int(change.argmax() // 4)], int(change.argmax() % 4))


def test_bad_comparisons_and_budgets_fail_before_any_work(llama):
    model, tok = llama
    with pytest.raises(AttentionError, match="no adapter to disable, so there is no base"):
        compare_attention(model, tok, PROMPT)
    with pytest.raises(AttentionError, match=r"needs about .* over max_memory=0\.0 MB; shorten the text"):
        capture_attention(model, tok, PROMPT, max_new_tokens=10, max_memory=1000)
    with pytest.raises(TypeError, match="max_new_tokens"):
        capture_attention(model, tok, PROMPT, generate=True)


# ------------------------------------------------------------------------------------ widget state
def _decode_signed(meta, buffer):
    codes = np.frombuffer(buffer, np.uint8).reshape(meta["shape"])
    return (codes / 255.0 * 2 - 1) * meta["scales"][0]


def test_diff_view_state_and_fetches(llama):
    from test_attention_widget import _page_sends  # the page's side of the comm

    model, tok = llama
    tuned = _lora(model, b_std=0.5)
    w = show_attention(tuned, tok, PROMPT, compare="base", max_new_tokens=4)
    c = w.comparison
    state = w.get_state()
    layer, head = c.most_changed()
    assert (state["view"], state["source"], state["layer"], state["head"]) == ("matrix", "diff", layer, head)
    meta = state["_initial"]["meta"]
    assert meta["key"] == f"dense|self|{layer}|{head}|diff" and meta["signed"] is True
    got = _decode_signed(meta, state["_initial"]["buffers"][0])
    np.testing.assert_allclose(got, c.map(layer, head), atol=meta["scales"][0] / 127)
    assert state["info"]["compare"]["names"] == ["tuned", "base"]
    assert state["info"]["compare"]["change"] == np.round(c.change(), 4).tolist()
    assert state["info"]["causal"] is True and state["info"]["prompt_length"] == c.prompt_length

    sent = []
    w.send = lambda content, buffers=None: sent.append((content, buffers or []))
    _page_sends(w, {"type": "fetch", "id": "p:1", "what": "thumbs", "kind": "self", "layer": -1, "head": -1,
                    "source": "diff"})
    content, buffers = sent[-1]
    t = len(c.tokens)
    assert content["type"] == "data" and content["shape"] == [2, 4, t, t] and content["signed"] is True
    assert len(buffers[0]) == 2 * 4 * t * t and content["change"] == np.round(c.change(), 4).ravel().tolist()
    _page_sends(w, {"type": "fetch", "id": "p:2", "what": "dense", "kind": "self", "layer": 0, "head": 2,
                    "source": "base"})
    content, buffers = sent[-1]
    base = np.frombuffer(buffers[0], np.uint8).reshape(t, t) / 255 * content["scales"][0]
    true = c.base.weights["self"][0, 2]  # (T, T)
    # the colour scale stops at the largest weight after the first column (the attention sink), which
    # saturates and travels as numbers for the readout
    assert content["scales"][0] == pytest.approx(float(true[:, 1:].max()))
    np.testing.assert_allclose(base[:, 1:], true[:, 1:], atol=content["scales"][0] / 255)
    assert content["first"] == np.round(true[:, 0].astype(np.float64), 4).tolist()
    _page_sends(w, {"type": "fetch", "id": "p:3", "what": "sparse", "kind": "self", "layer": 0, "head": -1,
                    "source": "diff"})
    assert sent[-1][0] == {"type": "error", "id": "p:3",
                           "message": "the difference has the matrix and model views only, not 'sparse'."}
    # the page picks the head view: it shows the tuned model; back to the difference: the matrix view
    _page_sends(w, state={"view": "head"})
    assert (w.view, w.source) == ("head", "tuned")
    _page_sends(w, state={"source": "diff"})
    assert (w.view, w.source) == ("matrix", "diff")
    with pytest.raises(traitlets.TraitError, match="source 'other' is not available"):
        w.source = "other"


def test_plain_widget_has_no_sources_and_marks_the_answer(llama):
    model, tok = llama
    w = show_attention(model, tok, PROMPT, view="generation", max_new_tokens=4)
    assert w.source == "tuned" and w.info["compare"] is None
    assert w.info["segments_meaning"] == {"-1": "special or chat-template token", "0": "prompt",
                                          "1": "generated answer"}
    with pytest.raises(traitlets.TraitError, match=r"source 'diff' is not available; this view has tuned"):
        w.source = "diff"
    with pytest.raises(AttentionError, match="needs a comparison"):
        show_attention(model, tok, PROMPT, source="diff")


def test_markup_in_tokens_stays_text_in_the_diff_view_and_figures(llama):
    from nbkit.figures.attention import attention_difference_heatmap, attention_png

    model, tok = llama
    tok.add_tokens([XSS])
    model.resize_token_embeddings(len(tok))
    w = show_attention(_lora(model, b_std=0.5), tok, f"the {XSS} time", compare="base")
    assert XSS in w.tokens and w.get_state()["tokens"] == w.tokens
    fig = attention_difference_heatmap(w.comparison)
    ticks = "".join(fig.layout.xaxis.ticktext)
    assert "<img" not in ticks and "&lt;img src=x" in ticks
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.isnan(z[0, 1]) and fig.data[0].zmid == 0  # the masked future is blank, the scale centred
    assert fig.data[0].zmax == pytest.approx(float(np.abs(np.nan_to_num(z)).max()))
    from nbkit.figures.attention import attention_heatmap

    tuned = attention_heatmap(w.comparison.tuned, 1, 0)
    assert tuned.data[0].zmax == pytest.approx(float(w.comparison.tuned.weights["self"][1, 0][:, 1:].max()))
    png = attention_png(w.comparison, w.layer, [w.head])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    bundle = w._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert bundle["text/plain"].startswith("nbkit attention view (matrix, diff): LlamaForCausalLM + LoRA")


def test_widget_state_bytes_for_a_60_token_prompt(llama):
    """What the first view of each kind puts in the widget state (and so in a saved notebook)."""
    model, tok = llama
    words = " ".join(["the", "time", "is", "what"] * 15)
    att = capture_attention(model, tok, words, chat=False)
    assert len(att.tokens) == 60
    sizes = {}
    for view in ("head", "matrix", "model"):
        state = show_attention(att, view=view).get_state()
        buffers = sum(len(b) for b in state["_initial"]["buffers"])
        sizes[view] = buffers
        # the weights travel as bytes; the JSON holds one scale per map
        assert len(state["_initial"]["meta"]["scales"]) == {"head": 4, "matrix": 1, "model": 2 * 4}[view]
    # head: top-6 (uint16 index + uint8 weight) per query per head; matrix: T^2 bytes; model: 32x32 thumbs
    assert sizes == {"head": 4 * 60 * 6 * 3, "matrix": 60 * 60, "model": 2 * 4 * 32 * 32}


# ------------------------------------------------------------------------------------ the real model
@pytest.mark.slow
def test_smollm2_short_prompt_with_its_answer():
    import nbkit

    model, tok = nbkit.load_model("smollm2", "causal-lm")
    att = capture_attention(model, tok, "What is the capital of France?", max_new_tokens=8)
    t = len(att.tokens)
    assert att.weights["self"].shape == (30, 9, t, t) and att.causal
    np.testing.assert_allclose(att.weights["self"].sum(-1), 1.0, atol=1e-4)
    assert model.config._attn_implementation == "sdpa"
    assert "".join(att.tokens[att.prompt_length:]).startswith("The capital of France is Paris")
    assert " capital" in att.tokens and "\n" in att.tokens and not any("Ġ" in x for x in att.tokens)
    assert att.tokens[0] == "<|im_start|>" and att.segments[0] == -1
    user = [x for x, s in zip(att.tokens, att.segments.tolist(), strict=True) if s == 0]
    assert "".join(user) == "What is the capital of France?"
    w = show_attention(att)
    state = w.get_state()
    # the head view opens on one layer: 9 heads x T queries x top 6 keys, 3 bytes each
    assert sum(len(b) for b in state["_initial"]["buffers"]) == 9 * t * 6 * 3


# ------------------------------------------------------------------------------------ the magic
def test_attention_magic_compares_a_run_with_its_base(llama, tmp_path):
    from IPython.testing.globalipapp import start_ipython

    from nbkit.core.train.run import Run
    from nbkit.notebook.widgets.attention import AttentionWidget

    model, tok = llama
    ip = start_ipython()
    ip.run_line_magic("load_ext", "nbkit")
    ip.user_ns["run"] = Run(name="r", run_dir=tmp_path, config={}, model=_lora(model, b_std=0.5), tokenizer=tok)
    w = ip.run_line_magic("attention", 'run "what is the time ?" --compare base --max-new-tokens 3')
    assert isinstance(w, AttentionWidget) and (w.view, w.source) == ("matrix", "diff")
    assert w.attention.prompt_length == 10 and len(w.tokens) <= 13
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="--compare takes 'base' or a variable holding the base model"):
        ip.run_line_magic("attention", 'run "what" --compare nosuch')
