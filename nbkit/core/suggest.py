"""Did-you-mean, in one place: config keys, choices, column names, metrics, keyword arguments and
notebook variables all guess the same way. `check_kwargs` makes a Python twin reject an unknown keyword
argument with one line that names the closest valid one and lists them all, as the magics do.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["check_kwargs", "closest", "did_you_mean", "unknown_argument", "valid_arguments"]


def closest(value: Any, choices: Iterable[Any], *, cutoff: float = 0.6) -> str | None:
    """The choice `value` most likely meant, or None.

    A case-insensitive exact match wins, then a prefix in either direction ("lrate" -> "lr",
    "eval" -> "eval_loss"; the longest shared prefix first), then difflib's closest by ratio.
    """
    options = [str(c) for c in choices]
    text = str(value)
    low = text.lower()
    for option in options:
        if option.lower() == low and option != text:
            return option
    prefixed = [o for o in options if o and (low.startswith(o.lower()) or o.lower().startswith(low))]
    if prefixed and len(low) >= 2:
        return max(prefixed, key=lambda o: (len(_common_prefix(o.lower(), low)), -len(o)))
    close = difflib.get_close_matches(text, options, n=1, cutoff=cutoff)
    return close[0] if close else None


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def did_you_mean(value: Any, choices: Iterable[Any], template: str = " (did you mean {!r}?)", *,
                 cutoff: float = 0.6) -> str:
    """`template` filled with the closest choice, or "" when nothing is close."""
    guess = closest(value, choices, cutoff=cutoff)
    return template.format(guess) if guess is not None else ""


def unknown_argument(func: str, name: str, valid: Iterable[str], guess: str | None = None):
    """ "func(): unknown argument 'x'; did you mean 'y'? valid: a, b, c" as one line (an ArgumentError).

    `guess` overrides the spelling-based guess (for a name that means another: decoder_text -> target).
    """
    from .config import ArgumentError  # config.py imports this module

    valid = list(valid)
    guess = guess or closest(name, valid)
    hint = f" did you mean {guess!r}?" if guess else ""
    return ArgumentError(f"{func}(): unknown argument {name!r};{hint} valid: {', '.join(valid)}")


def _keyword_names(func: Callable) -> tuple[list[str], bool]:
    params = inspect.signature(func).parameters.values()
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and p.name not in ("self", "cls")]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def check_kwargs(func: Callable | None = None, *, extra: Iterable[str] | Callable[[], Iterable[str]] = (),
                 aliases: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
                 meant: Mapping[str, str] | None = None):
    """Decorator: reject unknown keyword arguments of `func` before it runs.

    Valid names are `func`'s own keyword parameters plus `extra` (what its `**kwargs` passes on,
    e.g. the keys of a config or the parameters of the function it calls). `aliases` maps other
    accepted names to valid ones (Trainer's `learning_rate` -> `lr`): when `func` names the target
    itself the alias is renamed before the call, otherwise it is passed on for `**kwargs` to resolve.
    `meant` maps names users write by mistake to the valid one they mean, for the error's hint only
    (`decoder_text` -> `target`). `extra` and `aliases` may be zero-argument callables, read at the
    first call (so a heavy module is imported only then).

        @check_kwargs(extra=lambda: valid_arguments(capture_attention), meant={"decoder_text": "target"})
        def show_attention(model, tokenizer=None, text=None, *, view="head", **capture): ...
    """
    def decorate(f: Callable) -> Callable:
        own, passes_on = _keyword_names(f)
        cache: dict[str, Any] = {}

        def tables() -> tuple[list[str], dict[str, str]]:
            if not cache:
                more = extra() if callable(extra) else extra
                names = list(dict.fromkeys([*own, *more]))
                alias_map = dict((aliases() if callable(aliases) else aliases) or {})
                cache["valid"], cache["aliases"] = names, alias_map
            return cache["valid"], cache["aliases"]

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            valid, alias_map = tables()
            for key in list(kwargs):
                if key in valid:
                    continue
                target = alias_map.get(key)
                if target is None or target not in valid or (target not in own and not passes_on):
                    usable = {a: t for a, t in alias_map.items() if t in own or (t in valid and passes_on)}
                    guess = (meant or {}).get(key) or closest(key, [*valid, *usable])
                    raise unknown_argument(f.__name__, key, valid, usable.get(guess, guess))
                if target in own:
                    if target in kwargs:
                        from .config import ArgumentError

                        raise ArgumentError(f"{f.__name__}(): {key!r} and {target!r} are the same option; "
                                            f"give one: {target}")
                    kwargs[target] = kwargs.pop(key)
            return f(*args, **kwargs)

        return wrapper

    return decorate(func) if func is not None else decorate


def valid_arguments(func: Callable) -> list[str]:
    """The keyword names `func` accepts (for `extra=`, e.g. what `**capture` passes on)."""
    target = inspect.unwrap(func)
    return _keyword_names(target)[0]
