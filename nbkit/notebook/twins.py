"""The public `nbkit.fit`, `nbkit.finetune` and `nbkit.lr_find`: the core functions, plus the live
dashboard when they run in a Jupyter kernel.

This is where the notebook layer hands its dashboard to the core, as an observer factory
(`progress=`): the core never imports widgets. Outside a kernel the core's text progress bar is
used. Importing this module imports neither IPython nor widgets.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from nbkit.core.train.finetune import finetune as _finetune
from nbkit.core.train.loop import fit as _fit
from nbkit.core.train.lr_find import lr_find as _lr_find


def in_notebook() -> bool:
    """True inside a Jupyter kernel. Looks at sys.modules only, so a script never imports IPython."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def dashboard_factory(**options: Any) -> Callable[[], Any] | bool:
    """What `progress=True` means here: a factory of the live dashboard in a kernel (called once the
    run's input is valid, so a bad config leaves no empty dashboard behind), else the text bar."""
    if not in_notebook():
        return True
    try:
        from nbkit.notebook.widgets.dashboard import Dashboard
    except ImportError:  # widgets missing (a minimal install): the text bar
        return True
    return lambda: Dashboard(**options).show()


def _with_dashboard(core: Callable, **options: Any) -> Callable:
    @functools.wraps(core)
    def twin(*args: Any, progress: bool | Callable = True, **kwargs: Any):
        return core(*args, progress=dashboard_factory(**options) if progress is True else progress, **kwargs)

    return twin


fit = _with_dashboard(_fit)
finetune = _with_dashboard(_finetune)
lr_find = _with_dashboard(_lr_find, x_axis="lr")
