"""The magics through a real IPython shell: what lands in the namespace, what is shown, and that bad
input ends in one plain `UsageError` with nothing written to disk."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.terminal.interactiveshell import TerminalInteractiveShell
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output

from nbkit.core.config import METRICS, FinetuneConfig

torch.set_num_threads(1)  # 2 threads on a shared 2-core machine are ~100x slower under contention

FIELDS = {f.name: f for f in dataclasses.fields(FinetuneConfig)}


@pytest.fixture(scope="module")
def ip():
    # start_ipython() returns the shell only on its first call in the process (another test module
    # may have made it); the singleton instance is that same shell.
    shell = start_ipython() or TerminalInteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbkit")
    return shell


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working directory: nothing may appear in it unless a run really trains."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory):
    """64 rows of text made of the tiny tokenizer's words, labelled by one word so it is learnable."""
    import pandas as pd

    from nbkit.testing import random_texts

    texts = random_texts(64, seed=3, min_words=4, max_words=12)
    labels = ["pos" if i % 2 else "neg" for i in range(64)]
    texts = [f"good {t}" if lab == "pos" else f"bad {t}" for t, lab in zip(texts, labels, strict=True)]
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def usage_error(ip, line: str, body: str | None) -> str:
    """Run the magic, assert it raised exactly UsageError (a subclass prints a traceback), return the text."""
    with pytest.raises(UsageError) as err:
        if body is None:
            ip.run_line_magic(line.split()[0], line.partition(" ")[2])
        else:
            ip.run_cell_magic("finetune", line, body)
    assert type(err.value) is UsageError
    message = str(err.value)
    assert 0 < len(message) < 1200 and "Traceback" not in message
    return message


# -- loading -----------------------------------------------------------------------------------------


