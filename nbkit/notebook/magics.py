"""The IPython magics: `%%finetune`, `%nbkit_load` and `%nbkit runs|device`.

Each magic parses its arguments and makes one library call, so it does nothing its Python twin does
not: `%%finetune` is `nbkit.finetune(**yaml)`, `%nbkit_load` is `nbkit.load_model`. User mistakes
(bad YAML, an unknown key, a missing folder...) become a plain `UsageError`: one line, no traceback
(IPython prints a traceback for subclasses). Loading this module imports neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
import keyword
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, kwds, magic_arguments, parse_argstring

from nbkit.core.config import config_help
from nbkit.core.suggest import did_you_mean

# Printed by `%finetune --help` and `%%finetune?`. IPython's help formatter dedents everything after
# the first line, so the unindented lines below keep the indented examples and key table as written.
_FINETUNE_EPILOG = f"""\
The cell body is YAML with the keys below (read with yaml.safe_load: nothing is evaluated; a key
written twice is an error).
A value "$name" is the notebook variable `name`, e.g. a DataFrame (data: $df) or a
(model, tokenizer) pair from %nbkit_load (model: $model, trained in place); nothing else is
interpolated.

  %%finetune --name demo
  model: minilm
  data: reviews.csv
  epochs: 2
  metrics: [accuracy, f1]

Python twin: nbkit.finetune(**config). Command line: nbkit finetune config.yaml.
Continue an interrupted run: %finetune --resume nbkit-runs/<run>.

Config keys:
{config_help()}
"""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "the user asked for something impossible", not a bug."""
    from nbkit.core.config import ConfigError
    from nbkit.core.data import DataError
    from nbkit.core.models import ModelError

    return (ConfigError, DataError, ModelError)


@contextlib.contextmanager
def _as_usage_error(yaml: bool = False):
    """Turn the library's errors for bad input into one plain UsageError (no traceback). `yaml`:
    the cell body is YAML, so suggestions read `model: minilm`, not load_model("minilm")."""
    try:
        yield
    except _user_errors() as exc:
        raise UsageError(exc.as_yaml() if yaml and hasattr(exc, "as_yaml") else str(exc)) from None


def _var_name(name: str, flag: str = "--out") -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"{flag} {name!r} is not a Python variable name (e.g. {flag} run2)")
    return name


def _show(obj: Any) -> None:
    """Display plain text and HTML views of `obj` (a summary dataclass with __str__ and _repr_html_)."""
    from IPython.display import display

    display({"text/plain": str(obj), "text/html": obj._repr_html_()}, raw=True)


def _yaml_error(exc: Exception) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return (f"the %%finetune body is not valid YAML: {problem}{where}. Write one `key: value` per "
            "line; %finetune --help lists the keys.")


def _lookup(key: Any, ref: str, namespace: dict[str, Any], hidden: Any = ()) -> Any:
    name = ref[1:]
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"{key!r}: {ref!r} is not a variable reference; write $name, where name is "
                         "a variable of the notebook")
    if name not in namespace:
        public = [n for n in namespace if not n.startswith("_") and n not in hidden]
        hint = did_you_mean(name, public, " (did you mean ${}?)")
        raise UsageError(f"{key!r}: the notebook has no variable {name!r}{hint}; define it in a cell "
                         "above, or write a name or path without '$'")
    return namespace[name]


def parse_body(cell: str, namespace: dict[str, Any], hidden: Any = ()) -> dict[Any, Any]:
    """The `%%finetune` body as finetune keyword arguments: YAML, then `$name` values looked up."""
    import yaml

    from nbkit.core.config import ConfigError, load_yaml

    try:
        # Line numbers as the notebook shows them: line 1 is the `%%finetune` line.
        config = load_yaml(cell, where="the cell", first_line=2)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise UsageError(_yaml_error(exc)) from None
    if config is None:  # only comments
        return {}
    if not isinstance(config, dict):
        raise UsageError(f"the %%finetune body must be YAML `key: value` lines (e.g. `epochs: 2`), "
                         f"not a {type(config).__name__}: {cell.strip()[:60]!r}")
    out = {}
    for key, value in config.items():
        if (key == "model" and value is not None and not isinstance(value, str)) or (
                key == "data" and isinstance(value, (bool, int, float))):
            # resolve_config lets objects through for these keys ($df, $model) and leaves them to the
            # loaders. From YAML a model can only be a name or path (a number or list would fail deep
            # in prepare with a TypeError); data may also be rows (a list of dicts) or columns.
            raise UsageError(f"{key!r} must be a name or a path, or $variable for an object in the "
                             f"notebook; got {value!r}")
        if isinstance(value, str) and value.startswith("$"):
            value = _lookup(key, value, namespace, hidden)
        elif isinstance(value, list):
            value = [_lookup(key, v, namespace, hidden) if isinstance(v, str) and v.startswith("$") else v
                     for v in value]
        out[key] = value
    return out


