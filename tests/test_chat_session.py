"""ChatSession (nbkit.core.llm.chat_session) on a tiny random Llama: the history goes through the chat
template, streamed pieces join to generate()'s answer, stop() ends an answer early, a LoRA model
answers as base (adapter disabled) or tuned, a training run refuses to chat, bad options fail first."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch

from nbkit.core.llm.chat_session import ChatBusy, ChatError, ChatSession
from nbkit.core.llm.generate import generate
from nbkit.core.llm.lora import apply_lora
from nbkit.testing import tiny_llama

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


@pytest.fixture
def llama():
    return tiny_llama()


def _stop_at_forward(model, n, action):
    """Call `action()` during the model's `n`-th forward pass (a deterministic mid-answer click)."""
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        if calls["n"] == n:
            action()

    return model.register_forward_hook(hook)


def test_pieces_stream_and_join_to_the_greedy_answer(llama):
    model, tok = llama
    session = ChatSession(model, tok, max_new_tokens=12)
    pieces = list(session.stream("hello the cat"))
    expected = generate(model, tok, "hello the cat", max_new_tokens=12)
    assert len([p for p in pieces if p]) >= 10  # one piece per word, not one block at the end
    assert "".join(pieces).strip() == expected
    assert session.history == [{"role": "user", "content": "hello the cat"},
                               {"role": "assistant", "content": expected}]
    assert session.stopped is False


def test_multi_turn_history_goes_through_the_chat_template(llama):
    model, tok = llama
    session = ChatSession(model, tok, system="be brief", max_new_tokens=8)
    first = session.send("hello the cat")
    second = session.send("and the dog")
    turns = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello the cat"},
             {"role": "assistant", "content": first}, {"role": "user", "content": "and the dog"}]
    assert session.messages() == [*turns, {"role": "assistant", "content": second}]
    # the second answer is generate()'s answer to the whole conversation so far, not to the last message
    assert second == generate(model, tok, turns, max_new_tokens=8)
    assert second != generate(model, tok, "and the dog", max_new_tokens=8)
    assert session.prompt("a third") == tok.apply_chat_template(
        session.messages("a third"), tokenize=False, add_generation_prompt=True)
    assert session.prompt("a third").count("<|im_start|>user") == 3
    session.clear()
    assert session.history == [] and session.messages() == [{"role": "system", "content": "be brief"}]


def test_stop_ends_the_answer_after_the_current_token(llama):
    model, tok = llama
    session = ChatSession(model, tok, max_new_tokens=40)
    full = generate(model, tok, "hello the cat", max_new_tokens=40)
    handle = _stop_at_forward(model, 3, session.stop)  # "Stop" pressed while the 3rd token is computed
    try:
        answer = session.send("hello the cat")
    finally:
        handle.remove()
    assert answer == " ".join(full.split()[:3])  # three tokens, then the stopping criterion fired
    assert session.stopped is True
    assert session.history[-1] == {"role": "assistant", "content": answer}
    assert session.send("hello the cat") != answer  # the next answer is not stopped
    assert session.stopped is False


def test_closing_the_stream_stops_generation(llama):
    model, tok = llama
    session = ChatSession(model, tok, max_new_tokens=60)
    stream = session.stream("hello the cat")
    first = next(stream)
    stream.close()  # the reader went away: generation ends, the partial answer is kept
    assert session.generating is False
    assert session.history[-1]["content"].startswith(first.strip())
    assert len(session.history[-1]["content"].split()) < 60


def test_base_and_tuned_answers_of_a_lora_model(llama):
    model, tok = llama
    base_answer = generate(model, tok, "hello the cat", max_new_tokens=10)
    peft_model = apply_lora(model, LORA)
    session = ChatSession(peft_model, tok, max_new_tokens=10)
    assert session.has_adapter and session.switch_note == ""
    # a fresh adapter (lora_B = 0) changes nothing
    assert session.send("hello the cat") == base_answer
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    tuned = ChatSession(peft_model, tok, max_new_tokens=10).send("hello the cat")
    base = ChatSession(peft_model, tok, max_new_tokens=10, tuned=False).send("hello the cat")
    assert base == base_answer  # the adapter disabled: the model it started from
    assert tuned == generate(peft_model, tok, "hello the cat", max_new_tokens=10) != base
    # one session switches per answer, and the adapter is back on afterwards
    session = ChatSession(peft_model, tok, max_new_tokens=10)
    assert session.send("hello the cat", tuned=False) == base
    session.tuned = False
    assert session.mode == "base"
    assert generate(peft_model, tok, "hello the cat", max_new_tokens=10) == tuned


def test_a_model_without_adapter_cannot_switch_to_base(llama):
    model, tok = llama
    session = ChatSession(model, tok)
    assert not session.has_adapter
    assert "LoRA" in session.switch_note and "lora: true" in session.switch_note
    with pytest.raises(ChatError, match="base vs tuned needs a LoRA run"):
        session.tuned = False
    with pytest.raises(ChatError, match="base vs tuned needs a LoRA run"):
        ChatSession(model, tok, tuned=False)
    with pytest.raises(ChatError, match="base vs tuned needs a LoRA run"):
        session.stream("hi", tuned=False)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.7", True])
