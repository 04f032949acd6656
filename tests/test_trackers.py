"""report_to: TensorBoard, trackio and MLflow, each read back with the tool's own reader (tensorboard's
EventAccumulator, mlflow.MlflowClient, trackio's SQLite storage) and compared with metrics.jsonl: one
process, a resumed run (no step twice), two processes (rank 0 alone), the Trainer adapter, the
%%finetune magic and the CLI; a tracker that is not installed fails before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

# trackio reads TRACKIO_DIR once, when it is first imported: point it at a scratch store first.
os.environ["TRACKIO_DIR"] = TRACKIO_DIR = tempfile.mkdtemp(prefix="nbkit-trackio-")

from nbkit.core.config import ConfigError, FinetuneConfig, build_config  # noqa: E402
from nbkit.core.train import finetune, fit  # noqa: E402
from nbkit.core.train.events import EvalEnd, RunEnd, RunStart, StepEnd  # noqa: E402
from nbkit.core.train.trackers import read_trackers, tracker_observers  # noqa: E402
from nbkit.testing import WORDS, save_tiny_model, tiny_bert  # noqa: E402

torch.set_num_threads(1)
ALL = ["tensorboard", "trackio", "mlflow"]
STEP_KEYS = {"loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/grad_norm",
             "samples_per_s": "train/samples_per_second", "epoch": "train/epoch"}


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """A fresh MLflow store and trackio project per test (workers inherit them through the env).
    The working directory too: MLflow keeps artifacts in ./mlruns of the directory it starts in."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "nbkit-tests")
    project = f"t-{tmp_path.name}"[:60]
    monkeypatch.setenv("TRACKIO_PROJECT", project)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return {"mlflow": uri, "trackio": project}


def texts(n: int, seed: int = 1) -> list[tuple[str, int]]:
    import random

    rng = random.Random(seed)
    halves = (WORDS[20:60], WORDS[60:100])
    return [(" ".join(rng.choices(halves[i % 2], k=rng.randint(3, 12))), i % 2) for i in range(n)]


def dataset(n: int, seed: int = 1):
    import datasets

    rows = texts(n, seed)
    return datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [y for _, y in rows]})


# -- what each tool reads back, as {name: {step: value}} -------------------------------------------