def _print_help(magic: Any) -> None:
    # IPython's formatter opens with "::" (reStructuredText for its docs); a reader does not need it.
    print(magic.parser.format_help().removeprefix("::\n\n"))


def _help_argument(func):
    return argument("-h", "--help", action="store_true", help="show this help and exit")(func)


@magics_class
class NbkitMagics(Magics):
    """nbkit's magics; `%load_ext nbkit` registers them."""

    @property
    def _ns(self) -> dict[str, Any]:
        assert self.shell is not None  # set by register_magics
        return self.shell.user_ns

    @magic_arguments()
    @_help_argument
    @argument("--name", help="run name (sets the config key `name`)")
    @argument("--out", default="run", metavar="VAR", help="store the Run in this variable (default: run)")
    @argument("--background", action="store_true",
              help="train in a background thread: the cell returns at once (run.wait() blocks)")
    @argument("--resume", metavar="RUN_DIR", help="continue an interrupted run with its stored config")
    @argument("--dry-run", action="store_true",
              help="validate, then print the config, the model summary and one tokenized example; "
                   "no training, nothing written")
    @kwds(epilog=_FINETUNE_EPILOG, usage=(
        # %-formatted by argparse, after IPython's "%" prefix: "%%" prints as "%".
        "%%finetune [--name NAME] [--out VAR] [--background] [--resume RUN_DIR] [--dry-run]\n"
        "  <YAML config: one `key: value` per line>\n\n"
        "  %%finetune --help\n"
        "  %%finetune --resume RUN_DIR [--out VAR] [--background]"))
    @line_cell_magic
    def finetune(self, line: str, cell: str | None = None) -> Any:
        """Fine-tune a model from the YAML config in the cell body, like nbkit.finetune(**config)."""
        args = parse_argstring(self.finetune, line)
        if args.help:
            _print_help(self.finetune)
            return None
        out = _var_name(args.out)
        hidden = getattr(self.shell, "user_ns_hidden", {})  # IPython's own names (In, Out, exit...)
        config = parse_body(cell, self._ns, hidden) if cell is not None else {}
        if args.resume is not None:
            return self._resume(args, out, config)
        if cell is None:
            raise UsageError("%finetune needs its config as a cell body: start the cell with %%finetune "
                             "(two %), or use %finetune --resume RUN_DIR; %finetune --help lists the keys")
        if args.name is not None:
            config["name"] = args.name
        from nbkit.core.train.finetune import resolve_config

        with _as_usage_error(yaml=True):
            cfg = resolve_config(config)  # the one validator: nothing is loaded or written before it
            if args.dry_run:
                from nbkit.core.preview import preview_finetune

                preview = preview_finetune(cfg)
            else:
                from nbkit.notebook.twins import finetune

                run = finetune(**config, background=args.background)
        if args.dry_run:
            print(preview.config_text() + "\n\n# model")
            _show(preview.summary)
            print(preview.example_text())
            # The cell's value (Out[], `_`): its HTML highlights the trained tokens.
            return preview
        return self._keep(out, run)

    def _resume(self, args: Any, out: str, config: dict) -> None:
        if config or args.name is not None or args.dry_run:
            raise UsageError("--resume continues a run with the config stored in its directory: leave the "
                             "cell body empty and drop --name/--dry-run")
        if not (Path(args.resume) / "config.yaml").is_file():
            raise UsageError(f"--resume {args.resume}: not a run directory (it has no config.yaml); "
                             "%nbkit runs lists the runs")
        from nbkit.notebook.twins import finetune

        with _as_usage_error(yaml=True):
            run = finetune(resume_from=args.resume, background=args.background)
        return self._keep(out, run)

    def _keep(self, out: str, run: Any) -> None:
        """Store the Run in the notebook and show its one-line summary (no Out[] echo)."""
        from IPython.display import display

        self._ns[out] = run
        display(run)

    @magic_arguments()
    @_help_argument
    @argument("name", nargs="?",  # optional only so that --help alone works
              help="'minilm' (bundled, offline), a Hugging Face hub id or a local model folder")
    @argument("--task", default="sequence-classification",
              help="sequence-classification (default), token-classification, causal-lm, masked-lm, "
                   "seq2seq or base")
    @argument("--out", default="model", metavar="VAR",
              help="store (model, tokenizer) in this variable (default: model)")
    @line_magic
    def nbkit_load(self, line: str) -> None:
        """Load a model and its tokenizer, like nbkit.load_model(NAME, task=TASK), and show its summary."""
        args = parse_argstring(self.nbkit_load, line)
        if args.help:
            _print_help(self.nbkit_load)
            return
        if args.name is None:
            raise UsageError("%nbkit_load needs a model: %nbkit_load minilm, a hub id or a folder")
        out = _var_name(args.out)
        from nbkit.core.models import load_model, model_summary

        with _as_usage_error():
            pair = load_model(args.name, task=args.task)
        self._ns[out] = pair
        _show(model_summary(pair[0]))

    @magic_arguments()
    @_help_argument
    @argument("command", nargs="?", choices=["runs", "clean", "device", "compare"],
              help="runs: list run directories and their sizes (nbkit.core.runs.list_runs); clean: "
                   "remove all but the newest --keep runs (nbkit.core.runs.clean_runs; lists them "
                   "unless --yes); device: devices and memory (nbkit.core.devices.device_report); "
                   "compare: overlay runs (nbkit.compare)")
    @argument("paths", nargs="*", help="runs: the folder holding run directories (default: nbkit-runs); "
                                       "compare: two or more run directories")
    @argument("--metric", default="eval_loss", help="compare only: the history column to plot")
    @argument("--keep", type=int, default=3, help="clean only: how many of the newest runs to keep")
    @argument("--yes", action="store_true", help="clean only: really delete (default: only list)")
    @line_magic
    def nbkit(self, line: str) -> None:
        """%nbkit runs [ROOT] lists training runs; %nbkit device shows devices and memory;
        %nbkit compare RUN_DIR RUN_DIR ... [--metric M] overlays runs."""
        args = parse_argstring(self.nbkit, line)
        if args.help:
            _print_help(self.nbkit)
            return
        if args.command is None:
            raise UsageError("%nbkit needs a command: %nbkit runs [ROOT], %nbkit device or "
                             "%nbkit compare RUN_DIR RUN_DIR")
        if args.command == "device":
            if args.paths:
                raise UsageError(f"%nbkit device takes no argument, got {' '.join(args.paths)!r}")
            from nbkit.core.devices import device_report

            _show(device_report())
            return
        if args.command == "compare":
            if not args.paths:
                raise UsageError("%nbkit compare needs run directories: %nbkit compare nbkit-runs/a nbkit-runs/b")
            from IPython.display import display

            from nbkit.figures.compare import compare

            try:
                comparison = compare(args.paths, metric=args.metric)
            except (ValueError, TypeError, FileNotFoundError) as exc:
                raise UsageError(str(exc)) from None
            display(comparison)
            return
        if len(args.paths) > 1:
            raise UsageError(f"%nbkit {args.command} takes one folder, got {len(args.paths)}")
        from IPython.display import display

        from nbkit.core.models import human_bytes
        from nbkit.core.runs import clean_runs, list_runs, sizes_for_display

        root = args.paths[0] if args.paths else "nbkit-runs"
        if args.command == "clean":
            try:
                old = clean_runs(root, keep=args.keep, dry_run=not args.yes)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            total = human_bytes(int(old["size"].sum())) if len(old) else "0 B"
            if old.empty:
                print(f"Nothing to clean in {root!r}: at most {args.keep} runs (or only running ones).")
            elif args.yes:
                print(f"Removed {int(old['removed'].sum())} runs from {root!r}, {total} freed.")
            else:
                print(f"Would remove {len(old)} runs from {root!r} ({total}), keeping the newest "
                      f"{args.keep}; add --yes to delete them:")
                display(sizes_for_display(old.drop(columns="removed")))
            return
        table = sizes_for_display(list_runs(root))
        if table.empty:
            print(f"No runs in {root!r} yet (a run directory holds metrics.jsonl; %%finetune writes "
                  "them under ./nbkit-runs).")
            return
        display(table)


    @magic_arguments()
    @_help_argument
    @argument("var", nargs="?", help="a (model, tokenizer) pair from %%nbkit_load or nbkit.load_model, "
                                     "a Run, or a saved nbkit Attention")
    @argument("text", nargs="*", help="the text to look at (quote it)")
    @argument("--pair", help="a second text (sentence pairs)")
    @argument("--view", help="head, model, matrix, rollout or generation (default: head; matrix with --compare)")
    @argument("--layer", help="a layer number, or mean")
    @argument("--head", help="a head number, or mean")
    @argument("--kind", help="encoder-decoder models: encoder, decoder or cross")
    @argument("--max-new-tokens", type=int, help="causal LMs: answer greedily first, then show prompt + answer")
    @argument("--compare", help="base (a LoRA model or run, adapter disabled), or a variable holding the base "
                                "model: show tuned - base")
    @line_magic
    def attention(self, line: str) -> Any:
        """Explore attention, like nbkit.show_attention(model, tokenizer, TEXT, ...)."""
        args = parse_argstring(self.attention, line)
        if args.help:
            _print_help(self.attention)
            return None
        if args.var is None or not args.text:
            raise UsageError("%attention: the following arguments are required: VAR TEXT, e.g. "
                             "%nbkit_load minilm --task base, then %attention model \"a sentence\"")
        if args.var not in self._ns:
            raise UsageError(f"%attention: no variable {args.var!r}; load one first: %nbkit_load minilm --task base")
        from nbkit.core.attention import Attention, AttentionError
        from nbkit.notebook.widgets.attention import show_attention

        target = self._ns[args.var]
        if isinstance(target, Attention):
            model, tokenizer = target, None
        elif isinstance(target, tuple) and len(target) == 2:
            model, tokenizer = target
        elif hasattr(target, "model") and hasattr(target, "tokenizer"):  # a Run
            model, tokenizer = target.model, target.tokenizer
        else:
            raise UsageError(f"%attention: {args.var!r} must be a (model, tokenizer) pair, a Run or an Attention, "
                             f"not {type(target).__name__}")
        compare = args.compare
        if compare not in (None, "base"):
            if compare not in self._ns:
                raise UsageError(f"%attention: --compare takes 'base' or a variable holding the base model; "
                                 f"no variable {compare!r}")
            compare = self._ns[compare]
            if isinstance(compare, tuple):
                compare = compare[0]
            elif hasattr(compare, "tokenizer") and hasattr(compare, "model"):  # a Run
                compare = compare.model
        extra = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
        text = " ".join(args.text).strip("\"'")
        with _as_usage_error():
            try:
                return show_attention(model, tokenizer, text, text_pair=args.pair, view=args.view,
                                      layer=_layer_or_mean(args.layer), head=_layer_or_mean(args.head),
                                      kind=args.kind, compare=compare, **extra)
            except AttentionError as exc:
                raise UsageError(str(exc)) from None

    @magic_arguments()
    @_help_argument
    @argument("var", nargs="?", help="a Run (from %%finetune or nbkit.fit) or a (model, tokenizer) pair")
    @argument("--base", action="store_true", help="start with the base model (a LoRA run, adapter disabled)")
    @argument("--temperature", type=float, default=0.0, help="0 (default) decodes greedily; > 0 samples")
    @argument("--max-new-tokens", type=int, default=256, help="the longest answer, in tokens (default 256)")
    @argument("--system", help="a system prompt (quote it)")
    @line_magic
    def chat(self, line: str) -> Any:
        """Chat with a model in a chat box, like run.chat() or nbkit.chat(model_and_tokenizer)."""
        args = parse_argstring(self.chat, line)
        if args.help:
            _print_help(self.chat)
            return None
        if args.var is None:
            raise UsageError("%chat needs a run or a (model, tokenizer) pair, e.g. %chat run")
        if args.var not in self._ns:
            hint = did_you_mean(args.var, [n for n in self._ns if not n.startswith("_")], " (did you mean {}?)")
            raise UsageError(f"%chat: no variable {args.var!r}{hint}; train one with %%finetune (it stores run)")
        from nbkit.core.llm.chat_session import ChatError
        from nbkit.notebook.widgets.chat import chat

        try:
            return chat(self._ns[args.var], tuned=not args.base, temperature=args.temperature,
                        max_new_tokens=args.max_new_tokens, system=_unquote(args.system))
        except ChatError as exc:
            raise UsageError(f"%chat: {exc}") from None


def _unquote(text: str | None) -> str | None:
    """IPython's argument splitter keeps the quotes around a quoted argument: drop one pair."""
    if text and len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _layer_or_mean(value: str | None) -> int | str | None:
    if value is None or value == "mean":
        return value
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"%attention: --layer/--head takes a number or 'mean', got {value!r}") from None


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(NbkitMagics)


def unload_ipython_extension(ipython: Any) -> None:
    manager = ipython.magics_manager
    for kind, names in NbkitMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(NbkitMagics.__name__, None)
