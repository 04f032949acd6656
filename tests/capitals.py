"""The capitals task the LLM tests train a tiny Llama on: three questions, each answered with one word."""

WORDS = ["paris", "france", "rome", "italy", "madrid", "spain", "capital"]
QA = [("france", "paris"), ("italy", "rome"), ("spain", "madrid")]
ROWS = [{"prompt": f"What is the capital of {c}?", "completion": f"{k}."} for c, k in QA] * 8