def test_load_ext_registers_magics_without_torch_or_transformers():
    code = (
        "import sys, json\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'nbkit')\n"
        "m = ip.magics_manager.magics\n"
        "print(json.dumps({'heavy': sorted(x for x in ('torch', 'transformers', 'datasets') if x in sys.modules),\n"
        "                  'cell': sorted(n for n in m['cell'] if n == 'finetune'),\n"
        "                  'line': sorted(n for n in m['line'] if n in ('finetune', 'nbkit_load', 'nbkit'))}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"heavy": [], "cell": ["finetune"], "line": ["finetune", "nbkit", "nbkit_load"]}


def test_unload_removes_the_magics_and_load_brings_them_back(ip):
    ip.run_line_magic("unload_ext", "nbkit")
    try:
        assert "finetune" not in ip.magics_manager.magics["cell"]
        assert not {"finetune", "nbkit", "nbkit_load"} & set(ip.magics_manager.magics["line"])
    finally:
        ip.run_line_magic("load_ext", "nbkit")
    assert "finetune" in ip.magics_manager.magics["cell"]
    assert "nbkit_load" in ip.magics_manager.magics["line"]


# -- help --------------------------------------------------------------------------------------------


def assert_full_help(text: str) -> None:
    for flag in ("--name", "--out", "--background", "--resume", "--dry-run"):
        assert flag in text
    for name, f in FIELDS.items():
        line = next((x for x in text.splitlines() if x.split()[:1] == [name]), None)
        assert line is not None, f"config key {name!r} missing from the help"
        assert f.metadata["help"] in line  # one line of meaning next to every key
        assert "default" in line


def test_line_magic_help_lists_every_config_key(ip, capsys):
    ip.run_line_magic("finetune", "--help")
    out = capsys.readouterr().out
    assert_full_help(out)
    assert not out.startswith("::")
    assert "%%finetune [--name NAME] [--out VAR] [--background] [--resume RUN_DIR] [--dry-run]" in out


def test_question_mark_help_lists_every_config_key(ip):
    with capture_output() as cap:
        ip.run_cell("%%finetune?")
    text = cap.stdout + "".join(o.data.get("text/plain", "") for o in cap.outputs)
    assert_full_help(text)


@pytest.mark.parametrize(("magic", "needle"), [
    ("nbkit_load", "--task TASK"),
    ("nbkit", "runs: list run directories"),
])
def test_other_magics_have_help(ip, capsys, magic, needle):
    ip.run_line_magic(magic, "--help")
    assert needle in capsys.readouterr().out


# -- %nbkit_load ---------------------------------------------------------------------------------------


def test_nbkit_load_stores_model_and_tokenizer_and_shows_the_summary(ip, tiny_bert_dir, cwd):
    ip.user_ns.pop("model", None)
    with capture_output() as cap:
        ip.run_line_magic("nbkit_load", str(tiny_bert_dir))
    model, tokenizer = ip.user_ns["model"]
    assert type(model).__name__ == "BertForSequenceClassification"
    assert tokenizer("good film")["input_ids"][0] == tokenizer.cls_token_id
    (shown,) = cap.outputs
    assert "<table class='nbkit-model-summary'>" in shown.data["text/html"]
    assert "BertForSequenceClassification" in shown.data["text/plain"]
    assert f"{sum(p.numel() for p in model.parameters()):,}" in shown.data["text/plain"]
    assert files_under(cwd) == set()


def test_nbkit_load_task_and_out(ip, tiny_bert_dir):
    with capture_output():
        ip.run_line_magic("nbkit_load", f"{tiny_bert_dir} --task base --out encoder")
    model, _ = ip.user_ns["encoder"]
    assert type(model).__name__ == "BertModel"


# -- %nbkit runs / device ------------------------------------------------------------------------------


def test_nbkit_device_shows_cpu_and_memory(ip):
    with capture_output() as cap:
        ip.run_line_magic("nbkit", "device")
    (shown,) = cap.outputs
    text = shown.data["text/plain"]
    assert text.splitlines()[1].startswith("cpu *")
    assert re.search(r"\d+(\.\d+)? [MG]B", text), text
    assert "<table class='nbkit-devices'>" in shown.data["text/html"]


def test_nbkit_runs_without_runs_says_so(ip, cwd):
    with capture_output() as cap:
        ip.run_line_magic("nbkit", "runs")
    assert "No runs in 'nbkit-runs' yet" in cap.stdout
    assert cap.outputs == []


# -- %%finetune --dry-run --------------------------------------------------------------------------------


def dry_run(ip, body: str, line: str = "--dry-run"):
    with capture_output() as cap:
        ip.run_cell_magic("finetune", line, body)
    config_block = cap.stdout.split("\n# model")[0]
    return yaml.safe_load(config_block), cap


def test_dry_run_shows_config_model_and_a_tokenized_example(ip, tiny_bert_dir, tiny_csv, cwd):
    ip.user_ns.pop("run", None)
    body = f"model: {tiny_bert_dir}\ndata: {tiny_csv}\nepochs: 2\nlr: 3e-4\nmax_length: 8\n"
    config, cap = dry_run(ip, body, "--dry-run --name preview")
    assert config["model"] == str(tiny_bert_dir) and config["lr"] == 3e-4 and config["epochs"] == 2
    assert config["name"] == "preview"  # --name sets the config key
    assert set(config) == set(FIELDS)
    (summary,) = cap.outputs
    assert "BertForSequenceClassification" in summary.data["text/plain"]
    example = cap.stdout.split("# first training example\n")[1].splitlines()
    tokens_line = next(x for x in example if x.startswith("tokens ("))
    tokens = tokens_line.split(": ", 1)[1].split()
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and len(tokens) == 8  # truncated to max_length
    assert tokens[1] in ("good", "bad")
    label_line = next(x for x in example if x.startswith("label:"))
    assert label_line.split()[-1].strip("'") == ("pos" if tokens[1] == "good" else "neg")
    assert "# data: train 58, eval 6 rows" in cap.stdout  # 64 rows, eval_split 0.1
    assert "run" not in ip.user_ns
    assert files_under(cwd) == set()


def test_dry_run_with_notebook_variables(ip, tiny_bert_dir, tiny_csv, cwd):
    import pandas as pd

    from nbkit.core.models import load_model

    def my_metric(preds, labels):
        return 0.0

    ip.user_ns.update(pair=load_model(tiny_bert_dir), frame=pd.read_csv(tiny_csv), my_metric=my_metric)
    config, cap = dry_run(ip, "model: $pair\ndata: $frame\nmetrics: [accuracy, $my_metric]\n")
    assert config["model"] == "<tuple>" and config["data"] == "<DataFrame>"
    assert config["metrics"] == ["accuracy", "my_metric"]
    assert "tokens (" in cap.stdout
    assert files_under(cwd) == set()


def test_dry_run_with_inline_rows(ip, tiny_bert_dir, cwd):
    rows = "".join(f"\n  - {{text: {w} film, label: {w}}}" for w in ["good", "bad"] * 3)
    config, cap = dry_run(ip, f"model: {tiny_bert_dir}\neval_split: 0\ndata:{rows}")
    assert config["data"][:2] == [{"text": "good film", "label": "good"}, {"text": "bad film", "label": "bad"}]
    assert "# data: train 6 rows" in cap.stdout


def test_same_yaml_resolves_equal_in_magic_python_and_cli(ip, tiny_bert_dir, tiny_csv, tmp_path, cwd):
    from nbkit.core.train.finetune import resolve_config

    text = (f"model: {tiny_bert_dir}\ndata: {tiny_csv}\nepochs: 2\nlr: 3e-4\nbatch_size: 8\n"
            "metrics: accuracy, f1\nwarmup: 0.1\nmax_grad_norm: null\nscheduler: cosine\n")
    from_magic, _ = dry_run(ip, text)
    from_python = dataclasses.asdict(resolve_config(**yaml.safe_load(text)))
    path = tmp_path / "config.yaml"
    path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "nbkit.cli", "finetune", str(path), "--dry-run"],
                          capture_output=True, text=True, timeout=120, check=True)
    from_cli = yaml.safe_load(done.stdout)
    assert from_magic == from_python == from_cli
    assert from_magic["lr"] == 3e-4 and from_magic["metrics"] == ["accuracy", "f1"]


