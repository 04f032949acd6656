"""Exports that prove themselves: `Run.merge` / `Run.save_adapter` write the folder atomically, reload it
in a fresh model object and regenerate sample prompts greedily, so a lost chat template, a lost
end-of-turn token or merged weights that drifted show up in a table instead of in users' reports.

The writing itself is `lora.merge` / `lora.save_adapter`; this module adds the temporary sibling folder
(renamed into place only once complete), the overwrite rule, and the check (`ExportCheck`, plain data
with a text and an escaped HTML table, for the notebook, the CLI and the tests).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = "nbkit_export.json"  # written into every export: what it is, and that it may be replaced
KINDS = ("merged", "adapter")
DEFAULT_MAX_NEW_TOKENS = 32
# Max |logit difference| between the reloaded and the in-memory model: absolute in float32; in 16-bit
# dtypes, relative to the largest logit (bf16 keeps ~3 significant digits, so rounding alone moves logits).
LOGIT_TOLERANCE = 1e-3
HALF_LOGIT_TOLERANCE = 0.02


@dataclass
class ExportRow:
    """One export and what its reload showed. `answers`: the reloaded model's greedy answers."""

    export: str
    path: Path
    size_bytes: int
    files: int
    prompts: list[Any] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    max_logit_diff: float | None = None
    problems: list[str] = field(default_factory=list)
    write_seconds: float = 0.0
    check_seconds: float | None = None

    @property
    def checked(self) -> bool:
        return self.check_seconds is not None

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6

    @property
    def equal(self) -> int:
        return sum(a == b for a, b in zip(self.answers, self.expected, strict=False))

    @property
    def first_difference(self) -> tuple[str, str, str] | None:
        """(prompt, in-memory answer, reloaded answer) of the first prompt answered differently."""
        for prompt, want, got in zip(self.prompts, self.expected, self.answers, strict=False):
            if want != got:
                return _prompt_text(prompt), want, got
        return None

    @property
    def ok(self) -> bool:
        return self.checked and self.equal == len(self.expected) and not self.problems

    def cells(self) -> dict[str, str]:
        if not self.checked:
            answers, logits, notes = "not checked", "", ""
        else:
            answers = f"{self.equal}/{len(self.expected)}"
            logits = "" if self.max_logit_diff is None else f"{self.max_logit_diff:.1e}"
            notes = list(self.problems)
            diff = self.first_difference
            if diff is not None:
                notes.append(f"first difference: {diff[0]!r} -> in memory {diff[1]!r}, reloaded {diff[2]!r}")
            notes = "; ".join(notes) or "ok"
        return {"export": self.export, "path": str(self.path), "size (MB)": f"{self.size_mb:.2f}",
                "files": str(self.files), "answers equal": answers, "max |Δ logit|": logits, "notes": notes}


@dataclass
class ExportCheck:
    """What `Run.merge` / `Run.save_adapter` wrote and whether the reloaded folder answers like the run's
    model. `ok` is True when every answer is equal and nothing was flagged; `path` is the folder."""

    rows: list[ExportRow]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def path(self) -> Path:
        return self.rows[0].path

    def __fspath__(self) -> str:
        return str(self.path)

    def table(self) -> list[dict[str, str]]:
        return [r.cells() for r in self.rows]

    def to_text(self) -> str:
        rows = self.table()
        heads = list(rows[0])
        widths = [max(len(h), *(len(r[h]) for r in rows)) for h in heads]
        lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
        lines += ["  ".join(r[h].ljust(w) for h, w in zip(heads, widths, strict=True)) for r in rows]
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        parts = []
        for r in self.rows:
            verdict = ("ok" if r.ok else "FAILED") if r.checked else "not checked"
            answers = f", answers {r.equal}/{len(r.expected)} equal" if r.checked else ""
            parts.append(f"{r.export} {str(r.path)!r}: {r.size_mb:.2f} MB, {r.files} files{answers}, {verdict}")
        return f"<nbkit.ExportCheck {'; '.join(parts)}>"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        return {"text/plain": self.to_text(), "text/html": self._repr_html_()}

    def _repr_html_(self) -> str:
        rows = self.table()
        head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in rows[0])
        body = ""
        for row, data in zip(rows, self.rows, strict=True):
            color = "#1a7f37" if data.ok else ("#666" if not data.checked else "#cf222e")
            tds = "".join(f"<td style='text-align:left;vertical-align:top'>{html.escape(v)}</td>" for v in row.values())
            body += f"<tr style='color:{color}'>{tds}</tr>"
        return f"<table class='nbkit-export-check'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# -- which prompts ---------------------------------------------------------------------------------

