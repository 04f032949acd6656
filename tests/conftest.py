"""Shared fixtures: tiny random models built offline, and a guard that keeps the suite off the network."""

from __future__ import annotations

import os
import sys

import pytest

# Tiny models gain nothing from two intra-op threads, and on a shared 2-core machine OpenMP's
# spinning threads make them up to 100x slower whenever anything else runs: one thread it is.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Set before any test module imports huggingface_hub, which reads these once at import time.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _offline_hub():
    """No test may download: force offline mode for the env and for an already imported hub client."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.setenv(var, "1")
        try:
            from huggingface_hub import constants
        except ImportError:
            pass
        else:
            mp.setattr(constants, "HF_HUB_OFFLINE", True)
        datasets_config = sys.modules.get("datasets.config")  # also reads the flags at import
        if datasets_config is not None:
            mp.setattr(datasets_config, "HF_HUB_OFFLINE", True, raising=False)
            mp.setattr(datasets_config, "HF_DATASETS_OFFLINE", True, raising=False)
        yield


# Function scope: tests may train or mutate the model, and building one takes milliseconds.
@pytest.fixture
def tiny_bert():
    """(BertForSequenceClassification with 2 labels, word-level tokenizer), random, seed 0."""
    from nbkit.testing import tiny_bert as build

    return build()


@pytest.fixture
def tiny_gpt2():
    """(GPT2LMHeadModel, tokenizer with pad [PAD], bos [CLS], eos [SEP]), random, seed 0."""
    from nbkit.testing import tiny_gpt2 as build

    return build()


@pytest.fixture
def tiny_t5():
    """(T5ForConditionalGeneration, tokenizer), random, seed 0."""
    from nbkit.testing import tiny_t5 as build

    return build()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A folder with a saved tiny BERT sequence classifier + tokenizer, for load_model(path)."""
    from nbkit.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), kind="bert")


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    """A saved tiny random Llama (GQA, chat template) whose vocabulary holds the capitals task's words."""
    from capitals import WORDS

    from nbkit.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama", words=WORDS, hidden=48)
