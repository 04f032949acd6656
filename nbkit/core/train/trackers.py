"""Trackers (`report_to`): the same run in TensorBoard, trackio and MLflow, next to people's other runs.

Each tracker is an observer of the loop's events (events.py), like the JSONL log in observers.py: it
opens its tracker run at `RunStart` (on rank 0 only: the loop gives observers to rank 0 alone), logs
every step and evaluation, and closes at `RunEnd`. The tracker's ids live in `RUN_DIR/trackers.json`,
so a resumed run continues the same tracker run and skips the steps already logged. No tracker is
imported before a run starts, so `import nbkit` and `%load_ext nbkit` stay fast.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..config import TRACKERS, ConfigError
from .events import CheckpointSaved, EvalEnd, Event, RunEnd, RunStart, StepEnd

TRACKERS_FILE = "trackers.json"
TENSORBOARD_DIR = "tensorboard"

# tracker -> (modules that provide it, any one will do; what to install)
_PACKAGES = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install tensorboard"),
    "trackio": (("trackio",), "pip install trackio"),
    "mlflow": (("mlflow",), "pip install mlflow"),
}
_MLFLOW_STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}


# -- which trackers ---------------------------------------------------------------------------------


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails to import, or a broken spec
        return False


def installed_trackers() -> list[str]:
    """The trackers importable here, in `TRACKERS` order (what `report_to: all` means)."""
    return [name for name in TRACKERS if any(_has(m) for m in _PACKAGES[name][0])]


def resolve_report_to(report_to: Any) -> list[str]:
    """The tracker names `report_to` asks for (["all"] expanded); raises one `ConfigError` naming the
    `pip install` command when one of them is not installed. Imports no tracker."""
    if isinstance(report_to, str):
        report_to = [report_to]
    names = [n for n in (report_to or []) if n != "none"]
    if names == ["all"]:
        return installed_trackers()
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"report_to: unknown tracker {unknown[0]!r}; choose from {', '.join(TRACKERS)}, "
                          "'all' or 'none'")
    missing = [n for n in names if not any(_has(m) for m in _PACKAGES[n][0])]
    if missing:
        commands = "; ".join(f"`{_PACKAGES[n][1]}`" for n in missing)
        raise ConfigError(f"report_to: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed. "
                          f"Run {commands} (or `pip install 'nbkit-hf[trackers]'` for all three), then "
                          "restart the kernel; or drop it from report_to")
    if "mlflow" in names:
        _check_mlflow_store()
    return names


def _check_mlflow_store() -> None:
    """mlflow >= 3.7 defaults to a sqlite store, which needs SQLAlchemy (mlflow-skinny lacks it)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if (not uri or uri.startswith("sqlite:")) and not (_has("sqlalchemy") and _has("alembic")):
        raise ConfigError(
            "report_to: mlflow's local store (sqlite:///mlflow.db) needs SQLAlchemy and alembic, which "
            "mlflow-skinny does not install: run `pip install mlflow` (or `pip install sqlalchemy "
            "alembic`), or set MLFLOW_TRACKING_URI to a tracking server"
        )


def tracker_observers(config: Any, run_dir: str | os.PathLike | None = None) -> list[Callable]:
    """One observer per tracker in `config.report_to` (a config object, a dict or the list itself).

    Called where the loop assembles its observers, so a missing tracker fails before any work.
    `run_dir`: where `trackers.json` and the TensorBoard files go (default: the run's directory).
    """
    if isinstance(config, dict):
        report_to = config.get("report_to")
    elif isinstance(config, (str, list, tuple)) or config is None:
        report_to = config
    else:
        report_to = getattr(config, "report_to", None)
    classes = {"tensorboard": TensorBoardTracker, "trackio": TrackioTracker, "mlflow": MLflowTracker}
    return [classes[name](run_dir) for name in resolve_report_to(report_to)]


# -- names and values shared by all trackers --------------------------------------------------------


def step_metrics(event: StepEnd) -> dict[str, float]:
    """A step's scalars under the names Hugging Face Trainer's trackers use (train/loss, ...)."""
    out = {"train/loss": event.loss, "train/learning_rate": event.lr, "train/epoch": event.epoch,
           "train/samples_per_second": event.samples_per_s}
    if event.grad_norm is not None:
        out["train/grad_norm"] = event.grad_norm
    if event.tokens_per_s is not None:
        out["train/tokens_per_second"] = event.tokens_per_s
    return {k: float(v) for k, v in out.items() if v is not None}


