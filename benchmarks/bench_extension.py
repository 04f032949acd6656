"""`%load_ext nbkit` must be instant: it registers magics and imports neither torch nor transformers.

Times `%load_ext nbkit` in a fresh IPython against `import torch` in a fresh interpreter (medians of
interleaved repeats, each in its own process) and checks sys.modules after loading.

    .venv/bin/python benchmarks/bench_extension.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

LOAD_EXT = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
t = time.perf_counter()
ip.run_line_magic("load_ext", "nbkit")
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules,
                  "magics": sorted(ip.magics_manager.magics["cell"]).count("finetune")}))
"""

IMPORT_TORCH = """
import json, time
t = time.perf_counter()
import torch
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def once(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    ext, torch_times, last = [], [], {}
    for _ in range(args.repeats):
        last = once(LOAD_EXT)
        ext.append(last["seconds"])
        torch_times.append(once(IMPORT_TORCH)["seconds"])
    m_ext, m_torch = statistics.median(ext), statistics.median(torch_times)
    print(f"%load_ext nbkit: {m_ext * 1e3:.1f} ms   import torch: {m_torch * 1e3:.1f} ms   "
          f"ratio {m_ext / m_torch:.3f} (target <= 0.1)   median of {args.repeats}")
    print(f"after %load_ext: torch imported={last['torch']}, transformers imported={last['transformers']}, "
          f"%%finetune registered={bool(last['magics'])}")
    if last["torch"] or last["transformers"] or not last["magics"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
