"""The worker process's ties to the notebook that launched it: it ends with its launcher (Linux
parent-death signal) and, through a watchdog on the notebook's pid, with the notebook: a stop at
the next step boundary first, a forced exit after a grace period (issue 12, scenario 7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest


def ended(pid: int) -> bool:
    """Gone, or a zombie (it has exited; only its exit status waits for a parent to collect it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_ended(pids, timeout: float) -> list[int]:
    """The pids still running after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if not ended(p)]
        time.sleep(0.05)
    return left


def read_pid(proc: subprocess.Popen) -> int:
    line = proc.stdout.readline()
    assert line.strip().isdigit(), line + proc.stderr.read()
    return int(line)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_ends_with_its_parent():
    # parent -> child; the child asks for SIGTERM when its parent ends, then sleeps "forever".
    child = textwrap.dedent("""
        import time
        from nbkit.core.train.worker import die_with_parent
        assert die_with_parent()
        print("ready", flush=True)
        time.sleep(600)
    """)
    parent = textwrap.dedent(f"""
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "ready\\n"
        print(p.pid, flush=True)
        p.wait()
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    pid = read_pid(proc)
    assert not ended(pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert wait_ended([pid], timeout=10) == []


def test_the_watchdog_stops_the_run_then_exits_when_the_notebook_is_gone(tmp_path):
    notebook = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    started = psutil.Process(notebook.pid).create_time()
    stop = tmp_path / "STOP"
    # A "worker" whose training hangs: only the forced exit can end it.
    worker = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from nbkit.core.train.worker import watch_notebook
        watch_notebook({notebook.pid}, {started!r}, Path({str(stop)!r}), every=0.05, grace=1.0)
        print("watching", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "watching\n"
    assert not stop.exists() and proc.poll() is None
    notebook.kill()
    notebook.wait(10)
    assert proc.wait(15) == 3  # ORPHAN_EXIT
    assert stop.read_text() == f"the notebook (pid {notebook.pid}) ended"
    assert proc.stderr.read().splitlines()[-2:] == [
        f"nbkit worker: the notebook (pid {notebook.pid}) ended; stopping",
        "nbkit worker: still running 1 s later; exiting",
    ]


def test_a_reused_pid_is_not_the_notebook():
    from nbkit.core.train.worker import _alive

    me = psutil.Process()
    assert _alive(me.pid, me.create_time())
    assert not _alive(me.pid, me.create_time() - 3600)  # same pid, another process's start time