def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return next((m.get("content", "") for m in reversed(prompt) if m.get("role") == "user"), "")


def _as_prompt(item: Any) -> Any:
    """A sample as generate() takes it: a string or a list of turns (trailing assistant turns dropped)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("prompt", "messages", "input", "question", "text"):
            if key in item:
                return _as_prompt(item[key])
        return None
    if isinstance(item, (list, tuple)) and item and all(isinstance(m, dict) and "role" in m for m in item):
        turns = list(item)
        while turns and turns[-1].get("role") == "assistant":
            turns.pop()
        return turns or None
    return None


def sample_prompts(run: Any, prompts: Any = None) -> list[Any]:
    """The prompts an export is checked on: `prompts` if given, else the run's `samples` config, else
    the first three eval prompts of the run's data (`run.eval_prompts`, set by finetune)."""
    samples = (getattr(run, "config", None) or {}).get("samples")
    if isinstance(samples, dict) and "prompts" in samples:  # {prompts: [...], ...}
        samples = samples["prompts"]
    for source in (prompts, samples, getattr(run, "eval_prompts", None)):
        if source is None or isinstance(source, (bool, int, float)):  # samples: true / 3 mean eval prompts
            continue
        items = [source] if isinstance(source, (str, dict)) else list(source)
        if items and all(isinstance(m, dict) and "role" in m for m in items):
            items = [items]  # one conversation, not a list of prompts
        out = [p for p in (_as_prompt(i) for i in items) if p]
        if out:
            return out
    return []


def eval_prompts(data: Any, n: int = 3) -> list[Any]:
    """The first `n` prompts of an LLMData's eval split (what an export is checked on by default)."""
    split = data.get("eval") if data is not None else None
    out: list[Any] = []
    for conv in getattr(split, "conversations", []):
        if conv.messages and conv.prompt not in out:  # repeated rows would check one prompt twice
            out.append(conv.prompt)
    return out[:n]


# -- writing ---------------------------------------------------------------------------------------

def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) under `folder`."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def is_export(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def check_target(folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """The absolute target folder, or one clear error if writing there would destroy something."""
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file: pick a folder name for the export")
    if folder.is_dir() and any(folder.iterdir()) and not is_export(folder) and not overwrite:
        raise FileExistsError(f"{folder} is not empty and holds no nbkit export: pick a new folder, or pass "
                              f"overwrite=True (--overwrite) to replace its contents")
    return folder


def write_atomically(folder: Path, write) -> None:
    """Call `write(tmp)` on a temporary sibling folder, then rename it to `folder` (replacing what was
    there). If `write` fails, the temporary folder is removed and `folder` is left as it was."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; an export is an ordinary folder
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not folder.exists():
        os.rename(tmp, folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    os.rename(folder, old / "previous")
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


# -- checking --------------------------------------------------------------------------------------

def _render(tokenizer: Any, prompt: Any) -> tuple[str, bool]:
    from .generate import _as_messages

    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(_as_messages(prompt), tokenize=False, add_generation_prompt=True), True
    return _prompt_text(prompt), False


def plain_hf_answers(model: Any, tokenizer: Any, prompts: list[Any], max_new_tokens: int) -> list[str]:
    """Greedy answers the way a transformers user gets them from the folder: its chat template, its
    generation_config (eos_token_id included), no nbkit defaults."""
    import torch

    rendered = [_render(tokenizer, p) for p in prompts]
    chat = rendered[0][1]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        enc = tokenizer([t for t, _ in rendered], return_tensors="pt", padding=True, add_special_tokens=not chat)
        enc = enc.to(next(model.parameters()).device)
        with torch.no_grad():
            ids = model.generate(**enc, do_sample=False, temperature=None, top_p=None, top_k=None,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad)  # (B, T_prompt + T_new)
    finally:
        tokenizer.padding_side = side
    new = ids[:, enc["input_ids"].shape[1]:]
    return [s.strip() for s in tokenizer.batch_decode(new, skip_special_tokens=True)]


def max_logit_diff(model_a: Any, model_b: Any, tokenizer: Any, prompt: Any) -> tuple[float, float]:
    """Max |logit difference| of two models on one rendered prompt (the same token ids for both), and
    the largest |logit| of the first model (the scale the difference is judged against)."""
    import torch

    text, chat = _render(tokenizer, prompt)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=not chat)
    with torch.no_grad():
        a = model_a(**ids.to(next(model_a.parameters()).device)).logits.float().cpu()  # (1, T, V)
        b = model_b(**ids.to(next(model_b.parameters()).device)).logits.float().cpu()  # (1, T, V)
    return float((a - b).abs().max()), float(a.abs().max())


