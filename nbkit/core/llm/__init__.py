"""Instruction-tuned causal LMs: GGUF models, chat data and answer-only masks, LoRA, generation."""
