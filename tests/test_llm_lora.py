"""LoRA runs on a tiny random Llama: adapters train, save, reload and merge to the same logits;
checkpoints hold the adapter only; Run.load gives base + adapter; generation and exact match."""

from __future__ import annotations

import json

import pytest
import torch
from capitals import QA, ROWS

from nbkit.core.config import ConfigError
from nbkit.core.llm.generate import ExactMatch, exact_match, generate
from nbkit.core.llm.lora import lora_options
from nbkit.core.train.events import RunStart
from nbkit.core.train.finetune import finetune
from nbkit.core.train.run import Run


@pytest.fixture(scope="module")
def lora_run(llama_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "lora"
    return finetune(str(llama_dir), ROWS, lora={"r": 8, "alpha": 16, "dropout": 0.0}, lr=2e-2, epochs=8,
                    batch_size=6, eval_split=3, run_dir=str(run_dir), progress=False, seed=0)


def logits(model, tok, text="What is the capital of france?"):
    ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model.eval()(**ids).logits


def test_lora_trains_only_the_adapters_and_reports_them(lora_run):
    assert lora_run.status == "finished"
    start = next(e for e in lora_run.events if isinstance(e, RunStart))
    trainable = sum(p.numel() for p in lora_run.model.parameters() if p.requires_grad)
    assert start.trainable_params == trainable and 0 < trainable < start.total_params / 2
    hist = lora_run.history
    assert hist["loss"].iloc[-1] < hist["loss"].iloc[0] / 2
    assert {"eval_loss", "eval_perplexity", "eval_exact_match"} <= set(lora_run.metrics)
    assert lora_run.metrics["eval_perplexity"] == pytest.approx(torch.tensor(lora_run.metrics["eval_loss"]).exp().item())


def test_the_tuned_model_answers_and_exact_match_scores_it(lora_run):
    answers = lora_run.generate([f"What is the capital of {c}?" for c, _ in QA], max_new_tokens=4)
    assert answers == ["paris.", "rome.", "madrid."]
    assert lora_run.metrics["eval_exact_match"] == 1.0


def test_checkpoints_of_a_lora_run_hold_the_adapter_only(lora_run):
    folder = lora_run.last_checkpoint
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "trainer_state.json"} <= names
    assert "model.safetensors" not in names  # the base model is not copied into the run
    assert "training_state" not in names  # a finished run keeps no optimizer state


