"""What hardware torch can use and how much memory is in use, as plain data (`%nbkit device` shows it).

Core layer: torch and psutil are imported inside `device_report`; nothing here touches IPython. The
text and HTML views share `DeviceReport.rows()`, like `ModelSummary` in models.py.
"""

from __future__ import annotations

import html
import os
import platform
from dataclasses import dataclass, field

from .models import human_bytes


@dataclass
class DeviceInfo:
    """One device. Byte counts are None where the backend cannot tell (or telling would cost memory)."""

    device: str  # "cuda:0", "mps", "cpu"
    name: str
    total_bytes: int | None = None
    free_bytes: int | None = None  # free on the whole device (other processes included)
    allocated_bytes: int | None = None  # used by this process (GPU: its tensors; CPU: its resident memory)
    reserved_bytes: int | None = None  # held by torch's caching allocator (>= allocated)
    peak_allocated_bytes: int | None = None  # max allocated since start / last reset_peak_memory_stats


@dataclass
class DeviceReport:
    """Every device torch sees, the one nbkit would pick, and this process's host memory."""

    best: str  # what nbkit.core.models.pick_device() chooses: "cuda", "mps" or "cpu"
    devices: list[DeviceInfo] = field(default_factory=list)
    process_rss_bytes: int | None = None
    torch_version: str = ""
    cuda_version: str | None = None
    torch_threads: int | None = None

    def rows(self) -> list[dict[str, str]]:
        """One display row per device, memory in human units ("-" where unknown)."""

        def size(n: int | None) -> str:
            return "-" if n is None else human_bytes(n)

        return [
            {
                "device": d.device + (" *" if self._is_best(d) else ""),
                "name": d.name,
                "total": size(d.total_bytes),
                "free": size(d.free_bytes),
                "allocated": size(d.allocated_bytes),
                "reserved": size(d.reserved_bytes),
                "peak": size(d.peak_allocated_bytes),
            }
            for d in self.devices
        ]

    def _is_best(self, d: DeviceInfo) -> bool:
        # "cuda" means the current device, which is cuda:0 unless the user changed it.
        return d.device == self.best or (self.best == "cuda" and d.device == "cuda:0")

    def footer(self) -> str:
        parts = [f"* nbkit trains on {self.best}", f"torch {self.torch_version}"]
        if self.cuda_version:
            parts.append(f"CUDA {self.cuda_version}")
        if self.torch_threads is not None:
            parts.append(f"{self.torch_threads} CPU threads")
        if self.process_rss_bytes is not None:
            parts.append(f"this process uses {human_bytes(self.process_rss_bytes)} of host memory (RSS)")
        return ", ".join(parts)

    def __str__(self) -> str:
        rows = self.rows()
        cols = list(rows[0]) if rows else []
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
        lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
        lines += ["  ".join(r[c].ljust(widths[c]) for c in cols) for r in rows]
        return "\n".join([*(line.rstrip() for line in lines), self.footer()])

    def _repr_html_(self) -> str:
        rows = self.rows()
        cols = list(rows[0]) if rows else []
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(r[c])}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        return (f"<table class='nbkit-devices'><tr>{head}</tr>{body}</table>"
                f"<p>{html.escape(self.footer())}</p>")


def _cuda_devices(torch) -> list[DeviceInfo]:
    out = []
    current = torch.cuda.current_device() if torch.cuda.is_initialized() else None
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        # memory_allocated & co. read torch's allocator counters: free, and 0 on an untouched device.
        reserved = torch.cuda.memory_reserved(i)
        info = DeviceInfo(
            device=f"cuda:{i}",
            name=str(props.name),
            total_bytes=int(props.total_memory),
            allocated_bytes=int(torch.cuda.memory_allocated(i)),
            reserved_bytes=int(reserved),
            peak_allocated_bytes=int(torch.cuda.max_memory_allocated(i)),
        )
        # mem_get_info needs a CUDA context on that device, and creating one costs a few hundred MB of
        # GPU memory: only ask devices this process already uses, never wake an idle one to report on it.
        if i == current or reserved > 0:
            free, total = torch.cuda.mem_get_info(i)
            info.free_bytes, info.total_bytes = int(free), int(total)
        out.append(info)
    return out


def _mps_device(torch) -> DeviceInfo:
    mps = torch.mps

    def ask(fn: str) -> int | None:
        f = getattr(mps, fn, None)
        return int(f()) if f is not None else None

    return DeviceInfo(
        device="mps",
        name="Apple GPU (MPS)",
        # MPS shares host memory; recommended_max_memory is Metal's working-set budget for this process.
        total_bytes=ask("recommended_max_memory"),
        allocated_bytes=ask("current_allocated_memory"),
        reserved_bytes=ask("driver_allocated_memory"),
    )


def _cpu_device() -> tuple[DeviceInfo, int | None]:
    name = platform.processor() or platform.machine() or "CPU"
    cores = os.cpu_count()
    info = DeviceInfo(device="cpu", name=f"{name} ({cores} cores)" if cores else name)
    try:
        import psutil
    except ImportError:  # psutil is a dependency; without it only the host numbers are missing
        return info, None
    vm = psutil.virtual_memory()
    rss = int(psutil.Process().memory_info().rss)
    info.total_bytes, info.free_bytes, info.allocated_bytes = int(vm.total), int(vm.available), rss
    return info, rss


def device_report() -> DeviceReport:
    """Devices torch can use (CUDA GPUs, Apple MPS, the CPU) with their memory, as plain data."""
    import torch

    from .models import pick_device

    devices: list[DeviceInfo] = []
    if torch.cuda.is_available():
        devices += _cuda_devices(torch)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(_mps_device(torch))
    cpu, rss = _cpu_device()
    devices.append(cpu)
    return DeviceReport(
        best=pick_device(),
        devices=devices,
        process_rss_bytes=rss,
        torch_version=str(torch.__version__),
        cuda_version=getattr(torch.version, "cuda", None),
        torch_threads=torch.get_num_threads(),
    )
