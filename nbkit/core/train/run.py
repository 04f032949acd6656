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

from . import checkpoints as ckpt
from .events import EvalEnd, Event, RunEnd, RunStart, StepEnd, event_from_dict

STATUSES = ("created", "running", "paused", "finished", "stopped", "failed", "interrupted")


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    import yaml

    plain = {k: (v if isinstance(v, (str, int, float, bool, list, dict, type(None))) else repr(v))
             for k, v in config.items()}
    plain = {k: [m if isinstance(m, str) else getattr(m, "__name__", repr(m)) for m in v]
             if isinstance(v, list) else v for k, v in plain.items()}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(plain, sort_keys=False))


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
    """One training run. Returned by `nbkit.fit` / `nbkit.finetune`; reopened by `Run.load`."""

    def __init__(self, *, name: str, run_dir: Path, config: dict[str, Any], model: Any = None,
                 tokenizer: Any = None, observers: list | None = None, kind: str = "hf"):
        self.name, self.run_dir, self.config = name, Path(run_dir), config
        self._model, self.tokenizer, self.kind = model, tokenizer, kind
        self.status = "created"
        self.error: BaseException | None = None
        self.events: list[Event] = []
        self._observers = observers if observers is not None else []
        self._label_names: list[str] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._done = threading.Event()
        self._stop_status = "stopped"
        self._stop_reason = ""
        self._stop_after_epoch = False

    # -- controls ---------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped by user") -> None:
        """Finish the current step, save a checkpoint and end with status "stopped"."""
        self._request_stop(reason, status="stopped")

    def stop_after_epoch(self) -> None:
        self._stop_after_epoch = True

    def _request_stop(self, reason: str, status: str = "stopped") -> None:
        if not self._stop_event.is_set():
            self._stop_reason, self._stop_status = reason, status
        self._stop_event.set()
        self._running.set()  # a paused run must wake up to stop

    def pause(self) -> None:
        """Hold training at the next step boundary until `resume()`."""
        if self.status == "running":
            self._running.clear()
            self.status = "paused"

    def resume(self) -> None:
        """Continue a paused run. (To continue a stopped run from disk: fit(..., resume_from=run_dir).)"""
        if self.status == "paused":
            self.status = "running"
        self._running.set()

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run ends (background runs); re-raise its error if it failed."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None and self._thread is not None and not self._thread.is_alive():
            raise self.error
        return self

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed", "interrupted")

    # -- events -----------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        with self._lock:  # append and snapshot together: a concurrent subscribe() replays or gets it, never both
            self.events.append(event)
            observers = list(self._observers)
        for observer in observers:
            observer(event, self)

    def subscribe(self, observer) -> None:
        """Add an observer `fn(event, run)`; it first receives the events so far, then new ones."""
        with self._lock:
            past = list(self.events)
            self._observers.append(observer)
        for event in past:
            observer(event, self)

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
        if self._model is None and self.last_checkpoint is not None:
            self._model, tok = _load_checkpoint_model(self.last_checkpoint, self.config.get("model"))
            self.tokenizer = self.tokenizer or tok
        return self._model

    @property
    def label_names(self) -> list[str] | None:
        if self._label_names:
            return self._label_names
        id2label = getattr(getattr(self.model, "config", None), "id2label", None)
        return [id2label[i] for i in sorted(id2label)] if id2label else None

    def evaluate(self, data: Any, metrics: list | None = None, batch_size: int = 32) -> dict[str, float]:
        """Loss and metrics on `data` (anything `fit` accepts as eval data)."""
        from .batching import make_loader
        from .loop import _model_kind, evaluate_model
        from .metrics import resolve_metrics

        model = self.model
        specs = resolve_metrics(metrics if metrics is not None else self.config.get("metrics", []))
        kind = _model_kind(model)
        loader, _ = make_loader(data, tokenizer=self.tokenizer, collate_fn=None, batch_size=batch_size,
                                shuffle=False, seed=0, group_by_length=None,
                                max_length=self.config.get("max_length", 256),
                                lm_labels=kind == "causal-lm", seq2seq=kind == "seq2seq")
        device = next(model.parameters()).device
        moved = _DeviceLoader(loader, device)
        return evaluate_model(model, moved, specs, kind=kind, prefix="")

    def predict(self, texts: str | list[str], text_pairs: list[str] | None = None, batch_size: int = 32):
        """Labels and class probabilities for `texts`, as a DataFrame (one row per text)."""
        import pandas as pd
        import torch

        if isinstance(texts, str):
            texts = [texts]
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
                for text, p in zip(chunk, probs, strict=True):
                    k = int(p.argmax())
                    row = {"text": text, "label": names[k] if names else k, "score": float(p[k])}
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

    def save_adapter(self, folder: str | Path) -> Path:
        """Write the LoRA adapter (adapter_model.safetensors + adapter_config.json, what
        peft.PeftModel.from_pretrained loads) and the tokenizer into `folder`."""
        from ..llm.lora import save_adapter

        return save_adapter(self.model, folder, self.tokenizer)

    def merge(self, folder: str | Path) -> Path:
        """Write a from_pretrained folder with the LoRA adapter merged into the base weights,
        tokenizer and chat template included. The run's model keeps its adapter."""
        from ..llm.lora import merge

        return merge(self.model, folder, self.tokenizer)

    def report(self, path: str | Path | None = None) -> Path:
        """Write `report.html` (the training chart with plotly's JavaScript embedded) and return its path."""
        from nbkit.figures.report import write_report  # the figure layer; the core itself never imports plotly

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

    def __repr__(self) -> str:
        last = next((e for e in reversed(self.events) if isinstance(e, StepEnd)), None)
        where = f"step {last.step}" if last else "no steps"
        return f"<nbkit.Run {self.name!r} {self.status}, {where}, dir={str(self.run_dir)!r}>"


class _DeviceLoader:
    """Moves each batch to the model's device (for evaluating outside accelerate's prepared loaders)."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __iter__(self):
        for batch in self.loader:
            if isinstance(batch, dict):
                yield {k: v.to(self.device) for k, v in batch.items()}
            else:
                yield [b.to(self.device) for b in batch]


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
