"""Control: stop/pause requests from any thread, the stop file, first request wins."""

from __future__ import annotations

import threading

from nbkit.core.train.control import Control


def test_first_stop_request_keeps_its_reason_and_status():
    c = Control()
    assert not c.stop_requested and not c.should_stop()
    c.request_stop("early stopping: no gain", status="finished")
    c.request_stop("stopped by user")
    assert c.should_stop() and (c.reason, c.status) == ("early stopping: no gain", "finished")
    c.reset()
    assert not c.stop_requested and (c.reason, c.status) == ("", "stopped")


def test_stop_file_becomes_a_stop_request(tmp_path):
    c = Control(stop_file=tmp_path / "STOP")
    assert not c.should_stop()
    (tmp_path / "STOP").write_text("x")
    assert c.should_stop() and c.reason == "stopped (stop file)"


def test_pause_holds_until_resume_or_stop():
    c = Control()
    c.pause()
    assert c.paused
    released = threading.Event()

    def waiter():
        c.wait_if_paused(poll=0.01)
        released.set()

    t = threading.Thread(target=waiter)
    t.start()
    assert not released.wait(0.2)  # still held
    c.request_stop("stop while paused")
    t.join(5)
    assert released.is_set() and not c.paused
