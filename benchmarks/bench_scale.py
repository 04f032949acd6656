"""One process against two (gloo, CPU) on the same global batch, measured side by side.

Each configuration trains the same small BERT (4 layers, hidden 128) on the same synthetic data for
the same number of optimizer steps; throughput is global samples/s between the first and last step
from rank 0's StepEnd events (start-up excluded). Runs are interleaved and repeated; medians printed.

    .venv/bin/python benchmarks/bench_scale.py [--repeats 2] [--rows 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import pandas as pd


def make_setup(root: Path, rows: int) -> tuple[str, str]:
    from nbkit.testing import random_texts, save_tiny_model

    model = save_tiny_model(root / "model", kind="bert", layers=4, hidden=128, heads=4)
    texts = random_texts(rows, seed=1, min_words=8, max_words=64)
    pd.DataFrame({"text": texts, "label": [i % 2 for i in range(rows)]}).to_csv(root / "data.csv", index=False)
    return str(model), str(root / "data.csv")


def measure(model: str, data: str, run_dir: Path, **kw) -> float:
    import nbkit

    run = nbkit.finetune(model, data, epochs=1, eval_split=0, test=False, lr=1e-4, run_dir=run_dir,
                         progress=False, **kw)
    steps = [e for e in run.events if e.kind == "step"]
    start = run.events[0]
    per_step = start.effective_batch_size
    return (len(steps) - 1) * per_step / (steps[-1].elapsed - steps[0].elapsed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", type=int, default=1024)
    args = parser.parse_args()
    import torch

    results: dict[str, list[float]] = {"1 process x 2 threads": [], "1 process x 1 thread": [],
                                       "2 processes x 1 thread": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, data = make_setup(root, args.rows)
        for r in range(args.repeats):
            torch.set_num_threads(2)
            results["1 process x 2 threads"].append(measure(model, data, root / f"a{r}", batch_size=16))
            torch.set_num_threads(1)
            results["1 process x 1 thread"].append(measure(model, data, root / f"b{r}", batch_size=16))
            os.environ["OMP_NUM_THREADS"] = "1"
            results["2 processes x 1 thread"].append(
                measure(model, data, root / f"c{r}", batch_size=8, processes=2, launcher="torchrun"))
    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["1 process x 2 threads"]
    print(f"global batch 16, {args.rows} rows, 4-layer BERT (hidden 128), median of {args.repeats}")
    for name, value in med.items():
        print(f"  {name:<24} {value:8.1f} samples/s   ratio to 1x2 threads {value / base:.2f}")
    print(json.dumps({k: round(v, 1) for k, v in med.items()}))


if __name__ == "__main__":
    main()
