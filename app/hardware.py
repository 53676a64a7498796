"""What the studio runs on: GPUs (NVML), NVENC, CPU, memory and the studio's disk. Read-only, best effort:
a machine without an NVIDIA GPU or driver reports ``gpus == []`` and why, never an error."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from core.presets import studio_home


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
    cpu_count: int = 1
    load_1m: float | None = None
    ram_total_gb: float | None = None
    ram_available_gb: float | None = None
    disk_path: str = ""
    disk_total_gb: float = 0.0
    disk_free_gb: float = 0.0


def gpus() -> tuple[list[Gpu], str]:
    """NVIDIA GPUs seen by NVML (``nvidia-ml-py``, import name ``pynvml``) and a note when none are."""
    try:
        import pynvml
    except ImportError:
        return [], "no NVIDIA GPU (nvidia-ml-py is not installed: CPU build)"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable GPU here
        return [], f"no NVIDIA GPU ({exc})"
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                temp = float(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
            except Exception:
                temp = None
            try:
                util = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:
                util = None
            out.append(Gpu(i, name.decode() if isinstance(name, bytes) else str(name), mem.total / 2**20,
                           mem.used / 2**20, temp, util))
        return out, "" if out else "no NVIDIA GPU (NVML sees none)"
    finally:
        pynvml.nvmlShutdown()


def _meminfo() -> tuple[float | None, float | None]:
    try:
        rows = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        kb = {k: float(v.split()[0]) for k, v in rows.items() if k in ("MemTotal", "MemAvailable")}
        return kb["MemTotal"] / 2**20, kb["MemAvailable"] / 2**20
    except (OSError, KeyError, ValueError, IndexError):
        return None, None


def summary(check_nvenc: bool = True) -> Hardware:
    """The whole picture. ``check_nvenc`` opens h264_nvenc once (cached by core.io) to see if it works."""
    from core.io import encoder_opens

    gpu_list, note = gpus()
    nvenc = encoder_opens("h264_nvenc") if check_nvenc else "not checked"
    total, avail = _meminfo()
    home = studio_home()
    disk_at = home if home.exists() else Path.home()
    du = shutil.disk_usage(disk_at)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return Hardware(gpus=gpu_list, gpu_note=note, nvenc=nvenc, cpu_count=os.cpu_count() or 1, load_1m=load,
                    ram_total_gb=total, ram_available_gb=avail, disk_path=str(disk_at),
                    disk_total_gb=du.total / 2**30, disk_free_gb=du.free / 2**30)


def one_line(hw: Hardware) -> str:
    """A one-line summary for the dashboard."""
    gpu = ", ".join(f"{g.name} ({g.memory_total_mb / 1024:.0f} GB)" for g in hw.gpus) or hw.gpu_note
    ram = f"{hw.ram_available_gb:.1f}/{hw.ram_total_gb:.1f} GB RAM free" if hw.ram_total_gb else "RAM unknown"
    enc = "NVENC usable" if hw.nvenc is None else "NVENC not usable (libx264)"
    return f"{hw.cpu_count} CPU cores · {ram} · {hw.disk_free_gb:.0f} GB disk free · {gpu} · {enc}"