def test_save_adapter_loads_in_peft_and_merge_gives_equal_logits(lora_run, llama_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = lora_run.tokenizer
    expected = logits(lora_run.model, tok)
    adapter = lora_run.save_adapter(tmp_path / "adapter").path
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8
    base = AutoModelForCausalLM.from_pretrained(llama_dir)
    reloaded = PeftModel.from_pretrained(base, adapter)
    assert torch.allclose(logits(reloaded, tok), expected, atol=1e-4)
    merged_dir = lora_run.merge(tmp_path / "merged").path
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    merged_tok = AutoTokenizer.from_pretrained(merged_dir)
    assert merged_tok.chat_template == tok.chat_template
    assert torch.allclose(logits(merged, merged_tok), expected, atol=1e-4)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert torch.allclose(logits(lora_run.model, tok), expected)  # the run's model keeps its adapter


def test_run_load_of_a_lora_run_gives_base_plus_adapter(lora_run):
    reopened = Run.load(lora_run.run_dir)
    assert type(reopened.model).__name__ == "PeftModelForCausalLM"
    assert torch.allclose(logits(reopened.model, reopened.tokenizer), logits(lora_run.model, lora_run.tokenizer),
                          atol=1e-4)


def test_gradient_checkpointing_gives_the_same_losses(llama_dir, tmp_path):
    losses = []
    for gc in (False, True):
        run = finetune(str(llama_dir), ROWS, lora={"dropout": 0.0}, gradient_checkpointing=gc, max_steps=3, batch_size=6,
                       eval_split=0, run_dir=str(tmp_path / f"gc-{gc}"), progress=False, lr=1e-2)
        losses.append(list(run.history["loss"]))
        if gc:
            inner = run.model.base_model.model
            assert getattr(inner, "is_activation_checkpointing", None) or inner.is_gradient_checkpointing
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_a_full_fine_tune_without_lora_still_works(llama_dir, tmp_path):
    run = finetune(str(llama_dir), ROWS, task="causal-lm", max_steps=2, batch_size=6, eval_split=3,
                   run_dir=str(tmp_path / "full"), progress=False)
    assert run.status == "finished"
    assert (run.last_checkpoint / "model.safetensors").exists()
    start = next(e for e in run.events if isinstance(e, RunStart))
    assert start.trainable_params == start.total_params


@pytest.mark.parametrize(("value", "needle"), [
    ({"rank": 8}, "unknown key 'rank' in 'lora'"),
    ({"r": 0}, "'lora.r' must be an integer >= 1"),
    ({"dropout": 1.5}, "'lora.dropout' must be a number in"),
    ({"target_modules": []}, "'lora.target_modules' must be"),
    ("yes", "'lora' must be true, false or a mapping"),
])
def test_bad_lora_options_fail_before_loading(llama_dir, value, needle):
    with pytest.raises(ConfigError, match=needle):
        finetune(str(llama_dir), ROWS, lora=value, dry_run=True)


def test_lora_defaults_and_target_modules():
    assert lora_options(True) == {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    assert lora_options({"target_modules": "q_proj, v_proj"})["target_modules"] == ["q_proj", "v_proj"]
    assert lora_options(False) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_load_in_4bit_names_its_requirement_on_cpu(llama_dir):
    with pytest.raises(ConfigError, match="load_in_4bit needs a CUDA GPU"):
        finetune(str(llama_dir), ROWS, lora=True, load_in_4bit=True, dry_run=True)


def test_generate_takes_strings_and_turns_and_samples_with_temperature(lora_run):
    model, tok = lora_run.model, lora_run.tokenizer
    one = generate(model, tok, "What is the capital of italy?", max_new_tokens=3)
    turns = generate(model, tok, [{"role": "user", "content": "What is the capital of italy?"}], max_new_tokens=3)
    assert one == turns == "rome."
    torch.manual_seed(0)
    sampled = generate(model, tok, ["What is the capital of italy?"] * 2, max_new_tokens=3, temperature=1.0)
    assert len(sampled) == 2 and all(isinstance(s, str) for s in sampled)


def test_exact_match_normalizes_whitespace(lora_run):
    assert exact_match(["paris  .", "rome"], ["paris .", "madrid"]) == 0.5
    from nbkit.core.llm.chat import to_conversations

    convs = to_conversations([{"prompt": "What is the capital of spain?", "completion": "madrid."},
                              {"prompt": "What is the capital of spain?", "completion": "rome."}],
                             "prompt-completion")
    em = ExactMatch(convs, lora_run.tokenizer, n=2)
    assert em(lora_run.model) == {"eval_exact_match": 0.5}
    assert em.last_predictions == ["madrid.", "madrid."]


def test_dashboard_header_shows_the_trainable_parameters():
    from nbkit.notebook.widgets.dashboard import Dashboard

    d = Dashboard(min_interval=0.0)
    d(RunStart(name="lora", run_dir="/tmp/x", total_steps=10, steps_per_epoch=10, epochs=1,
               trainable_params=4_884_480, total_params=139_399_488), None)
    assert "trainable 4.9M of 139.4M parameters (3.5%)" in d.view.subtitle


def test_a_stopped_lora_run_resumes_from_its_adapter_checkpoint(llama_dir, tmp_path):
    from nbkit.core.train.events import StepEnd

    data = tmp_path / "qa.jsonl"  # resume reads the data again by its name
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    opts = dict(lora={"r": 4, "dropout": 0.0}, max_steps=4, batch_size=6, eval_split=0, lr=1e-2,
                progress=False, group_by_length=False)
    whole = finetune(str(llama_dir), str(data), run_dir=str(tmp_path / "whole"), **opts)

    def stop_at_2(event, run):
        if isinstance(event, StepEnd) and event.step == 2:
            run.stop("test")

    part = finetune(str(llama_dir), str(data), run_dir=str(tmp_path / "part"), callbacks=[stop_at_2], **opts)
    assert part.status == "stopped" and not (part.last_checkpoint / "model.safetensors").exists()
    resumed = finetune(resume_from=tmp_path / "part", progress=False)
    assert resumed.status == "finished"
    assert list(resumed.history["loss"]) == pytest.approx(list(whole.history["loss"]), rel=1e-5)


def test_eval_loss_is_per_trained_token_whatever_the_batching(lora_run):
    """Answers of different lengths: batch sizes 1 and 32 give the same eval_loss, the mean over
    every trained token of the split."""
    import math

    from nbkit.core.llm.chat import load_chat_data

    rows = [{"prompt": "What is the capital of france?", "completion": "paris."},
            {"prompt": "What is the capital of italy?", "completion": "rome rome rome rome rome rome."}]
    by_one = lora_run.evaluate(rows, batch_size=1)["loss"]
    together = lora_run.evaluate(rows, batch_size=32)["loss"]
    assert by_one == pytest.approx(together, rel=1e-6)
    split = load_chat_data(rows, lora_run.tokenizer, eval_split=0)["train"]
    model = lora_run.model.eval()
    total, tokens = 0.0, 0
    for ids, labels in zip(split.columns["input_ids"], split.columns["labels"], strict=True):
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
        n = sum(x != -100 for x in labels[1:])
        total, tokens = total + out.loss.item() * n, tokens + n
    assert together == pytest.approx(total / tokens, rel=1e-5)
    assert math.isfinite(together)


def test_evaluate_takes_chat_data_like_finetune(lora_run):
    rows = [{"prompt": f"What is the capital of {c}?", "completion": f"{k}."} for c, k in QA]
    got = lora_run.evaluate(rows)
    assert set(got) == {"loss", "perplexity", "exact_match"} and got["exact_match"] == 1.0
    assert got["perplexity"] == pytest.approx(torch.tensor(got["loss"]).exp().item())
    reopened = Run.load(lora_run.run_dir).evaluate(rows, metrics=["perplexity"])
    assert set(reopened) == {"loss", "perplexity"} and reopened["loss"] == pytest.approx(got["loss"], rel=1e-5)


def test_evaluation_batches_of_a_large_vocabulary_stay_within_the_logits_budget():
    from nbkit.core.llm.generate import LOGITS_BUDGET, logits_batch_size
    from nbkit.testing import tiny_llama

    model, _ = tiny_llama()  # a vocabulary of a few hundred words: batches unchanged
    assert logits_batch_size(64, model, 128) == 64
    model.config.vocab_size = 49152  # what the budget sees comes from the output layer, not the config
    assert logits_batch_size(64, model, 128) == 64
    big = torch.nn.Linear(4, 49152, bias=False)
    model.set_output_embeddings(big)
    assert logits_batch_size(64, model, 128) == LOGITS_BUDGET // (128 * 49152 * 4) == 2
    assert logits_batch_size(64, model, 100_000) == 1
