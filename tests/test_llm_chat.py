"""nbkit.core.llm.chat: data formats, the chat template, answer-only masks and bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nbkit.core.data import DataError
from nbkit.core.llm.chat import (
    answer_spans,
    detect_format,
    encode,
    load_chat_data,
    to_conversations,
)
from nbkit.testing import chat_tokenizer

WORDS = ["paris", "france", "rome", "italy", "capital", "brief", "madrid", "spain"]
QA = [("france", "paris"), ("italy", "rome"), ("spain", "madrid")]


@pytest.fixture
def tok():
    return chat_tokenizer(WORDS)


def trained_ids(ids, labels):
    return [i for i, label in zip(ids, labels, strict=True) if label != -100]


def answer_ids(tok, answer: str) -> list[int]:
    """What the loss must see for one answer: its tokens, then the end-of-turn token."""
    return tok(answer, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]


def messages_rows():
    return [{"messages": [{"role": "system", "content": "be brief"},
                          {"role": "user", "content": f"What is the capital of {c}?"},
                          {"role": "assistant", "content": f"{k}."}]} for c, k in QA]


def test_messages_prompt_completion_and_text_are_detected():
    assert detect_format(["messages", "id"]) == "messages"
    assert detect_format(["prompt", "completion"]) == "prompt-completion"
    assert detect_format(["text", "label"]) == "text"
    with pytest.raises(DataError, match="'messages' column"):
        detect_format(["question", "answer"])


def test_messages_mask_trains_the_answer_and_its_end_of_turn_only(tok):
    (conv,) = to_conversations(messages_rows()[:1], "messages")
    e = encode(conv, tok, max_length=64)
    assert trained_ids(e.input_ids, e.labels) == answer_ids(tok, "paris.")
    assert tok.decode(trained_ids(e.input_ids, e.labels)) == "paris. <|im_end|>"
    assert len(e.labels) == len(e.input_ids) and not e.truncated
    # the system and user turns and the template's own tokens are context only
    assert e.labels[:3] == [-100, -100, -100]


def test_every_assistant_turn_of_a_multi_turn_conversation_is_trained(tok):
    msgs = [{"role": "user", "content": "capital of france?"}, {"role": "assistant", "content": "paris"},
            {"role": "user", "content": "and of italy?"}, {"role": "assistant", "content": "rome"}]
    (conv,) = to_conversations([{"messages": msgs}], "messages")
    e = encode(conv, tok, max_length=64)
    assert trained_ids(e.input_ids, e.labels) == answer_ids(tok, "paris") + answer_ids(tok, "rome")
    text, spans = answer_spans(tok, msgs)
    assert [text[a:b] for a, b in spans] == ["paris<|im_end|>", "rome<|im_end|>"]


def test_train_on_all_trains_every_token(tok):
    (conv,) = to_conversations(messages_rows()[:1], "messages")
    e = encode(conv, tok, max_length=64, train_on="all")
    assert e.labels == e.input_ids


def test_prompt_completion_strings_and_message_lists(tok):
    rows = [{"prompt": "What is the capital of italy?", "completion": "rome."},
            {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "capital of spain?"}],
             "completion": [{"role": "assistant", "content": "madrid."}]}]
    convs = to_conversations(rows, "prompt-completion")
    assert convs[0].messages == [{"role": "user", "content": "What is the capital of italy?"},
                                 {"role": "assistant", "content": "rome."}]
    assert convs[1].prompt[0]["role"] == "system" and convs[1].answer == "madrid."
    for conv, answer in zip(convs, ["rome.", "madrid."], strict=True):
        e = encode(conv, tok, max_length=64)
        assert trained_ids(e.input_ids, e.labels) == answer_ids(tok, answer)


def test_text_format_trains_all_tokens_and_ends_with_eos(tok):
    (conv,) = to_conversations([{"text": "the capital of france is paris"}], "text")
    e = encode(conv, tok, max_length=64)
    assert e.labels == e.input_ids and e.input_ids[-1] == tok.eos_token_id
    assert tok.decode(e.input_ids[:-1]) == "the capital of france is paris"


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet", "frame", "list", "dataset"])
def test_sources_give_the_same_examples(tok, tmp_path, kind):
    import datasets

    rows = messages_rows() * 4  # 12 rows
    frame = pd.DataFrame(rows)
    if kind == "jsonl":
        src = tmp_path / "d.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "json":
        src = tmp_path / "d.json"
        src.write_text(json.dumps(rows))
    elif kind == "csv":  # a JSON list of turns in a cell
        src = tmp_path / "d.csv"
        pd.DataFrame({"messages": [json.dumps(r["messages"]) for r in rows]}).to_csv(src, index=False)
    elif kind == "parquet":
        src = tmp_path / "d.parquet"
        frame.to_parquet(src)
    elif kind == "frame":
        src = frame
    elif kind == "list":
        src = rows
    else:
        src = datasets.Dataset.from_list(rows)
    data = load_chat_data(src, tok, eval_split=3, seed=1)
    assert len(data["train"]) == 9 and len(data["eval"]) == 3
    assert data["train"].format == "messages" and data["train"].truncated == 0
    expected = load_chat_data(rows, tok, eval_split=3, seed=1)
    assert data["train"].columns == expected["train"].columns
    assert data["eval"].columns["labels"] == expected["eval"].columns["labels"]


def test_an_eval_split_in_the_data_is_kept(tok):
    import datasets

    rows = messages_rows()
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows * 2),
                               "validation": datasets.Dataset.from_list(rows[:1])})
    data = load_chat_data(dd, tok)
    assert len(data["train"]) == 6 and len(data["eval"]) == 1


def test_truncated_answers_are_counted(tok):
    rows = [{"prompt": "capital of france?", "completion": "paris is the capital of france"},
            {"prompt": "capital of italy?", "completion": "rome"}]
    full = encode(to_conversations(rows[:1], "prompt-completion")[0], tok, max_length=256)
    data = load_chat_data(rows, tok, max_length=len(full.input_ids) - 2, eval_split=0)
    assert data["train"].truncated == 1 and data["train"].truncated_rows == [True, False]
    assert len(data["train"].columns["input_ids"][0]) == len(full.input_ids) - 2


@pytest.mark.parametrize(("rows", "needle"), [
    ([{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]}],
     "unknown role 'bot'"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "no assistant turn"),
    ([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}],
     "empty assistant turn"),
    ([{"prompt": "hi", "completion": ""}], "empty assistant turn"),
    ([{"prompt": "hi", "completion": None}], "'completion' must be a string"),
    ([{"messages": [{"role": "user"}]}], "needs 'role' and 'content'"),
    ([{"text": ""}], "'text' must be a non-empty string"),
])
def test_bad_rows_fail_with_one_clear_error(tok, rows, needle):
    with pytest.raises(DataError, match=needle):
        load_chat_data(rows, tok, eval_split=0)


def test_no_chat_template_says_how_to_give_one():
    tok = chat_tokenizer(WORDS, chat_template=False)
    with pytest.raises(DataError, match="chat_template: chatml"):
        load_chat_data(messages_rows(), tok, eval_split=0)
    data = load_chat_data(messages_rows(), tok, eval_split=0, chat_template="chatml")
    e = data["train"].columns
    assert trained_ids(e["input_ids"][0], e["labels"][0]) == answer_ids(tok, "paris.")


def test_no_trained_token_left_is_an_error_before_training(tok):
    rows = [{"prompt": "What is the capital of france?", "completion": "paris"}]
    with pytest.raises(DataError, match="row 0 has no trained token: max_length=6 cuts off its answer"):
        load_chat_data(rows, tok, max_length=6, eval_split=0)
