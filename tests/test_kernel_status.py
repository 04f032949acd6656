"""The kernel-status keeper: after a subshell's "idle" for a widget message, the cell that trains
is reported "busy" again; the keeper leaves when the cell's own "idle" goes out."""

from __future__ import annotations


def test_kernel_busy_keeper_republishes_busy_after_a_subshell_idle():
    from nbkit.notebook.widgets.kernel_status import KernelBusy

    sent = []

    class FakeKernel:
        _supports_kernel_subshells = True

        def _publish_status(self, status, channel, parent=None):
            sent.append((status, (parent or {}).get("header", {}).get("msg_type")))

        def get_parent(self, channel):
            return {}

    kernel = FakeKernel()
    cell = {"header": {"msg_type": "execute_request", "msg_id": "cell"}}
    keeper = KernelBusy(kernel, cell)
    kernel._publish_status = keeper._publish_status
    comm_msg = {"header": {"msg_type": "comm_msg", "subshell_id": "s1", "msg_id": "c1"}}
    kernel._publish_status("busy", "shell", comm_msg)
    kernel._publish_status("idle", "shell", comm_msg)
    kernel._publish_status("idle", "shell", {"header": {"msg_type": "execute_request", "msg_id": "other"}})
    assert sent == [("busy", "comm_msg"), ("idle", "comm_msg"), ("busy", "execute_request"),
                    ("idle", "execute_request")]
    assert "_publish_status" in vars(kernel)
    kernel._publish_status("idle", "shell", cell)  # the cell's own idle: the keeper goes away
    assert "_publish_status" not in vars(kernel)
    kernel._publish_status("idle", "shell", comm_msg)
    assert sent[-2:] == [("idle", "execute_request"), ("idle", "comm_msg")]  # no busy any more
