"""`nbkit.core.devices.device_report` on this CPU machine, and on CUDA/MPS machines faked by monkeypatching."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nbkit.core.devices import DeviceReport, device_report

GB = 1024**3


def test_cpu_report_is_plain_data():
    report = device_report()
    assert isinstance(report, DeviceReport)
    assert report.best == "cpu"
    (cpu,) = [d for d in report.devices if d.device == "cpu"]
    assert cpu.total_bytes > cpu.free_bytes > 0
    assert report.process_rss_bytes > 10 * 1024**2  # torch alone makes the process bigger than this
    assert cpu.allocated_bytes == report.process_rss_bytes
    text = str(report)
    assert text.splitlines()[0].split() == ["device", "name", "total", "free", "allocated", "reserved", "peak"]
    assert "cpu *" in text and "nbkit trains on cpu" in text
    assert "<table class='nbkit-devices'>" in report._repr_html_()


@pytest.fixture
def fake_cuda(monkeypatch):
    """Two GPUs; this process uses cuda:0 (initialized, current) and has never touched cuda:1."""
    calls = []
    props = [SimpleNamespace(name="Fake A100", total_memory=80 * GB),
             SimpleNamespace(name="Fake <T4>", total_memory=16 * GB)]
    reserved = {0: 3 * GB, 1: 0}

    def mem_get_info(i):
        calls.append(i)
        return (70 * GB, 79 * GB)  # the driver's view: a bit less than the spec sheet

    cuda = torch.cuda
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(cuda, "current_device", lambda: 0)
    monkeypatch.setattr(cuda, "device_count", lambda: 2)
    monkeypatch.setattr(cuda, "get_device_properties", lambda i: props[i])
    monkeypatch.setattr(cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(cuda, "memory_allocated", lambda i: {0: 2 * GB, 1: 0}[i])
    monkeypatch.setattr(cuda, "memory_reserved", lambda i: reserved[i])
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda i: {0: int(2.5 * GB), 1: 0}[i])
    monkeypatch.setattr(cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    return SimpleNamespace(calls=calls, reserved=reserved)


def test_cuda_devices_and_memory(fake_cuda):
    report = device_report()
    assert report.best == "cuda" and report.cuda_version == "12.8"
    gpu0, gpu1 = report.devices[:2]
    assert [d.device for d in report.devices] == ["cuda:0", "cuda:1", "cpu"]
    assert (gpu0.name, gpu0.allocated_bytes, gpu0.reserved_bytes, gpu0.peak_allocated_bytes) == (
        "Fake A100", 2 * GB, 3 * GB, int(2.5 * GB))
    assert (gpu0.free_bytes, gpu0.total_bytes) == (70 * GB, 79 * GB)  # from mem_get_info
    # cuda:1 has no context in this process: its total comes from the properties, and mem_get_info
    # (which would create a context and cost GPU memory) is never called for it.
    assert (gpu1.free_bytes, gpu1.total_bytes) == (None, 16 * GB)
    assert fake_cuda.calls == [0]
    rows = report.rows()
    assert rows[0]["device"] == "cuda:0 *" and rows[1]["device"] == "cuda:1"
    assert rows[0]["allocated"] == "2.0 GB" and rows[1]["free"] == "-"
    assert "Fake &lt;T4&gt;" in report._repr_html_()  # names are escaped


def test_cuda_device_in_use_is_asked_even_when_not_current(fake_cuda):
    fake_cuda.reserved[1] = GB
    device_report()
    assert fake_cuda.calls == [0, 1]


def test_mps_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 12 * GB)
    monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: GB)
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 2 * GB)
    report = device_report()
    assert report.best == "mps"
    mps = report.devices[0]
    assert (mps.device, mps.total_bytes, mps.allocated_bytes, mps.reserved_bytes) == (
        "mps", 12 * GB, GB, 2 * GB)
    assert [r["device"] for r in report.rows()] == ["mps *", "cpu"]
