"""What one streamed chat answer sends over the comm: batched (the chat box's default, the answer in
progress every 0.1 s) against one update per token, side by side in one run.

A tiny random Llama is slowed to `--ms-per-token` per forward pass (40 ms: about SmolLM2-135M's
speed on this 2-core CPU) and answers `--tokens` tokens greedily, through the real `Chat` view with
its comm replaced by a recorder (message count, JSON bytes). Also printed: how long the page's
"send" message takes to be handled (the kernel is free again after that), and the time to the
first piece of the answer.

    python benchmarks/bench_chat.py [--tokens 120] [--ms-per-token 40]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

torch.set_num_threads(1)


def one_answer(interval: float, tokens: int, ms: float) -> dict[str, float]:
    from nbkit.notebook.widgets.chat import chat
    from nbkit.testing import tiny_llama

    model, tok = tiny_llama(max_positions=tokens + 64)
    model.register_forward_hook(lambda *a: time.sleep(ms / 1000))
    box = chat((model, tok), max_new_tokens=tokens)
    box.update_interval = interval
    sent: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    box.view.comm.send = lambda data=None, buffers=None, **kw: sent.append(
        (time.perf_counter(), len(json.dumps(data))))
    first: list[float] = []
    box.view.observe(lambda c: first.append(time.perf_counter()) if c["new"] and not first else None, names="pending")
    t0 = time.perf_counter()
    box.view._handle_custom_msg({"action": "send", "text": "hello the cat"}, [])
    handled = time.perf_counter() - t0
    box.wait()
    total = time.perf_counter() - t0
    n_tokens = len(box.view.messages[-1]["content"].split())
    return {"messages": len(sent), "bytes": sum(b for _, b in sent), "handled_ms": handled * 1000,
            "first_piece_ms": (first[0] - t0) * 1000, "total_s": total, "tokens": n_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--ms-per-token", type=float, default=40.0)
    args = parser.parse_args()
    rows = {"per token": one_answer(0.0, args.tokens, args.ms_per_token),
            "batched (0.1 s)": one_answer(0.1, args.tokens, args.ms_per_token)}
    print(f"one answer of {rows['batched (0.1 s)']['tokens']} tokens at {args.ms_per_token:g} ms/token")
    print(f"{'':16} {'messages':>9} {'KB sent':>9} {'send handled':>13} {'first piece':>12} {'answer':>8}")
    for name, r in rows.items():
        print(f"{name:16} {r['messages']:>9} {r['bytes'] / 1024:>9.1f} {r['handled_ms']:>10.1f} ms "
              f"{r['first_piece_ms']:>9.0f} ms {r['total_s']:>6.2f} s")
    per, batched = rows["per token"], rows["batched (0.1 s)"]
    print(f"batched / per token: messages {batched['messages'] / per['messages']:.2f}, "
          f"bytes {batched['bytes'] / per['bytes']:.2f}")


if __name__ == "__main__":
    main()
