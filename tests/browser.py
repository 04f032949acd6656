"""A harness for browser tests: JupyterLab (or Notebook 7) on a free localhost port with a token, and
headless Debian Chromium driven by Python playwright (never `playwright install`).

`jupyter_server(root)` starts the server with its own JUPYTER_PATH (a python3 kernel on this
interpreter) and config (no news toast); `browser()` launches Chromium; `NotebookPage` opens a
notebook, waits for an idle kernel, runs all cells, waits for them to finish, and collects what a
person would notice: error outputs, dialogs (alert/confirm), requests that leave localhost, and
screenshots (in a folder under /tmp/nbkit-shots, printed). `require_browser()` skips a test cleanly
where Chromium or playwright is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

CHROMIUM = shutil.which("chromium")
SHOTS = Path(os.environ.get("NBKIT_SHOTS", "/tmp/nbkit-shots"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def require_browser() -> None:
    """Skip the calling test (or fixture) where headless Chromium cannot be driven."""
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium; .ci/browser-deps does it)")
    pytest.importorskip("playwright.sync_api", reason="the Python playwright package is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shots_dir(name: str) -> Path:
    """A fresh screenshot folder /tmp/nbkit-shots/<name>, printed so a person can look."""
    path = SHOTS / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    print(f"screenshots: {path}")
    return path


@dataclass
class JupyterServer:
    base: str
    token: str
    root: Path
    app: str  # "lab" or "notebook"
    log: Path

    def notebook_url(self, name: str) -> str:
        if self.app == "lab":
            return f"{self.base}/lab/tree/{name}?token={self.token}&reset"
        return f"{self.base}/notebooks/{name}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut down every kernel of this server (frees the memory of the notebook just tested)."""
        for kernel in self.api("/api/kernels"):
            with contextlib.suppress(OSError):
                self.api(f"/api/kernels/{kernel['id']}", method="DELETE")


def _write_config(home: Path, python: str, settings: dict[str, dict] | None) -> dict[str, str]:
    """Kernelspec, page config and user settings in `home`; the environment variables that use them."""
    spec = home / "data" / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    labconfig = home / "config" / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    # The "get Jupyter news?" toast would cover the screenshots and wants the network.
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    user_settings = home / "settings"
    for plugin, values in (settings or {}).items():  # e.g. {"@jupyter-widgets/jupyterlab-manager:plugin": {...}}
        package, _, name = plugin.partition(":")
        target = user_settings / package / f"{name}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    return {"JUPYTER_PATH": str(home / "data"), "JUPYTER_CONFIG_PATH": str(home / "config"),
            "JUPYTERLAB_SETTINGS_DIR": str(user_settings),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime")}


@contextlib.contextmanager
def jupyter_server(root: Path, *, app: str = "lab", env: dict[str, str] | None = None,
                   python: str = sys.executable, settings: dict[str, dict] | None = None,
                   home: Path | None = None, startup_timeout: float = 60) -> Iterator[JupyterServer]:
    """Run `jupyter lab` (or `jupyter notebook`) serving `root` on a free localhost port; yield it;
    stop it and its kernels. `env` adds to the kernels' environment (they inherit the server's)."""
    if app not in ("lab", "notebook"):
        raise ValueError(f"app must be 'lab' or 'notebook', got {app!r}")
    home = home or root.parent / f".jupyter-{app}-{secrets.token_hex(3)}"
    token = secrets.token_hex(16)
    port = free_port()
    full_env = {**os.environ, **_write_config(home, python, settings), "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PATH": f"{Path(python).parent}:{os.environ.get('PATH', '')}", **(env or {})}
    full_env.pop("MPLBACKEND", None)
    expose = "LabApp" if app == "lab" else "JupyterNotebookApp"
    cmd = [sys.executable, "-m", "jupyter", app, "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
           f"--{expose}.expose_app_in_browser=True", "--allow-root", f"--ServerApp.root_dir={root}",
           "--ServerApp.open_browser=False"]
    log = home / f"{app}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = JupyterServer(base=f"http://127.0.0.1:{port}", token=token, root=root, app=app, log=log)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                server.api("/api/status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter {app} did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.3)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# JavaScript run in the page. `window.jupyterapp` is there because of expose_app_in_browser.
