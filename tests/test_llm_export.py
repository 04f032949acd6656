"""Exports that prove themselves (nbkit.core.llm.export): run.merge / run.save_adapter write atomically,
reload in a fresh model, answer the sample prompts greedily like the run's model, and flag an export
that lost its chat template, its end-of-turn eos or its merged weights."""

from __future__ import annotations

import json
import os

import pytest
import torch

from nbkit.core.llm.export import MARKER, ExportCheck, ExportRow, check_folder, stop_ids
from nbkit.core.train.finetune import finetune
from nbkit.core.train.run import Run
from nbkit.testing import save_tiny_model

WORDS = ["paris", "france", "rome", "italy", "madrid", "spain", "capital"]
QA = [("france", "paris"), ("italy", "rome"), ("spain", "madrid")]
ROWS = [{"prompt": f"What is the capital of {c}?", "completion": f"{k}."} for c, k in QA] * 8
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama", words=WORDS, hidden=48)


@pytest.fixture(scope="module")
def run(llama_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "lora"
    return finetune(str(llama_dir), ROWS, lora={"r": 8, "alpha": 16, "dropout": 0.0}, lr=2e-2, epochs=8,
                    batch_size=6, eval_split=3, run_dir=str(run_dir), progress=False, seed=0)


def disk_size(folder):
    files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
    return sum(os.path.getsize(f) for f in files), len(files)


def test_merged_export_reloads_and_answers_like_the_run(run, tmp_path):
    check = run.merge(tmp_path / "merged")
    row = check.rows[0]
    assert isinstance(check, ExportCheck) and check.path == tmp_path / "merged"
    turn = [{"role": "user", "content": "What is the capital of spain?"}]  # the eval split's distinct prompts
    assert row.prompts == run.eval_prompts == [turn, [{"role": "user", "content": "What is the capital of france?"}]]
    assert row.expected == run.generate(row.prompts, max_new_tokens=32)
    assert row.answers == row.expected == ["madrid.", "paris."] and row.equal == 2
    assert row.problems == [] and check.ok
    assert row.max_logit_diff < 1e-4
    assert (check.path / MARKER).is_file()
    assert check.table()[0]["answers equal"] == "2/2"
    # a plain transformers user stops where the run's model does: eos and end-of-turn in generation_config
    eos = json.loads((check.path / "generation_config.json").read_text())["eos_token_id"]
    assert set(eos if isinstance(eos, list) else [eos]) >= set(stop_ids(run.tokenizer))


def test_merge_puts_the_end_of_turn_token_into_generation_config(run, llama_dir, tmp_path):
    import copy

    # Llama-3's shape: eos is an end-of-text token, and the base model's generation_config knows only it
    tok = copy.deepcopy(run.tokenizer)
    tok.add_special_tokens({"eos_token": "<|endoftext|>"})
    model = copy.deepcopy(run.model)
    model.generation_config.eos_token_id = tok.eos_token_id
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    check = Run(name="l3", run_dir=tmp_path / "run", config={"model": str(llama_dir)}, model=model,
                tokenizer=tok).merge(tmp_path / "merged", prompts=run.eval_prompts)
    assert json.loads((check.path / "generation_config.json").read_text())["eos_token_id"] == sorted(
        [eot, tok.eos_token_id])
    assert check.ok and check.rows[0].answers == ["madrid.", "paris."]
    assert model.generation_config.eos_token_id == tok.eos_token_id  # the run's model is left as it was


def test_adapter_export_reloads_through_peft_and_answers_like_the_run(run, tmp_path):
    check = run.save_adapter(tmp_path / "adapter")
    row = check.rows[0]
    names = {p.name for p in check.path.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", MARKER} <= names
    assert "model.safetensors" not in names
    assert row.export == "adapter" and row.answers == row.expected == ["madrid.", "paris."] and check.ok
    assert row.max_logit_diff < 1e-6


def test_size_and_file_columns_are_what_is_on_disk(run, tmp_path):
    check = run.save_adapter(tmp_path / "adapter", check=False)
    size, files = disk_size(tmp_path / "adapter")
    row = check.rows[0]
    assert (row.size_bytes, row.files) == (size, files)
    cells = check.table()[0]
    assert cells["size (MB)"] == f"{size / 1e6:.2f}" and cells["files"] == str(files)
    assert cells["answers equal"] == "not checked" and not check.ok  # check=False proves nothing


def test_a_lost_chat_template_is_flagged_and_answers_differ(run, tmp_path):
    folder = run.merge(tmp_path / "merged").path
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    row = check_folder(run, folder).rows[0]
    assert "the reloaded tokenizer has no chat template" in row.problems
    assert row.equal < len(row.expected)
    prompt, want, got = row.first_difference
    i = row.answers.index(got)
    assert (prompt, want) == (row.prompts[i][0]["content"], row.expected[i]) and want != got
    assert "first difference" in ExportCheck([row]).table()[0]["notes"]


def test_a_lost_end_of_turn_eos_is_flagged_and_the_answers_run_on(run, tmp_path):
    folder = run.merge(tmp_path / "merged").path
    path = folder / "generation_config.json"
    config = json.loads(path.read_text())
    config["eos_token_id"] = run.tokenizer.convert_tokens_to_ids("capital")
    path.write_text(json.dumps(config))
    row = check_folder(run, folder).rows[0]
    assert any("generation_config.json eos_token_id" in p and "lacks" in p for p in row.problems)
    assert row.equal < len(row.expected)
    diff = row.first_difference
    assert diff[2].startswith(diff[1]) and len(diff[2]) > len(diff[1])  # it went on past the answer


def test_merged_weights_that_differ_from_base_plus_adapter_are_flagged(run, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = run.merge(tmp_path / "merged").path
    state = load_file(str(folder / "model.safetensors"))
    name = next(k for k in state if k.endswith("layers.0.self_attn.q_proj.weight"))
    state[name] = state[name] + 0.5
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    row = check_folder(run, folder).rows[0]
    assert row.max_logit_diff > 1e-2
    assert any(p.startswith("reloaded logits differ from base + adapter") for p in row.problems)
    assert not ExportCheck([row]).ok


def test_a_bfloat16_run_is_reloaded_in_bfloat16(run, llama_dir, tmp_path):
    import copy

    half = Run(name="half", run_dir=tmp_path / "run", config={"model": str(llama_dir)},
               model=copy.deepcopy(run.model).to(torch.bfloat16), tokenizer=run.tokenizer)
    adapter = half.save_adapter(tmp_path / "adapter", prompts=run.eval_prompts).rows[0]
    assert adapter.max_logit_diff == 0.0 and adapter.ok  # the same files in the same dtype: the same logits
    merged = half.merge(tmp_path / "merged", prompts=run.eval_prompts).rows[0]
    assert json.loads((merged.path / "config.json").read_text())["dtype"] == "bfloat16"
    assert merged.max_logit_diff > 1e-3  # W + B·A rounded to 16 bits: reported, and judged at bf16's precision
    assert merged.answers == merged.expected and merged.ok


def test_a_failed_write_leaves_no_folder_behind(run, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run.tokenizer, "save_pretrained", fail)  # after the weights are written
    with pytest.raises(OSError, match="disk full"):
        run.merge(tmp_path / "out" / "merged")
    assert os.listdir(tmp_path / "out") == []  # neither the folder nor its temporary sibling


def test_a_failed_rewrite_keeps_the_previous_export(run, tmp_path, monkeypatch):
    folder = run.save_adapter(tmp_path / "adapter", check=False).path
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(run.tokenizer, "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        run.save_adapter(folder, check=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["adapter"]


def test_a_previous_export_is_replaced_but_other_folders_are_refused(run, tmp_path):
    folder = tmp_path / "merged"
    run.merge(folder, check=False)
    (folder / "stale.txt").write_text("from the last export")
    run.merge(folder, check=False)  # a previous export: replaced whole
    assert not (folder / "stale.txt").exists() and (folder / "model.safetensors").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not empty and holds no nbkit export: .* overwrite=True"):
        run.merge(mine)
    assert os.listdir(mine) == ["notes.txt"]
    run.merge(mine, check=False, overwrite=True)
    assert not (mine / "notes.txt").exists() and (mine / MARKER).is_file()


def test_prompts_come_from_the_argument_then_samples_then_eval_data(run, tmp_path, monkeypatch):
    check = run.save_adapter(tmp_path / "a", prompts="What is the capital of italy?")
    assert check.rows[0].prompts == ["What is the capital of italy?"]
    monkeypatch.setitem(run.config, "samples", [{"prompt": "What is the capital of france?", "reference": "paris."},
                                                "What is the capital of spain?"])
    check = run.save_adapter(tmp_path / "b")
    assert check.rows[0].prompts == ["What is the capital of france?", "What is the capital of spain?"]
    assert check.rows[0].expected == ["paris.", "madrid."]
    monkeypatch.setitem(run.config, "samples", {"prompts": ["What is the capital of italy?"]})
    assert check_folder(run, check.path).rows[0].prompts == ["What is the capital of italy?"]
    monkeypatch.setitem(run.config, "samples", True)  # not prompts: the eval prompts
    assert check_folder(run, check.path).rows[0].prompts == run.eval_prompts


def test_no_prompts_is_one_clear_error_before_anything_is_written(llama_dir, run, tmp_path):
    bare = Run(name="bare", run_dir=tmp_path / "run", config={"model": str(llama_dir)}, model=run.model,
               tokenizer=run.tokenizer)
    with pytest.raises(ValueError, match=r"no prompts to check the export on .* prompts=\['...'\] or check=False"):
        bare.merge(tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_a_run_still_training_is_refused(run, tmp_path, monkeypatch):
    monkeypatch.setattr(run, "status", "running")
    with pytest.raises(ValueError, match=r"still training: wait for it \(run.wait\(\)\)"):
        run.merge(tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_save_adapter_of_a_model_without_lora_refuses_before_writing(llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain = Run(name="plain", run_dir=tmp_path / "run", config={}, model=AutoModelForCausalLM.from_pretrained(llama_dir),
                tokenizer=AutoTokenizer.from_pretrained(llama_dir))
    with pytest.raises(ValueError, match="this model has no LoRA adapter"):
        plain.save_adapter(tmp_path / "adapter", prompts="hi")
    assert not (tmp_path / "adapter").exists()
    check = plain.merge(tmp_path / "merged", prompts="What is the capital of spain?")  # a full model merges as is
    assert check.ok and check.rows[0].max_logit_diff == 0.0


def test_html_and_text_show_markup_as_text(run, tmp_path):
    row = ExportRow("merged", tmp_path / XSS, 2_500_000, 3, prompts=[XSS], expected=[XSS], answers=[XSS + "!"],
                    max_logit_diff=0.0, problems=[], check_seconds=0.1)
    page = ExportCheck([row])._repr_html_()
    assert "<img" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") == 4  # path, prompt, both answers
    check = ExportCheck([row])
    assert repr(check) == f"<nbkit.ExportCheck merged {str(tmp_path / XSS)!r}: 2.50 MB, 3 files, answers 0/1 equal, FAILED>"
    text = check._repr_mimebundle_()["text/plain"]
    assert text == check.to_text() and XSS in text
    assert check.table() == [{"export": "merged", "path": str(tmp_path / XSS), "size (MB)": "2.50", "files": "3",
                              "answers equal": "0/1", "max |Δ logit|": "0.0e+00",
                              "notes": f"first difference: {XSS!r} -> in memory {XSS!r}, reloaded {XSS + '!'!r}"}]
    real = run.merge(tmp_path / XSS, prompts=[XSS])  # a real folder named with markup
    assert "<img" not in real._repr_html_() and real.path.name == XSS


def test_cli_merge_and_export_print_the_table(run, tmp_path, capsys):
    from nbkit.cli import main

    prompt = "What is the capital of france?"
    assert main(["merge", str(run.run_dir), str(tmp_path / "merged"), "--prompt", prompt]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["export", "path", "size", "(MB)", "files", "answers", "equal", "max",
                                           "|Δ", "logit|", "notes"]
    assert "merged" in out and "1/1" in out and out.rstrip().endswith("ok")
    assert main(["export", str(run.run_dir), str(tmp_path / "adapter"), "--prompt", prompt]) == 0
    assert "adapter" in capsys.readouterr().out
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "x").write_text("x")
    assert main(["merge", str(run.run_dir), str(tmp_path / "mine"), "--prompt", prompt]) == 2
    assert "holds no nbkit export" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_lora_merge_and_adapter_prove_themselves(tmp_path):
    from nbkit.core.llm.lora import apply_lora, lora_options
    from nbkit.core.models import load_model

    model, tok = load_model("smollm2", "causal-lm", device="cpu", dtype="float32")
    model = apply_lora(model, lora_options({"r": 8}), seed=0)
    with torch.no_grad():  # a nonzero adapter, so merging changes the weights
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01, generator=torch.Generator().manual_seed(hash(name) % 2**31))
    run = Run(name="smol", run_dir=tmp_path / "run", config={"model": "smollm2", "max_new_tokens": 16}, model=model,
              tokenizer=tok)
    prompts = ["What is the capital of France?", "Name a primary color.", "What is 2 + 2?"]
    merged = run.merge(tmp_path / "merged", prompts=prompts)
    adapter = run.save_adapter(tmp_path / "adapter", prompts=prompts)
    for check in (merged, adapter):
        assert check.ok, check.to_text()
        assert check.rows[0].equal == 3
    assert merged.rows[0].size_mb > 400 and adapter.rows[0].size_mb < 20
    print("\n" + merged.to_text() + "\n" + adapter.to_text())
    print({c.rows[0].export: (round(c.rows[0].write_seconds, 1), round(c.rows[0].check_seconds, 1))
           for c in (merged, adapter)})


def test_the_export_module_imports_no_ui_and_no_torch():
    import subprocess
    import sys

    code = ("import sys, nbkit.core.llm.export; "
            "print(sorted(m for m in ('IPython', 'ipywidgets', 'plotly', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
