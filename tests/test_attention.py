"""nbkit.core.attention: capture against the models' own outputs, and the numpy analyses on known cases."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from nbkit.core.attention import Attention, AttentionError, capture_attention, top_k

torch.set_num_threads(1)
TEXT = "the cat sat on the mat"


def _eager_attentions(model, tokenizer, text, **kw):
    enc = tokenizer(text, return_tensors="pt")
    model.set_attn_implementation("eager")
    with torch.no_grad():
        return model(**enc, **kw, output_attentions=True)


def _attention(weights, tokens=None, segments=None, word_ids=None):
    """An Attention over given (L, H, T, T) weights, for analyses on hand-made numbers."""
    w = np.asarray(weights, dtype=np.float32)
    t = w.shape[-1]
    return Attention(
        tokens=tokens or [f"t{i}" for i in range(t)],
        weights={"self": w},
        segments=np.asarray(segments if segments is not None else [0] * t, dtype=np.int8),
        word_ids=np.asarray(word_ids if word_ids is not None else list(range(t)), dtype=np.int32),
        layers=list(range(w.shape[0])),
    )


# ------------------------------------------------------------------------------------------ capture
def test_bert_capture_equals_output_attentions_and_restores_sdpa(tiny_bert):
    model, tok = tiny_bert
    model.train()  # capture must use eval() for the pass and give training mode back
    assert model.config._attn_implementation == "sdpa"
    att = capture_attention(model, tok, TEXT)
    assert model.config._attn_implementation == "sdpa"
    assert model.training
    model.eval()
    reference = _eager_attentions(model, tok, TEXT).attentions
    assert att.weights["self"].shape == (2, 2, 8, 8)
    for layer, ref in enumerate(reference):
        np.testing.assert_array_equal(att.weights["self"][layer], ref[0].numpy())
    assert att.tokens == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    assert att.causal is False
    np.testing.assert_allclose(att.weights["self"].sum(-1), 1.0, atol=1e-5)


def test_sentence_pair_marks_segments_and_specials(tiny_bert):
    model, tok = tiny_bert
    att = capture_attention(model, tok, "the cat", text_pair="a dog")
    assert att.tokens == ["[CLS]", "the", "cat", "[SEP]", "a", "dog", "[SEP]"]
    assert att.segments.tolist() == [-1, 0, 0, -1, 1, 1, -1]
    assert att.word_ids.tolist() == [-1, 0, 1, -1, 0, 1, -1]


def test_gpt2_is_causal_and_matches_its_own_output(tiny_gpt2):
    model, tok = tiny_gpt2
    att = capture_attention(model, tok, TEXT)
    w = att.weights["self"]  # (L, H, T, T)
    assert att.causal is True
    assert not np.triu(w, k=1).any()  # no query sees a later token
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert w[0, 0, 0, 0] == pytest.approx(1.0)  # the first token can only see itself
    reference = _eager_attentions(model, tok, TEXT).attentions
    np.testing.assert_array_equal(w[1], reference[1][0].numpy())


def test_gpt2_generation_marks_the_prompt(tiny_gpt2):
    model, tok = tiny_gpt2
    att = capture_attention(model, tok, "the cat", max_new_tokens=4)
    assert att.prompt_length == 4  # [CLS] the cat [SEP]
    assert 4 < len(att.tokens) <= 8
    assert att.weights["self"].shape[-1] == len(att.tokens)
    assert att.causal and not np.triu(att.weights["self"], k=1).any()
    assert att.word_ids.tolist()[4:] == list(range(2, len(att.tokens) - 2))


def test_t5_kinds_and_shapes(tiny_t5):
    model, tok = tiny_t5
    att = capture_attention(model, tok, TEXT, target="a cat")
    assert att.kinds == ("encoder", "decoder", "cross")
    assert att.decoder_tokens == ["[PAD]", "[CLS]", "a", "cat", "[SEP]"]  # start token + target
    te, td = len(att.tokens), len(att.decoder_tokens)
    assert att.weights["encoder"].shape == (2, 2, te, te)
    assert att.weights["decoder"].shape == (2, 2, td, td)
    assert att.weights["cross"].shape == (2, 2, td, te)
    assert not np.triu(att.weights["decoder"], k=1).any()  # decoder self-attention is causal
    for w in att.weights.values():
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert att.tokens_for("cross") == (att.decoder_tokens, att.tokens)
    assert model.config._attn_implementation == "sdpa"  # switched back after the capture
    # same numbers as the model's own eager pass
    dec = torch.tensor([[0, *tok(text_target="a cat")["input_ids"]]])
    ref = _eager_attentions(model, tok, TEXT, decoder_input_ids=dec)
    np.testing.assert_array_equal(att.weights["cross"][1], ref.cross_attentions[1][0].numpy())


def test_t5_without_target_generates_decoder_tokens(tiny_t5):
    model, tok = tiny_t5
    att = capture_attention(model, tok, TEXT, max_new_tokens=3)
    assert att.decoder_tokens[0] == "[PAD]" and 2 <= len(att.decoder_tokens) <= 4


def test_layers_subset_keeps_model_indices(tiny_bert):
    model, tok = tiny_bert
    full = capture_attention(model, tok, TEXT)
    part = capture_attention(model, tok, TEXT, layers=[1])
    assert part.layers == [1] and part.weights["self"].shape[0] == 1
    np.testing.assert_array_equal(part.map(1, 0), full.map(1, 0))
    with pytest.raises(AttentionError, match=r"layer 0 was not captured; captured layers: \[1\]"):
        part.map(0, 0)
    with pytest.raises(
        AttentionError, match=r"layer 5 is out of range: this model has 2 layers \(0-1\)"
    ):
        capture_attention(model, tok, TEXT, layers=[5])


# ------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_is_refused(tiny_bert, text):
    model, tok = tiny_bert
    with pytest.raises(AttentionError, match="text is empty"):
        capture_attention(model, tok, text)


def test_long_text_is_truncated_with_a_note_or_refused(tiny_bert):
    model, tok = tiny_bert  # max 128 positions
    long = " ".join(["cat"] * 200)
    att = capture_attention(model, tok, long)
    assert len(att.tokens) == 128 and att.tokens[-1] == "[SEP]"
    assert att.note == "Input truncated to 128 of 202 tokens."
    with pytest.raises(AttentionError, match="202 tokens but the model takes at most 128"):
        capture_attention(model, tok, long, truncate=False)


def test_models_without_attention_are_refused(tiny_bert):
    _, tok = tiny_bert
    with pytest.raises(AttentionError, match="Linear is not a Hugging Face transformers model"):
        capture_attention(torch.nn.Linear(2, 2), tok, TEXT)
    model, tok = tiny_bert
    with pytest.raises(AttentionError, match="cannot. Load it with task='causal-lm'"):
        capture_attention(model, tok, TEXT, max_new_tokens=3)


def test_layer_head_and_kind_out_of_range(tiny_bert):
    model, tok = tiny_bert
    att = capture_attention(model, tok, TEXT)
    with pytest.raises(
        AttentionError, match=r"layer 2 is out of range: this capture has 2 layers \(0-1\)"
    ):
        att.map(2, 0)
    with pytest.raises(
        AttentionError, match=r"head 7 is out of range: each layer has 2 heads \(0-1\)"
    ):
        att.map(0, 7)
    with pytest.raises(
        AttentionError, match=r"kind 'cross' is not available; this capture has \['self'\]"
    ):
        att.map(0, 0, kind="cross")
    np.testing.assert_array_equal(att.map(-1, -1), att.weights["self"][1, 1])


# ------------------------------------------------------------------------------------- analyses
def test_averages():
    rng = np.random.default_rng(0)
    w = rng.random((3, 4, 5, 5)).astype(np.float32)
    att = _attention(w)
    np.testing.assert_allclose(att.map(None, None), w.mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(att.map(1, None), w[1].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(att.head_average(), w.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(att.layer_average(), w.mean(axis=0), rtol=1e-6)


def test_rollout_matches_a_hand_computed_case():
    a0 = [[1.0, 0.0], [0.5, 0.5]]
    a1 = [[0.5, 0.5], [0.0, 1.0]]
    att = _attention([[a0], [a1]])  # 2 layers, 1 head, 2 tokens
    # A' = 0.5 A + 0.5 I: A0' = [[1, 0], [.25, .75]], A1' = [[.75, .25], [0, 1]]; R1 = A1' @ A0'
    roll = att.rollout()
    np.testing.assert_allclose(roll[0], [[1.0, 0.0], [0.25, 0.75]])
    np.testing.assert_allclose(roll[1], [[0.8125, 0.1875], [0.25, 0.75]])
    np.testing.assert_allclose(roll.sum(-1), 1.0, atol=1e-6)


def test_entropy_and_head_scores_on_known_heads():
    t = 4
    uniform = np.full((t, t), 1 / t)
    previous = np.eye(t, k=-1)
    previous[0, 0] = 1.0  # the first token has no previous one
    to_first = np.zeros((t, t))
    to_first[:, 0] = 1.0
    att = _attention(
        [[uniform, previous, to_first, np.eye(t)]],
        tokens=["[CLS]", "a", "b", "[SEP]"],
        segments=[-1, 0, 0, -1],
    )
    np.testing.assert_allclose(att.entropy()[0], [np.log(t), 0.0, 0.0, 0.0], atol=1e-6)
    scores = att.head_scores()
    # the to-first head scores 1/3 on "previous": for row 1 the previous token is token 0
    np.testing.assert_allclose(scores["previous"][0], [0.25, 1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(scores["cls"][0], [0.25, 0.5, 1.0, 0.25])
    np.testing.assert_allclose(scores["self"][0], [0.25, 0.25, 0.25, 1.0])
    np.testing.assert_allclose(scores["sep"][0], [0.25, 0.0, 0.0, 0.25])


def test_top_k_keeps_the_largest_per_row():
    w = np.array([[0.1, 0.5, 0.05, 0.35], [0.4, 0.1, 0.3, 0.2]], dtype=np.float32)
    idx, val = top_k(w, 2)
    assert [sorted(r) for r in idx.tolist()] == [[1, 3], [0, 2]]
    np.testing.assert_allclose(np.sort(val, axis=-1), [[0.35, 0.5], [0.3, 0.4]])
    idx, val = top_k(w, 10)  # k larger than T keeps everything, in order
    assert idx.tolist() == [[0, 1, 2, 3]] * 2 and np.array_equal(val, w)


def _wordpiece():
    from transformers import BertTokenizerFast

    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "play",
        "##ing",
        "un",
        "##believ",
        "##able",
        "cats",
    ]
    return BertTokenizerFast(vocab={v: i for i, v in enumerate(vocab)})


def test_merge_words_on_a_known_wordpiece_tokenization():
    from transformers import BertConfig, BertModel

    tok = _wordpiece()
    torch.manual_seed(0)
    model = BertModel(
        BertConfig(
            vocab_size=11,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
        )
    ).eval()
    att = capture_attention(model, tok, "playing unbelievable cats")
    assert att.tokens == ["[CLS]", "play", "##ing", "un", "##believ", "##able", "cats", "[SEP]"]
    assert att.word_ids.tolist() == [-1, 0, 0, 1, 1, 1, 2, -1]
    words = att.merge_words()
    assert words.tokens == ["[CLS]", "playing", "unbelievable", "cats", "[SEP]"] and words.merged
    w, m = att.weights["self"], words.weights["self"]  # (1, 2, 8, 8) and (1, 2, 5, 5)
    assert m.shape == (1, 2, 5, 5)
    # "playing" -> "unbelievable": mean over the 2 rows of playing, sum over the 3 columns of unbelievable
    expected = w[0, 1][[1, 2]][:, [3, 4, 5]].sum(axis=1).mean()
    assert m[0, 1, 1, 2] == pytest.approx(expected, rel=1e-6)
    assert m[0, 0, 0, 3] == pytest.approx(w[0, 0, 0, 6], rel=1e-6)  # single tokens pass through
    np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------- save/load
def test_save_and_load_round_trip(tmp_path, tiny_t5):
    model, tok = tiny_t5
    att = capture_attention(model, tok, TEXT, target="a cat")
    att.tokens[1] = "</script><img src=x onerror=alert(1)> é"  # any text survives the JSON entry
    path = att.save(tmp_path / "att")
    assert path.endswith("att.npz")
    back = Attention.load(path)
    assert back.tokens == att.tokens and back.decoder_tokens == att.decoder_tokens
    assert back.kinds == att.kinds and back.layers == att.layers and back.causal == att.causal
    for kind in att.kinds:
        np.testing.assert_array_equal(back.weights[kind], att.weights[kind])
    np.testing.assert_array_equal(back.segments, att.segments)
    np.save(tmp_path / "other.npy", np.zeros(2))
    np.savez(tmp_path / "other.npz", meta_json=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(AttentionError, match="is not an nbkit attention file"):
        Attention.load(tmp_path / "other.npz")


def test_core_imports_no_ui_modules():
    code = (
        "import sys, nbkit.core.attention; "
        "print(sorted(m for m in ('IPython', 'ipywidgets', 'anywidget', 'plotly') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