# -- malformed input -------------------------------------------------------------------------------------

# (flags, body, a fragment the message must contain): {model} and {csv} name the tiny model and CSV.
MALFORMED = [
    ("", "lr: [1, 2", "not valid YAML"),
    ("", "model: minilm\n\tepochs: 2", "not valid YAML"),
    ("", "epochs: 2\n  lr: 1", "not valid YAML"),
    ("", "- model: minilm", "not a list"),
    ("", "minilm", "not a str"),
    ("", "lrate: 0.1", "unknown key 'lrate' (did you mean 'lr'?)"),
    ("", "epoch: 2", "did you mean 'epochs'?"),
    ("", "1: 2", "unknown key 1"),
    ("", "epochs: 0", "'epochs' must be an integer >= 1, got 0"),
    ("", "epochs: two", "'epochs'"),
    ("", "epochs: 1.5", "'epochs'"),
    ("", "epochs: true", "'epochs'"),
    ("", "lr: -1", "'lr' must be a number > 0"),
    ("", "lr: 0", "'lr'"),
    ("", "lr: fast", "'lr'"),
    ("", "batch_size: 0", "'batch_size'"),
    ("", "optimizer: adamm", "'optimizer'"),
    ("", "scheduler: cosin", "did you mean 'cosine'?"),
    ("", "precision: fp8", "'precision'"),
    ("", "task: classification", "'task'"),
    ("", "metrics: [accuracy, bleu]", "each item of 'metrics'"),
    ("", "metrics: 5", "'metrics'"),
    ("", "warmup: -0.1", "'warmup'"),
    ("", "max_grad_norm: 0", "'max_grad_norm'"),
    ("", "eval_split: -1", "'eval_split'"),
    ("", "test: maybe", "'test'"),
    ("", "max_length: 1", "'max_length'"),
    ("", "seed: -1", "'seed'"),
    ("", "name: [a, b]", "'name'"),
    ("", "text: 5", "'text'"),
    ("", "group_by_length: 3", "'group_by_length'"),
    ("", "model: null", "'model'"),
    ("", "model: 5", "'model' must be a name or a path"),
    ("", "data: 3.5", "'data' must be a name or a path"),
    ("", "model: [a, b]", "'model' must be a name or a path"),
    ("--dry-run", "model: {model}\ndata: [1, 2]", "item 0 of the list is a int, not a dict"),
    ("", "data: $undefined_frame", "'data': the notebook has no variable 'undefined_frame'"),
    ("", "model: $nope", "'model'"),
    ("", "data: $", "'data': '$' is not a variable reference"),
    ("", "data: $1abc", "'data'"),
    ("", "metrics: [accuracy, $missing_fn]", "'metrics'"),
    ("--epochs 3", "lr: 1", "unrecognized arguments: --epochs 3"),
    ("--out 1run", "lr: 1", "--out '1run' is not a Python variable name"),
    ("--out class", "lr: 1", "not a Python variable name"),
    ("--resume no-such-dir", "# resume", "not a run directory"),
    ("--resume {csv}", "lr: 1", "leave the cell body empty"),
    ("--dry-run", "model: ./no-such-folder\ndata: {csv}", "no-such-folder"),
    ("--dry-run", "model: {model}\ndata: no-such-file.csv", "no-such-file.csv"),
    ("--dry-run", "model: {model}\ndata: {csv}\ntext: review", "review"),
    ("--dry-run", "model: {model}\ndata: {csv}\nlabel: stars", "stars"),
    ("--dry-run", "model: {model}\ndata: {csv}\ntask: seq2seq", "seq2seq"),
]


