"""The `samples:` answers of an LLM run (issue 14, part 1): base and tuned answers at each
evaluation as `Samples` events, in metrics.jsonl, in `Run.samples`, and in the dashboard (what
crosses the comm, and the static escaped HTML a saved notebook keeps)."""

from __future__ import annotations

import json

import pytest
import torch
from capitals import QA, ROWS

from nbkit.core.config import ConfigError
from nbkit.core.llm import samples as samples_module
from nbkit.core.llm.generate import generate
from nbkit.core.llm.samples import SamplePrompt, describe_samples, sample_prompts
from nbkit.core.train.events import EvalEnd, Samples
from nbkit.core.train.finetune import finetune, resolve_config
from nbkit.core.train.run import Run

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def lora_run(llama_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "lora"
    return finetune(str(llama_dir), ROWS, lora={"r": 8, "alpha": 16, "dropout": 0.0}, lr=2e-2, epochs=6,
                    batch_size=6, eval_split=3, eval_every=6, run_dir=str(run_dir), progress=False, seed=0,
                    samples=["What is the capital of italy?",
                             {"prompt": "What is the capital of spain?", "reference": "madrid."},
                             {"prompt": XSS, "reference": XSS}])


def rounds(run) -> list[Samples]:
    return [e for e in run.events if isinstance(e, Samples)]


def test_answers_at_the_start_and_after_each_evaluation(lora_run):
    got = rounds(lora_run)
    evals = [e.step for e in lora_run.events if isinstance(e, EvalEnd) and e.split == "eval"]
    assert [r.step for r in got] == [0, *evals] and len(evals) >= 3
    assert all(r.prompts == ["What is the capital of italy?", "What is the capital of spain?", XSS] for r in got)
    assert all(r.references == [None, "madrid.", XSS] for r in got)
    # before any step the tuned model is the base model; the base answers are generated once
    assert got[0].answers == got[0].base
    assert all(r.base == got[0].base for r in got)
    # and it learned: the last answers are the capitals, which the base model did not say
    assert got[-1].answers[:2] == ["rome.", "madrid."]
    assert got[0].base[:2] != ["rome.", "madrid."]


def test_base_answers_are_the_model_with_its_adapter_off(lora_run):
    model, tok = lora_run.model, lora_run.tokenizer
    prompts = [[{"role": "user", "content": p}] for p in rounds(lora_run)[0].prompts]
    n = rounds(lora_run)[-1]
    with model.disable_adapter():
        base = generate(model, tok, prompts, max_new_tokens=_tokens(lora_run))
    assert base == n.base
    assert generate(model, tok, prompts, max_new_tokens=_tokens(lora_run)) == n.answers


def _tokens(run) -> int:
    """The answers' budget: the longest reference plus 8 tokens, as SampleAnswers sizes it."""
    refs = [r for r in rounds(run)[0].references if r]
    return max(len(run.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in refs) + 8


def test_samples_are_in_metrics_jsonl_and_come_back_with_run_load(lora_run):
    lines = [json.loads(x) for x in (lora_run.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if x["event"] == "samples"]
    assert [x["step"] for x in logged] == [r.step for r in rounds(lora_run)]
    assert logged[-1]["answers"] == rounds(lora_run)[-1].answers
    reopened = Run.load(lora_run.run_dir)
    table = reopened.samples
    assert table.equals(lora_run.samples)
    assert list(table.columns) == ["step", "prompt", "reference", "base", "answer"]
    assert len(table) == 3 * len(rounds(lora_run))
    last = table[table.step == table.step.max()]
    assert last["answer"].tolist() == rounds(lora_run)[-1].answers
    # the history is the same table with or without the extra events
    assert reopened.history.columns.tolist() == lora_run.history.columns.tolist()


def test_default_samples_are_three_eval_prompts_with_their_references(llama_dir, tmp_path, monkeypatch):
    calls = []
    real = samples_module.generate
    monkeypatch.setattr(samples_module, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    run = finetune(str(llama_dir), ROWS, lora=True, lr=1e-2, max_steps=4, batch_size=6, eval_split=4,
                   eval_every=2, run_dir=str(tmp_path / "r"), progress=False)
    got = rounds(run)
    assert [r.step for r in got] == [0, 2, 4]
    eval_qs = {f"What is the capital of {c}?": f"{k}." for c, k in QA}
    assert len(got[0].prompts) == 3 and all(eval_qs[p] == r for p, r in zip(got[0].prompts, got[0].references, strict=True))
    # exact match answered these same eval prompts at each evaluation: reused, not generated again
    assert len(calls) == 1  # the base answers, once
    assert "eval_exact_match" in run.metrics


def test_samples_zero_turns_it_off(llama_dir, tmp_path):
    run = finetune(str(llama_dir), ROWS, lora=True, max_steps=2, batch_size=6, eval_split=3, eval_every=1,
                   samples=0, run_dir=str(tmp_path / "r"), progress=False)
    assert rounds(run) == [] and run.samples.empty


def test_a_full_fine_tune_keeps_its_base_answers_across_a_resume(llama_dir, tmp_path):
    opts = dict(task="causal-lm", lr=1e-2, batch_size=6, eval_split=3, eval_every=2, progress=False, samples=["What is the capital of france?"])
    first = finetune(str(llama_dir), ROWS, max_steps=2, run_dir=str(tmp_path / "r"), **opts)
    assert [r.step for r in rounds(first)] == [0, 2]
    base = rounds(first)[0].base
    assert base == rounds(first)[0].answers
    resumed = finetune(str(llama_dir), ROWS, max_steps=4, resume_from=str(tmp_path / "r"), **opts)
    later = [r for r in rounds(resumed) if r.step >= 2]
    assert later and all(r.base == base for r in later)


def test_a_run_without_eval_data_answers_once_at_the_end(llama_dir, tmp_path):
    run = finetune(str(llama_dir), ROWS, lora=True, lr=1e-2, max_steps=3, batch_size=6, eval_split=0,
                   run_dir=str(tmp_path / "r"), progress=False, samples=["What is the capital of spain?"])
    assert [r.step for r in rounds(run)] == [0, 3]


def test_bad_samples_fail_before_anything_loads():
    with pytest.raises(ConfigError, match="'samples' must be a count >= 0"):
        resolve_config({"model": "x", "task": "causal-lm", "samples": -1})
    with pytest.raises(ConfigError, match="each item of 'samples' is a prompt string"):
        resolve_config({"model": "x", "task": "causal-lm", "samples": [3]})
    with pytest.raises(ConfigError, match="task: causal-lm"):
        resolve_config({"model": "minilm", "samples": ["hi"]})
    cfg = resolve_config({"model": "x", "task": "causal-lm", "samples": ["hi", {"prompt": "a", "reference": "b"}]})
    assert [p.reference for p in sample_prompts(cfg.samples, [])] == [None, "b"]


def test_chat_turns_are_prompts_as_given():
    turns = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    (p,) = sample_prompts([turns], [])
    assert p == SamplePrompt(turns) and p.shown == "hi"


def test_the_terminal_text():
    e = Samples(step=4, prompts=["q1", "q2"], answers=["a", "b"], base=["a", "c"], references=[None, None])
    assert describe_samples(e) == "answers at step 4:\n  q1\n    base = tuned: a\n  q2\n    base:  c\n    tuned: b"


# -- the dashboard ----------------------------------------------------------------------------------

def test_the_dashboard_panel_state_and_its_saved_html(lora_run):
    from nbkit.notebook.widgets.dashboard import Dashboard, samples_html

    d = Dashboard()
    for event in lora_run.events:
        d(event, lora_run)
    spec = d.view.samples
    got = rounds(lora_run)
    assert spec["steps"] == [r.step for r in got]
    assert spec["prompts"] == got[0].prompts and spec["references"] == [None, "madrid.", XSS]
    assert spec["base"] == got[0].base and spec["answers"] == [r.answers for r in got]
    saved = d.summary_bundle(lora_run)
    html_out = saved["text/html"]
    assert XSS not in html_out and "&lt;img src=x onerror=alert(1)&gt;" in html_out
    assert html_out.count("<details") == len(got) and html_out.count("<details open>") == 1
    assert f"Answers at step {got[-1].step} (latest)" in html_out
    assert "equals the reference" in html_out  # madrid. at the last step
    assert "answers at step" in saved["text/plain"]
    assert samples_html([]) == ""


def test_the_panel_keeps_a_bounded_history():
    from nbkit.notebook.widgets.dashboard import MAX_SAMPLE_ROUNDS, samples_spec

    many = [Samples(step=i, prompts=["q"], answers=[str(i)], base=["b"], references=[None]) for i in range(80)]
    spec = samples_spec(many)
    assert len(spec["steps"]) == MAX_SAMPLE_ROUNDS and spec["steps"][-1] == 79 and spec["answers"][-1] == ["79"]


torch.set_num_threads(1)