def tokenizer_problems(original: Any, reloaded: Any) -> list[str]:
    """What the reloaded tokenizer lost: the chat template, the eos or the end-of-turn token."""
    from .chat import end_of_turn

    problems = []
    want = getattr(original, "chat_template", None)
    got = getattr(reloaded, "chat_template", None)
    if want and not got:
        problems.append("the reloaded tokenizer has no chat template")
    elif want and got != want:
        problems.append("the reloaded tokenizer's chat template differs from the run's")
    if original.eos_token != reloaded.eos_token:
        problems.append(f"eos token changed: {original.eos_token!r} -> {reloaded.eos_token!r}")
    if want and end_of_turn(original) != end_of_turn(reloaded):
        problems.append(f"end-of-turn token changed: {end_of_turn(original)!r} -> {end_of_turn(reloaded)!r}")
    return problems


def stop_ids(tokenizer: Any) -> list[int]:
    """The token ids generation must stop at: eos and the chat template's end-of-turn token."""
    from .generate import _eot_ids

    return sorted({t for t in (tokenizer.eos_token_id, *_eot_ids(tokenizer)) if t is not None})


def generation_config_problems(folder: Path, tokenizer: Any) -> list[str]:
    path = folder / "generation_config.json"
    if not path.is_file():
        return ["no generation_config.json: transformers will not know where an answer ends"]
    eos = json.loads(path.read_text()).get("eos_token_id")
    have = set(eos if isinstance(eos, list) else [eos]) - {None}
    missing = [t for t in stop_ids(tokenizer) if t not in have]
    if missing:
        names = ", ".join(f"{tokenizer.convert_ids_to_tokens(t)!r} (id {t})" for t in missing)
        return [f"generation_config.json eos_token_id {eos!r} lacks {names}: generate() runs past the answer"]
    return []


def _base_dtype(model: Any) -> Any:
    return next((p.dtype for n, p in model.named_parameters() if "lora_" not in n), next(model.parameters()).dtype)


def _match_dtypes(reloaded: Any, model: Any) -> Any:
    """Cast each reloaded parameter and buffer to the dtype of the in-memory one of the same name (a
    16-bit base keeps a float32 adapter in peft; `model.to(bf16)` also casts the rotary buffers), so
    the check compares the files, not two precisions."""
    for mine, theirs in ((model.named_parameters, reloaded.named_parameters),
                         (model.named_buffers, reloaded.named_buffers)):
        dtypes = {_plain_name(n): t.dtype for n, t in mine()}
        for name, tensor in theirs():
            want = dtypes.get(_plain_name(name))
            if want is not None and tensor.dtype != want:
                tensor.data = tensor.data.to(want)
    return reloaded


