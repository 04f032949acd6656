"""The tutorial notebooks run top to bottom under nbclient, in small-run mode (NBKIT_SMALL=1), with
no error output, each kernel's run time and peak memory measured (Binder machines have 1-2 GB: each
must stay under 1.5 GB; the kernels start through binder/start, which sets the environment Binder's
kernels get). `tests/test_binder.py` runs the same function in a venv built from
binder/requirements.txt.

By hand: `python tests/test_notebooks.py [--full] [--binder] [--cells] [NAME ...]` prints the figures;
--full is the run a reader sees (minutes, not seconds), --binder starts the kernels through
binder/start as Binder does, --cells adds per-cell times and memory.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BINDER_START = ROOT / "binder" / "start"
RSS_LIMIT = 1.5 * 2**30  # Binder gives 1-2 GB; leave room for the Jupyter server itself
# 06 starts two worker processes beside its kernel (each imports torch and transformers, ~0.6 GB),
# measured together: 1.9-2.3 GB in small mode. Its own text says so; it is not for Binder's smallest.
RSS_LIMITS = {"06_scale_out": 2.75 * 2**30,
              # 07 fine-tunes a 135M-parameter LLM: its float32 weights alone are 540 MB, and checking an
              # export reloads them once more. Binder's 2 GB is the limit its text promises.
              "07_finetune_llm": 2.0 * 2**30}
FIGURES = Path("/tmp/nbkit-notebook-runs.json")

# What each notebook must show besides "no errors": substrings of its outputs (text or HTML).
EXPECTED = {
    "01_quickstart": ["nbkit-summary", "finished", "positive"],
    "02_pytorch_basics": ["nbkit-summary", "eval_accuracy", "grad"],
    "03_finetune_transformers": ["reviews.csv", "suggested lr", "stopped", "resumed", "eval_accuracy"],
    "04_attention": ["application/vnd.jupyter.widget-view+json", "previous"],
    "05_save_and_deploy": ["int8", "latency", "MB"],
    "07_finetune_llm": ["nbkit-samples-static", "exact match on", "nbkit-chat", "trained (", "answers equal"],
}
# Plots a notebook must show (image/png outputs): 02 draws digits, its mistakes and compare()'s chart.
MIN_PNGS = {"02_pytorch_basics": 3, "03_finetune_transformers": 1}


@dataclass
class NotebookRun:
    name: str
    small: bool
    seconds: float = 0.0
    peak_rss: int = 0  # bytes: the kernel's high-water mark (VmHWM), else the polled maximum
    errors: list[str] = field(default_factory=list)
    per_cell: list[tuple[int, float, int]] = field(default_factory=list)  # (cell, seconds, peak RSS so far)
    text: str = ""  # every output, concatenated, for content checks
    pngs: int = 0  # outputs with an image/png

    def line(self) -> str:
        mode = "small" if self.small else "full"
        return (f"{self.name}: {mode} mode {self.seconds:.1f} s, peak RSS {self.peak_rss / 2**20:.0f} MB, "
                f"{len(self.errors)} errors")


def kernel_dir(root: Path, python: str = sys.executable, wrapper: str | None = None) -> Path:
    """A JUPYTER_PATH folder whose python3 kernel runs `python` (not whatever is installed globally),
    started through `wrapper` if given (e.g. binder/start, which sets the environment and execs)."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [wrapper, *argv] if wrapper else argv,
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    return root


