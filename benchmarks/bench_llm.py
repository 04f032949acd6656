"""nbkit's LoRA fine-tune of a chat model against TRL's SFTTrainer, side by side in one run.

Both get the same model, the same peft LoRA config, the same tokenized data (the bundled
`reviews-json` task through nbkit's chat template and answer-only mask: TRL receives `input_ids` and
`completion_mask`, so both train on exactly the same tokens), batch size, max length, learning rate,
schedule, clipping, seed and one CPU thread. Each run is its own process (so peak RSS is its own),
alternating nbkit / TRL for `--repeats` rounds; the ratios use the medians.

    python benchmarks/bench_llm.py                    # a tiny random Llama with smollm2's vocabulary
    python benchmarks/bench_llm.py --model smollm2 --steps 4 --repeats 1   # a short real run

TRL is an optional benchmark dependency: pip install trl==1.16.0 (it does not touch torch).
Prints samples/s nbkit/TRL (>= 1 is nbkit faster), peak RSS nbkit/TRL (<= 1 is nbkit smaller) and the
losses at equal steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}


def build(model_name: str):
    """(model, tokenizer): smollm2, or a tiny random Llama with smollm2's tokenizer (49k vocab)."""
    from nbkit.core.models import load_model

    if model_name == "smollm2":
        return load_model("smollm2", device="cpu")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from nbkit.core.llm.gguf import converted_folder

    tok = AutoTokenizer.from_pretrained(converted_folder("smollm2"))
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tok


def data(tok, n: int, max_length: int):
    from nbkit.core.llm.chat import bundled, encode_split, to_conversations

    convs = to_conversations(bundled("reviews-json")["train"][:n], "messages")
    return encode_split(convs, tok, max_length=max_length)


def child(args) -> dict:
    import torch

    torch.set_num_threads(1)
    model, tok = build(args.model)
    split = data(tok, args.steps * args.batch, args.max_length)
    tokens = sum(len(x) for x in split.columns["input_ids"])
    common = dict(lr=args.lr, steps=args.steps, batch=args.batch)
    t0 = time.perf_counter()
    if args.child == "nbkit":
        from torch.utils.data import DataLoader

        from nbkit.core.llm.lora import apply_lora, lora_options
        from nbkit.core.train.batching import PadCollator, TokenizedDataset
        from nbkit.core.train.loop import fit

        model = apply_lora(model, lora_options(LORA), seed=0)
        # In order, as TRL below: equal steps see equal batches, so their losses compare.
        loader = DataLoader(TokenizedDataset(split.columns), batch_size=args.batch, shuffle=False,
                            collate_fn=PadCollator(tok.pad_token_id))
        run = fit(model, loader, tokenizer=tok, max_steps=args.steps, batch_size=args.batch, lr=args.lr,
                  max_length=args.max_length, warmup=0, scheduler="linear", max_grad_norm=1.0, seed=0,
                  progress=False, run_dir=f"{args.out}/nbkit-run")
        losses = list(run.history["loss"])
        loop_s = float(run.history["elapsed"].iloc[-1])  # the training loop, from its first step
    else:
        import datasets
        from peft import LoraConfig
        from trl import SFTConfig, SFTTrainer

        cols = {"input_ids": split.columns["input_ids"],
                "completion_mask": [[int(v != -100) for v in lab] for lab in split.columns["labels"]]}
        ds = datasets.Dataset.from_dict(cols)
        peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                                 target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
        config = SFTConfig(output_dir=f"{args.out}/trl-run", max_steps=args.steps,
                           per_device_train_batch_size=args.batch, learning_rate=args.lr,
                           lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, seed=0,
                           logging_steps=1, report_to="none", save_strategy="no", bf16=False, fp16=False,
                           gradient_checkpointing=False, max_length=args.max_length, completion_only_loss=True,
                           dataloader_num_workers=0, use_cpu=True, disable_tqdm=True, optim="adamw_torch_fused")
        class InOrder(SFTTrainer):
            def _get_train_sampler(self, *a, **k):
                return torch.utils.data.SequentialSampler(self.train_dataset)

        trainer = InOrder(model=model, args=config, train_dataset=ds, processing_class=tok,
                          peft_config=peft_config)
        loop_s = trainer.train().metrics["train_runtime"]  # Trainer.train, setup excluded
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**common, "seconds": seconds, "samples_per_s": args.steps * args.batch / seconds,
            "loop_samples_per_s": args.steps * args.batch / loop_s,
            "tokens": tokens, "peak_rss_mb": rss_mb, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", choices=("tiny", "smollm2"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=("nbkit", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default="/tmp/nbkit-bench-llm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, list[dict]] = {"nbkit": [], "trl": []}
    for r in range(args.repeats):
        for who in ("nbkit", "trl"):
            cmd = [sys.executable, __file__, "--child", who, "--model", args.model, "--steps", str(args.steps),
                   "--batch", str(args.batch), "--max-length", str(args.max_length), "--lr", str(args.lr),
                   "--out", f"{args.out}/{who}-{r}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{who} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(line[7:])
            results[who].append(res)
            print(f"round {r + 1} {who:5s}: {res['samples_per_s']:.2f} samples/s end to end, "
                  f"{res['loop_samples_per_s']:.2f} in the training loop, peak RSS "
                  f"{res['peak_rss_mb']:.0f} MB, {res['seconds']:.1f} s")
    med = {w: {k: statistics.median(x[k] for x in rs) for k in ("samples_per_s", "loop_samples_per_s", "peak_rss_mb")}
           for w, rs in results.items()}
    nb, trl = results["nbkit"][0]["losses"], results["trl"][0]["losses"]
    print(f"\nmodel {args.model}, LoRA r={LORA['r']} all-linear, batch {args.batch}, max_length {args.max_length}, "
          f"{args.steps} steps, answer-only loss, 1 thread")
    for key, what in (("samples_per_s", "end to end (model built, setup + training)"),
                      ("loop_samples_per_s", "training loop only (setup excluded)")):
        print(f"samples/s  nbkit {med['nbkit'][key]:.2f}  TRL {med['trl'][key]:.2f}  "
              f"ratio nbkit/TRL {med['nbkit'][key] / med['trl'][key]:.2f}   {what}")
    print(f"peak RSS   nbkit {med['nbkit']['peak_rss_mb']:.0f} MB  TRL {med['trl']['peak_rss_mb']:.0f} MB  "
          f"ratio nbkit/TRL {med['nbkit']['peak_rss_mb'] / med['trl']['peak_rss_mb']:.2f}")
    n = min(len(nb), len(trl))
    shown = sorted({0, n // 4, n // 2, 3 * n // 4, n - 1})
    print("loss at step " + "  ".join(f"{i + 1}: nbkit {nb[i]:.4f} TRL {trl[i]:.4f}" for i in shown))
    worst = max(abs(a - b) / abs(b) for a, b in zip(nb[:n], trl[:n], strict=True))
    print(f"largest relative loss difference at equal steps: {worst:.2%}")


if __name__ == "__main__":
    main()