def _plain_name(name: str) -> str:
    """A peft parameter's name as the merged model calls it."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def _reload(kind: str, folder: Path, run: Any, model: Any) -> tuple[Any, Any]:
    """A fresh model object from the folder, in the in-memory model's dtypes, and the folder's tokenizer."""
    from transformers import AutoTokenizer

    dtype = _base_dtype(model)
    if kind == "merged":
        from transformers import AutoModelForCausalLM

        reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        return _match_dtypes(reloaded, model).eval(), AutoTokenizer.from_pretrained(folder)
    from .lora import load_peft_model

    base = (getattr(run, "config", None) or {}).get("model")
    if isinstance(base, str) and not base.startswith("<"):
        reloaded, tok = load_peft_model(folder, base, dtype=str(dtype).removeprefix("torch."))
        return _match_dtypes(reloaded, model), tok
    # The base was an object in the notebook: a copy of it without the adapter stands in for the hub
    # name (still a fresh model object reading the adapter files).
    import copy

    from peft import PeftModel

    from .lora import quiet_peft

    bare = copy.deepcopy(model).unload()
    with quiet_peft():
        reloaded = PeftModel.from_pretrained(bare, folder)
    return _match_dtypes(reloaded, model).eval(), AutoTokenizer.from_pretrained(folder)


def check_export(row: ExportRow, run: Any, model: Any, tokenizer: Any, prompts: list[Any],
                 max_new_tokens: int) -> ExportRow:
    """Reload `row.path`, regenerate `prompts` greedily, compare with `model`, flag what was lost."""
    from .generate import generate

    start = time.perf_counter()
    row.prompts = list(prompts)
    row.expected = list(generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens))
    reloaded, re_tok = _reload(row.export, row.path, run, model)
    row.problems += tokenizer_problems(tokenizer, re_tok)
    if row.export == "merged":
        row.problems += generation_config_problems(row.path, tokenizer)
        row.answers = plain_hf_answers(reloaded, re_tok, prompts, max_new_tokens)
    else:  # an adapter has no generation_config of its own: answer through the saved tokenizer's stops
        row.answers = list(generate(reloaded, re_tok, prompts, max_new_tokens=max_new_tokens))
    was_training = model.training
    model.eval()
    try:
        row.max_logit_diff, scale = max_logit_diff(model, reloaded, tokenizer, prompts[0])
    finally:
        model.train(was_training)
    dtype = _base_dtype(model)
    tolerance = LOGIT_TOLERANCE if dtype.itemsize >= 4 else HALF_LOGIT_TOLERANCE * max(scale, 1.0)
    if row.max_logit_diff > tolerance:
        what = "base + adapter" if row.export == "merged" else "the run's model"
        hint = ""
        if row.export == "merged" and dtype.itemsize < 4:  # W + B·A rounded to 16 bits loses the small update
            hint = (f" (merged in {str(dtype).removeprefix('torch.')}: W + B·A is rounded to 16 bits; "
                    f"the adapter export keeps the update exact)")
        row.problems.append(f"reloaded logits differ from {what} by up to {row.max_logit_diff:.2g}{hint}")
    del reloaded
    row.check_seconds = time.perf_counter() - start
    return row


def _options(run: Any, prompts: Any, max_new_tokens: int | None) -> tuple[list[Any], int]:
    chosen = sample_prompts(run, prompts)
    if run.tokenizer is None:
        raise ValueError("checking an export needs the run's tokenizer: pass check=False to skip the check")
    if not chosen:
        raise ValueError("no prompts to check the export on (the run has no samples and no eval prompts): "
                         "pass prompts=['...'] or check=False")
    if max_new_tokens is None:
        max_new_tokens = int((getattr(run, "config", None) or {}).get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
    return chosen, max_new_tokens


def check_folder(run: Any, folder: str | os.PathLike, *, prompts: Any = None,
                 max_new_tokens: int | None = None) -> ExportCheck:
    """Check an export folder that already exists (a merged model or an adapter) against the run's model."""
    from .lora import is_adapter_folder

    folder = Path(folder).expanduser().absolute()
    if not (folder / "config.json").is_file() and not is_adapter_folder(folder):
        raise FileNotFoundError(f"{folder} holds no model (no config.json or adapter_config.json)")
    chosen, max_new_tokens = _options(run, prompts, max_new_tokens)
    size, files = folder_size(folder)
    row = ExportRow("adapter" if is_adapter_folder(folder) else "merged", folder, size, files)
    return ExportCheck([check_export(row, run, run.model, run.tokenizer, chosen, max_new_tokens)])


def export(run: Any, kind: str, folder: str | os.PathLike, *, check: bool = True, prompts: Any = None,
           overwrite: bool = False, max_new_tokens: int | None = None) -> ExportCheck:
    """Write the run's model as `kind` ("merged" or "adapter") into `folder` and, with `check`, prove it."""
    from . import lora

    if kind not in KINDS:
        raise ValueError(f"export kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if getattr(run, "status", None) == "running":  # the weights change under the export
        raise ValueError("this run is still training: wait for it (run.wait()) or stop it (run.stop()) first")
    model, tokenizer = run.model, run.tokenizer
    if model is None:
        raise ValueError("this run has no model to export")
    if kind == "adapter" and not lora.is_peft(model):
        raise ValueError("this model has no LoRA adapter: train with lora: true to save one, or use merge()")
    target = check_target(folder, overwrite)
    if check:  # every reason to refuse comes before anything is written
        chosen, max_new_tokens = _options(run, prompts, max_new_tokens)

    def write(tmp: Path) -> None:
        if kind == "merged":
            lora.merge(model, tmp, tokenizer)
        else:
            lora.save_adapter(model, tmp, tokenizer)
        (tmp / MARKER).write_text(json.dumps({"export": kind, "run": getattr(run, "name", None),
                                              "run_dir": str(getattr(run, "run_dir", "")),
                                              "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")

    start = time.perf_counter()
    write_atomically(target, write)
    size, files = folder_size(target)
    row = ExportRow(kind, target, size, files, write_seconds=time.perf_counter() - start)
    if check:
        check_export(row, run, model, tokenizer, chosen, max_new_tokens)
    return ExportCheck([row])