def _hwm(pid: int) -> int:
    """Peak resident memory of a live process in bytes (Linux), or 0 where /proc has no VmHWM."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _Peak:
    """Polls a process tree's RSS until stopped; `value` is the largest sum seen."""

    def __init__(self, pid: int, every: float = 0.2):
        import psutil

        self.proc, self.every, self.value = psutil.Process(pid), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        while not self._stop.wait(self.every):
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.value = max(self.value, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.value


def _outputs_text(nb) -> tuple[str, list[str]]:
    """All outputs as one string, and a description of each error (error outputs, and tracebacks
    printed to stderr, e.g. by a background thread)."""
    chunks, errors = [], []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append(f"cell {i}: {out.ename}: {out.evalue}")
            elif out.output_type == "stream":
                chunks.append(out.text)
                if out.name == "stderr" and "Traceback (most recent call last)" in out.text:
                    errors.append(f"cell {i}: traceback on stderr: {out.text[-300:]}")
            else:
                data = out.get("data", {})
                chunks.extend(v if isinstance(v, str) else json.dumps(v) for v in data.values())
                chunks.extend(data.keys())
    return "\n".join(chunks), errors


def run_notebook(path: Path, workdir: Path, *, small: bool = True, python: str = sys.executable,
                 wrapper: str | None = None, timeout: int = 900) -> NotebookRun:
    """Execute a copy of `path` in `workdir` with a kernel on `python`; the copy keeps its outputs."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    result = NotebookRun(name=path.stem, small=small)
    env_keep = {k: os.environ.get(k) for k in ("NBKIT_SMALL", "JUPYTER_PATH", "HF_HUB_OFFLINE",
                                                 "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
                                                 "OMP_NUM_THREADS", "MPLBACKEND")}
    # The kernel inherits this process's environment: small-run switch, offline hub, our kernelspec.
    os.environ["JUPYTER_PATH"] = str(kernel_dir(workdir / ".jupyter", python, wrapper))
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    if small:
        os.environ["NBKIT_SMALL"] = "1"
        os.environ["OMP_NUM_THREADS"] = "1"
    else:
        os.environ.pop("NBKIT_SMALL", None)
    os.environ.pop("MPLBACKEND", None)  # the kernel picks its inline backend itself

    peak: dict[str, object] = {}

    def started(**_):
        pid = client.km.provisioner.process.pid
        peak["pid"], peak["poll"] = pid, _Peak(pid)

    def cell_done(cell, cell_index, **_):  # the kernel is alive between cells, not at the end
        peak["hwm"] = max(int(peak.get("hwm") or 0), _hwm(peak["pid"]))
        now = time.perf_counter()
        result.per_cell.append((cell_index, round(now - peak.get("t", t0), 2), peak["hwm"]))
        peak["t"] = now

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}},
                            on_notebook_start=started, on_cell_executed=cell_done)
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        result.errors.append(str(exc).splitlines()[-1] if str(exc) else repr(exc))
    finally:
        result.seconds = time.perf_counter() - t0
        polled = peak["poll"].stop() if "poll" in peak else 0
        result.peak_rss = max(int(peak.get("hwm") or 0), polled)
        nbformat.write(nb, copy)
        for key, value in env_keep.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    result.text, errors = _outputs_text(nb)
    result.pngs = sum("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))
    result.errors.extend(e for e in errors if e not in result.errors)
    return result


def record(result: NotebookRun) -> None:
    """Print the figures and keep them in /tmp/nbkit-notebook-runs.json (one entry per name and mode)."""
    print(result.line())
    try:
        figures = json.loads(FIGURES.read_text())
    except (OSError, ValueError):
        figures = {}
    entry = {k: v for k, v in asdict(result).items() if k not in ("text", "per_cell")}
    figures[f"{result.name}:{'small' if result.small else 'full'}"] = entry
    FIGURES.write_text(json.dumps(figures, indent=1))


def check(result: NotebookRun) -> None:
    assert result.errors == [], f"{result.name}: {result.errors}"
    limit = RSS_LIMITS.get(result.name, RSS_LIMIT)
    assert result.peak_rss < limit, f"{result.name}: peak RSS {result.peak_rss / 2**20:.0f} MB"
    assert result.peak_rss > 0
    missing = [s for s in EXPECTED.get(result.name, []) if s not in result.text]
    assert missing == [], f"{result.name}: outputs lack {missing}"
    assert result.pngs >= MIN_PNGS.get(result.name, 0), f"{result.name}: {result.pngs} plots shown"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_small(path: Path, tmp_path: Path) -> None:
    pytest.importorskip("nbclient")
    # Kernels start through binder/start, as on Binder, whose memory limit the 1.5 GB check is for.
    result = run_notebook(path, tmp_path, small=True, wrapper=str(BINDER_START))
    record(result)
    check(result)


def test_notebooks_are_committed_clean() -> None:
    """Outputs cleared, a python3 kernelspec (without one JupyterLab opens a kernel picker and
    stalls), and the small-run switch in the first code cell."""
    import nbformat

    assert [p.stem[:2] for p in NOTEBOOKS][:5] == ["01", "02", "03", "04", "05"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert 'os.environ.get("NBKIT_SMALL") == "1"' in code[0].source, path.name
        assert "widgets" not in nb.metadata, f"{path.name} carries widget state"


if __name__ == "__main__":
    full = "--full" in sys.argv
    names = [a for a in sys.argv[1:] if not a.startswith("--")]
    base = Path(os.environ.get("NBKIT_NB_WORKDIR", "/tmp/nbkit-notebooks"))
    for nb_path in NOTEBOOKS:
        if names and not any(n in nb_path.stem for n in names):
            continue
        # --binder: start kernels through binder/start, with the environment Binder gives them
        wrapper = str(BINDER_START) if "--binder" in sys.argv else None
        res = run_notebook(nb_path, base / ("full" if full else "small") / nb_path.stem, small=not full,
                           wrapper=wrapper)
        record(res)
        for err in res.errors:
            print("   ", err)
        if "--cells" in sys.argv:
            for index, seconds, rss in res.per_cell:
                print(f"    cell {index:2d}: {seconds:6.1f} s, peak so far {rss / 2**20:.0f} MB")
