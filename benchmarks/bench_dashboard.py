"""Cost of the live dashboard, measured side by side in one run.

1. Bytes sent over the widget comm and Python time per update, after 1,000 and after 100,000 logged
   steps (20 evaluations each). The comm is replaced by a recording one, as in ipywidgets' tests.
2. Training throughput of the same fit with the dashboard observing it and without (interleaved
   repeats, median), so the ratio shows what watching costs.

    .venv/bin/python benchmarks/bench_dashboard.py [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import comm
import ipywidgets.widgets.widget as widget_module
import torch
from comm.base_comm import BaseComm

SENT: list[int] = []


class RecordingComm(BaseComm):
    kernel = "recording"

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        size = len(json.dumps(data, default=str)) if data else 0
        size += sum(len(memoryview(b).cast("B")) for b in (buffers or []))
        SENT.append(size)


widget_module.comm.create_comm = lambda *a, **k: RecordingComm(*a, **k)
comm.create_comm = widget_module.comm.create_comm

from nbkit.core.series import BoundedSeries  # noqa: E402
from nbkit.core.train.events import RunStart, StepEnd  # noqa: E402
from nbkit.notebook.widgets.dashboard import Dashboard  # noqa: E402


class _Run:
    history = None


def per_update(n_steps: int, updates: int = 20) -> tuple[float, float]:
    d, run = Dashboard(min_interval=0.0), _Run()
    d(RunStart(name="bench", run_dir="/tmp", total_steps=n_steps, steps_per_epoch=n_steps // 4, epochs=4), run)
    for s in range(1, n_steps + 1):  # fill the series directly: the fill is not what we measure
        loss = 2.0 / (1 + s) ** 0.3
        d.loss.append(s, loss)
        d.smooth.append(s, loss)
        d.lr.append(s, 1e-3)
        if s % (n_steps // 20) == 0:
            d.evals.setdefault("eval_loss", BoundedSeries(d.max_points, "mean")).append(s, loss)
    SENT.clear()
    t = time.perf_counter()
    for i in range(updates):
        d(StepEnd(step=n_steps + i, epoch=4.0, loss=0.1, lr=1e-3, samples_per_s=1.0, tokens_per_s=1.0,
                  elapsed=1.0), run)
    return sum(SENT) / updates, (time.perf_counter() - t) / updates


def throughput(with_dashboard: bool, steps: int) -> float:
    import datasets

    from nbkit.core.train import fit
    from nbkit.testing import random_texts, tiny_bert

    model, tok = tiny_bert(layers=4, hidden=64, heads=4)
    ds = datasets.Dataset.from_dict({"text": random_texts(steps * 16, seed=1),
                                     "label": [i % 2 for i in range(steps * 16)]})
    callbacks = [Dashboard()] if with_dashboard else []  # default throttle: what users get
    with tempfile.TemporaryDirectory() as tmp:
        run = fit(model, ds, tokenizer=tok, epochs=1, batch_size=16, callbacks=callbacks, run_dir=tmp,
                  progress=False)
    steps_done = [e for e in run.events if e.kind == "step"]
    return steps_done[-1].step * 16 / steps_done[-1].elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    small_b, small_t = per_update(1_000)
    large_b, large_t = per_update(100_000)
    print("dashboard update cost (min_interval=0, 20 evaluations)")
    print(f"  {'logged steps':>12} {'bytes/update':>13} {'ms/update':>10}")
    print(f"  {1_000:>12,} {small_b:>13,.0f} {small_t * 1e3:>10.2f}")
    print(f"  {100_000:>12,} {large_b:>13,.0f} {large_t * 1e3:>10.2f}")
    print(f"  ratio 100k/1k: bytes {large_b / small_b:.2f} (target <= 1.5), time {large_t / small_t:.2f}")
    print(f"  bytes per update at 100k: {large_b / 1024:.1f} KB (target < 64 KB)")

    on, off = [], []
    throughput(False, 20)  # warm-up: imports, first tokenizer call
    for _ in range(args.repeats):
        off.append(throughput(False, args.steps))
        on.append(throughput(True, args.steps))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"training throughput, tiny BERT, {args.steps} steps x batch 16, median of {args.repeats}")
    print(f"  dashboard off {m_off:,.1f} samples/s, on {m_on:,.1f} samples/s, ratio {m_on / m_off:.3f}"
          " (target >= 0.98)")


if __name__ == "__main__":
    main()
