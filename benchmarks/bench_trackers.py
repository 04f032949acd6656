"""Cost of `report_to`, measured side by side in one run.

1. Time each tracker takes in the training thread per StepEnd (synthetic events, 100 steps/s for
   5 s; MLflow's writes happen in its own thread), and how long its RunEnd waits.
2. The same tiny-BERT fit with no tracker, each tracker alone and all three (interleaved repeats,
   medians):
- steps/s: optimizer steps per second between the first and the last step (from StepEnd.elapsed,
  which includes the time observers take), so the ratio to `none` is what logging costs per step;
- start: seconds from `fit` to its first step beyond the no-tracker run's (opening the tracker run:
  MLflow's sqlite store, trackio's project; imports are paid once, in the warm-up).

Stores go to a scratch directory (TRACKIO_DIR, MLFLOW_TRACKING_URI, the working directory).

    .venv/bin/python benchmarks/bench_trackers.py [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

SCRATCH = tempfile.mkdtemp(prefix="nbkit-bench-trackers-")
os.environ["TRACKIO_DIR"] = os.path.join(SCRATCH, "trackio")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{SCRATCH}/mlflow.db"
os.chdir(SCRATCH)

import torch  # noqa: E402

CONFIGS = {"none": [], "tensorboard": ["tensorboard"], "trackio": ["trackio"], "mlflow": ["mlflow"],
           "all": ["tensorboard", "trackio", "mlflow"]}


def one_fit(report_to: list[str], steps: int, i: int) -> tuple[float, float]:
    import contextlib
    import io

    import datasets

    from nbkit.core.train import fit
    from nbkit.testing import random_texts, tiny_bert

    model, tok = tiny_bert()
    ds = datasets.Dataset.from_dict({"text": random_texts(steps * 16, seed=1, max_words=12),
                                     "label": [i % 2 for i in range(steps * 16)]})
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # trackio and MLflow announce their runs
        run = fit(model, ds, tokenizer=tok, epochs=1, batch_size=16, run_dir=os.path.join(SCRATCH, f"r{i}"),
                  progress=False, report_to=report_to, name=f"bench-{i}")
    wall = time.perf_counter() - t
    step_events = [e for e in run.events if e.kind == "step"]
    first, last = step_events[0], step_events[-1]
    steps_per_s = (last.step - first.step) / (last.elapsed - first.elapsed)
    return steps_per_s, wall - last.elapsed  # the time outside the steps: set-up, start, end


def per_step() -> None:
    import contextlib
    import io

    from nbkit.core.train.events import RunEnd, RunStart, StepEnd
    from nbkit.core.train.run import Run
    from nbkit.core.train.trackers import tracker_observers

    print("observer time in the training thread (synthetic StepEnd, 100/s for 5 s)")
    print(f"  {'tracker':<12} {'ms/step':>8} {'RunEnd s':>9}")
    for name in ("tensorboard", "trackio", "mlflow"):
        run_dir = os.path.join(SCRATCH, f"synthetic-{name}")
        run = Run(name="synthetic", run_dir=run_dir, config={"lr": 0.1}, observers=tracker_observers([name], run_dir))
        with contextlib.redirect_stdout(io.StringIO()):
            run._emit(RunStart(name="synthetic", run_dir=run_dir, total_steps=1, steps_per_epoch=1, epochs=1,
                               config={"lr": 0.1}))
        inside, n, t0 = 0.0, 0, time.perf_counter()
        while time.perf_counter() - t0 < 5:
            n += 1
            event = StepEnd(step=n, epoch=1.0, loss=1.0, lr=0.1, samples_per_s=1.0, tokens_per_s=2.0, grad_norm=1.0)
            t = time.perf_counter()
            run._emit(event)
            inside += time.perf_counter() - t
            time.sleep(0.01)
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            run._emit(RunEnd(status="finished", step=n))
        print(f"  {name:<12} {inside / n * 1e3:>8.3f} {time.perf_counter() - t:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_step()

    i = 0
    for report_to in CONFIGS.values():  # warm-up: imports, first store creation
        one_fit(report_to, 10, i)
        i += 1
    rates: dict[str, list[float]] = {k: [] for k in CONFIGS}
    outside: dict[str, list[float]] = {k: [] for k in CONFIGS}
    for r in range(args.repeats):
        order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
        for name in order:
            rate, extra = one_fit(CONFIGS[name], args.steps, i)
            rates[name].append(rate)
            outside[name].append(extra)
            i += 1
    base_rate, base_extra = statistics.median(rates["none"]), statistics.median(outside["none"])
    print(f"report_to cost: tiny BERT, {args.steps} steps x batch 16, 1 thread, median of {args.repeats}")
    print(f"  {'report_to':<12} {'steps/s':>8} {'ratio':>6} {'start+end s':>12}")
    for name in CONFIGS:
        rate, extra = statistics.median(rates[name]), statistics.median(outside[name])
        print(f"  {name:<12} {rate:>8.1f} {rate / base_rate:>6.3f} {extra - base_extra:>+12.2f}")


if __name__ == "__main__":
    main()