def metric_name(key: str) -> str:
    """eval_loss -> eval/loss, test_accuracy -> test/accuracy (Trainer's names); others under eval/."""
    for prefix in ("eval", "test"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return f"eval/{key}"


def split_metrics(metrics: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Numbers, and everything else (e.g. sample generations) as markdown text."""
    numbers, texts = {}, {}
    for key, value in metrics.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            numbers[metric_name(key)] = float(value)
        else:
            texts[metric_name(key)] = _as_text(value)
    return numbers, texts


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "\n\n".join(v if isinstance(v, str) else f"```\n{json.dumps(v, default=str, indent=1)}\n```"
                           for v in value)
    return f"```\n{json.dumps(value, default=str, indent=1)}\n```"


def flat_config(config: dict[str, Any]) -> dict[str, str | int | float | bool]:
    """The config as hyper-parameters: scalars stay, lists become "a, b", anything else its JSON."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        if isinstance(value, (str, int, float, bool)):
            out[key] = value
        elif value is None:
            out[key] = "null"
        elif isinstance(value, (list, tuple)):
            out[key] = ", ".join(str(getattr(v, "__name__", v)) for v in value)
        else:
            out[key] = json.dumps(value, default=str)
    return out


def read_trackers(run_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """`RUN_DIR/trackers.json`: per tracker, where its run lives ({} when there is none)."""
    path = Path(run_dir) / TRACKERS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_tracker(run_dir: Path, name: str, entry: dict[str, Any]) -> None:
    state = read_trackers(run_dir)
    state[name] = entry
    tmp = run_dir / f".{TRACKERS_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    tmp.replace(run_dir / TRACKERS_FILE)


# -- the observer every tracker shares --------------------------------------------------------------


class _Tracker:
    """Opens at RunStart, logs StepEnd/EvalEnd, closes at RunEnd. A resumed run (start_step > 0)
    continues the tracker run recorded in trackers.json and skips steps it already logged; a tracker
    new to a resumed run starts a tracker run and first replays the history in metrics.jsonl.
    A tracker that fails mid-run warns once and stops logging: training goes on."""

    name = ""

    def __init__(self, run_dir: str | os.PathLike | None = None):
        self._given_dir = Path(run_dir) if run_dir is not None else None
        self.run_dir: Path | None = self._given_dir
        self.open = False
        self.skip_until = 0
        self._steps: list[StepEnd] = []  # steps whose values are still on the device

    def __call__(self, event: Event, run: Any) -> None:
        if isinstance(event, RunStart):
            self._start(event, run)  # errors here are the user's to see: the run fails at its start
            return
        if not self.open:
            return
        try:
            if isinstance(event, StepEnd):
                # Steps wait until the loop has read their values from the device (a few times a
                # second): a tracker never forces a device sync of its own.
                if event.step > self.skip_until:
                    self._steps.append(event)
                if event.ready:
                    self._log_steps()
                return
            self._log_steps()
            if isinstance(event, EvalEnd):
                if event.step > self.skip_until:
                    self.log_eval(event)
            elif isinstance(event, CheckpointSaved):
                self.flush()
            elif isinstance(event, RunEnd):
                self.open = False
                self.end(event, run)
        except Exception as exc:  # noqa: BLE001 (a tracker must never cost the user their training)
            self.open = False
            self.abort()
            warnings.warn(f"nbkit: {self.name} stopped logging this run: {type(exc).__name__}: {exc}",
                          RuntimeWarning, stacklevel=2)

    def _log_steps(self) -> None:
        steps, self._steps = self._steps, []
        for step in steps:
            self.log_step(step)

    def _start(self, event: RunStart, run: Any) -> None:
        from .run import read_events

        self.run_dir = run_dir = Path(self._given_dir or event.run_dir or run.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        entry = read_trackers(run_dir).get(self.name)
        resuming = event.start_step > 0
        past = read_events(run_dir / "metrics.jsonl") if resuming else []
        past_steps = [e.step for e in past if isinstance(e, StepEnd)]
        continuing = resuming and entry is not None
        self.started_new = not continuing  # begin() may find the recorded tracker run gone
        entry = self.begin(event, run, entry if continuing else None)
        _write_tracker(run_dir, self.name, entry)
        self.open = True
        self.skip_until = max(past_steps, default=0)
        if resuming and self.started_new:
            self._replay(past)

    def _replay(self, past: Iterable[Event]) -> None:
        last_step, evals = 0, set()
        for e in past:
            if isinstance(e, StepEnd) and e.step > last_step:
                self.log_step(e)
                last_step = e.step
            elif isinstance(e, EvalEnd) and (e.step, tuple(sorted(e.metrics))) not in evals:
                self.log_eval(e)
                evals.add((e.step, tuple(sorted(e.metrics))))
        self.flush()

    # what each tracker implements
    def begin(self, event: RunStart, run: Any, entry: dict | None) -> dict[str, Any]:
        """Open (entry given: reopen) the tracker run; return what trackers.json keeps of it."""
        raise NotImplementedError

    def log_step(self, event: StepEnd) -> None:
        raise NotImplementedError

    def log_eval(self, event: EvalEnd) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def end(self, event: RunEnd, run: Any) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Release what the tracker holds after a failure (no more logging)."""


# -- TensorBoard ------------------------------------------------------------------------------------


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's writer needs the tensorboard package; tensorboardX is standalone
        from tensorboardX import SummaryWriter
    return SummaryWriter


def _hparams_summaries(hparams: dict[str, Any]):
    try:
        from torch.utils.tensorboard.summary import hparams as make
    except ImportError:
        from tensorboardX.summary import hparams as make
    return make(hparams, {})  # (experiment, session start, session end)


class TensorBoardTracker(_Tracker):
    """Event files in RUN_DIR/tensorboard: per-step scalars, eval/test metrics, the config as
    hyper-parameters (the HPARAMS tab), and text for non-numeric eval values (sample generations)."""

    name = "tensorboard"

    def begin(self, event, run, entry):
        assert self.run_dir is not None
        log_dir = self.run_dir / TENSORBOARD_DIR
        # A new run in a directory that has event files (a cell run again with the same run_dir):
        # a session restart at step 0 makes TensorBoard's readers drop the old run's points.
        restart = entry is None and any(log_dir.glob("events.out.tfevents.*"))
        self.writer = _summary_writer_class()(log_dir=str(log_dir), flush_secs=10,
                                              purge_step=0 if restart else None)
        _, start, self._session_end = _hparams_summaries(flat_config(event.config or run.config))
        if entry is None:
            # Only the session start: the HPARAMS tab then lists every scalar as a metric column.
            self.writer._get_file_writer().add_summary(start)
        return {"log_dir": TENSORBOARD_DIR}

    def log_step(self, event):
        for key, value in step_metrics(event).items():
            self.writer.add_scalar(key, value, event.step, walltime=event.time)

    def log_eval(self, event):
        numbers, texts = split_metrics(event.metrics)
        for key, value in numbers.items():
            self.writer.add_scalar(key, value, event.step, walltime=event.time)
        for key, text in texts.items():
            self.writer.add_text(key, text, event.step, walltime=event.time)
        self.writer.flush()

    def flush(self):
        self.writer.flush()

    def end(self, event, run):
        if event.status == "finished":
            self.writer._get_file_writer().add_summary(self._session_end)
        self.writer.close()


# -- trackio ----------------------------------------------------------------------------------------


class TrackioTracker(_Tracker):
    """A run in trackio's local store (TRACKIO_DIR, default ~/.cache/huggingface/trackio): project
    TRACKIO_PROJECT or "nbkit", the run named like its directory, grouped by the run's name."""

    name = "trackio"

    def begin(self, event, run, entry):
        import trackio

        assert self.run_dir is not None
        self._trackio = trackio
        project = entry["project"] if entry else os.environ.get("TRACKIO_PROJECT", "nbkit")
        name = entry["name"] if entry else self.run_dir.name
        config = {k: v for k, v in (event.config or run.config).items() if not k.startswith("_")}
        self.trun = _trackio_init(trackio, project=project, name=name, group=event.name,
                                  config=json.loads(json.dumps(config, default=str)),
                                  resume="allow" if entry else "never", embed=False)
        run_id = getattr(self.trun, "id", None)
        if entry and run_id != entry.get("run_id"):
            self.started_new = True  # the recorded run is gone from trackio's store: replay into this one
        return {"project": project, "name": self.trun.name, "run_id": run_id}

    def log_step(self, event):
        self.trun.log({k: v for k, v in step_metrics(event).items() if math.isfinite(v)}, step=event.step)

    def log_eval(self, event):
        numbers, texts = split_metrics(event.metrics)
        values: dict[str, Any] = dict(numbers)
        values.update({k: self._trackio.Markdown(t) for k, t in texts.items()})
        self.trun.log(values, step=event.step)

    def end(self, event, run):
        self.trun.finish()


def _trackio_init(trackio, **kwargs):
    """trackio.init keeps one current run per context and finishes it on the next init: keep the
    user's own trackio run (if any) untouched around ours."""
    context = getattr(trackio, "context_vars", None)
    saved = [(var, var.get()) for var in (getattr(context, "current_run", None),
                                          getattr(context, "current_project", None)) if var is not None]
    for var, _ in saved:
        var.set(None)
    try:
        return trackio.init(**kwargs)
    finally:
        for var, value in saved:
            var.set(value)


# -- MLflow -----------------------------------------------------------------------------------------


def mlflow_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else mlflow's own local default (for mlflow >= 3.7: sqlite:///mlflow.db in
    the working directory, with artifacts in ./mlruns; an existing ./mlruns file store is kept)."""
    import mlflow

    return mlflow.get_tracking_uri()


class MLflowTracker(_Tracker):
    """An MLflow run (experiment MLFLOW_EXPERIMENT_NAME or "nbkit"): params, metrics per step,
    config.yaml and report.html (when present) as artifacts. MLflow's sqlite store costs ~1 ms of
    Python per metric value (SQLAlchemy), so step metrics are batched about once a second and
    written by a thread of their own; the run's end waits for them."""

    name = "mlflow"
    flush_every = 1.0  # seconds
    max_in_flight = 4  # batches queued for the writer before training waits (bounds the memory)

    def begin(self, event, run, entry):
        from concurrent.futures import ThreadPoolExecutor

        from mlflow import MlflowClient
        from mlflow.entities import Param

        assert self.run_dir is not None
        self._pending: list[Any] = []
        self._in_flight: list[Any] = []
        self._flushed = time.monotonic()
        uri = entry["tracking_uri"] if entry else mlflow_tracking_uri()
        self.client = client = MlflowClient(uri)
        if entry and not _mlflow_run_exists(client, entry["run_id"]):
            warnings.warn(f"nbkit: MLflow run {entry['run_id']} is gone from {uri}; this resumed run "
                          "starts a new one", RuntimeWarning, stacklevel=2)
            entry, self.started_new = None, True
        if entry:
            self.run_id = entry["run_id"]
            client.update_run(self.run_id, status="RUNNING")
            experiment_id = entry["experiment_id"]
        else:
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "nbkit")
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else client.create_experiment(experiment)
            created = client.create_run(experiment_id, run_name=self.run_dir.name, tags={
                "nbkit.name": event.name, "nbkit.run_dir": str(self.run_dir.resolve()),
                "mlflow.source.name": "nbkit"})
            self.run_id = created.info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in flat_config(event.config or run.config).items()]
            for i in range(0, len(params), 100):  # mlflow takes at most 100 params per batch
                client.log_batch(self.run_id, params=params[i:i + 100])
            print(f"nbkit: MLflow run {self.run_id} in {uri} (open it with `mlflow ui "
                  f"--backend-store-uri {uri}`)")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="nbkit-mlflow")
        return {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": self.run_id}

    def _add(self, values: dict[str, float], event: Event, step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(event.time * 1000)
        self._pending.extend(Metric(k, v, stamp, step) for k, v in values.items())
        if time.monotonic() - self._flushed >= self.flush_every:
            self.flush()

    def log_step(self, event):
        self._add(step_metrics(event), event, event.step)

    def log_eval(self, event):
        numbers, texts = split_metrics(event.metrics)
        self._add(numbers, event, event.step)
        self.flush()
        for key, text in texts.items():
            self.client.log_text(self.run_id, text, f"{key.replace('/', '_')}-step{event.step}.md")

    def _write(self, metrics: list[Any]) -> None:
        for i in range(0, len(metrics), 1000):  # mlflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def flush(self, wait: bool = False) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._in_flight.append(self._writer.submit(self._write, pending))
        self._flushed = time.monotonic()
        while self._in_flight and (wait or len(self._in_flight) > self.max_in_flight
                                   or self._in_flight[0].done()):
            self._in_flight.pop(0).result()  # in order; a failed write raises here

    def end(self, event, run):
        assert self.run_dir is not None
        try:
            self.flush(wait=True)
            for artifact in ("config.yaml", "report.html"):
                if (self.run_dir / artifact).exists():
                    self.client.log_artifact(self.run_id, str(self.run_dir / artifact))
            self.client.set_terminated(self.run_id, _MLFLOW_STATUS.get(event.status, "FAILED"))
        finally:
            self.abort()

    def abort(self) -> None:
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.shutdown(wait=False, cancel_futures=True)


def _mlflow_run_exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).info.lifecycle_stage != "deleted"
    except MlflowException:
        return False


def log_report(run_dir: str | os.PathLike, path: str | os.PathLike) -> None:
    """Attach a report written after the run (`nbkit finetune`, `Run.report()`) to the run's MLflow
    run, if it has one. Does nothing (and imports nothing) otherwise."""
    entry = read_trackers(run_dir).get("mlflow")
    if not entry or not _has("mlflow"):
        return
    from mlflow import MlflowClient

    try:
        MlflowClient(entry["tracking_uri"]).log_artifact(entry["run_id"], str(path))
    except Exception as exc:  # noqa: BLE001 (the report itself is written; say why MLflow lacks it)
        warnings.warn(f"nbkit: could not attach {path} to MLflow run {entry['run_id']}: {exc}",
                      RuntimeWarning, stacklevel=2)