@pytest.mark.parametrize(("flags", "body", "needle"), MALFORMED)
def test_malformed_finetune_is_one_usage_error_and_writes_nothing(ip, cwd, tiny_bert_dir, tiny_csv,
                                                                  flags, body, needle):
    fill = {"model": tiny_bert_dir, "csv": tiny_csv}
    flags, body, needle = flags.format(**fill), body.format(**fill), needle.format(**fill)
    ip.user_ns.pop("run", None)
    message = usage_error(ip, flags, body)
    assert needle in message
    assert files_under(cwd) == set()
    assert "run" not in ip.user_ns


@pytest.mark.parametrize(("line", "needle"), [
    ("finetune", "needs its config as a cell body"),
    ("finetune --dry-run", "needs its config as a cell body"),
    ("finetune --nmae x", "unrecognized arguments: --nmae x"),
    ("nbkit_load ./no-such-model", "No such folder: './no-such-model'"),
    ("nbkit_load {model} --task clasification", "Unknown task 'clasification'. Did you mean"),
    ("nbkit_load {model} --out 2x", "--out '2x' is not a Python variable name"),
    ("nbkit_load", "%nbkit_load needs a model"),
    ("nbkit", "%nbkit needs a command"),
    ("nbkit compare ./no-such-run ./nor-this", "is not an nbkit run directory"),
    ("nbkit runs a b", "takes one folder"),
    ("attention", "the following arguments are required"),
    ("attention nosuchvar hello", "no variable 'nosuchvar'"),
    ("nbkit device now", "takes no argument"),
])
def test_malformed_line_magics(ip, cwd, tiny_bert_dir, line, needle):
    line = line.format(model=tiny_bert_dir)
    ip.user_ns.pop("model", None)
    assert needle in usage_error(ip, line, None)
    assert files_under(cwd) == set()
    assert "model" not in ip.user_ns


def test_failed_magics_keep_the_shell_usable(ip, cwd):
    # Through run_cell, as a notebook runs it: the error is reported and the next cell still works.
    result = ip.run_cell("%%finetune\nlrate: 1\n")
    assert type(result.error_in_exec) is UsageError
    assert ip.run_cell("x_after_error = 41 + 1").success
    assert ip.user_ns["x_after_error"] == 42
    assert files_under(cwd) == set()