_KERNEL_STATUS = "window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel?.status"
_JS_NOTEBOOK = "() => window.jupyterapp.shell.currentWidget.content.model.toJSON()"
_JS_BUSY = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.widgets;
  return cells.filter(c => c.model.type === 'code' && c.promptNode &&
                      c.promptNode.textContent.includes('*')).length;
}"""
_JS_CELL_TEXTS = """() => [...document.querySelectorAll('.jp-Cell')].map(
  c => (c.querySelector('.jp-InputPrompt')?.textContent || '') + ' ' +
       (c.querySelector('.jp-OutputArea')?.innerText || ''))"""


def write_notebook(path: Path, sources: list[str], prefix: str = "c") -> Path:
    """A notebook of code cells (no outputs) with a python3 kernelspec, for a test to open."""
    cells = [{"cell_type": "code", "id": f"{prefix}{i}", "metadata": {}, "source": src, "outputs": [],
              "execution_count": None} for i, src in enumerate(sources)]
    path.write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}}))
    return path


@dataclass
class NotebookPage:
    """One browser page showing one notebook of `server`."""

    page: Any
    server: JupyterServer
    shots: Path
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    @classmethod
    def new(cls, chromium: Any, server: JupyterServer, shots: Path, *, width: int = 1300,
            height: int = 1000) -> NotebookPage:
        page = chromium.new_page(viewport={"width": width, "height": height})
        self = cls(page=page, server=server, shots=shots)

        def on_dialog(dialog):  # an alert() from injected markup would land here
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        return self

    # -- driving -----------------------------------------------------------------------------------

    def open(self, name: str, timeout: float = 90) -> None:
        """Open notebook `name` (relative to the server root) and wait for its kernel to be idle."""
        self.page.goto(self.server.notebook_url(name))
        self.wait_for(f"() => {_KERNEL_STATUS} === 'idle'", timeout)

    def run_all(self) -> None:
        """Start running every cell; returns at once (the command's promise is not awaited)."""
        self.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def wait_for(self, js: str, timeout: float = 60, arg: Any = None) -> Any:
        """Wait until `js` is truthy; on timeout, fail with what the notebook shows (error outputs,
        kernel status, the last output of each cell) and a screenshot, not only "Timeout"."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            return self.page.wait_for_function(js, arg=arg, timeout=timeout * 1000)
        except PlaywrightTimeout:
            raise AssertionError(f"waited {timeout} s for {js}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """What a person looking at the page would see, for a failure message (best effort)."""
        lines = []
        try:
            self.page.screenshot(path=str(self.shots / "failure.png"), full_page=True)
            lines.append(f"screenshot: {self.shots / 'failure.png'}")
            lines.append(f"kernel: {self.page.evaluate(f'() => {_KERNEL_STATUS}')}")
            lines += self.error_outputs()
            for i, cell in enumerate(self.page.evaluate(_JS_CELL_TEXTS)):
                lines.append(f"cell {i} output: {cell[-400:]!r}")
            for i, cell in enumerate(self.notebook_json()["cells"]):  # the model, rendered or not
                kinds = [sorted(o.get("data", {})) or o.get("output_type") for o in cell.get("outputs", [])]
                lines.append(f"cell {i} outputs in the model: {kinds}")
        except Exception as exc:  # the page itself may be gone
            lines.append(f"(no diagnosis: {exc})")
        return "\n".join(lines)

    def wait_until_done(self, timeout: float = 300, settle: float = 1.5) -> None:
        """Wait until no cell is queued or running and the kernel stays idle for `settle` seconds
        (cells after a failing one are never run: that counts as done, with an error output)."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            busy = self.page.evaluate(_JS_BUSY)
            status = self.page.evaluate(f"() => {_KERNEL_STATUS}")
            if busy == 0 and status == "idle":
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return
            else:
                quiet_since = None
            time.sleep(0.25)
        raise TimeoutError(f"cells still running after {timeout} s")

    def save(self, timeout: float = 30) -> None:
        """Save with JupyterLab's own command and wait until the document is clean."""
        self.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        self.wait_for("() => window.jupyterapp.shell.currentWidget.context.model.dirty === false", timeout)

    def kernel_execute(self, code: str, timeout: float = 60) -> str:
        """Run `code` in the notebook's kernel outside any cell; return what it printed."""
        return self.page.evaluate("""async (code) => {
          const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
          const future = kernel.requestExecute({code, store_history: false});
          let out = '';
          future.onIOPub = (msg) => {
            if (msg.header.msg_type === 'stream') out += msg.content.text;
            if (msg.header.msg_type === 'error') out += msg.content.ename + ': ' + msg.content.evalue;
          };
          await future.done;
          return out;
        }""", code)

    def interrupt_kernel(self) -> None:
        """What the stop square (Kernel > Interrupt) does."""
        self.page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.interrupt()")

    def shutdown_kernel(self) -> None:
        with contextlib.suppress(Exception):
            self.page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")

    # -- looking -----------------------------------------------------------------------------------

    def notebook_json(self) -> dict:
        return self.page.evaluate(_JS_NOTEBOOK)

    def error_outputs(self) -> list[str]:
        """Error outputs in the notebook model, plus tracebacks printed to stderr (e.g. by a thread)."""
        errors = []
        for i, cell in enumerate(self.notebook_json()["cells"]):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    errors.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
                elif out.get("output_type") == "stream" and out.get("name") == "stderr":
                    text = "".join(out.get("text", ""))
                    if "Traceback (most recent call last)" in text:
                        errors.append(f"cell {i}: traceback on stderr: {text[-300:]}")
        return errors

    def unexecuted_code_cells(self) -> list[int]:
        cells = self.notebook_json()["cells"]
        return [i for i, c in enumerate(cells) if c["cell_type"] == "code" and c["source"].strip()
                and c.get("execution_count") is None]

    def non_local_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("data:", "blob:"))
                and urlparse(u).hostname not in LOCAL_HOSTS]

    def screenshot(self, name: str, locator: Any = None) -> Path:
        path = self.shots / f"{name}.png"
        if locator is None:
            self.page.screenshot(path=str(path))
        else:
            locator.scroll_into_view_if_needed()
            locator.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.shutdown_kernel()
        self.page.close()


