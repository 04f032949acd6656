"""The dry run: `finetune(..., dry_run=True)` and `%%finetune --dry-run` return a Preview of the
examples as the model sees them (trained tokens marked), for LLM and classification data."""

from __future__ import annotations

import json

import pytest
from IPython.terminal.interactiveshell import TerminalInteractiveShell
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output

import nbkit
from nbkit.core.preview import Preview
from nbkit.testing import save_tiny_model

WORDS = ["paris", "france", "rome", "italy", "capital", "<b>"]
ROWS = [{"messages": [{"role": "user", "content": f"What is the capital of {c}?"},
                      {"role": "assistant", "content": f"{k}."}]}
        for c, k in [("france", "paris"), ("italy", "rome")] * 5]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama", words=WORDS)


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_dry_run_returns_a_preview_of_trained_tokens(llama_dir, cwd):
    preview = nbkit.finetune(str(llama_dir), ROWS, lora=True, dry_run=True, eval_split=2, batch_size=4)
    assert isinstance(preview, nbkit.Preview) and preview.kind == "llm" and preview.format == "messages"
    assert preview.splits == {"train": 8, "eval": 2}
    ex = preview.examples[0]
    assert len(ex.tokens) == len(ex.trained) == len(ex.pieces)
    assert [t for t, on in zip(ex.tokens, ex.trained, strict=True) if on][-1] == "<|im_end|>"
    trained = [t for t, on in zip(ex.tokens, ex.trained, strict=True) if on]
    assert trained in (["paris", ".", "<|im_end|>"], ["rome", ".", "<|im_end|>"])
    assert ex.tokens[:2] == ["<|im_start|>", "user"] and not any(ex.trained[:-3])
    assert preview.lengths == {"min": 15, "median": 15, "p95": 15, "max": 15} and preview.truncated == 0
    assert 0 < preview.trainable_params < preview.total_params
    assert preview.memory["optimizer"] == 8 * preview.trainable_params
    assert list(cwd.iterdir()) == []  # nothing written


def test_preview_html_escapes_and_highlights(llama_dir, cwd):
    rows = [{"prompt": "capital of <france> & co", "completion": "<paris>"}] * 3
    preview = nbkit.finetune(str(llama_dir), rows, task="causal-lm", dry_run=True, eval_split=0)
    html = preview._repr_html_()
    assert "<paris" not in html and "<france" not in html and "<|im" not in html and "& co" not in html
    assert len(preview.examples) == 3  # each shown: its two "<" and one "&", escaped
    assert html.count(">&lt;</span>") == 6 and html.count(">&amp;</span>") == 3
    assert html.count("background:#c8e6c9;") == 12  # <, paris, >, <|im_end|> in each
    assert preview.examples[0].trained_text == "<paris><|im_end|>"
    assert "trained (4 tokens): '<paris><|im_end|>'" in preview.example_text()


def test_truncation_is_counted_in_the_preview(llama_dir, cwd):
    rows = [{"prompt": "capital of france", "completion": "paris is the capital of france"}] * 2
    preview = nbkit.finetune(str(llama_dir), rows, task="causal-lm", dry_run=True, eval_split=0, max_length=10)
    assert preview.truncated == 2 and preview.examples[0].truncated
    assert preview.lengths["max"] == 10
    assert "2 truncated by max_length 10" in preview.example_text()


def test_classification_data_gets_the_same_preview(tiny_bert_dir, cwd):
    rows = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"}] * 3
    preview = nbkit.finetune(str(tiny_bert_dir), rows, dry_run=True, eval_split=0)
    assert preview.kind == "classification"
    assert preview.examples[0].tokens == ["[CLS]", "good", "film", "[SEP]"]
    assert preview.examples[0].label == "pos" and not any(preview.examples[0].trained)
    assert preview.trainable_params == preview.total_params


def test_magic_dry_run_returns_the_preview(llama_dir, cwd, tmp_path):
    shell = start_ipython() or TerminalInteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbkit")
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    with capture_output() as cap:
        preview = shell.run_cell_magic("finetune", "--dry-run",
                                       f"model: {llama_dir}\ndata: {data}\ntask: causal-lm\nlora: {{r: 4}}\n")
    assert isinstance(preview, Preview) and preview.config["lora"] == {"r": 4}
    assert "trained (3 tokens):" in cap.stdout and "(messages format)" in cap.stdout
    assert "LlamaForCausalLM + LoRA" in cap.outputs[0].data["text/plain"]
    assert list(cwd.iterdir()) == []


def test_magic_rejects_bad_llm_options_as_usage_errors(llama_dir, cwd):
    from IPython.core.error import UsageError

    shell = start_ipython() or TerminalInteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbkit")
    with pytest.raises(UsageError, match="unknown key 'rank' in 'lora'"):
        shell.run_cell_magic("finetune", "--dry-run", f"model: {llama_dir}\nlora: {{rank: 4}}\n")
    with pytest.raises(UsageError, match="train_on"):
        shell.run_cell_magic("finetune", "--dry-run", f"model: {llama_dir}\ntask: causal-lm\ntrain_on: prompts\n")


def test_the_cli_runs_an_llm_config(llama_dir, tmp_path):
    import subprocess
    import sys

    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    config = tmp_path / "llm.yaml"
    config.write_text(f"model: {llama_dir}\ndata: {data}\ntask: causal-lm\nlora: {{r: 4}}\nmax_steps: 2\n"
                      f"batch_size: 4\neval_split: 2\ngenerate_eval: 2\nrun_dir: {tmp_path / 'run'}\n")
    done = subprocess.run([sys.executable, "-m", "nbkit.cli", "finetune", str(config), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "status: finished" in done.stdout and "eval_exact_match:" in done.stdout
    assert "eval_perplexity:" in done.stdout
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_a_dry_run_leaves_a_passed_model_and_tokenizer_unchanged(cwd):
    from nbkit.testing import tiny_llama

    model, tok = tiny_llama(words=WORDS, chat_template=False)
    names = [n for n, _ in model.named_parameters()]
    preview = nbkit.finetune((model, tok), ROWS, task="causal-lm", lora=True, chat_template="chatml",
                             dry_run=True, eval_split=0)
    assert preview.examples[0].trained_text.endswith("<|im_end|>")
    assert [n for n, _ in model.named_parameters()] == names and tok.chat_template is None
    # it previews a weightless twin: the same counts as a real run, no copy of the weights, the real device
    assert preview.summary.device == "cpu"
    lora = nbkit.finetune((model, tok), ROWS, task="causal-lm", lora=True, chat_template="chatml",
                          eval_split=0, max_steps=1, progress=False, run_dir="r")
    start = next(e for e in lora.events if type(e).__name__ == "RunStart")
    assert (preview.trainable_params, preview.total_params) == (start.trainable_params, start.total_params)


def test_chatml_on_a_tokenizer_without_its_tokens_grows_the_embeddings(cwd, tmp_path):
    from nbkit.testing import tiny_gpt2

    model, tok = tiny_gpt2(words=WORDS)  # a BERT-style word-level tokenizer: no <|im_start|>, no template
    rows = [{"prompt": "capital of france", "completion": "paris"}] * 4
    run = nbkit.finetune((model, tok), rows, task="causal-lm", chat_template="chatml", max_steps=1,
                         batch_size=4, eval_split=0, progress=False, run_dir=str(tmp_path / "run"))
    assert run.status == "finished"
    assert model.get_input_embeddings().weight.shape[0] == len(tok) and "<|im_end|>" in tok.get_vocab()