def _bad_value(f: dataclasses.Field) -> st.SearchStrategy:
    """Values that the schema must refuse for field `f` (derived from its metadata)."""
    meta = f.metadata
    kind, choices = meta["kind"], meta["choices"]
    words = st.text(string.ascii_letters + "-_ ", min_size=1, max_size=10)

    def not_a_float(s: str) -> bool:
        try:
            float(s)
        except ValueError:
            return True
        return False

    lists = st.lists(st.integers(), min_size=1, max_size=3)
    if f.name in ("model", "data"):  # from YAML: a name or a path (data may also be inline rows)
        return st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(),
                         *([lists] if f.name == "model" else []))
    if f.name == "lora":  # true, false or a mapping: anything else
        return st.one_of(st.integers(), words, lists)
    if f.name == "samples":  # a count >= 0 or prompts (0 and [] turn it off: both valid)
        return st.one_of(st.integers(max_value=-1), st.floats(allow_nan=False),
                         st.lists(st.integers(), min_size=1, max_size=2))
    if kind is int:
        low = meta["min"] if meta["min"] is not None else 0
        return st.one_of(st.integers(max_value=low - 1), st.floats(allow_nan=False), st.booleans(),
                         words, lists)
    if kind is float:
        # Below the bound; not "exclude_max" at 0, which would still allow -0.0 (and -0.0 >= 0).
        below = (st.floats(max_value=meta["gt"]) if meta["gt"] is not None
                 else st.floats(max_value=meta["min"] - 1e-9))
        return st.one_of(below, st.booleans(), words.filter(not_a_float), lists)
    if kind is bool:
        return st.one_of(st.integers(), st.floats(allow_nan=False), words)
    if kind is list:
        bad_item = words.filter(lambda s: s.strip() not in METRICS and "," not in s and s.strip())
        return st.one_of(st.integers(), st.lists(bad_item, min_size=1, max_size=3),
                         st.lists(st.integers(), min_size=1, max_size=2))
    if choices:
        return st.one_of(words.filter(lambda s: s not in choices), st.integers(), lists)
    return st.one_of(st.integers(), st.booleans(), lists)  # a plain string key


KNOWN = sorted(FIELDS)
unknown_key = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12).filter(lambda k: k not in FIELDS)
bad_mapping = st.one_of(
    st.sampled_from(KNOWN).flatmap(lambda k: st.tuples(st.just(k), _bad_value(FIELDS[k]))),
    st.tuples(unknown_key, st.integers() | st.text(max_size=5)),
)


@settings(max_examples=60, deadline=None, database=None,  # no .hypothesis/ folder left behind
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=bad_mapping, good=st.sampled_from([{}, {"epochs": 1}, {"lr": 1e-3, "batch_size": 4}]))
def test_generated_bad_mappings_are_usage_errors_naming_the_key(ip, cwd, pair, good):
    key, value = pair
    body = yaml.safe_dump({**good, key: value})
    message = usage_error(ip, "--dry-run", body)
    assert repr(key) in message, (body, message)
    assert files_under(cwd) == set()


