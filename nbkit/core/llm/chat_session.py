"""A multi-turn chat with a causal LM, the layer under the notebook's chat box.

`ChatSession` keeps the conversation as `{role, content}` turns and renders it with the tokenizer's
chat template for every answer; `stream(text)` yields the answer's text as it is generated
(transformers' `TextIteratorStreamer`, `model.generate` in a thread), `stop()` ends an answer early
(a `StoppingCriteria` reading a `threading.Event`), and a LoRA model answers as `tuned` or as the base
model (peft's `disable_adapter()`: no second copy). Decoding follows `generate.py`: greedy at
temperature 0, the eos and end-of-turn tokens end an answer. `Run.chat_session()` makes one for a
run and refuses to answer while that run trains. The widget (`nbkit/notebook/widgets/chat.py`) is a
thin view over this class; nothing here imports IPython or widgets.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .generate import _eot_ids
from .lora import is_peft

DEFAULT_MAX_NEW_TOKENS = 256
MAX_NEW_TOKENS_LIMIT = 8192
# Runs in these states are using the model (a paused run holds the loop mid-epoch, and it may resume
# at any moment): generating then would interleave with training steps.
TRAINING_STATUSES = ("running", "paused")


class ChatError(ValueError):
    """A chat request that cannot be served as asked (bad option, empty message, model busy)."""


class ChatBusy(ChatError):
    """The model is in use (a run still trains on it, or an answer is being generated)."""


def check_temperature(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ChatError(f"temperature must be a number >= 0 (0 decodes greedily; 0.7 is a usual sampling "
                        f"value), got {value!r}")
    return float(value)


def check_max_new_tokens(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NEW_TOKENS_LIMIT:
        raise ChatError(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS_LIMIT}, got {value!r}")
    return value


class _StopWhenSet:
    """A StoppingCriteria that ends generation once `event` is set (checked after every token)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class ChatSession:
    """A conversation with `model` (a causal LM; a peft LoRA model can answer as base or tuned).

    `send(text)` returns the answer; `stream(text)` yields its pieces as they are generated. Both add
    the user turn and the answer to `history`. `stop()` (from any thread) ends the answer being
    generated; what was generated so far is the answer. `busy`: a function returning why the model
    cannot answer now (e.g. its run still trains), or None.
    """

    def __init__(self, model: Any, tokenizer: Any, *, system: str | None = None, tuned: bool = True,
                 temperature: float = 0.0, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 busy: Callable[[], str | None] | None = None, name: str | None = None):
        if model is None or not hasattr(model, "generate"):
            raise ChatError(f"chat needs a causal language model with .generate(), got {type(model).__name__}")
        if tokenizer is None:
            raise ChatError("chat needs the model's tokenizer: ChatSession(model, tokenizer)")
        if not getattr(tokenizer, "chat_template", None):
            raise ChatError(
                f"the tokenizer of {name or type(model).__name__} has no chat template, so turns cannot be "
                "told apart: chat with an instruction-tuned model, or set tokenizer.chat_template (nbkit's "
                "fine-tuning does with chat_template: chatml)")
        if system is not None and not isinstance(system, str):
            raise ChatError(f"system must be a string (the system prompt), got {type(system).__name__}")
        self.model, self.tokenizer, self.system = model, tokenizer, system or None
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.temperature = check_temperature(temperature)
        self.max_new_tokens = check_max_new_tokens(max_new_tokens)
        self._busy = busy
        self.history: list[dict[str, str]] = []
        self.stopped = False  # whether the last answer was ended by stop()
        self.dropped_turns = 0  # earlier turns left out of the last prompt to fit the context
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one answer at a time
        self.tuned = tuned

    @classmethod
    def for_run(cls, run: Any, **options: Any) -> ChatSession:
        """A session with `run`'s model and tokenizer that refuses to answer while the run trains."""
        if run.tokenizer is None:
            raise ChatError(f"run {run.name!r} has no tokenizer: chat needs a text model")

        def busy() -> str | None:
            if run.status not in TRAINING_STATUSES:
                return None
            return (f"run {run.name!r} is still training ({run.status}); the chat answers once it ends "
                    "(run.wait() waits for it, run.stop() ends it at the next step)")

        return cls(run.model, run.tokenizer, busy=busy, name=run.name, **options)

    # -- base / tuned -----------------------------------------------------------------------------

    @property
    def has_adapter(self) -> bool:
        """True for a peft (LoRA) model, whose base answers come from disabling the adapter."""
        return is_peft(self.model)

    @property
    def switch_note(self) -> str:
        """Why base vs tuned cannot be switched, or '' when it can."""
        if self.has_adapter:
            return ""
        return ("base vs tuned needs a LoRA run: this model has no adapter to disable, and the weights it "
                "started from are not kept (fine-tune with lora: true to compare)")

    @property
    def tuned(self) -> bool:
        return self._tuned

    @tuned.setter
    def tuned(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ChatError(f"tuned must be True or False, got {value!r}")
        if not value and not self.has_adapter:
            raise ChatError(self.switch_note)
        self._tuned = value

    @property
    def mode(self) -> str:
        return "tuned" if self._tuned else "base"

    # -- the prompt --------------------------------------------------------------------------------

    def messages(self, text: str | None = None) -> list[dict[str, str]]:
        """The turns the next answer is generated from: system prompt, history, then `text`."""
        turns = [{"role": "system", "content": self.system}] if self.system else []
        turns += self.history
        if text is not None:
            turns.append({"role": "user", "content": text})
        return turns

    def prompt(self, text: str) -> str:
        """The chat template applied to `messages(text)`, ready for the answer."""
        return self.tokenizer.apply_chat_template(self.messages(text), tokenize=False, add_generation_prompt=True)

    def _context(self) -> int | None:
        config = getattr(self.model, "config", None)
        n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if n is None:
            n = getattr(self.tokenizer, "model_max_length", None)
        return int(n) if isinstance(n, int) and 0 < n < 10**7 else None

    def _encode(self, text: str, max_new_tokens: int) -> tuple[Any, int]:
        """Token ids of the prompt, and how many new tokens fit. Earliest turns are left out (not
        forgotten: `history` keeps them) when the conversation outgrows the model's context."""
        limit = self._context()
        history, dropped = self.history, 0
        while True:
            turns = ([{"role": "system", "content": self.system}] if self.system else []) + history
            text_in = self.tokenizer.apply_chat_template([*turns, {"role": "user", "content": text}],
                                                         tokenize=False, add_generation_prompt=True)
            enc = self.tokenizer(text_in, return_tensors="pt", add_special_tokens=False)
            n = enc["input_ids"].shape[1]
            if limit is None or n + max_new_tokens <= limit or not history:
                break
            cut = next((i for i in range(1, len(history)) if history[i]["role"] == "user"), len(history))
            history, dropped = history[cut:], dropped + cut
        self.dropped_turns = dropped
        if limit is not None and n >= limit:
            raise ChatError(f"the message is {n} tokens with the chat template; the model reads at most {limit}: "
                            "shorten it")
        return enc, min(max_new_tokens, limit - n) if limit is not None else max_new_tokens

    # -- answering ---------------------------------------------------------------------------------

    def busy_reason(self) -> str | None:
        """Why the model cannot answer right now, or None."""
        reason = self._busy() if self._busy is not None else None
        if reason is None and self._lock.locked():
            reason = "an answer is being generated: wait for it, or stop() it"
        return reason

    @property
    def generating(self) -> bool:
        return self._lock.locked()

    def stop(self) -> None:
        """End the answer being generated after its current token (no-op when idle)."""
        self._stop.set()

    def clear(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        if self.generating:
            raise ChatBusy("an answer is being generated: stop() it before clearing the conversation")
        self.history = []
        self.dropped_turns = 0

    def send(self, text: str, **options: Any) -> str:
        """The model's answer to `text` (added to `history` with it). `options`: temperature,
        max_new_tokens or tuned for this answer only."""
        return "".join(self.stream(text, **options)).strip()

    def stream(self, text: str, *, temperature: float | None = None, max_new_tokens: int | None = None,
               tuned: bool | None = None) -> Iterator[str]:
        """Pieces of the answer to `text` as they are generated; their concatenation is the answer.
        Options are checked now, before anything runs; generation starts at the first `next()`."""
        if not isinstance(text, str) or not text.strip():
            raise ChatError(f"a message must be a non-empty string, got {text!r}")
        temperature = self.temperature if temperature is None else check_temperature(temperature)
        max_new_tokens = self.max_new_tokens if max_new_tokens is None else check_max_new_tokens(max_new_tokens)
        tuned = self._tuned if tuned is None else tuned
        if not tuned and not self.has_adapter:
            raise ChatError(self.switch_note)
        reason = self.busy_reason()
        if reason is not None:
            raise ChatBusy(reason)
        self._stop.clear()  # from the request on: a stop() that comes before the first token counts
        return self._generate(text, temperature, max_new_tokens, tuned)

    def _options(self, temperature: float, max_new_tokens: int) -> dict[str, Any]:
        tok = self.tokenizer
        eos = [t for t in {tok.eos_token_id, *_eot_ids(tok)} if t is not None]
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "eos_token_id": eos or None,
                                   "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else
                                   (eos[0] if eos else None)}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return options

    def _adapter(self, tuned: bool) -> Any:
        return self.model.disable_adapter() if (not tuned and self.has_adapter) else contextlib.nullcontext()

    def _generate(self, text: str, temperature: float, max_new_tokens: int, tuned: bool) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        if not self._lock.acquire(blocking=False):
            raise ChatBusy("an answer is being generated: wait for it, or stop() it")
        model = self.model
        was_training = model.training
        try:
            enc, room = self._encode(text, max_new_tokens)
            enc = enc.to(next(model.parameters()).device)
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.stopped = False
            failure: list[BaseException] = []

            def work() -> None:
                try:
                    with torch.no_grad(), self._adapter(tuned):
                        model.generate(**enc, **self._options(temperature, room), streamer=streamer,
                                       stopping_criteria=StoppingCriteriaList([_StopWhenSet(self._stop)]))
                except BaseException as exc:  # noqa: BLE001 - handed to the reader below
                    failure.append(exc)
                    streamer.end()  # unblock the reader; it re-raises

            model.eval()
            self.history.append({"role": "user", "content": text})
            thread = threading.Thread(target=work, name="nbkit-chat-generate", daemon=True)
            thread.start()
            pieces: list[str] = []
            read_all = False
            try:
                for piece in streamer:
                    pieces.append(piece)
                    yield piece
                read_all = True
            finally:
                stopped = self._stop.is_set()
                if not read_all:  # the reader went away (closed the generator): stop generating
                    self._stop.set()
                    stopped = True
                thread.join()
                if failure:
                    self.history.pop()  # no answer: the turn never happened
                else:
                    self.stopped = stopped
                    self.history.append({"role": "assistant", "content": "".join(pieces).strip()})
            if failure:
                raise failure[0]
        finally:
            if was_training:
                model.train()
            self._lock.release()

    def __repr__(self) -> str:
        turns = sum(m["role"] == "user" for m in self.history)
        return (f"<nbkit.ChatSession {self.name!r} {self.mode}, {turns} turns, temperature {self.temperature:g}, "
                f"max_new_tokens {self.max_new_tokens}>")