def expected(run_dir: Path) -> dict[str, dict[int, float]]:
    """metrics.jsonl under the trackers' names; a step logged twice (after a crash) counts once, first."""
    out: dict[str, dict[int, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["event"] == "step":
            for key, name in STEP_KEYS.items():
                if e[key] is not None:
                    out.setdefault(name, {}).setdefault(e["step"], e[key])
        elif e["event"] == "eval":
            for key, value in e["metrics"].items():
                prefix, rest = key.split("_", 1)
                out.setdefault(f"{prefix}/{rest}", {}).setdefault(e["step"], value)
    return out


def tensorboard_values(run_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        points = acc.Scalars(tag)
        steps = [p.step for p in points]
        assert len(steps) == len(set(steps)), f"{tag}: a step logged twice: {Counter(steps).most_common(2)}"
        out[tag] = {p.step: p.value for p in points}
    return out


def mlflow_values(run_dir: Path) -> dict[str, dict[int, float]]:
    from mlflow import MlflowClient

    entry = read_trackers(run_dir)["mlflow"]
    client = MlflowClient(entry["tracking_uri"])
    out = {}
    for key in client.get_run(entry["run_id"]).data.metrics:
        history = client.get_metric_history(entry["run_id"], key)
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)), f"{key}: a step logged twice: {Counter(steps).most_common(2)}"
        out[key] = {m.step: m.value for m in history}
    return out


def trackio_values(run_dir: Path) -> dict[str, dict[int, float]]:
    from trackio.sqlite_storage import SQLiteStorage

    entry = read_trackers(run_dir)["trackio"]
    out: dict[str, dict[int, float]] = {}
    seen = Counter()
    for row in SQLiteStorage.get_logs(entry["project"], entry["name"], run_id=entry["run_id"]):
        for key, value in row.items():
            if key not in ("step", "timestamp") and isinstance(value, float):
                seen[key, row["step"]] += 1
                out.setdefault(key, {})[row["step"]] = value
    twice = [k for k, n in seen.items() if n > 1]
    assert not twice, f"logged twice: {twice[:3]}"
    return out


READERS = {"tensorboard": tensorboard_values, "mlflow": mlflow_values, "trackio": trackio_values}


def assert_same_numbers(run_dir: Path, trackers=ALL) -> dict[str, dict[int, float]]:
    want = expected(run_dir)
    assert want["train/loss"] and want["eval/loss"]
    for tracker in trackers:
        got = READERS[tracker](run_dir)
        for name, values in want.items():
            assert name in got, f"{tracker} has no {name}; it has {sorted(got)}"
            assert sorted(got[name]) == sorted(values), f"{tracker} {name}: steps differ"
            for step, value in values.items():
                # TensorBoard keeps float32
                assert got[name][step] == pytest.approx(value, rel=1e-6, abs=1e-12), (tracker, name, step)
    return want


def mlflow_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("nbkit-tests")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def trackio_runs(project: str) -> list[str]:
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_runs(project)


# -- the config ------------------------------------------------------------------------------------


def test_report_to_is_one_config_key_in_every_form():
    assert build_config(FinetuneConfig).report_to == []
    assert build_config(FinetuneConfig, {"report_to": "tensorboard"}).report_to == ["tensorboard"]
    assert build_config(FinetuneConfig, {"report_to": "mlflow, trackio"}).report_to == ["mlflow", "trackio"]
    assert build_config(FinetuneConfig, {"report_to": ["mlflow", "mlflow"]}).report_to == ["mlflow"]
    assert build_config(FinetuneConfig, {"report_to": "none"}).report_to == []
    assert build_config(FinetuneConfig, {"report_to": None}).report_to == []
    with pytest.raises(ConfigError, match=r"'tensorbord'.*did you mean 'tensorboard'"):
        build_config(FinetuneConfig, {"report_to": "tensorbord"})
    with pytest.raises(ConfigError, match="'all' stands alone"):
        build_config(FinetuneConfig, {"report_to": ["all", "mlflow"]})
    from nbkit.core.config import config_help

    assert "report_to" in config_help() and "tensorboard" in config_help()
    # "all": the trackers installed here (all three in the dev environment)
    assert [type(o).__name__ for o in tracker_observers({"report_to": ["all"]})] == [
        "TensorBoardTracker", "TrackioTracker", "MLflowTracker"]


def test_cli_set_report_to(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: minilm\nepochs: 1\n")
    cmd = [sys.executable, "-m", "nbkit.cli", "finetune", str(cfg), "--dry-run"]
    one = subprocess.run([*cmd, "--set", "report_to=tensorboard"], capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    assert "report_to:\n- tensorboard\n" in one.stdout
    two = subprocess.run([*cmd, "--set", "report_to=[mlflow,trackio]"], capture_output=True, text=True, timeout=120)
    assert "report_to:\n- mlflow\n- trackio\n" in two.stdout


# -- one process -----------------------------------------------------------------------------------


def test_one_process_run_reads_back_the_same_in_all_three(tmp_path, stores):
    model, tok = tiny_bert()
    run = fit(model, dataset(64), dataset(16, seed=2), test=dataset(8, seed=3), tokenizer=tok, epochs=2,
              batch_size=16, lr=3e-3, metrics=["accuracy"], run_dir=tmp_path / "run", progress=False,
              report_to="all", name="tiny")
    assert run.status == "finished"
    want = assert_same_numbers(tmp_path / "run")
    assert sorted(want["train/loss"]) == list(range(1, 9))
    assert sorted(want["test/accuracy"]) == [8] and sorted(want["eval/accuracy"]) == [4, 8]

    # the config as hyper-parameters / params / config, once per tracker
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from trackio.sqlite_storage import SQLiteStorage

    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["lr"].number_value == pytest.approx(3e-3) and hp["batch_size"].number_value == 16
    assert hp["metrics"].string_value == "accuracy" and hp["name"].string_value == "tiny"
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    assert end.session_end_info.status == 1  # STATUS_SUCCESS

    entry = read_trackers(tmp_path / "run")
    client = MlflowClient(stores["mlflow"])
    mrun = client.get_run(entry["mlflow"]["run_id"])
    assert mrun.info.status == "FINISHED" and mrun.info.run_name == "run"
    assert mrun.data.params["lr"] == "0.003" and mrun.data.params["report_to"] == "all"
    assert mrun.data.tags["nbkit.name"] == "tiny"
    artifacts = {a.path for a in client.list_artifacts(mrun.info.run_id)}
    assert "config.yaml" in artifacts
    assert len(mlflow_runs(stores["mlflow"])) == 1

    assert trackio_runs(stores["trackio"]) == ["run"]
    config = SQLiteStorage.get_run_config(stores["trackio"], "run")
    assert config["lr"] == 0.003 and config["_Group"] == "tiny"

    # a report written afterwards (the CLI's, Run.report()) joins the MLflow run
    run.report()
    assert "report.html" in {a.path for a in client.list_artifacts(mrun.info.run_id)}


def test_texts_in_eval_metrics_become_text_not_numbers(tmp_path, stores):
    """A sample generation (a non-number in EvalEnd.metrics) is text in each tracker."""
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from trackio.sqlite_storage import SQLiteStorage

    from nbkit.core.train.run import Run

    run_dir = tmp_path / "gen"
    run = Run(name="gen", run_dir=run_dir, config={"lr": 0.1}, observers=tracker_observers(ALL, run_dir))
    run.emit(RunStart(name="gen", run_dir=str(run_dir), total_steps=1, steps_per_epoch=1, epochs=1,
                       config={"lr": 0.1}))
    run.emit(StepEnd(step=1, epoch=1.0, loss=2.5, lr=0.1, samples_per_s=10.0, tokens_per_s=None))
    run.emit(EvalEnd(step=1, epoch=1.0, metrics={"eval_loss": 1.25, "eval_samples": ["a cat sat", "a dog"]}))
    run.emit(RunEnd(status="finished", step=1))

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    [text] = acc.Tensors("eval/samples/text_summary")
    assert text.step == 1 and text.tensor_proto.string_val == [b"a cat sat\n\na dog"]
    assert [s.value for s in acc.Scalars("eval/loss")] == [1.25]
    assert "eval/samples" not in acc.Tags()["scalars"]

    entry = read_trackers(run_dir)
    client = MlflowClient(entry["mlflow"]["tracking_uri"])
    path = client.download_artifacts(entry["mlflow"]["run_id"], "eval_samples-step1.md", str(tmp_path))
    assert Path(path).read_text() == "a cat sat\n\na dog"
    assert client.get_run(entry["mlflow"]["run_id"]).data.metrics == {
        "eval/loss": 1.25, "train/loss": 2.5, "train/learning_rate": 0.1, "train/epoch": 1.0,
        "train/samples_per_second": 10.0}

    rows = SQLiteStorage.get_logs(stores["trackio"], "gen")
    markdown = [r["eval/samples"] for r in rows if "eval/samples" in r]
    assert len(markdown) == 1 and markdown[0]["_value"] == "a cat sat\n\na dog"


def test_a_tracker_that_fails_mid_run_warns_and_training_goes_on(tmp_path, stores):
    from nbkit.core.train.run import Run

    run_dir = tmp_path / "r"
    [tracker] = tracker_observers(["mlflow"], run_dir)
    run = Run(name="r", run_dir=run_dir, config={}, observers=[tracker])
    run.emit(RunStart(name="r", run_dir=str(run_dir), total_steps=2, steps_per_epoch=2, epochs=1))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    tracker.client.log_batch = broken
    tracker.flush_every = 1e9  # only the evaluation sends
    run.emit(StepEnd(step=1, epoch=0.5, loss=1.0, lr=0.1, samples_per_s=1.0, tokens_per_s=None))
    with pytest.warns(RuntimeWarning, match="nbkit: mlflow stopped logging this run: OSError: disk full"):
        run.emit(EvalEnd(step=1, epoch=0.5, metrics={"eval_loss": 1.0}))
        run.emit(RunEnd(status="finished", step=1))  # the write fails in the writer thread; seen here
    assert not tracker.open
    run.emit(StepEnd(step=2, epoch=1.0, loss=1.0, lr=0.1, samples_per_s=1.0, tokens_per_s=None))  # ignored


# -- a resumed run ---------------------------------------------------------------------------------


class Crash(RuntimeError):
    pass


def crash_at(step):
    def observer(event, run):
        if isinstance(event, StepEnd) and event.step == step:
            raise Crash(f"crash at step {step}")
    return observer


def test_resumed_run_continues_the_same_tracker_runs_without_duplicate_steps(tmp_path, stores):
    """Crash at step 6 (the last checkpoint is the epoch end at step 4), resume: steps 5 and 6 run
    again and are in metrics.jsonl twice, but in each tracker once, with the first values."""
    opts = dict(epochs=3, batch_size=16, lr=3e-3, run_dir=tmp_path / "run", progress=False, report_to=ALL)
    model, tok = tiny_bert()
    with pytest.raises(Crash):
        fit(model, dataset(64), dataset(16, seed=2), tokenizer=tok, callbacks=[crash_at(6)], **opts)
    first = read_trackers(tmp_path / "run")
    assert set(first) == set(ALL)
    model, tok = tiny_bert()
    run = fit(model, dataset(64), dataset(16, seed=2), tokenizer=tok, resume_from=tmp_path / "run", **opts)
    assert run.status == "finished"
    assert read_trackers(tmp_path / "run") == first  # the same tracker runs
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if '"event": "step"' in x]
    assert steps == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10, 11, 12]
    want = assert_same_numbers(tmp_path / "run")
    assert sorted(want["train/loss"]) == list(range(1, 13)) and sorted(want["eval/loss"]) == [4, 8, 12]
    assert len(mlflow_runs(stores["mlflow"])) == 1
    assert mlflow_runs(stores["mlflow"])[0].info.status == "FINISHED"
    assert trackio_runs(stores["trackio"]) == ["run"]
    assert len(list((tmp_path / "run" / "tensorboard").iterdir())) == 2  # one event file per process


def test_a_tracker_new_to_a_resumed_run_gets_the_whole_history(tmp_path, stores):
    """TensorBoard added on resume, and an MLflow run deleted in between: each starts a tracker run
    and first replays metrics.jsonl, so it holds every step."""
    from mlflow import MlflowClient

    opts = dict(epochs=2, batch_size=16, run_dir=tmp_path / "run", progress=False)
    model, tok = tiny_bert()
    run = fit(model, dataset(64), dataset(16, seed=2), tokenizer=tok, max_steps=5, report_to="mlflow", **opts)
    assert run.status == "finished" and set(read_trackers(tmp_path / "run")) == {"mlflow"}
    gone = read_trackers(tmp_path / "run")["mlflow"]["run_id"]
    MlflowClient(stores["mlflow"]).delete_run(gone)
    model, tok = tiny_bert()
    with pytest.warns(RuntimeWarning, match=f"MLflow run {gone} is gone"):
        run = fit(model, dataset(64), dataset(16, seed=2), tokenizer=tok, resume_from=tmp_path / "run",
                  report_to=["tensorboard", "mlflow"], **opts)
    assert read_trackers(tmp_path / "run")["mlflow"]["run_id"] != gone
    want = assert_same_numbers(tmp_path / "run", ["tensorboard", "mlflow"])
    assert sorted(want["train/loss"]) == list(range(1, 9))


def test_a_new_run_in_the_same_directory_replaces_the_old_one_in_tensorboard(tmp_path, stores):
    for steps in (4, 2):  # the same cell run twice, no resume: the second replaces the first
        model, tok = tiny_bert(seed=steps)
        fit(model, dataset(64), dataset(16, seed=2), tokenizer=tok, max_steps=steps, batch_size=16,
            run_dir=tmp_path / "run", progress=False, report_to="tensorboard", overwrite=steps == 2)
    got = tensorboard_values(tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    second = [x for x in lines[[i for i, x in enumerate(lines) if x["event"] == "run_start"][-1]:]
              if x["event"] == "step"]
    assert got["train/loss"] == pytest.approx({x["step"]: x["loss"] for x in second}, rel=1e-6)
    assert sorted(got["train/loss"]) == [1, 2]


# -- two processes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_and_csv(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    model_dir = save_tiny_model(root / "model", kind="bert")
    rows = texts(64)
    csv = root / "data.csv"
    pd.DataFrame({"text": [t for t, _ in rows], "label": [["neg", "pos"][y] for _, y in rows]}).to_csv(csv, index=False)
    return str(model_dir), str(csv)


@pytest.mark.slow
def test_two_processes_log_once_from_rank_zero(tmp_path, stores, model_and_csv):
    model, csv = model_and_csv
    run = finetune(model=model, data=csv, epochs=1, batch_size=8, processes=2, launcher="torchrun",
                   run_dir=tmp_path / "two", progress=False, report_to=ALL, eval_split=0.25)
    assert run.status == "finished" and run.events[0].processes == 2
    want = assert_same_numbers(tmp_path / "two")
    assert sorted(want["train/loss"]) == [1, 2, 3]  # 48 rows / (8 x 2 processes)
    assert len(mlflow_runs(stores["mlflow"])) == 1
    assert trackio_runs(stores["trackio"]) == ["two"]
    assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1  # rank 1 wrote nothing


# -- the Trainer adapter and the magic ---------------------------------------------------------------


def test_trainer_adapter_reports_to_the_same_trackers(tmp_path, stores):
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from nbkit.core.integrations import TrainerCallback

    model, tok = tiny_bert()

    def data(n, seed):
        rows = texts(n, seed)
        return Dataset.from_dict({**tok([t for t, _ in rows], truncation=True), "label": [y for _, y in rows]})

    cb = TrainerCallback(report_to=["tensorboard", "mlflow"])
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_train_epochs=1,
                             logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                             eval_strategy="epoch")
    Trainer(model=model, args=args, train_dataset=data(32, 1), eval_dataset=data(16, 2),
            data_collator=DataCollatorWithPadding(tok), callbacks=[cb]).train()
    run_dir = tmp_path / "out" / "nbkit"
    want = assert_same_numbers(run_dir, ["tensorboard", "mlflow"])
    assert sorted(want["train/loss"]) == [1, 2, 3, 4]
    assert set(read_trackers(run_dir)) == {"tensorboard", "mlflow"}


def test_finetune_magic_reports_to_tensorboard(tmp_path, stores, model_and_csv, monkeypatch):
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from IPython.testing.globalipapp import start_ipython

    model, csv = model_and_csv
    ip = start_ipython() or TerminalInteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbkit")
    monkeypatch.chdir(tmp_path)
    ip.run_cell_magic("finetune", "--out magic_run", f"model: {model}\ndata: {csv}\nepochs: 1\n"
                      f"batch_size: 16\nrun_dir: {tmp_path / 'm'}\nreport_to: tensorboard\n")
    assert ip.user_ns["magic_run"].status == "finished"
    assert_same_numbers(tmp_path / "m", ["tensorboard"])


# -- not installed; not imported -------------------------------------------------------------------


@pytest.mark.parametrize(("tracker", "blocked", "command"), [
    ("tensorboard", ("tensorboard", "tensorboardX"), "pip install tensorboard"),
    ("trackio", ("trackio",), "pip install trackio"),
    ("mlflow", ("mlflow",), "pip install mlflow"),
])
def test_a_tracker_not_installed_is_one_error_before_any_work(tmp_path, monkeypatch, tracker, blocked, command):
    for module in blocked:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if not installed
    model, tok = tiny_bert()
    with pytest.raises(ConfigError) as err:
        fit(model, dataset(32), tokenizer=tok, run_dir=tmp_path / "run", progress=False, report_to=tracker)
    assert f"report_to: {tracker} is not installed" in str(err.value) and f"`{command}`" in str(err.value)
    assert not (tmp_path / "run").exists()
    # finetune checks before loading anything (and before starting worker processes)
    with pytest.raises(ConfigError, match=command):
        finetune(model="/nonexistent", data="/nonexistent.csv", processes=2, report_to=[tracker],
                 run_dir=tmp_path / "ft")
    assert not (tmp_path / "ft").exists()
    # "all" quietly means the others
    assert tracker not in [o.name for o in tracker_observers("all")]


def test_mlflow_skinny_without_sqlalchemy_is_told_what_to_install(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    with pytest.raises(ConfigError, match="pip install mlflow"):
        tracker_observers(["mlflow"])


def test_no_tracker_is_imported_by_nbkit_or_load_ext():
    code = (
        "import sys, nbkit.core.train.trackers, nbkit.core.config\n"
        "from IPython.testing.globalipapp import start_ipython\n"
        "start_ipython().run_line_magic('load_ext', 'nbkit')\n"
        "print([m for m in ('mlflow', 'trackio', 'tensorboard', 'tensorboardX', 'torch.utils.tensorboard') "
        "if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
