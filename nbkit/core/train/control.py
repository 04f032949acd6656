"""`Control`: the requests that reach a training run from outside its loop (a Stop button, Ctrl-C,
an observer such as early stopping, a stop file dropped by the notebook that launched the workers)
and the agreement between processes on when to act on them.

Any thread may call `request_stop`, `pause` and `resume`; the loop asks `should_stop` at each step
boundary and calls `wait_if_paused` there. `Run` exposes the same controls publicly.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any


class Control:
    def __init__(self, stop_file: str | Path | None = None):
        self.stop_file = Path(stop_file) if stop_file else None
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.reason = ""
        # how a stop ends the run: "stopped" (a person or Ctrl-C: save, no test evaluation) or
        # "finished" (early stopping: a normal end, with the test evaluation)
        self.status = "stopped"
        self.after_epoch = False

    def reset(self) -> None:
        """Forget earlier requests (a Trainer run through the adapter trains again with one Run)."""
        self._stop.clear()
        self._running.set()
        self.reason, self.status, self.after_epoch = "", "stopped", False

    # -- requests (any thread) --------------------------------------------------------------------

    def request_stop(self, reason: str, status: str = "stopped") -> None:
        """End at the next step boundary. The first request's reason and status stand."""
        if not self._stop.is_set():
            self.reason, self.status = reason, status
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def stop_after_epoch(self) -> None:
        self.after_epoch = True

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set() and not self._stop.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # -- the loop's side --------------------------------------------------------------------------

    def should_stop(self, accelerator: Any = None) -> bool:
        """Has anyone asked to stop? With several processes every one must reach the same answer at
        the same step, or they would wait for each other forever: any process's request becomes
        everyone's (accelerate's trigger), with rank 0's reason."""
        if self.stop_file is not None and not self._stop.is_set() and self.stop_file.exists():
            self.request_stop("stopped (stop file)")
        if accelerator is None or accelerator.num_processes == 1:
            return self._stop.is_set()
        if self._stop.is_set():
            accelerator.set_trigger()
        if not accelerator.check_trigger():
            return False
        from accelerate.utils import broadcast_object_list

        reason, status = broadcast_object_list([self.reason or "stopped", self.status])
        self._stop.set()
        self.reason, self.status = reason, status
        return True

    def wait_if_paused(self, poll: float = 0.1) -> None:
        if self._running.is_set():  # the common case, at every step: no wait machinery
            return
        while not self._running.wait(poll):
            if self._stop.is_set():
                return