def test_bad_temperature_is_refused_before_anything_runs(llama, bad):
    model, tok = llama
    with pytest.raises(ChatError, match="temperature must be a number >= 0"):
        ChatSession(model, tok, temperature=bad)
    session = ChatSession(model, tok)
    with pytest.raises(ChatError, match="temperature must be a number >= 0"):
        session.stream("hi", temperature=bad)
    assert session.history == []


@pytest.mark.parametrize("bad", [0, -5, 2.5, "64", 10**6, True])
def test_bad_max_new_tokens_is_refused(llama, bad):
    model, tok = llama
    with pytest.raises(ChatError, match="max_new_tokens must be a whole number from 1 to 8192"):
        ChatSession(model, tok, max_new_tokens=bad)
    with pytest.raises(ChatError, match="max_new_tokens must be a whole number"):
        ChatSession(model, tok).send("hi", max_new_tokens=bad)


def test_other_bad_input(llama):
    model, tok = llama
    with pytest.raises(ChatError, match="a message must be a non-empty string"):
        ChatSession(model, tok).send("   ")
    with pytest.raises(ChatError, match="temperature must be a number >= 0"):
        ChatSession(model, tok, temperature=None)
    plain_model, plain_tok = tiny_llama(chat_template=False)
    with pytest.raises(ChatError, match="has no chat template"):
        ChatSession(plain_model, plain_tok)
    with pytest.raises(ChatError, match="needs a causal language model"):
        ChatSession("gpt2", tok)


def test_sampling_at_a_temperature_answers_differently_from_greedy(llama):
    model, tok = llama
    session = ChatSession(model, tok, max_new_tokens=16, temperature=5.0)
    greedy = generate(model, tok, "hello the cat", max_new_tokens=16)
    torch.manual_seed(0)
    sampled = [session.send("hello the cat") for _ in range(2)]
    assert sampled[0] != greedy and sampled[1] != greedy


def test_a_long_conversation_leaves_out_its_first_turns_to_fit_the_context():
    model, tok = tiny_llama(max_positions=64)
    session = ChatSession(model, tok, max_new_tokens=8)
    for _ in range(4):
        session.send("the cat sat on the mat with the dog and the bird")
    assert len(session.history) == 8  # the history keeps everything
    assert session.dropped_turns >= 2 and session.dropped_turns % 2 == 0
    enc, room = session._encode("one more", 8)
    assert enc["input_ids"].shape[1] + room <= 64
    with pytest.raises(ChatError, match="the model reads at most 64"):
        session.send(" ".join(["cat"] * 80))


def test_a_run_that_trains_refuses_to_chat_until_it_ends(tmp_path):
    from nbkit.core.train.finetune import finetune

    model, tok = tiny_llama()
    rows = [{"prompt": "hello the cat", "completion": "the dog."}] * 8
    gate, entered = threading.Event(), threading.Event()

    def hold(event, run):  # keep the run training until the test has looked
        if type(event).__name__ == "StepEnd" and event.step == 1:
            entered.set()
            gate.wait(30)

    run = finetune((model, tok), rows, task="causal-lm", lora=LORA, epochs=1, batch_size=4, eval_split=0,
                   lr=1e-2, callbacks=[hold], background=True, progress=False, run_dir=tmp_path / "run")
    try:
        assert entered.wait(30)
        session = run.chat_session(max_new_tokens=6)
        assert run.status == "running"
        with pytest.raises(ChatBusy, match=f"run {run.name!r} is still training"):
            session.send("hello the cat")
        assert session.history == []
    finally:
        gate.set()
        run.wait()
    assert session.busy_reason() is None
    answer = session.send("hello the cat")
    assert answer == run.generate("hello the cat", max_new_tokens=6)
    assert session.has_adapter


def test_the_chat_session_imports_no_notebook_library():
    code = ("import sys\nfrom nbkit.testing import tiny_llama\nfrom nbkit.core.llm.chat_session import ChatSession\n"
            "m, t = tiny_llama()\ns = ChatSession(m, t, max_new_tokens=4)\nlist(s.stream('hello'))\n"
            "print(sorted(n for n in ('IPython', 'ipywidgets', 'anywidget', 'plotly', 'matplotlib') "
            "if n in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_smollm2_chats_over_two_turns_and_streams_the_same_answer():
    from nbkit.core.models import load_model

    model, tok = load_model("smollm2")
    session = ChatSession(model, tok, max_new_tokens=12)
    pieces = list(session.stream("What is the capital of France?"))
    assert "".join(pieces).strip() == "The capital of France is Paris."
    assert len([p for p in pieces if p.strip()]) >= 5
    second = session.send("And of Italy?")
    assert second == generate(model, tok, session.history[:3], max_new_tokens=12)
    assert "Rome" in second
