"""The hardware summary in the shape the pages show (MB and GB), over :mod:`core.hardware`, which does
the probing: GPUs via NVML, NVENC by trial, CPU, RAM and the studio's disk. A machine without an NVIDIA
GPU or driver reports ``gpus == []`` and why, never an error."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from core import hardware as core_hw


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_total_mb: float
    memory_used_mb: float
    temperature_c: float | None
    utilisation_pct: float | None


@dataclass(frozen=True)
class Hardware:
    gpus: list[Gpu] = field(default_factory=list)
    gpu_note: str = ""
    nvenc: str | None = None  # None: NVENC opens here; else why not
    nvdec: str | None = None  # None: NVDEC decodes here (``--decode cuda``); else why not
    cpu_count: int = 1
    load_1m: float | None = None
    ram_total_gb: float | None = None
    ram_available_gb: float | None = None
    disk_path: str = ""
    disk_total_gb: float = 0.0
    disk_free_gb: float = 0.0
    warnings: tuple[str, ...] = ()  # e.g. a GPU above 80 C


def _gpu(g: core_hw.GpuInfo) -> Gpu:
    return Gpu(g.index, g.name, g.memory_total / 2**20, g.memory_used / 2**20, g.temperature_c, g.utilisation_pct)


def gpus() -> tuple[list[Gpu], str]:
    """NVIDIA GPUs seen by NVML and a note when none are."""
    found, note = core_hw.probe_gpus()
    return [_gpu(g) for g in found], note


def summary(check_nvenc: bool = True) -> Hardware:
    """The whole picture. ``check_nvenc`` trial-opens the encoders once per process (core.hardware)."""
    rep = core_hw.report(check_encoders=check_nvenc)
    h264 = rep.encoder("h264_nvenc", 8)
    total, avail = rep.ram_total, rep.ram_available
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return Hardware(gpus=[_gpu(g) for g in rep.gpus], gpu_note=rep.gpu_note,
                    nvenc=(None if h264.ok else h264.reason) if h264 else "not checked",
                    nvdec=rep.nvdec if rep.nvdec != "" else "not checked",
                    cpu_count=rep.cpu_count, load_1m=load,
                    ram_total_gb=total / 2**30 if total else None, ram_available_gb=avail / 2**30 if avail else None,
                    disk_path=rep.disk_path, disk_total_gb=shutil.disk_usage(rep.disk_path).total / 2**30,
                    disk_free_gb=(rep.disk_free or 0) / 2**30, warnings=rep.warnings)


def one_line(hw: Hardware) -> str:
    """A one-line summary for the dashboard."""
    gpu = ", ".join(f"{g.name} ({g.memory_total_mb / 1024:.0f} GB)" for g in hw.gpus) or hw.gpu_note
    ram = f"{hw.ram_available_gb:.1f}/{hw.ram_total_gb:.1f} GB RAM free" if hw.ram_total_gb else "RAM unknown"
    enc = "NVENC usable" if hw.nvenc is None else "NVENC not usable (libx264)"
    return f"{hw.cpu_count} CPU cores · {ram} · {hw.disk_free_gb:.0f} GB disk free · {gpu} · {enc}"
