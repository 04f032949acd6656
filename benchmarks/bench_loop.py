"""Training throughput of `nbkit.fit` against a bare PyTorch loop and Hugging Face `Trainer`.

Same model (a random 4-layer BERT, hidden 128, 4 heads, intermediate 512, built from one seed), same
pre-tokenized data with long-tailed lengths (lognormal, clipped to 4..250 tokens), batch size 16,
one epoch of `--steps` optimizer steps, AdamW at 5e-5 with a linear schedule and clipping at 1.0.
Every configuration runs `--repeats` times, interleaved (the order reverses every round), after one
unmeasured warm-up round; the table shows medians.

Speeds per configuration (samples/s):
- train: from the start of the training loop to the end of the last optimizer step, i.e. the whole
  epoch, so every configuration does the same work (each example once). nbkit's wall time is the
  last StepEnd event's `elapsed`; the others take a timestamp after each optimizer step.
- CPU: the same in process CPU time. On a shared machine other processes steal wall time, not CPU
  time, so with one torch thread this is the steadier number; the ratios' targets use it.
- steady: from the end of step `--warmup-steps` to the end of the last step. Careful comparing it
  across configurations: each order puts different batches into the left-out first steps (with
  grouping, nbkit's steady window holds 4% more padded tokens than Trainer's), so it is biased by
  batch order; it is shown to make per-run start-up costs visible.
- call: the whole call (building the loader/Trainer, training, and for nbkit its one end-of-run
  checkpoint, whose time is shown as "ckpt s"). Model construction is outside every timer.

All configurations pad through the same counting wrapper around their collator, so the padding
fraction (pad tokens / all tokens) is measured on the batches actually trained on. nbkit runs with
its progress bar and metrics.jsonl on; progress bars (nbkit's and Trainer's) write to a buffer.

    .venv/bin/python benchmarks/bench_loop.py                 # the README table
    .venv/bin/python benchmarks/bench_loop.py --quick         # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

BATCH = 16
LR = 5e-5
CONFIGS = ["bare", "trainer", "trainer+group", "nbkit", "nbkit+group"]


# -- data and model --------------------------------------------------------------------------------

def make_data(n: int, seed: int, tokenizer) -> Any:
    """`n` examples whose token counts (with [CLS]/[SEP]) are lognormal, clipped to 4..250."""
    from datasets import Dataset

    from nbkit.testing import WORDS

    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(mean=math.log(32), sigma=0.8, size=n)), 4, 250).astype(int)
    words = rng.integers(0, len(WORDS), size=int(lengths.sum()))
    texts, at = [], 0
    for length in lengths:
        k = int(length) - 2  # [CLS] and [SEP] make up the rest
        texts.append(" ".join(WORDS[i] for i in words[at:at + k]))
        at += k
    enc = tokenizer(texts, truncation=True, max_length=256)
    assert [len(x) for x in enc["input_ids"]] == lengths.tolist(), "one word should be one token"
    labels = rng.integers(0, 2, size=n).tolist()
    return Dataset.from_dict({**enc, "label": labels})


def make_model(vocab_size: int, seed: int):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=vocab_size, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=256, num_labels=2, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertForSequenceClassification(config)


class CountingCollator:
    """Wraps a collator; counts real and padded tokens of every batch it builds."""

    def __init__(self, inner: Callable):
        self.inner = inner
        self.real = self.total = self.rows = 0

    def __call__(self, rows):
        batch = self.inner(rows)
        mask = batch["attention_mask"]  # (B, T)
        self.real += int(mask.sum())
        self.total += mask.numel()
        self.rows += mask.shape[0]
        return batch

    @property
    def pad_fraction(self) -> float:
        return 1 - self.real / self.total if self.total else float("nan")

    @property
    def width(self) -> float:
        """Mean padded tokens per example: samples/s times this is the tokens/s the model computes."""
        return self.total / self.rows if self.rows else float("nan")


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


# -- the three loops -------------------------------------------------------------------------------
# Each returns per-step end stamps `wall_ends` and `cpu_ends`, whole-call `wall`/`cpu` seconds,
# padding statistics, checkpoint seconds and the mean loss (a sanity check that all three train).

def run_bare(model, data, tokenizer, steps: int, seed: int, workdir: Path) -> dict:
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding, get_scheduler

    w0, c0 = _clock()
    collator = CountingCollator(DataCollatorWithPadding(tokenizer))
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, collate_fn=collator,
                        generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    sched = get_scheduler("linear", opt, num_warmup_steps=0, num_training_steps=steps)
    torch.manual_seed(seed)
    model.train()
    wall_ends, cpu_ends, losses = [], [], []
    start = _clock()
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.detach())
        w, c = _clock()
        wall_ends.append(w)
        cpu_ends.append(c)
        if len(wall_ends) == steps:
            break
    w1, c1 = _clock()
    return {"start": start, "wall_ends": wall_ends, "cpu_ends": cpu_ends, "wall": w1 - w0, "cpu": c1 - c0,
            "pad": collator.pad_fraction, "width": collator.width, "ckpt": 0.0,
            "loss": float(torch.stack(losses).mean())}


def run_trainer(model, data, tokenizer, steps: int, seed: int, workdir: Path, group: bool) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    wall_ends: list[float] = []
    cpu_ends: list[float] = []
    start: list[tuple[float, float]] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            start.append(_clock())  # just before the epoch loop

        def on_step_end(self, args, state, control, **kwargs):
            w, c = _clock()
            wall_ends.append(w)
            cpu_ends.append(c)

    w0, c0 = _clock()
    collator = CountingCollator(DataCollatorWithPadding(tokenizer))
    # Trainer's defaults otherwise (e.g. optim="adamw_torch_fused", logging every 500 steps).
    args = TrainingArguments(
        output_dir=str(workdir / "trainer"), per_device_train_batch_size=BATCH, max_steps=steps,
        learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, weight_decay=0.0,
        seed=seed, use_cpu=True, report_to=[], save_strategy="no",
        train_sampling_strategy="group_by_length" if group else "random",
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator,
                      callbacks=[StepClock()])
    out = trainer.train()
    w1, c1 = _clock()
    assert trainer.state.global_step == steps
    return {"start": start[0], "wall_ends": wall_ends, "cpu_ends": cpu_ends, "wall": w1 - w0, "cpu": c1 - c0,
            "pad": collator.pad_fraction, "width": collator.width, "ckpt": 0.0,
            "loss": out.training_loss}


def run_nbkit(model, data, tokenizer, steps: int, seed: int, workdir: Path, group: bool) -> dict:
    from nbkit import fit
    from nbkit.core.train.batching import PadCollator

    cpu_ends: list[float] = []
    cpu_start: list[float] = []

    def cpu_clock(event, run):
        if event.kind == "step":
            cpu_ends.append(time.process_time())
        elif event.kind == "run_start":  # emitted just before the loop starts its clock
            cpu_start.append(time.process_time())

    w0, c0 = _clock()
    collator = CountingCollator(PadCollator(tokenizer.pad_token_id))  # what fit builds itself
    run = fit(model, data, tokenizer=tokenizer, collate_fn=collator, epochs=1, max_steps=steps, lr=LR,
              batch_size=BATCH, scheduler="linear", warmup=0.0, max_grad_norm=1.0, seed=seed,
              group_by_length=None if group else False, progress=True, precision="fp32",
              callbacks=[cpu_clock],
              run_dir=workdir / f"nbkit-{'group' if group else 'plain'}-{time.monotonic_ns()}")
    w1, c1 = _clock()
    step_events = [e for e in run.events if e.kind == "step"]
    ckpt = [e for e in run.events if e.kind == "checkpoint"]
    assert run.status == "finished" and len(step_events) == steps, run
    assert len((run.run_dir / "metrics.jsonl").read_text().splitlines()) == len(run.events)
    # Checkpoint time: from the last step's event to the CheckpointSaved event (wall-clock stamps).
    ckpt_s = ckpt[-1].time - step_events[-1].time if ckpt else 0.0
    # StepEnd.elapsed counts from the loop's start, so the wall start is 0.
    return {"start": (0.0, cpu_start[0]), "wall_ends": [e.elapsed for e in step_events], "cpu_ends": cpu_ends, "wall": w1 - w0,
            "cpu": c1 - c0, "pad": collator.pad_fraction, "width": collator.width, "ckpt": ckpt_s,
            "loss": float(np.mean([e.loss for e in step_events]))}


def run_config(name: str, data, tokenizer, steps: int, seed: int, workdir: Path) -> dict:
    model = make_model(len(tokenizer), seed)
    # Progress bars and Trainer's end-of-run print go to a buffer (shown only if the run fails).
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(err):
        try:
            if name == "bare":
                return run_bare(model, data, tokenizer, steps, seed, workdir)
            if name.startswith("trainer"):
                return run_trainer(model, data, tokenizer, steps, seed, workdir, group=name.endswith("group"))
            return run_nbkit(model, data, tokenizer, steps, seed, workdir, group=name.endswith("group"))
        except BaseException:
            sys.__stderr__.write(err.getvalue()[-4000:])
            raise


def epoch_rate(start: float, ends: list[float]) -> float:
    """Samples/s from the start of the loop to the end of the last step: the same work for everyone."""
    return BATCH * len(ends) / (ends[-1] - start)


def steady_rate(ends: list[float], warmup: int) -> float:
    """Samples/s from the end of step `warmup` to the end of the last step."""
    w = max(1, min(warmup, len(ends) - 1))
    return BATCH * (len(ends) - w) / (ends[-1] - ends[w - 1])


# -- short steps: a tiny MLP, where per-step overhead shows ------------------------------------------
# 16 -> 32 -> 2, batch 4, 8,192 examples, 2 epochs (4,096 steps of ~0.3 ms): the same fused AdamW,
# linear schedule and clipping at 1.0 in both loops. Host reads of device values are counted by
# wrapping the Tensor methods that read one (item, __float__, __int__, __bool__, tolist).

MLP_N, MLP_BATCH, MLP_EPOCHS = 8192, 4, 2
_READS = ("item", "__float__", "__int__", "__bool__", "tolist")


def _mlp(seed: int):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))


def _mlp_data(seed: int):
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(MLP_N, 16, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long())


@contextlib.contextmanager
def count_host_reads():
    counts = {"n": 0}
    saved = {name: getattr(torch.Tensor, name) for name in _READS}

    def wrap(fn):
        def counted(self, *args, **kwargs):
            counts["n"] += 1
            return fn(self, *args, **kwargs)
        return counted

    for name, fn in saved.items():
        setattr(torch.Tensor, name, wrap(fn))
    try:
        yield counts
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


def mlp_bare(seed: int) -> dict:
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    model, data = _mlp(seed), _mlp_data(seed)
    loader = DataLoader(data, batch_size=MLP_BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed))
    steps = MLP_EPOCHS * len(loader)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    sched = get_scheduler("linear", opt, num_warmup_steps=0, num_training_steps=steps)
    t0 = time.process_time()
    for _ in range(MLP_EPOCHS):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
    return {"rate": steps * MLP_BATCH / (time.process_time() - t0), "steps": steps}


def mlp_nbkit(seed: int, workdir: Path) -> dict:
    from nbkit import fit

    model, data = _mlp(seed), _mlp_data(seed)
    start: list[float] = []
    ends: list[float] = []

    def cpu_clock(event, run):
        if event.kind == "run_start":
            start.append(time.process_time())
        elif event.kind == "train_end":
            ends.append(time.process_time())

    with count_host_reads() as reads:
        run = fit(model, data, loss_fn=torch.nn.functional.cross_entropy, epochs=MLP_EPOCHS, batch_size=MLP_BATCH,
                  lr=1e-3, max_grad_norm=1.0, precision="fp32", callbacks=[cpu_clock], progress=True,
                  run_dir=workdir / f"mlp-{time.monotonic_ns()}")
    steps = max(e.step for e in run.events if e.kind == "step")
    assert run.status == "finished", run
    return {"rate": steps * MLP_BATCH / (ends[0] - start[0]), "steps": steps,
            "reads_per_1000": 1000 * reads["n"] / steps,
            "reads_per_s": reads["n"] / (ends[0] - start[0])}


def mlp_section(repeats: int, seed: int) -> dict[str, float]:
    bare, nb = [], []
    with tempfile.TemporaryDirectory(prefix="bench-mlp-") as tmp, \
            contextlib.redirect_stderr(io.StringIO()):
        mlp_nbkit(seed, Path(tmp))  # warm-up: imports, first-call costs
        mlp_bare(seed)
        for rep in range(repeats):
            pair = [("bare", mlp_bare, ()), ("nbkit", mlp_nbkit, (Path(tmp),))]
            for name, fn, extra in (pair if rep % 2 == 0 else pair[::-1]):
                (bare if name == "bare" else nb).append(fn(seed, *extra))
    ratio = statistics.median(n["rate"] for n in nb) / statistics.median(b["rate"] for b in bare)
    reads = statistics.median(n["reads_per_1000"] for n in nb)
    per_s = statistics.median(n["reads_per_s"] for n in nb)
    print(f"tiny MLP ({nb[0]['steps']} steps of batch {MLP_BATCH}, CPU time): bare "
          f"{statistics.median(b['rate'] for b in bare):.0f} samples/s, nbkit "
          f"{statistics.median(n['rate'] for n in nb):.0f} samples/s")
    print(f"| tiny MLP nbkit/bare (train CPU) | {ratio:.3f} | target >= 0.95 |")
    print(f"| host reads per 1,000 steps (nbkit) | {reads:.1f} ({per_s:.1f} per second of training) | "
          "target: a few per second, not one per step |")
    return {"mlp_ratio": ratio, "reads_per_1000": reads, "reads_per_s": per_s}


# -- the report ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=160, help="optimizer steps per run (one epoch)")
    p.add_argument("--repeats", type=int, default=5, help="measured runs per configuration")
    p.add_argument("--warmup-steps", type=int, default=10, help="steps left out of the steady rates")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {CONFIGS}")
    p.add_argument("--quick", action="store_true", help="smoke mode: 12 steps, 1 repeat, no warm-up round")
    p.add_argument("--mlp-only", action="store_true", help="only the tiny-MLP figures (per-step overhead)")
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.repeats, a.warmup_steps = min(a.steps, 12), 1, 2
    if a.steps < 2:
        p.error("--steps must be at least 2")
    configs = [c for c in a.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        p.error(f"unknown config(s) {sorted(unknown)}; choose from {CONFIGS}")

    torch.set_num_threads(a.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from nbkit.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer(max_length=512)
    data = make_data(BATCH * a.steps, a.seed, tokenizer)
    lengths = np.array([len(x) for x in data["input_ids"]])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {len(data)} examples, token "
          f"lengths median {int(np.median(lengths))}, p90 {int(np.percentile(lengths, 90))}, max "
          f"{lengths.max()}; batch {BATCH}, {a.steps} steps, {a.repeats} repeats, steady rates after "
          f"step {a.warmup_steps}", flush=True)

    mlp = mlp_section(1 if a.quick else a.repeats, a.seed)
    if a.mlp_only:
        return {"mlp": mlp}
    results: dict[str, list[dict]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        workdir = Path(tmp)
        if not a.quick:  # one unmeasured round: imports, allocator, first-call costs
            for name in configs:
                run_config(name, data.select(range(BATCH * 8)), tokenizer, 8, a.seed, workdir)
        for rep in range(a.repeats):
            order = configs if rep % 2 == 0 else configs[::-1]
            for name in order:
                r = run_config(name, data, tokenizer, a.steps, a.seed, workdir)
                r["train"] = epoch_rate(r["start"][0], r["wall_ends"])
                r["train_cpu"] = epoch_rate(r["start"][1], r["cpu_ends"])
                r["steady"] = steady_rate(r["wall_ends"], a.warmup_steps)
                r["steady_cpu"] = steady_rate(r["cpu_ends"], a.warmup_steps)
                r["wall_rate"] = BATCH * a.steps / r["wall"]
                r["cpu_rate"] = BATCH * a.steps / r["cpu"]
                results[name].append(r)
                print(f"  rep {rep + 1} {name:14s} train CPU {r['train_cpu']:6.1f}/s  train {r['train']:6.1f}/s  "
                      f"steady CPU {r['steady_cpu']:6.1f}/s  call {r['wall']:6.2f} s (CPU {r['cpu']:6.2f} s)  "
                      f"pad {r['pad']:.3f}  loss {r['loss']:.4f}", flush=True)

    summary = {name: summarize(rs) for name, rs in results.items()}
    print()
    print(table(summary))
    print()
    print(ratios(summary))
    return summary


def summarize(rs: list[dict]) -> dict[str, float]:
    keys = ("train", "train_cpu", "steady", "steady_cpu", "wall_rate", "cpu_rate", "wall", "pad", "ckpt")
    med = {k: statistics.median(r[k] for r in rs) for k in keys}
    med["computed_tokens"] = statistics.median(r["train_cpu"] * r["width"] for r in rs)
    cpu = [r["train_cpu"] for r in rs]
    med["spread"] = (max(cpu) - min(cpu)) / med["train_cpu"]
    return med


def table(s: dict[str, dict[str, float]]) -> str:
    rows = ["| config | train CPU | (spread) | train wall | steady CPU | call wall | call CPU | call s "
            "| ckpt s | pad fraction | padded tokens/CPU s |", "|" + "---|" * 11]
    for name, v in s.items():
        rows.append(f"| {name} | {v['train_cpu']:.1f} | {v['spread'] * 100:.0f}% | {v['train']:.1f} | "
                    f"{v['steady_cpu']:.1f} | {v['wall_rate']:.1f} | {v['cpu_rate']:.1f} | {v['wall']:.2f} | "
                    f"{v['ckpt']:.2f} | {v['pad']:.3f} | {v['computed_tokens']:.0f} |")
    return "\n".join(rows)


def ratios(s: dict[str, dict[str, float]]) -> str:
    wanted = [("nbkit", "bare", 0.97), ("nbkit", "trainer", 1.0), ("trainer+group", "bare", None),
              ("nbkit+group", "trainer+group", 1.0), ("nbkit+group", "bare", None)]
    keys = ("train_cpu", "train", "steady_cpu", "wall_rate", "cpu_rate")
    lines = ["| ratio | train CPU | train wall | steady CPU | call wall | call CPU | target (train CPU) |",
             "|---|---|---|---|---|---|---|"]
    for a, b, target in wanted:
        if a in s and b in s:
            r = {k: s[a][k] / s[b][k] for k in keys}
            mark = "" if target is None else f">= {target:.2f} " + ("ok" if r["train_cpu"] >= target else "MISSED")
            lines.append(f"| {a} / {b} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + f" | {mark} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
