"""Attention of a chat LLM (smollm2: 30 layers x 9 query heads / 3 kv heads) on a 60-token prompt.

Measures, side by side in one run: the capture time (one eager pass), the capture with a greedy answer
(generate + one pass), a base-vs-LoRA comparison (two passes on the same tokens); the kernel-side
float32 bytes; and for each view the bytes its first display sends (widget state JSON + binary
buffers, with the widget's JavaScript/CSS counted apart, and the PNG fallback apart).

    python benchmarks/bench_attention_llm.py [--tiny] [--json OUT]

`--tiny` runs nbkit.testing.tiny_llama instead (seconds; the same code paths, smaller numbers).
The LoRA adapter has random B (std 0.02): a stand-in for a tuned adapter, so the difference is not 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)

from bench_attention import recording_comms  # noqa: E402


def prompt_of(tok: Any, tokens: int) -> str:
    """A user prompt whose chat-templated form (with the assistant turn opened) is `tokens` long."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "asks", "what", "time", "it", "is"]
    n = 1
    while True:
        text = " ".join(words[i % len(words)] for i in range(n))
        rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
        length = len(tok(rendered, add_special_tokens=False)["input_ids"])
        if length >= tokens:
            return text
        n += 1


def state_bytes(widget: Any, log: list) -> dict[str, int]:
    opened = [(j, b) for kind, j, b in log if kind == "comm_open"]
    code = len(widget._esm.encode()) + len(widget._css.encode())
    json_bytes, buffer_bytes = opened[-1]
    bundle = widget._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    return {"state_json_bytes": json_bytes - code, "state_buffer_bytes": buffer_bytes,
            "png_fallback_bytes": len(bundle["image/png"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    from peft import LoraConfig, get_peft_model

    import nbkit
    from nbkit.core.attention import capture_attention
    from nbkit.core.attention_compare import compare_attention
    from nbkit.notebook.widgets.attention import AttentionWidget, show_attention

    log = recording_comms()
    if args.tiny:
        from nbkit.testing import tiny_llama

        model, tok = tiny_llama(layers=4, heads=6, kv_heads=2, hidden=48)
    else:
        model, tok = nbkit.load_model("smollm2", "causal-lm")
    prompt = prompt_of(tok, 60)
    out: dict[str, Any] = {"model_name": "tiny_llama" if args.tiny else "smollm2"}
    t0 = time.perf_counter()
    att = capture_attention(model, tok, prompt)
    out["capture_s"] = round(time.perf_counter() - t0, 2)
    out["tokens"] = len(att.tokens)
    out["layers_x_heads"] = list(att.weights["self"].shape[:2])
    out["kernel_float32_bytes"] = int(att.weights["self"].nbytes)
    out["js_css_bytes"] = len(AttentionWidget._esm.encode()) + len(AttentionWidget._css.encode())
    for view in ("head", "matrix", "model"):
        log.clear()
        w = show_attention(att, view=view)
        out[view] = state_bytes(w, log)
    t0 = time.perf_counter()
    gen = capture_attention(model, tok, prompt, max_new_tokens=16)
    out["capture_with_16_new_tokens_s"] = round(time.perf_counter() - t0, 2)
    out["answer"] = "".join(gen.tokens[gen.prompt_length:])

    peft_model = get_peft_model(model, LoraConfig(r=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    gen_ = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen_) * 0.02)
    t0 = time.perf_counter()
    comparison = compare_attention(peft_model, tok, prompt)
    out["compare_s"] = round(time.perf_counter() - t0, 2)
    out["max_head_change"] = round(float(comparison.change().max()), 4)
    out["most_changed_layer_head"] = list(comparison.most_changed())
    for view in ("matrix", "model"):
        log.clear()
        w = show_attention(comparison, view=view)
        out[f"diff_{view}"] = state_bytes(w, log)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
