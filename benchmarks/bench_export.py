"""What an export that proves itself costs: `run.merge` and `run.save_adapter` of smollm2 with a LoRA
(r=8, nonzero adapter weights), each written, reloaded and checked on three prompts.

    python benchmarks/bench_export.py                      # smollm2 in float32 (about a minute)
    python benchmarks/bench_export.py --dtype bfloat16     # bf16 on a CPU is slow (minutes)

Prints each export's table (size on disk, files, answers equal, max |logit difference|) and the
seconds to write and to check.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

PROMPTS = ["What is the capital of France?", "Name a primary color.", "What is 2 + 2?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from nbkit.core.llm.lora import apply_lora, lora_options
    from nbkit.core.models import load_model
    from nbkit.core.train.run import Run

    torch.set_num_threads(args.threads)
    model, tok = load_model("smollm2", "causal-lm", device="cpu", dtype=args.dtype)
    model = apply_lora(model, lora_options({"r": 8}), seed=0)
    with torch.no_grad():  # a nonzero adapter, so merging changes the weights
        generator = torch.Generator().manual_seed(0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.01)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(name="bench-export", run_dir=Path(tmp) / "run", model=model, tokenizer=tok,
                  config={"model": "smollm2", "max_new_tokens": args.max_new_tokens})
        for name, save in (("merged", run.merge), ("adapter", run.save_adapter)):
            start = time.perf_counter()
            check = save(Path(tmp) / name, prompts=PROMPTS)
            row = check.rows[0]
            print(check.to_text())
            print(f"{name}: write {row.write_seconds:.1f} s, check {row.check_seconds:.1f} s, "
                  f"total {time.perf_counter() - start:.1f} s ({args.dtype}, {args.threads} thread(s))\n")


if __name__ == "__main__":
    main()
