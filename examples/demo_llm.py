"""`make demo-llm`: fine-tune the offline SmolLM2-135M-Instruct with LoRA on the bundled
`reviews-json` task (examples/llm.yaml), headless, and print the exact match of the base model and
of the tuned one on held-out test reviews (greedy answers, whitespace-normalized).

    python examples/demo_llm.py [--n 64] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="held-out test examples to score")
    parser.add_argument("--config", default=str(Path(__file__).with_name("llm.yaml")))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    import nbkit
    from nbkit.core.llm.chat import bundled, to_conversations
    from nbkit.core.llm.generate import exact_match

    config = yaml.safe_load(Path(args.config).read_text())
    for item in args.set:
        key, _, value = item.partition("=")
        config[key] = yaml.safe_load(value)
    test = to_conversations(bundled("reviews-json")["test"][: args.n], "messages")
    prompts, refs = [c.prompt for c in test], [c.answer for c in test]

    t0 = time.perf_counter()
    run = nbkit.finetune(config=config)
    train_s = time.perf_counter() - t0
    if run.status != "finished":
        print(f"training ended {run.status}: {run.events[-1]}")
        return 1
    with run.model.disable_adapter():  # the base model, without a second copy in memory
        base = run.generate(prompts, max_new_tokens=24)
    tuned = run.generate(prompts, max_new_tokens=24)
    em_base, em_tuned = exact_match(base, refs), exact_match(tuned, refs)
    print(f"\nexample: {prompts[0][-1]['content']!r}\n  reference {refs[0]}\n  base      {base[0]}\n"
          f"  tuned     {tuned[0]}")
    steps = run.history["step"].max()
    print(f"\ntrained {steps} steps in {train_s:.0f} s; run directory {run.run_dir}")
    print(f"exact match on {len(refs)} held-out test reviews: base {em_base:.1%}, tuned {em_tuned:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
