"""What the live dashboard costs, measured in a real kernel (nbclient runs a notebook), side by side.

In a kernel a widget update goes through the kernel's session and iopub thread, which plain Python
does not have, so this runs where users run. One kernel, one notebook:

1. Time to the first chart: from the start of a cell that imports the dashboard (torch and nbkit's
   core already imported, as after a model-loading cell) to the first update carrying points.
2. Throughput of a tiny-MLP `fit` (16 -> 32 -> 2, batch 32, ~0.5-1 ms a step here) with the dashboard
   observing it and without, interleaved (off, on, off, on, ...), medians; and the kernel time spent
   inside the dashboard per step (its `__call__`, flushes included), plus the one-off cost of the
   result written after the last step (outside the training clock).

    .venv/bin/python benchmarks/bench_dashboard.py [--steps 4096] [--repeats 5] [--profile]

`--profile` also prints a cProfile of one dashboard run (top functions by cumulative time).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import nbclient
import nbformat

SETUP = r'''
import os, time, json, statistics, tempfile, cProfile, pstats, io
import torch
torch.set_num_threads(1)
from nbkit.core.train import fit
X = torch.randn(8192 * 32, 16, generator=torch.Generator().manual_seed(0))
ds = torch.utils.data.TensorDataset(X, (X[:, 0] > 0).long())
make = lambda: torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))

def go(callbacks, steps):
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        run = fit(make(), ds, loss_fn=torch.nn.functional.cross_entropy, max_steps=steps, batch_size=32,
                  lr=1e-3, callbacks=callbacks, run_dir=tmp, progress=False)
        t_end = time.perf_counter()
    steps_done = [e for e in run.events if e.kind == "step"]
    return steps_done[-1].step / steps_done[-1].elapsed, run

go([], 200)  # warm-up: accelerate, the optimizer, the loader
'''

FIRST_CHART = r'''
t0 = time.monotonic()
from nbkit.notebook.widgets.dashboard import Dashboard
t_import = time.monotonic() - t0
d = Dashboard().show()
go([d], 100)
print("FIRST", json.dumps({"import_s": t_import, "first_chart_s": d.t_first_chart - t0}))
'''

MEASURE = r'''
class Timed(Dashboard):
    spent = 0.0  # wall time inside the dashboard
    cpu = 0.0  # CPU time of the training thread inside it (what a loaded machine does not inflate)
    steps = 0
    finish = 0.0
    def __call__(self, event, run):
        t, c = time.perf_counter(), time.thread_time()
        super().__call__(event, run)
        dt, dc = time.perf_counter() - t, time.thread_time() - c
        if event.kind == "run_end":
            Timed.finish = dt
        else:
            self.spent += dt
            self.cpu += dc
            self.steps += event.kind == "step"

    def flush(self):
        c = time.thread_time()
        super().flush()
        self.flush_cpu = getattr(self, "flush_cpu", 0.0) + time.thread_time() - c
        self.flushes = getattr(self, "flushes", 0) + 1

off, on, per_step, per_step_cpu, base_cpu, flush_ms, finish = [], [], [], [], [], [], []
for i in range({repeats}):
    off.append(go([], {steps})[0])
    d = Timed().show()
    sps, run = go([d], {steps})
    on.append(sps)
    per_step.append(d.spent / d.steps)
    per_step_cpu.append(d.cpu / d.steps)
    base_cpu.append((d.cpu - d.flush_cpu) / d.steps)
    flush_ms.append(d.flush_cpu / d.flushes * 1e3)
    finish.append(Timed.finish)
print("MEASURE", json.dumps({{"off": off, "on": on, "per_step": per_step, "per_step_cpu": per_step_cpu, "base_cpu": base_cpu, "flush_ms": flush_ms, "finish": finish}}))
'''

PROFILE = r'''
pr = cProfile.Profile()
d = Dashboard().show()
pr.enable()
go([d], {steps})
pr.disable()
s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats("dashboard|series|traitlets|ipywidgets|comm|session|figures", 25)
print("PROFILE", s.getvalue())
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    cells = [SETUP, FIRST_CHART, MEASURE.format(repeats=args.repeats, steps=args.steps)]
    if args.profile:
        cells.append(PROFILE.format(steps=args.steps))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    os.environ.update(env)
    t = time.time()
    nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3").execute()
    out = {}
    for cell in nb.cells:
        for o in cell.outputs:
            if o.get("output_type") == "error":
                sys.exit("\n".join(o["traceback"]))
            text = o.get("text", "") if o.get("name") == "stdout" else ""
            for line in text.splitlines(keepends=True):
                if line.startswith(("FIRST", "MEASURE")):
                    key, payload = line.split(" ", 1)
                    out[key] = json.loads(payload)
            if text.startswith("PROFILE"):
                print(text)
    import statistics

    first, m = out["FIRST"], out["MEASURE"]
    off, on = statistics.median(m["off"]), statistics.median(m["on"])
    ratios = [b / a for a, b in zip(m["off"], m["on"], strict=True)]
    print(f"dashboard in a kernel (nbclient), tiny MLP, {args.steps} steps x {args.repeats} interleaved repeats"
          f" ({time.time() - t:.0f} s in all)")
    print(f"  first chart {first['first_chart_s']:.2f} s after the cell started (import {first['import_s']:.2f} s;"
          " target <= 1.5 s)")
    print(f"  step time without the dashboard {1e3 / off:.2f} ms")
    print(f"  throughput off {off:,.0f} steps/s, on {on:,.0f} steps/s, ratio of medians {on / off:.3f}, "
          f"median of paired ratios {statistics.median(ratios):.3f} (target >= 0.98)")
    print(f"  kernel time in the dashboard per step {statistics.median(m['per_step']) * 1e6:.1f} us wall, "
          f"{statistics.median(m['per_step_cpu']) * 1e6:.1f} us CPU (medians; target <= 20 us)")
    print(f"    of which per step outside redraws {statistics.median(m['base_cpu']) * 1e6:.1f} us CPU; a redraw "
          f"{statistics.median(m['flush_ms']):.2f} ms CPU (redraws are spaced to take <= 1% of the time)")
    print(f"  load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  result after the last step (chart PNG + plotly figure + summary) {statistics.median(m['finish']):.2f} s")


if __name__ == "__main__":
    main()
