"""The attention widget through its state and the messages on its comm, plus the static heatmap.

A recording comm stands in for the kernel's: it keeps every message the widget publishes, so the
tests see what would cross to the page (JSON and binary buffers), and they play the page's part by
feeding messages to `_handle_msg`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import traitlets

from nbkit.core.attention import Attention, AttentionError, capture_attention, top_k
from nbkit.notebook.widgets.attention import AttentionWidget, downsample, show_attention

torch.set_num_threads(1)
XSS = ["<img src=x onerror=alert(1)>", "</script><img src=x onerror=alert(2)>"]
STATIC = Path(__file__).parents[1] / "nbkit" / "notebook" / "widgets" / "static"


@pytest.fixture
def sent(monkeypatch):
    """Every (msg_type, data, buffers) the widgets publish."""
    import comm
    from comm.base_comm import BaseComm

    log: list[tuple[str, dict, list[bytes]]] = []

    class RecordingComm(BaseComm):
        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            log.append(
                (msg_type, data or {}, [bytes(memoryview(b).cast("B")) for b in buffers or []])
            )

    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    return log


@pytest.fixture
def xss_bert():
    """Tiny BERT whose vocabulary holds two script-injection strings as whole tokens."""
    from nbkit.testing import tiny_bert

    model, tok = tiny_bert(layers=2, heads=3, hidden=24)
    tok.add_tokens(XSS)
    model.resize_token_embeddings(len(tok))
    return model, tok


def _page_sends(widget, content=None, state=None):
    """Play the page: a custom message, or a trait update, as the frontend would send it."""
    data = (
        {"method": "custom", "content": content}
        if content is not None
        else {"method": "update", "state": state, "buffer_paths": []}
    )
    widget._handle_msg({"content": {"data": data}, "buffers": []})


def _decode_sparse(meta, buffers):
    h, t, k = meta["shape"]
    idx = np.frombuffer(buffers[0], dtype="<u2").reshape(h, t, k)
    val = (
        np.frombuffer(buffers[1], dtype=np.uint8).reshape(h, t, k)
        / 255.0
        * np.array(meta["scales"])[:, None, None]
    )
    return idx, val


def test_initial_state_carries_one_layer_as_binary(sent, xss_bert):
    model, tok = xss_bert
    w = show_attention(model, tok, f"the cat {XSS[0]} sat {XSS[1]}", layer=1)
    state = w.get_state()
    # opens on the most focused head of the layer (lowest entropy), and says how to show all
    focused = int(w.attention.entropy("self")[1].argmin())
    assert state["view"] == "head" and state["layer"] == 1 and state["heads"] == [focused]
    assert state["info"]["note"].endswith(f'Showing head {focused}, the most focused head of layer 1 '
                                          '(lowest entropy). Click the head numbers to add heads, or "all" to show all 3.')
    assert state["info"]["layers"] == [0, 1] and state["info"]["num_heads"] == 3
    opens = [
        d
        for kind, d, _ in sent
        if kind == "comm_open" and d["state"].get("_model_name") == "AnyModel"
    ]
    assert len(opens) == 1
    ((_, data, buffers),) = [m for m in sent if m[1] is opens[0]]
    meta = data["state"]["_initial"]["meta"]
    assert meta["key"] == "sparse|self|1|-1" and meta["shape"] == [3, 7, 6]  # top_k 6 keys per token
    assert [len(b) for b in buffers] == [3 * 7 * 6 * 2, 3 * 7 * 6]  # uint16 indices, uint8 weights
    idx, val = _decode_sparse(meta, buffers)
    true = w.attention.weights["self"][1]  # (H, T, T)
    np.testing.assert_allclose(
        val, np.take_along_axis(true, idx.astype(np.int64), -1), atol=true.max() / 255
    )
    # no weight travels as JSON text: the state's numbers are scales only
    text = json.dumps(data["state"])
    assert len(re.findall(r"0\.\d{4,}", text)) <= 3


def test_injected_tokens_stay_text(sent, xss_bert):
    model, tok = xss_bert
    w = show_attention(model, tok, f"the {XSS[0]} cat {XSS[1]}")
    assert XSS[0] in w.tokens and XSS[1] in w.tokens  # exact strings, as data, not markup
    opened = next(d for kind, d, _ in sent if kind == "comm_open" and "tokens" in d["state"])
    assert opened["state"]["tokens"] == w.tokens
    js = "\n".join(p.read_text() for p in STATIC.glob("attention*.js"))
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ):
        assert sink not in js, sink
    assert "textContent" in js
    assert w._esm.count("export default") == 1 and "<script" not in w._esm


def test_layer_switch_fetches_one_layer(sent, tiny_bert):
    model, tok = tiny_bert
    w = show_attention(model, tok, "the cat sat on the mat")
    sent.clear()
    _page_sends(w, state={"layer": 1})
    assert w.layer == 1
    _page_sends(
        w, {"type": "fetch", "id": "p:1", "what": "sparse", "kind": "self", "layer": 1, "head": -1}
    )
    replies = [(d, b) for kind, d, b in sent if kind == "comm_msg" and d.get("method") == "custom"]
    assert len(replies) == 1
    content, buffers = replies[0][0]["content"], replies[0][1]
    assert (
        content["type"] == "data"
        and content["id"] == "p:1"
        and content["key"] == "sparse|self|1|-1"
    )
    assert sum(len(b) for b in buffers) == 2 * 8 * 6 * 3  # 6 of 8 keys kept per token (top_k 6)
    idx, val = _decode_sparse(content, buffers)
    true_idx, true_val = top_k(w.attention.weights["self"][1], 6)
    np.testing.assert_array_equal(np.sort(idx, -1), np.sort(true_idx, -1))
    np.testing.assert_allclose(np.sort(val, -1), np.sort(true_val, -1), atol=true_val.max() / 255)


def test_head_selection_and_dense_map(sent, tiny_bert):
    model, tok = tiny_bert
    w = show_attention(model, tok, "the cat sat", view="matrix", layer=0, head="mean")
    assert w.head == -1 and w.get_state()["_initial"]["meta"]["key"] == "dense|self|0|-1"
    _page_sends(w, state={"heads": [1], "head": 1})
    assert w.heads == [1] and w.head == 1
    sent.clear()
    _page_sends(
        w, {"type": "fetch", "id": "p:2", "what": "dense", "kind": "self", "layer": 0, "head": 1}
    )
    ((_, data, buffers),) = [m for m in sent if m[0] == "comm_msg"]
    content = data["content"]
    assert content["shape"] == [5, 5]
    got = np.frombuffer(buffers[0], np.uint8).reshape(5, 5) / 255 * content["scales"][0]
    np.testing.assert_allclose(
        got, w.attention.weights["self"][0, 1], atol=content["scales"][0] / 255
    )


def test_bad_requests_get_an_error_reply_naming_the_range(sent, tiny_bert):
    model, tok = tiny_bert
    w = show_attention(model, tok, "the cat")
    sent.clear()
    _page_sends(
        w, {"type": "fetch", "id": "p:3", "what": "dense", "kind": "self", "layer": 9, "head": 0}
    )
    ((_, data, buffers),) = [m for m in sent if m[0] == "comm_msg"]
    assert data["content"]["type"] == "error" and buffers == []
    assert "0-1" in data["content"]["message"]
    with pytest.raises(
        traitlets.TraitError, match=r"layer 9 is out of range: valid layers are 0-1"
    ):
        w.layer = 9
    with pytest.raises(
        traitlets.TraitError, match=r"heads \[5\] are out of range: valid heads are 0-1"
    ):
        w.heads = [0, 5]
    with pytest.raises(traitlets.TraitError, match="Did you mean 'matrix'"):
        w.view = "matrx"


def test_show_attention_argument_errors(tiny_bert):
    model, tok = tiny_bert
    with pytest.raises(AttentionError, match=r"Unknown view 'heads'. Did you mean 'head'\?"):
        show_attention(model, tok, "the cat", view="heads")
    with pytest.raises(AttentionError, match="needs a tokenizer and a text"):
        show_attention(model)
    with pytest.raises(
        AttentionError, match=r"head 4 is out of range: each layer has 2 heads \(0-1\)"
    ):
        show_attention(model, tok, "the cat", head=4)
    with pytest.raises(AttentionError, match="text is empty"):
        show_attention(model, tok, "  ")


def test_model_view_thumbnails_keep_row_sums(sent):
    w = np.random.default_rng(0).random((2, 3, 70, 70)).astype(np.float32)
    w /= w.sum(-1, keepdims=True)
    small = downsample(w, 32)
    assert small.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(small.sum(-1), 1.0, atol=1e-5)
    att = Attention(
        tokens=[str(i) for i in range(70)],
        weights={"self": w},
        segments=np.zeros(70, np.int8),
        word_ids=np.arange(70, dtype=np.int32),
        layers=[0, 1],
    )
    widget = AttentionWidget(att, view="model", thumb_size=32)
    meta = widget.get_state()["_initial"]["meta"]
    assert meta["shape"] == [2, 3, 32, 32] and len(meta["entropy"]) == 6
    assert len(widget.get_state()["_initial"]["buffers"][0]) == 2 * 3 * 32 * 32


def test_encoder_decoder_kinds_and_reopen_from_file(sent, tmp_path, tiny_t5):
    model, tok = tiny_t5
    att = capture_attention(model, tok, "the cat sat", target="a cat")
    w = show_attention(Attention.load(att.save(tmp_path / "t5")), view="head", kind="cross")
    assert w.kind == "cross" and w.info["kinds"] == ["encoder", "decoder", "cross"]
    assert w.decoder_tokens == ["[PAD]", "[CLS]", "a", "cat", "[SEP]"]
    shape = w.get_state()["_initial"]["meta"]["shape"]
    assert shape[1:] == [5, 5]  # 5 decoder queries x top 5 keys
    sent.clear()
    _page_sends(w, state={"kind": "decoder"})
    _page_sends(
        w,
        {
            "type": "fetch",
            "id": "p:4",
            "what": "rollout",
            "kind": "decoder",
            "layer": 1,
            "head": -1,
        },
    )
    ((_, data, buffers),) = [
        m for m in sent if m[0] == "comm_msg" and m[1].get("method") == "custom"
    ]
    assert data["content"]["shape"] == [5, 5] and len(buffers[0]) == 25


def test_generation_view_needs_a_causal_capture(sent, tiny_gpt2, tiny_bert):
    model, tok = tiny_gpt2
    w = show_attention(model, tok, "the cat", view="generation", max_new_tokens=3)
    assert w.info["prompt_length"] == 4 and w.view == "generation"
    model, tok = tiny_bert
    with pytest.raises(AttentionError, match="cannot. Load it with task='causal-lm'"):
        show_attention(model, tok, "the cat", view="generation")


def test_static_heatmap_escapes_tokens(xss_bert):
    from nbkit.figures.attention import attention_heatmap

    model, tok = xss_bert
    att = capture_attention(model, tok, f"the {XSS[0]} cat the")
    fig = attention_heatmap(att, 1, 2)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), att.weights["self"][1, 2])
    ticks = list(fig.layout.xaxis.ticktext)
    assert ticks[2].startswith("&lt;img src=x") and "<img" not in "".join(ticks)
    assert ticks.count("the") == 2  # repeated tokens keep their own columns
    assert "layer 1 · head 2" in fig.layout.title.text
    mean = attention_heatmap(att, None, None)
    np.testing.assert_allclose(
        np.asarray(mean.data[0].z), att.weights["self"].mean(axis=(0, 1)), rtol=1e-6
    )


def test_the_view_leaves_a_png_of_what_it_shows(sent, xss_bert):
    import base64

    model, tok = xss_bert
    w = show_attention(model, tok, "the cat sat on the mat", layer=1)
    bundle = w._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert sorted(bundle) == ["application/vnd.jupyter.widget-view+json", "image/png", "text/plain"]
    png = base64.b64decode(bundle["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(png) < 300_000
    assert bundle["text/plain"] == (f"nbkit attention view (head): {w.attention.model_name}, "
                                    f"{len(w.attention.tokens)} tokens, 2 layers x 3 heads")
    assert "object at 0x" not in bundle["text/plain"]