# -- the dashboard, seen from the page -------------------------------------------------------------

# Points in the first trace (raw training loss) of a live dashboard chart; index -1 is the last one on
# the page. A finished run's dashboard is replaced by its final figure, so the running dashboard's
# chart is usually the last.
JS_CHART_POINTS = """(i) => {
  const all = document.querySelectorAll('.nbkit-dashboard');
  const d = all[i < 0 ? all.length + i : i];
  return d && d.dataset.points ? Number(d.dataset.points) : -1;
}"""


def watch_chart_grow(page: Any, index: int = -1, *, samples: int = 40, every: float = 0.25,
                     until: str | None = None, on_growth: Any = None, enough: int | None = None) -> list[int]:
    """Point counts of one live chart sampled over time; stops early once the JS `until` is true,
    or once the count took `enough` distinct values. `on_growth()` is called once, when the count
    has changed three times (e.g. for a screenshot)."""
    counts: list[int] = []
    for _ in range(samples):
        counts.append(page.evaluate(JS_CHART_POINTS, index))
        if enough is not None and len({c for c in counts if c > 0}) >= enough:
            break
        if on_growth is not None and len({c for c in counts if c > 0}) >= 3:
            on_growth()
            on_growth = None
        if until is not None and page.evaluate(until):
            break
        time.sleep(every)
    return counts


def grew(counts: list[int], times: int = 3) -> bool:
    """True when the count took `times` distinct values and ended higher than it started."""
    seen = [c for c in counts if c > 0]
    return len(set(seen)) >= times and seen[-1] > seen[0]