# -- real runs -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_finetune_trains_stores_the_run_and_lists_it(ip, tiny_bert_dir, tiny_csv, cwd):
    body = (f"model: {tiny_bert_dir}\ndata: {tiny_csv}\nepochs: 1\nbatch_size: 16\nlr: 1e-3\n"
            "metrics: [accuracy]\n")
    ip.user_ns.pop("run", None)
    with capture_output() as cap:
        ip.run_cell_magic("finetune", "--name tiny", body)
    run = ip.user_ns["run"]
    assert run.status == "finished"
    assert run.name == "tiny"
    shown = "".join(o.data["text/plain"] for o in cap.outputs)
    assert run._repr_mimebundle_()["text/plain"] in shown  # the one summary line
    assert "object at 0x" not in shown and "<nbkit.Run" not in shown
    run_dir = Path(run.run_dir)
    assert run_dir.parent.resolve() == (cwd / "nbkit-runs").resolve()
    events = [json.loads(x)["event"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert events[0] == "run_start" and events[-1] == "run_end" and events.count("step") == 4  # 58/16
    assert "eval_accuracy" in run.metrics
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"] == str(tiny_bert_dir)

    with capture_output() as cap:
        ip.run_line_magic("nbkit", "runs")
    (table,) = cap.outputs
    assert "tiny" in table.data["text/plain"] and "finished" in table.data["text/plain"]

    # A finished run resumes to the same end without training again.
    with capture_output():
        ip.run_line_magic("finetune", f"--resume {os.path.relpath(run_dir)} --out again")
    again = ip.user_ns["again"]
    # a relative --resume path becomes absolute: a later %cd changes nothing
    assert again.status == "finished" and Path(again.run_dir) == Path(run_dir).absolute()


@pytest.mark.slow
def test_background_finetune_returns_a_running_run(ip, tiny_bert_dir, tiny_csv, cwd):
    body = f"model: {tiny_bert_dir}\ndata: {tiny_csv}\nepochs: 1\nbatch_size: 32\ntest: false\n"
    with capture_output():
        ip.run_cell_magic("finetune", "--background --out bg", body)
    run = ip.user_ns["bg"]
    assert run._thread is not None  # trained in a thread, not in the cell
    assert run.wait(timeout=120).status == "finished"
    assert (Path(run.run_dir) / "metrics.jsonl").exists()


def test_trainer_names_work_in_the_magic_and_the_cli(ip, tiny_bert_dir, tiny_csv, tmp_path, cwd, capsys):
    body = (f"model: {tiny_bert_dir}\ndata: {tiny_csv}\nlearning_rate: 3e-4\nnum_train_epochs: 2\n"
            "per_device_train_batch_size: 8\ngradient_accumulation_steps: 2\n")
    config, _ = dry_run(ip, body)
    assert (config["lr"], config["epochs"], config["batch_size"], config["grad_accum"]) == (3e-4, 2, 8, 2)
    assert "learning_rate" not in config
    message = usage_error(ip, "--dry-run", body + "fp16: true\n")
    assert message == "'fp16' is a Hugging Face Trainer argument; here write precision: fp16"
    path = tmp_path / "config.yaml"
    path.write_text(f"model: {tiny_bert_dir}\ndata: {tiny_csv}\n")
    done = subprocess.run([sys.executable, "-m", "nbkit.cli", "finetune", str(path), "--dry-run",
                           "--set", "learning_rate=3e-4", "--set", "num_train_epochs=2"],
                          capture_output=True, text=True, timeout=120, check=True)
    from_cli = yaml.safe_load(done.stdout)
    assert (from_cli["lr"], from_cli["epochs"]) == (3e-4, 2)
    help_text = subprocess.run([sys.executable, "-m", "nbkit.cli", "finetune", "--help"],
                               capture_output=True, text=True, timeout=120, check=True).stdout
    lr_line = next(line for line in help_text.splitlines() if line.split()[:1] == ["lr"])
    assert "alias learning_rate" in lr_line
    ip.run_line_magic("finetune", "--help")
    assert "alias learning_rate" in capsys.readouterr().out
def test_a_key_written_twice_in_the_body_is_one_usage_error_naming_it_and_both_lines(ip, cwd):
    body = "epochs: 2\nlr: 1e-4\nbatch_size: 8\nlr: 3e-4\n"
    message = usage_error(ip, "", body)
    # Lines as the notebook numbers them: the %%finetune line is line 1.
    assert message == "key 'lr' is written twice in the cell (lines 3 and 5); keep one of them"
    assert files_under(cwd) == set()


def test_dry_run_shows_max_length_capped_at_the_models_positions(ip, tmp_path, tiny_csv, cwd):
    from nbkit.testing import save_tiny_model

    folder = save_tiny_model(tmp_path / "short", kind="bert", max_positions=32)
    config, cap = dry_run(ip, f"model: {folder}\ndata: {tiny_csv}\n")
    assert config["max_length"] == 256  # as resolved, the same as Python and the CLI show
    lines = cap.stdout.splitlines()
    assert ("# note: max_length 256 is more than BertForSequenceClassification takes (32 positions): "
            "texts are cut to 32 tokens") in lines
    assert next(x for x in lines if x.startswith("tokens (")).split(":")[0].endswith("of max_length 32)")
    assert files_under(cwd) == set()


def test_a_typo_in_one_label_value_is_one_usage_error_before_any_model_loads(ip, tmp_path, cwd):
    # Issue 12, scenario 3: `postive` once next to 600 `positive` became a third class.
    import pandas as pd

    labels = ["positive"] * 600 + ["negative"] * 600 + ["postive"]
    path = tmp_path / "typo.csv"
    pd.DataFrame({"text": [f"review {i}" for i in range(len(labels))], "label": labels}).to_csv(path, index=False)
    message = usage_error(ip, "", f"model: /no/such/model\ndata: {path}\n")  # data is checked first
    assert message.startswith("label 'postive' has 1 row in column 'label' and its name is close to "
                              "'positive' (600 rows)")
    assert "allow_rare_labels: true" in message
    assert files_under(cwd) == set()
