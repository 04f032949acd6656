"""Run directories: never two runs in one, atomic auto-names, absolute paths, one naming rule."""

from __future__ import annotations

import threading

import pytest

from nbkit.core.config import ConfigError
from nbkit.core.train.rundir import claim_run_dir, new_run_dir, run_name


def test_a_directory_holding_a_run_is_refused_unless_overwrite(tmp_path):
    old = tmp_path / "r"
    (old / "checkpoints").mkdir(parents=True)
    (old / "metrics.jsonl").write_text('{"event": "run_start"}\n')
    with pytest.raises(ConfigError, match=r"already holds a run: continue it with resume_from=.*overwrite=True"):
        claim_run_dir(old, "x", resume=False, overwrite=False)
    assert (old / "metrics.jsonl").read_text() == '{"event": "run_start"}\n'  # untouched
    path = claim_run_dir(old, "x", resume=False, overwrite=True)
    assert path == old.absolute() and list(path.iterdir()) == []  # emptied first: never a mix


def test_run_dir_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = claim_run_dir("rel/run", "x", resume=False, overwrite=False)
    assert path.is_absolute() and path == tmp_path / "rel" / "run"


def test_auto_named_directories_are_claimed_atomically(tmp_path):
    got = []
    threads = [threading.Thread(target=lambda: got.append(new_run_dir("same", root=tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8 and all(p.is_dir() for p in got)


def test_run_name_rule():
    assert run_name("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert run_name("/tmp/xyz/converted") == "run"

    class Config:
        _name_or_path = "/tmp/abc/model"

    class Net:
        config = Config()

    assert run_name(Net()) == "Net"  # a temporary folder says nothing: the class does
