"""What the answers panel (`samples:`) costs a run: the same LoRA fine-tune with `samples: 0`, with the
default samples (three eval prompts, whose answers exact match already generated: reused), and with
three prompts of its own (generated at each evaluation), side by side in one process.

    python benchmarks/bench_samples.py [--repeats 3] [--steps 24] [--smollm2]

Prints each variant's wall time and its ratio to `samples: 0`. `--smollm2` uses the real 135M model
(a few minutes); the default is a tiny random Llama, where generation is cheap and the ratios show
the bookkeeping.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--smollm2", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    import nbkit
    from nbkit.core.train import finetune
    from nbkit.testing import tiny_llama

    if args.smollm2:
        pair = nbkit.load_model("smollm2", "causal-lm")
        data, extra = "reviews-json", {"max_length": 128, "eval_split": 8, "generate_eval": 8,
                                       "max_new_tokens": 24}
    else:
        pair = tiny_llama(words=["paris", "france", "rome", "italy", "madrid", "spain", "capital"])
        qa = [("france", "paris"), ("italy", "rome"), ("spain", "madrid")]
        data = [{"prompt": f"What is the capital of {c}?", "completion": f"{k}."} for c, k in qa] * 16
        extra = {"eval_split": 6, "generate_eval": 6, "max_new_tokens": 8}
    own = ["Name a capital.", "What is the capital of rome?", "Say something."]
    variants = {"samples: 0": 0, "default (reused)": None, "3 own prompts": own}
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, samples in variants.items():
                import copy

                model = copy.deepcopy(pair[0])
                t0 = time.perf_counter()
                finetune(model=(model, pair[1]), data=data, task="causal-lm", lora=True, lr=1e-3, batch_size=4,
                         max_steps=args.steps, eval_every=max(1, args.steps // 4), samples=samples,
                         run_dir=f"{tmp}/{r}-{len(times[name])}-{name[:3]}", progress=False, test=False, **extra)
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["samples: 0"])
    print(f"{'variant':<20} {'median s':>9} {'vs samples: 0':>14}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<20} {m:>9.2f} {m / base:>14.3f}")


if __name__ == "__main__":
    main()
