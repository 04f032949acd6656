"""What the model says while it learns: the `samples:` prompts answered by the base and the tuned
model at each evaluation (issue 14).

`SampleAnswers` is an observer of the training loop. When training starts it answers the prompts
once with the base model (a LoRA run: the same weights with the adapter switched off, peft's
`disable_adapter()`, so no second copy is held; a full fine-tune: the model before its first step),
then after every evaluation with the tuned model, greedily. Each round is one `Samples` event: the
dashboard shows it, `metrics.jsonl` keeps it, and `Run.samples` reads it back as a table.

The base answers never change (the base weights are frozen or are the starting point), so they are
generated once per run, not at each evaluation. When exact match already answered the same eval
prompts at this evaluation, its answers are reused instead of generating them twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import ConfigError
from ..train.events import EvalEnd, RunStart, Samples, TrainEnd
from .chat import Conversation
from .generate import _as_messages, generate

DEFAULT_SAMPLES = 3  # prompts taken from the eval split when `samples:` is not given
DEFAULT_NEW_TOKENS = 64  # per answer when there is no reference to size it by


@dataclass
class SamplePrompt:
    messages: list[dict[str, str]]  # what the model is asked (the chat template is applied to it)
    reference: str | None = None

    @property
    def shown(self) -> str:
        """The prompt as a person reads it: the last user turn."""
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else self.messages[-1]["content"]


def sample_prompts(value: Any, eval_conversations: list[Conversation] | None) -> list[SamplePrompt]:
    """The `samples:` option as prompts: None (three eval prompts), an int (that many eval prompts),
    0/false/[] (none), or a list of prompts: strings, `{prompt, reference}` mappings or chat turns."""
    convs = [c for c in (eval_conversations or []) if c.messages]
    if value is None or value is True:
        value = DEFAULT_SAMPLES
    if value is False:
        return []
    if isinstance(value, int):
        return [SamplePrompt(c.prompt, c.answer) for c in convs[:value]]
    if isinstance(value, (str, dict)):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(SamplePrompt(_as_messages(item)))
        elif isinstance(item, dict) and "prompt" in item:
            out.append(SamplePrompt(_as_messages(item["prompt"]), item.get("reference")))
        elif isinstance(item, dict) and "role" in item:
            out.append(SamplePrompt([item]))
        elif isinstance(item, list):
            out.append(SamplePrompt(_as_messages(item)))
        else:
            raise ConfigError(f"each item of 'samples' is a prompt string, {{prompt, reference}} or a list "
                              f"of {{role, content}} turns, got {item!r}")
    return out


def check_samples(value: Any) -> None:
    """Validate `samples:` before anything loads (the prompts themselves are read later)."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"'samples' must be a count >= 0 or a list of prompts, got {value}")
        return
    if isinstance(value, (str, dict, list, tuple)):
        sample_prompts(list(value) if isinstance(value, tuple) else value, [])
        return
    raise ConfigError(f"'samples' must be a count or a list of prompts, got {value!r}")


class SampleAnswers:
    """Observer: base answers once at the start, tuned answers after each evaluation, as `Samples`.

    `shared`: an exact-match evaluator whose answers of the same prompts at this evaluation can be
    reused. `has_eval`: False when the run never evaluates; the tuned answers then come once, when
    training ends."""

    def __init__(self, prompts: list[SamplePrompt], tokenizer: Any, *, max_new_tokens: int | None = None,
                 shared: Any = None, has_eval: bool = True, batch_size: int = 8):
        self.prompts, self.tokenizer, self.has_eval, self.batch_size = prompts, tokenizer, has_eval, batch_size
        same = shared is not None and [p.messages for p in prompts] == list(shared.prompts[:len(prompts)])
        self.shared = shared if same and max_new_tokens in (None, shared.max_new_tokens) else None
        if self.shared is not None:  # the same prompts with the same budget: the same answers
            max_new_tokens = shared.max_new_tokens
        refs = [p.reference for p in prompts if p.reference]
        if max_new_tokens is None and refs:
            longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in refs)
            max_new_tokens = longest + 8
        self.max_new_tokens = max_new_tokens or DEFAULT_NEW_TOKENS
        self.base: list[str] | None = None
        self.last_step: int | None = None

    def __call__(self, event: Any, run: Any) -> None:
        if not self.prompts:
            return
        if isinstance(event, RunStart):
            self._start(event, run)
            return
        evaluated = isinstance(event, EvalEnd) and event.split == "eval"
        # a run without eval data: the tuned answers once, when training ends
        ended = isinstance(event, TrainEnd) and not self.has_eval and event.status != "failed"
        if evaluated or ended:
            self._emit(run, event.step, self._tuned(run.model))

    def _start(self, event: RunStart, run: Any) -> None:
        from .lora import is_peft

        model = run.model
        if is_peft(model):
            with model.disable_adapter():
                self.base = self._answer(model)
            answers = self.base if event.start_step == 0 else self._answer(model)
        elif event.start_step == 0:
            self.base = answers = self._answer(model)
        else:  # a resumed full fine-tune: its base answers are those the first run recorded
            earlier = [e for e in run.events if isinstance(e, Samples) and e.base is not None]
            self.base = earlier[0].base if earlier and earlier[0].prompts == self.shown else None
            answers = self._answer(model)
        self._emit(run, event.start_step, answers)

    @property
    def shown(self) -> list[str]:
        return [p.shown for p in self.prompts]

    def _tuned(self, model: Any) -> list[str]:
        shared = self.shared
        if shared is not None and len(shared.last_predictions) >= len(self.prompts):
            return list(shared.last_predictions[:len(self.prompts)])
        return self._answer(model)

    def _answer(self, model: Any) -> list[str]:
        model = getattr(model, "module", model)  # DDP wraps the model; generate lives on the inner one
        return generate(model, self.tokenizer, [p.messages for p in self.prompts],
                        max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)

    def _emit(self, run: Any, step: int, answers: list[str]) -> None:
        if step == self.last_step:
            return
        self.last_step = step
        run.emit(Samples(step=step, prompts=self.shown, answers=list(answers),
                         base=list(self.base) if self.base is not None else None,
                         references=[p.reference for p in self.prompts]))


def samples_table(events: list) -> Any:
    """The `Samples` events of a run as one row per (step, prompt): step, prompt, reference, base,
    answer (a pandas DataFrame; what `Run.samples` returns)."""
    import pandas as pd

    rows = []
    for e in events:
        if isinstance(e, Samples):
            base = e.base or [None] * len(e.prompts)
            rows += [{"step": e.step, "prompt": p, "reference": r, "base": b, "answer": a}
                     for p, r, b, a in zip(e.prompts, e.references, base, e.answers, strict=True)]
    return pd.DataFrame(rows, columns=["step", "prompt", "reference", "base", "answer"])


def describe_samples(event: Samples, width: int = 100) -> str:
    """One round of answers as plain text (the terminal's progress output, a notebook's text/plain)."""
    def cut(text: str | None) -> str:
        text = " ".join(str(text).split())
        return text if len(text) <= width else text[:width - 1] + "\u2026"

    lines = [f"answers at step {event.step}:"]
    for j, prompt in enumerate(event.prompts):
        lines.append(f"  {cut(prompt)}")
        if event.base is not None and event.base[j] == event.answers[j]:
            lines.append(f"    base = tuned: {cut(event.answers[j])}")
            continue
        if event.base is not None:
            lines.append(f"    base:  {cut(event.base[j])}")
        lines.append(f"    tuned: {cut(event.answers[j])}")
    return "\n".join(lines)
