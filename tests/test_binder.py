"""The Binder configuration in binder/, checked without Docker (none runs here): repo2docker accepts
it and prints the Dockerfile it would build; the files agree with pyproject.toml; and (slow) a fresh
virtual environment built the way Binder builds its image, from binder/requirements.txt and
binder/postBuild, runs every notebook in small-run mode with kernels started through binder/start.

PyTorch's CPU index cannot be reached from here, so the venv gets this machine's CPU wheel of the
same version (`pip install torch==<pin>`) and the `--extra-index-url` line is left out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_notebooks import NOTEBOOKS, check, record, run_notebook

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _requirements() -> dict[str, str]:
    """Pinned requirement name (normalised) -> version, from binder/requirements.txt."""
    pins = {}
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _dependency_names() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + project["optional-dependencies"]["lab"]
    return [re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]).lower() for d in names]


def test_binder_files_agree_with_the_project() -> None:
    pins = _requirements()
    assert all(v for v in pins.values()), f"unpinned requirements: {[k for k, v in pins.items() if not v]}"
    missing = [d for d in _dependency_names() if d not in pins]
    assert missing == [], f"binder/requirements.txt lacks dependencies of pyproject.toml: {missing}"
    for used_by_notebooks in ("scikit-learn", "onnx", "onnxruntime", "onnxscript"):
        assert used_by_notebooks in pins
    text = (BINDER / "requirements.txt").read_text()
    assert f"--extra-index-url {CPU_INDEX}" in text
    assert pins["torch"].endswith("+cpu")  # the CPU build, never the CUDA one from PyPI

    post_build = (BINDER / "postBuild").read_text().splitlines()
    assert post_build[0].startswith("#!/bin/bash")
    assert any(line.startswith("set -e") for line in post_build[:4])
    assert any("pip install" in line and "-e ." in line for line in post_build)
    assert os.access(BINDER / "postBuild", os.X_OK) and os.access(BINDER / "start", os.X_OK)
    assert (BINDER / "start").read_text().rstrip().endswith('exec "$@"')
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.1[0-3]", runtime), runtime


def test_repo2docker_accepts_binder_config(tmp_path: Path) -> None:
    """`repo2docker --no-build` reads binder/ and prints the Dockerfile: check it uses our files."""
    exe = shutil.which("jupyter-repo2docker", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("jupyter-repo2docker is not installed (pip install jupyter-repo2docker)")
    proc = subprocess.run([exe, "--no-build", "--no-run", "--debug", str(ROOT)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Building conda environment for python=3.11" in out
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in out
    assert "RUN ./binder/postBuild" in out
    assert 'R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in out


def _pip(python: Path, *args: str, cwd: Path = ROOT, env: dict | None = None) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


@pytest.mark.slow
def test_fresh_binder_env_runs_the_notebooks(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    venv = tmp_path / "binder-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # This machine's CPU wheel stands in for PyTorch's CPU index (unreachable here).
    _pip(python, f"torch=={_requirements()['torch']}")
    offline = tmp_path / "requirements-offline.txt"
    offline.write_text("".join(line + "\n" for line in (BINDER / "requirements.txt").read_text().splitlines()
                               if not line.startswith("--extra-index-url")))
    _pip(python, "-r", str(offline))
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(BINDER / "postBuild")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "nbkit 0.1.0 torch 2.13.0" in proc.stdout
    built = time.perf_counter() - t0
    print(f"binder venv built in {built:.0f} s")

    failures = []
    for path in NOTEBOOKS:
        result = run_notebook(path, tmp_path / path.stem, small=True, python=str(python),
                              wrapper=str(BINDER / "start"))
        result.name = path.stem
        record(result)
        try:
            check(result)
        except AssertionError as exc:
            failures.append(str(exc))
    print(f"binder check: {time.perf_counter() - t0:.0f} s in all")
    assert failures == []
