"""`Run`: what `fit` and `finetune` return, and what `Run.load(run_dir)` reopens.

It holds the model, the event history (`history` as a DataFrame), the status, and the controls that
observers and buttons use (`stop`, `pause`, `resume`). Everything it knows about a finished run is
also in its run directory: `config.yaml`, `metrics.jsonl` and `checkpoints/`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from ..config import yaml_safe
from ..suggest import check_kwargs
from . import checkpoints as ckpt
from .control import Control
from .events import CheckpointSaved, EvalEnd, Event, RunEnd, RunStart, StepEnd, event_from_dict

STATUSES = ("created", "running", "paused", "finished", "stopped", "failed", "interrupted")


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(yaml_safe(config), sort_keys=False))


def read_events(path: Path) -> list[Event]:
    """Events of a `metrics.jsonl`; a last line cut off by a crash is skipped, not an error."""
    events = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(event_from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return events


class Run:
    """One training run. Returned by `nbkit.fit` / `nbkit.finetune`; reopened by `Run.load`.

    The public controls (`stop`, `pause`, `resume`, `stop_after_epoch`, `request_stop`, `emit`,
    `subscribe`, `finish`) are what the loop, `lr_find`, the Trainer adapter, the launcher and the
    dashboard use; none of them touches the others' private state.
    """

    def __init__(self, *, name: str, run_dir: Path, config: dict[str, Any], model: Any = None,
                 tokenizer: Any = None, observers: list | None = None, kind: str = "hf",
                 control: Control | None = None, label_names: list[str] | None = None,
                 events: list[Event] | None = None):
        self.name, self.run_dir, self.config = name, Path(run_dir), config
        self._model, self.tokenizer, self.kind = model, tokenizer, kind
        self.status = "created"
        self.error: BaseException | None = None
        self.traceback: str | None = None  # the failure's text; its frames are not kept (they hold the loop)
        self.events: list[Event] = list(events or [])
        self.control = control or Control()
        self._observers: tuple = tuple(observers or ())
        self._label_names = label_names
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._local = threading.local()  # per thread: events emitted while observers run

    # -- controls ---------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped by user") -> None:
        """Finish the current step, save a checkpoint and end with status "stopped"."""
        self.request_stop(reason, status="stopped")

    def request_stop(self, reason: str, status: str = "stopped") -> None:
        """End at the next step boundary with `status` ("stopped", or "finished" for a normal end
        such as early stopping, which still runs the test evaluation)."""
        self.control.request_stop(reason, status)

    def stop_after_epoch(self) -> None:
        self.control.stop_after_epoch()

    def pause(self) -> None:
        """Hold training at the next step boundary until `resume()`."""
        if self.status == "running":
            self.control.pause()
            self.status = "paused"

    def resume(self) -> None:
        """Continue a paused run. (To continue a stopped run from disk: fit(..., resume_from=run_dir).)"""
        if self.status == "paused":
            self.status = "running"
        self.control.resume()

    @property
    def stop_requested(self) -> bool:
        return self.control.stop_requested

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run ends (background runs); re-raise its error if it failed.

        Waits on the run's end, not `Thread.join`: on Python 3.11 a join cut short by Ctrl-C marks
        the thread as ended, so a second wait() would return while training goes on."""
        if self._thread is not None and self.wait_done(timeout) and self.error is not None:
            raise self.error
        return self

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed", "interrupted")

    def start_in_background(self, target) -> None:
        """Run `target()` in a daemon thread; `wait()` joins it."""
        self.status = "running"  # from the moment the caller returns, not from the thread's first line
        self._thread = threading.Thread(target=target, name=f"nbkit-{self.name}", daemon=True)
        self._thread.start()

    def begin(self) -> None:
        """The run (again) trains: status running, earlier stop requests forgotten."""
        self.control.reset()
        self._done.clear()
        self.status = "running"

    def finish(self, status: str, step: int, message: str = "") -> None:
        """Set the final status and tell the observers (`RunEnd`); `wait_done` returns after this."""
        self.status = status
        try:
            self.emit(RunEnd(status=status, step=step, message=message))
        finally:
            self._done.set()

    def fail(self, exc: BaseException) -> None:
        """Keep the error and its traceback text, not its frames: a failed run must not keep the
        loop, the optimizer and the activations alive."""
        import traceback

        self.traceback = "".join(traceback.format_exception(exc))
        self.error = exc.with_traceback(None)

    def finish_quietly(self) -> None:
        """Mark the run done when its RunEnd came from elsewhere (a follower replaying a log)."""
        self._done.set()

    def wait_done(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread that trains (or follows) this run, if there is one."""
        if self._thread is not None:
            self._thread.join(timeout)

    # -- events -----------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Record `event` and give it to every observer. An event emitted by an observer while it
        handles another (a checkpoint saved on an evaluation) is delivered after that one, so every
        observer sees the events in the same order."""
        queue = getattr(self._local, "queue", None)
        if queue is not None:
            queue.append(event)
            return
        self._local.queue = queue = [event]
        try:
            while queue:
                current = queue.pop(0)
                with self._lock:  # append and snapshot together: a concurrent subscribe() replays or gets it, never both
                    self.events.append(current)
                    observers = self._observers
                for observer in observers:
                    observer(current, self)
        finally:
            self._local.queue = None

    def subscribe(self, observer) -> None:
        """Add an observer `fn(event, run)`; it first receives the events so far, then new ones."""
        with self._lock:
            past = list(self.events)
            self._observers = (*self._observers, observer)
        for event in past:
            observer(event, self)

    def add_observer(self, observer, first: bool = False, after=None) -> None:
        """Add an observer for new events only (no replay): last, `first`, or right `after` another."""
        with self._lock:
            current = list(self._observers)
            if first:
                current.insert(0, observer)
            elif after is not None and after in current:
                current.insert(current.index(after) + 1, observer)
            else:
                current.append(observer)
            self._observers = tuple(current)

    def remove_observer(self, observer) -> None:
        with self._lock:
            self._observers = tuple(o for o in self._observers if o is not observer)

    @property
    def observers(self) -> tuple:
        return self._observers

    def _load_events(self) -> None:
        self.events = read_events(self.run_dir / "metrics.jsonl")

    # -- results ----------------------------------------------------------------------------------

    @property
    def history(self):
        """One row per optimizer step (loss, lr, throughput) with eval metrics at their steps."""
        import pandas as pd

        with self._lock:
            events = list(self.events)
        steps = [e.to_dict() for e in events if isinstance(e, StepEnd)]
        cols = ["step", "epoch", "loss", "lr", "samples_per_s", "tokens_per_s", "grad_norm", "elapsed"]
        df = pd.DataFrame(steps, columns=["event", "time", *cols])[cols]
        # A resumed run re-logs steps after its last checkpoint: the later record wins.
        df = df.drop_duplicates("step", keep="last").set_index("step")
        evals: dict[int, dict[str, float]] = {}
        for e in events:
            if isinstance(e, EvalEnd):
                evals.setdefault(e.step, {}).update(e.metrics)
        if evals:
            ev = pd.DataFrame.from_dict(evals, orient="index")
            df = df.join(ev, how="outer")
        df.index.name = "step"
        return df.reset_index()

    @property
    def samples(self):
        """What an LLM run's `samples:` prompts were answered, one row per (step, prompt): step,
        prompt, reference, base (the model it started from) and answer (the model at that step)."""
        from ..llm.samples import samples_table

        with self._lock:
            events = list(self.events)
        return samples_table(events)

    @property
    def metrics(self) -> dict[str, float]:
        """The latest value of every eval/test metric."""
        out: dict[str, float] = {}
        for e in self.events:
            if isinstance(e, EvalEnd):
                out.update(e.metrics)
        return out

    @property
    def best_checkpoint(self) -> Path | None:
        return ckpt.checkpoint_path(self.run_dir, "best")

    @property
    def last_checkpoint(self) -> Path | None:
        return ckpt.checkpoint_path(self.run_dir, "last")

    @property
    def model(self):
        """The trained model (a reopened run loads it from its last checkpoint on first use)."""
        folder = self._weights_folder() if self._model is None else None
        if folder is not None:
            self._model, tok = _load_checkpoint_model(folder, self.config.get("model"))
            if getattr(self, "_tokenizer", None) is None:
                self._tokenizer = tok
        return self._model

    @model.setter
    def model(self, model) -> None:
        self._model = model

    @property
    def tokenizer(self):
        """The run's tokenizer; a reopened run reads it from its last checkpoint (without the model)."""
        if getattr(self, "_tokenizer", None) is None and not getattr(self, "_tokenizer_read", False):
            folder = self._weights_folder()
            if folder is not None and (folder / "tokenizer_config.json").exists():
                import transformers

                self._tokenizer_read = True
                self._tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        return getattr(self, "_tokenizer", None)

    def _weights_folder(self) -> Path | None:
        """nbkit's last checkpoint; for a Trainer run (no nbkit checkpoints), Trainer's latest saved one."""
        if self.last_checkpoint is not None:
            return self.last_checkpoint
        for event in reversed(self.events):
            if isinstance(event, CheckpointSaved) and (Path(event.path) / "config.json").exists():
                return Path(event.path)
        return None

    @tokenizer.setter
    def tokenizer(self, value) -> None:
        self._tokenizer = value

    @property
    def label_names(self) -> list[str] | None:
        """Class names in id order (id2label): from the training data, else the model's config."""
        if self._label_names:
            return self._label_names
        id2label = getattr(getattr(self.model, "config", None), "id2label", None)
        return [id2label[i] for i in sorted(id2label)] if id2label else None

    def _columns(self, text: str | None, label: str | None, text_pair: str | None,
                 data: Any = None) -> dict[str, Any]:
        """Column options for `load_split`; unset ones default to the run's own config (finetune's),
        or to the standard names when `data` already has those (output of `nbkit.load_data`)."""
        from .evaluation import model_kind

        no_labels = (self.config.get("task") in ("causal-lm", "masked-lm")
                     or model_kind(self.model) in ("causal-lm", "masked-lm"))
        present = _column_names(data)
        given = {"text": text, "text_pair": text_pair, "label": label}
        out: dict[str, Any] = {}
        for role, standard in (("text", "text"), ("text_pair", None), ("label", "label")):
            value = given[role] if given[role] is not None else self.config.get(role) or standard
            if (given[role] is None and present is not None and value not in present
                    and (role == "text_pair" or standard in present)):
                value = role if role in present else (None if role == "text_pair" else standard)
            out[role] = value
        if no_labels:
            out["label"] = None
        return out

    @check_kwargs(meant={"text_column": "text", "label_column": "label"})
    def evaluate(self, data: Any, metrics: list | None = None, batch_size: int = 32, *,
                 text: str | None = None, label: str | None = None, text_pair: str | None = None,
                 split: str | None = None) -> dict[str, float]:
        """Loss and metrics (the run's `metrics` unless given) of the model on `data`.

        `data`: anything `finetune(data=...)` takes (a path, "sentiment", a hub name, a DataFrame, a
        list of dicts or `(text, label)` pairs, a `datasets` object; its `test` split by default, see
        `split`) with the same column options (`text=`, `label=`, `text_pair=`; default: the run's),
        or what `fit` takes as eval data (tokenized data, a torch Dataset, a DataLoader). Text labels
        are mapped to the model's classes by name.
        """
        from .batching import make_loader
        from .evaluation import DeviceLoader, evaluate_model, model_kind
        from .metrics import resolve_metrics

        chosen = metrics if metrics is not None else self.config.get("metrics", [])
        if self._is_llm() and _needs_loading(data):
            return self._evaluate_chat(data, chosen, batch_size, split)
        specs = resolve_metrics(chosen)
        if _needs_loading(data):
            from ..data import load_split

            data = load_split(data, split=split, classes=self.label_names,
                              **self._columns(text, label, text_pair, data))
        model = self.model
        if model is None:
            raise ValueError(f"run {self.name!r} has no model and no checkpoint in {self.run_dir}")
        kind = model_kind(model)
        loader, _ = make_loader(data, tokenizer=self.tokenizer, collate_fn=None, batch_size=batch_size,
                                shuffle=False, seed=0, group_by_length=None,
                                max_length=self.config.get("max_length", 256),
                                lm_labels=kind == "causal-lm", seq2seq=kind == "seq2seq")
        device = next(model.parameters()).device
        moved = DeviceLoader(loader, device)
        return evaluate_model(model, moved, specs, kind=kind, prefix="")

    def _is_llm(self) -> bool:
        from .evaluation import model_kind

        model = self._model
        return self.config.get("task") == "causal-lm" or (model is not None and model_kind(model) == "causal-lm")

    def _evaluate_chat(self, data: Any, metrics: list, batch_size: int, split: str | None) -> dict[str, float]:
        """`evaluate` for an LLM run: chat data (messages, prompt/completion, text, "reviews-json")
        masked as in training; loss and perplexity per trained token, exact match of greedy answers."""
        from ..llm.chat import load_chat_data
        from ..llm.generate import ExactMatch, logits_batch_size
        from .batching import TokenizedDataset

        cfg = self.config
        splits = load_chat_data(data, self.tokenizer, max_length=cfg.get("max_length", 256),
                                train_on=cfg.get("train_on", "answers"), eval_split=0)
        name = split or ("test" if "test" in splits else "train")
        if name not in splits:
            raise ValueError(f"the data has no split {name!r}; it has {', '.join(splits)}")
        chosen = [m for m in (metrics or ["perplexity"]) if m != "exact_match"]
        longest = max((len(x) for x in splits[name].columns["input_ids"]), default=1)
        out = self.evaluate(TokenizedDataset(splits[name].columns), chosen,
                            logits_batch_size(batch_size, self.model, longest))
        if "exact_match" in (metrics or []) and splits[name].format != "text":
            convs = splits[name].conversations
            em = ExactMatch(convs, self.tokenizer, n=len(convs), max_new_tokens=cfg.get("max_new_tokens"),
                            batch_size=min(batch_size, 16))
            out.update(em(self.model, prefix=""))
        return out

    @check_kwargs(meant={"text_column": "text", "texts_pair": "text_pairs"})
    def predict(self, texts: Any, text_pairs: list[str] | None = None, batch_size: int = 32, *,
                text: str | None = None, text_pair: str | None = None, split: str | None = None):
        """Labels and class probabilities for `texts`, as a DataFrame (one row per text).

        `texts`: a string, a list of strings, or any data `finetune(data=...)` takes (its text
        column is read with `text=`/`text_pair=`, labels are ignored; the `test` split by default).
        A string is one text unless it is a bundled sample's name ("sentiment") or an existing path;
        for a hub data set, pass `nbkit.load_data(name)`.
        """
        import pandas as pd
        import torch

        from ..data import SAMPLES

        if isinstance(texts, str) and texts not in SAMPLES and not _is_path(texts):
            texts = [texts]
        elif type(texts).__name__ == "Column":  # a datasets column (ds["text"]): its strings
            texts = list(texts)
        if not (isinstance(texts, (list, tuple)) and all(isinstance(t, str) for t in texts) and texts):
            from ..data import load_split

            cols = self._columns(text, None, text_pair, texts)
            ds = load_split(texts, text=cols["text"], text_pair=cols["text_pair"], split=split,
                            label=self.config.get("label") or "label", with_labels=False)
            raw = ds.to_dict()
            texts, text_pairs = raw["text"], raw.get("text_pair")
        texts = list(texts)
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise ValueError(f"text_pairs has {len(text_pairs)} texts for {len(texts)} texts; pass one per text")
        if self.tokenizer is None:
            raise ValueError("this run has no tokenizer: predict() needs a text model")
        model = self.model
        device = next(model.parameters()).device
        names = self.label_names
        rows = []
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                chunk = texts[i:i + batch_size]
                pairs = text_pairs[i:i + batch_size] if text_pairs else None
                enc = self.tokenizer(chunk, pairs, truncation=True, padding=True, return_tensors="pt",
                                     max_length=self.config.get("max_length", 256)).to(device)
                probs = model(**enc).logits.float().softmax(-1).cpu()  # (B, C)
                for text_, p in zip(chunk, probs, strict=True):
                    k = int(p.argmax())
                    row = {"text": text_, "label": names[k] if names else k, "score": float(p[k])}
                    row.update({(names[j] if names else str(j)): float(v) for j, v in enumerate(p)})
                    rows.append(row)
        if was_training:
            model.train()
        return pd.DataFrame(rows)

    # -- LLM results (nbkit.core.llm) ------------------------------------------------------------

    def generate(self, prompts: Any, max_new_tokens: int = 64, temperature: float = 0.0,
                 batch_size: int = 16) -> Any:
        """The model's answers to `prompts` (a string or a list; the chat template is applied to plain
        prompts). `temperature=0.0` decodes greedily. Returns a string per prompt."""
        from ..llm.generate import generate

        if self.tokenizer is None:
            raise ValueError("this run has no tokenizer: generate() needs a text model")
        return generate(self.model, self.tokenizer, prompts, max_new_tokens=max_new_tokens,
                        temperature=temperature, batch_size=batch_size)

    def save_adapter(self, folder: str | Path, *, check: bool = True, prompts: Any = None,
                     overwrite: bool = False, max_new_tokens: int | None = None):
        """Write the LoRA adapter (adapter_model.safetensors + adapter_config.json, what
        peft.PeftModel.from_pretrained loads) and the tokenizer into `folder`, then prove it: reload
        base + adapter, answer the sample prompts greedily and compare (nbkit.core.llm.export)."""
        from ..llm.export import export

        return export(self, "adapter", folder, check=check, prompts=prompts, overwrite=overwrite,
                      max_new_tokens=max_new_tokens)

    def merge(self, folder: str | Path, *, check: bool = True, prompts: Any = None, overwrite: bool = False,
              max_new_tokens: int | None = None):
        """Write a from_pretrained folder with the LoRA adapter merged into the base weights, tokenizer,
        chat template and end-of-turn eos included, then prove it: reload it, answer the sample prompts
        greedily and compare. The run's model keeps its adapter. Returns an ExportCheck (`.path`, `.ok`)."""
        from ..llm.export import export

        return export(self, "merged", folder, check=check, prompts=prompts, overwrite=overwrite,
                      max_new_tokens=max_new_tokens)

    def chat_session(self, **options: Any) -> Any:
        """A `ChatSession` with the run's model: `.send(text)`, `.stream(text)`, `.stop()`, base vs tuned
        for a LoRA run; it refuses to answer while the run trains. `options`: see ChatSession."""
        from ..llm.chat_session import ChatSession

        return ChatSession.for_run(self, **options)

    def chat(self, **options: Any) -> Any:
        """A chat box with the run's model in the notebook (the widget twin of `chat_session()`)."""
        from nbkit.notebook.widgets.chat import chat  # the notebook layer, only when asked for

        return chat(self, **options)

    def report(self, path: str | Path | None = None) -> Path:
        """Write `report.html` (the training chart with plotly's JavaScript embedded) and return its path."""
        from nbkit.figures.report import (
            write_report,  # the figure layer; the core itself never imports plotly
        )

        return write_report(self, path)

    # -- reopening --------------------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir: str | Path) -> Run:
        """Reopen a run from its directory: history, status, config; the model loads on first use."""
        import yaml

        run_dir = Path(run_dir)
        if not (run_dir / "metrics.jsonl").exists() and not (run_dir / "config.yaml").exists():
            raise FileNotFoundError(f"{run_dir} is not an nbkit run directory (no metrics.jsonl or config.yaml)")
        config = {}
        if (run_dir / "config.yaml").exists():
            config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        events = read_events(run_dir / "metrics.jsonl")
        start = next((e for e in events if isinstance(e, RunStart)), None)
        run = cls(name=start.name if start else run_dir.name, run_dir=run_dir, config=config)
        run.events = events
        ends = [e for e in events if isinstance(e, RunEnd)]
        starts = [e for e in events if isinstance(e, RunStart)]
        # No RunEnd after the last RunStart: the process died (killed, out of memory) mid-run.
        run.status = ends[-1].status if ends and (not starts or ends[-1].time >= starts[-1].time) else "interrupted"
        run._done.set()
        return run

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        from nbkit.core.runs import run_bundle

        return run_bundle(self)

    def __repr__(self) -> str:
        last = next((e for e in reversed(self.events) if isinstance(e, StepEnd)), None)
        where = f"step {last.step}" if last else "no steps"
        return f"<nbkit.Run {self.name!r} {self.status}, {where}, dir={str(self.run_dir)!r}>"


def _column_names(data: Any) -> set[str] | None:
    """Column names of a table-like source (Dataset, DatasetDict, DataFrame), else None."""
    names = getattr(data, "column_names", None)
    if isinstance(names, dict):  # a DatasetDict: split -> columns
        return {c for cols in names.values() for c in cols}
    if names is None and hasattr(data, "columns"):
        names = list(data.columns)
    return {str(c) for c in names} if names is not None else None


def _is_path(text: str) -> bool:
    try:
        return len(text) < 4096 and "\n" not in text and Path(text).expanduser().exists()
    except (OSError, ValueError):  # a sentence too long for a file name, or with a NUL
        return False


def _needs_loading(data: Any) -> bool:
    """True for sources `load_split` reads; False for what `fit` takes as is (tokens, torch data)."""
    from torch.utils.data import DataLoader, Dataset

    from .batching import is_hf_dataset

    if isinstance(data, (DataLoader, Dataset)):
        return False
    return not (is_hf_dataset(data) and "input_ids" in data.column_names)


def _load_checkpoint_model(folder: Path, base: Any = None):
    """Rebuild a Hugging Face model from a checkpoint folder by the architecture its config names
    (a LoRA checkpoint: the base model, by the run's `model` name, plus the adapter)."""
    import transformers

    from ..llm.lora import is_adapter_folder, load_peft_model

    if is_adapter_folder(folder):
        usable = isinstance(base, str) and not base.startswith("<")
        return load_peft_model(folder, base if usable else None)

    if not (folder / "config.json").exists():
        raise ValueError(
            f"{folder} holds weights of a plain torch module: build the module yourself and call "
            "nbkit.core.train.checkpoints.load_weights(module, folder)"
        )
    config = transformers.AutoConfig.from_pretrained(folder)
    arch = (config.architectures or ["AutoModel"])[0]
    model = getattr(transformers, arch).from_pretrained(folder)
    tokenizer = None
    if (folder / "tokenizer_config.json").exists():
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return model.eval(), tokenizer
