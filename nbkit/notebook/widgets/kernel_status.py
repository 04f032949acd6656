"""Keep JupyterLab's kernel status honest while a cell trains: "busy" until the cell ends, even
though the dashboard's widget messages are answered on a subshell (which publishes its own "idle").
Used by the dashboard (dashboard.py); a private hook on ipykernel 7's kernel object.
"""

from __future__ import annotations

from typing import Any


class KernelBusy:
    """Keep a kernel that is training in a blocking cell reading "busy".

    JupyterLab >= 4.4 sends widget messages (our Stop button, the view's hello) on a subshell, and
    ipykernel 7 answers each with status busy -> idle on that subshell; the front end then shows
    "Idle" for the rest of the cell, although the main shell is still running it. From the moment
    the dashboard is shown in a cell, after each such idle we publish "busy" again for the cell's
    own request (and once at the start, in case an idle went out before). It removes itself when
    the cell's own idle goes out (a background run's cell ends at once) or the run ends; it does
    nothing outside an ipykernel with subshells.
    """

    def __init__(self, kernel: Any, parent: dict):
        self.kernel, self.parent = kernel, parent
        self.original = kernel._publish_status

    @classmethod
    def start(cls) -> KernelBusy | None:
        try:
            from ipykernel.kernelbase import Kernel
        except ImportError:
            return None
        if not Kernel.initialized():
            return None
        kernel = Kernel.instance()
        if not getattr(kernel, "_supports_kernel_subshells", False) or "_publish_status" in vars(kernel):
            return None
        parent = kernel.get_parent("shell")
        if not parent or parent.get("header", {}).get("msg_type") != "execute_request":
            return None
        keeper = cls(kernel, parent)
        kernel._publish_status = keeper._publish_status
        keeper.original("busy", "shell", parent)
        return keeper

    def _publish_status(self, status, channel, parent=None):
        self.original(status, channel, parent)
        if status != "idle" or channel != "shell":
            return
        header = (parent or self.kernel.get_parent(channel) or {}).get("header", {})
        if header.get("msg_id") is not None and header.get("msg_id") == self.parent["header"].get("msg_id"):
            self.stop()  # the cell itself is done: the kernel really is idle now
        elif header.get("msg_type") in ("comm_msg", "comm_open", "comm_close") and header.get("subshell_id"):
            self.original("busy", "shell", self.parent)

    def stop(self) -> None:
        if vars(self.kernel).get("_publish_status") == self._publish_status:
            del self.kernel._publish_status
