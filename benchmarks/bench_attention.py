"""Bytes and build time of the attention views on a 12-layer x 12-head model, against bertviz.

For 128 and 512 tokens it measures: the capture time; for each view the Python time to build the
widget and the bytes its initial display sends (comm messages: JSON text plus binary buffers, and
the display message), with the widget's JavaScript/CSS counted apart; the bytes of one layer switch
(head view), one map (matrix view); and, where bertviz imports, the size and build time of
`bertviz.head_view(..., html_action="return")` on the same weights.

    python benchmarks/bench_attention.py [--bertviz-path DIR] [--bertviz-512] [--json OUT]

`--bertviz-path` adds a folder to sys.path (bertviz installed with `pip install --no-deps
--target DIR bertviz`, keeping this venv clean). bertviz at 512 tokens needs ~1.7 GB and minutes, so it
only runs with `--bertviz-512`. The model is random (tiny hidden size): sizes depend on T, layers and
heads, not on the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

torch.set_num_threads(1)  # two threads on a shared 2-core machine are ~100x slower under contention

LAYERS = HEADS = 12


def recording_comms() -> list[tuple[str, int, int]]:
    """Route widget comms to a recorder; returns the live log of (msg_type, json_bytes, buffer_bytes)."""
    import comm
    from comm.base_comm import BaseComm

    log: list[tuple[str, int, int]] = []

    class Recording(BaseComm):
        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            size = sum(memoryview(b).nbytes for b in buffers or [])
            log.append((msg_type, len(json.dumps(data, default=str).encode()), size))

    comm.create_comm = Recording
    return log


def build_model() -> tuple[Any, Any]:
    from transformers import BertConfig, BertModel

    from nbkit.testing import tiny_tokenizer

    tok = tiny_tokenizer(max_length=512)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=48,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=96,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    return BertModel(config).eval(), tok


def text_of(tokens: int) -> str:
    from nbkit.testing import WORDS

    return " ".join(WORDS[i % len(WORDS)] for i in range(tokens - 2))  # + [CLS] and [SEP]


def fetch(widget: Any, log: list, what: str, layer: int, head: int = -1) -> int:
    log.clear()
    widget._handle_msg(
        {
            "content": {
                "data": {
                    "method": "custom",
                    "content": {
                        "type": "fetch",
                        "id": "b:1",
                        "what": what,
                        "kind": "self",
                        "layer": layer,
                        "head": head,
                    },
                }
            },
            "buffers": [],
        }
    )
    return sum(j + b for _, j, b in log)


def bench_nbkit(model: Any, tok: Any, tokens: int, log: list) -> dict[str, Any]:
    from nbkit.core.attention import capture_attention
    from nbkit.notebook.widgets.attention import AttentionWidget, show_attention

    t0 = time.perf_counter()
    att = capture_attention(model, tok, text_of(tokens))
    out: dict[str, Any] = {
        "tokens": len(att.tokens),
        "capture_s": round(time.perf_counter() - t0, 3),
    }
    code = len(AttentionWidget._esm.encode()) + len(AttentionWidget._css.encode())
    out["js_css_bytes"] = code
    for view in ("head", "model", "matrix"):
        log.clear()
        t0 = time.perf_counter()
        w = show_attention(att, view=view)
        bundle = w._repr_mimebundle_()
        build = time.perf_counter() - t0
        total = sum(j + b for _, j, b in log) + len(json.dumps(bundle).encode())
        out[view] = {
            "build_s": round(build, 3),
            "initial_bytes": total,
            "initial_data_bytes": total - code,
        }
        if view == "head":
            out[view]["layer_switch_bytes"] = fetch(w, log, "sparse", 5)
        if view == "matrix":
            out[view]["other_map_bytes"] = fetch(w, log, "dense", 5, 3)
            out[view]["rollout_bytes"] = fetch(w, log, "rollout", 11)
    out["weights_float32_bytes"] = int(att.weights["self"].nbytes)
    return out, att


def bench_bertviz(att: Any) -> dict[str, Any]:
    from bertviz import head_view

    attention = [
        torch.from_numpy(att.weights["self"][i])[None] for i in range(LAYERS)
    ]  # (1, H, T, T)
    t0 = time.perf_counter()
    html = head_view(attention, att.tokens, html_action="return")
    build = time.perf_counter() - t0
    return {"bytes": len(html.data.encode()), "build_s": round(build, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bertviz-path", help="folder holding the bertviz package (added to sys.path)"
    )
    parser.add_argument(
        "--bertviz-512", action="store_true", help="also run bertviz at 512 tokens (slow)"
    )
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    if args.bertviz_path:
        sys.path.append(args.bertviz_path)
    try:
        import bertviz  # noqa: F401

        has_bertviz = True
    except ImportError:
        has_bertviz = False

    log = recording_comms()
    model, tok = build_model()
    results: dict[str, Any] = {"model": f"BERT {LAYERS} layers x {HEADS} heads, hidden 48"}
    for tokens in (128, 512):
        row, att = bench_nbkit(model, tok, tokens, log)
        if has_bertviz and (tokens < 512 or args.bertviz_512):
            row["bertviz_head_view"] = bench_bertviz(att)
            row["bertviz_over_nbkit_head"] = round(
                row["bertviz_head_view"]["bytes"] / row["head"]["initial_bytes"], 1
            )
        results[str(tokens)] = row
        print(json.dumps({tokens: row}, indent=1), flush=True)
    if not has_bertviz:
        results["bertviz"] = (
            "not importable (pip install --no-deps --target DIR bertviz; --bertviz-path DIR)"
        )
        print(results["bertviz"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
