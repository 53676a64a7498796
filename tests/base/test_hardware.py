"""core.hardware: the CPU-only machine (no GPU, NVENC falls back with its reason) and, through a fake
NVML module, the GPU path (names, VRAM, a warning above 80 C)."""

from __future__ import annotations

import dataclasses
import json
import sys
import types

import pytest

from app import hardware as app_hw
from core import hardware
from core.errors import ConfigError
from core.ml import session as ml_session
from core.presets import EncoderConfig, load_preset, save_preset
from scripts.cli import main

GIB = 2**30


class FakeNVMLError(Exception):
    pass


def fake_nvml(boards: list[dict], init_error: str | None = None) -> types.ModuleType:
    """A stand-in for ``pynvml``: each board is {name, total, free, temp (None: not supported), util}."""
    m = types.ModuleType("pynvml")
    m.NVML_TEMPERATURE_GPU = 0
    m.calls = []

    def init() -> None:
        if init_error:
            raise FakeNVMLError(init_error)
        m.calls.append("init")

    def temperature(h: int, sensor: int) -> int:
        if boards[h]["temp"] is None:
            raise FakeNVMLError("Not Supported")
        return boards[h]["temp"]

    m.nvmlInit = init
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlDeviceGetCount = lambda: len(boards)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: boards[h]["name"]
    m.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(
        total=boards[h]["total"], free=boards[h]["free"], used=boards[h]["total"] - boards[h]["free"])
    m.nvmlDeviceGetTemperature = temperature
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=boards[h]["util"], memory=0)
    return m


BOARDS = [dict(name=b"NVIDIA RTX A5000", total=24 * GIB, free=20 * GIB, temp=86, util=97),
          dict(name="Tesla T4", total=16 * GIB, free=15 * GIB, temp=None, util=3)]


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError, as on a CPU build


def test_smoke_cpu_machine_is_quiet_and_says_no_gpu(no_nvml: None, capfd: pytest.CaptureFixture) -> None:
    hardware.encoder_opens.cache_clear()  # really run the trial encodes under capfd (x265 prints to fd 2)
    hardware.decoder_opens.cache_clear()  # and the trial decode
    rep = hardware.report()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert rep.gpus == () and rep.gpu_note.startswith("no NVIDIA GPU") and rep.warnings == ()
    assert rep.cpu_count >= 1 and rep.disk_free > 0
    assert rep.ram_total is None or rep.ram_total >= rep.ram_available > 0
    assert {(e.codec, e.bit_depth) for e in rep.encoders} == {
        (c, b) for c in hardware.NVENC_CODECS + hardware.CPU_CODECS for b in (8, 10)}
    assert [r[0] for r in rep.recommendations] == ["balanced", "quality", "speed"]
    assert "GPU: no NVIDIA GPU (nvidia-ml-py is not installed: CPU build)" in rep.lines()
    assert rep.nvdec  # NVDEC does not decode here, and the report says why
    assert f"decoder cuda (NVDEC, --decode cuda): no ({rep.nvdec}) -> the CPU decodes" in rep.lines()
    assert ml_session._nvml_free_bytes() is None


def test_nvenc_falls_back_with_its_reason() -> None:
    if hardware.encoder_opens("h264_nvenc") is None:
        pytest.skip("NVENC opens on this machine (a GPU is present); the fallback is not exercised")
    probes = {(e.codec, e.bit_depth): e for e in hardware.probe_encoders()}
    for bits in (8, 10):
        h264, hevc = probes["h264_nvenc", bits], probes["hevc_nvenc", bits]
        assert not h264.ok and h264.fallback == "libx264" and h264.reason and "\n" not in h264.reason
        assert not hevc.ok and hevc.fallback == "libx265" and hevc.reason
        assert probes["libx264", bits].ok and probes["libx265", bits].ok
        assert probes["libx264", bits].fallback is None
    codec, why = hardware.recommend_codec("balanced")
    assert codec == "libx264" and "h264_nvenc 8-bit does not open" in why and h264.reason.split(";")[0] in why


def test_probe_encoders_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    hardware.probe_encoders()
    monkeypatch.setattr(hardware, "_trial_encode", lambda *a: pytest.fail("trial encode ran twice"))
    assert hardware.probe_encoders() == hardware.probe_encoders()


def test_gpu_path_through_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_nvml(BOARDS)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    rep = hardware.report(check_encoders=False)
    a5000, t4 = rep.gpus
    assert (a5000.name, a5000.memory_total, a5000.memory_free, a5000.memory_used) == (
        "NVIDIA RTX A5000", 24 * GIB, 20 * GIB, 4 * GIB)
    assert (a5000.temperature_c, a5000.utilisation_pct) == (86.0, 97.0)
    assert (t4.name, t4.temperature_c, t4.utilisation_pct) == ("Tesla T4", None, 3.0)
    assert rep.gpu_note == "" and rep.encoders == () and rep.recommendations == () and rep.nvdec == ""
    assert not any(line.startswith("decoder") for line in rep.lines())  # not checked: not shown
    assert len(rep.warnings) == 1 and "86 C" in rep.warnings[0] and "A5000" in rep.warnings[0]
    assert nvml.calls[-1] == "shutdown"
    assert json.loads(rep.to_json())["gpus"][0]["memory_free"] == 20 * GIB
    assert any(line.startswith("GPU 1: Tesla T4") and "?" in line for line in rep.lines())
    assert ml_session._nvml_free_bytes() == 20 * GIB


def test_exactly_80_c_is_no_warning() -> None:
    gpu = hardware.GpuInfo(0, "x", GIB, GIB, 80.0, None)
    assert hardware.gpu_warnings((gpu,)) == []
    assert hardware.gpu_warnings((dataclasses.replace(gpu, temperature_c=80.5),))


def test_exception_nvml_without_driver_is_no_gpu(monkeypatch: pytest.MonkeyPatch,
                                                  capfd: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([], init_error="Driver Not Loaded"))
    assert hardware.probe_gpus() == ((), "no NVIDIA GPU (Driver Not Loaded)")
    assert ml_session._nvml_free_bytes() is None
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([]))
    assert hardware.probe_gpus() == ((), "no NVIDIA GPU (NVML sees none)")
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize(("encoder", "opens", "expected"), [
    (EncoderConfig(), True, "h264_nvenc"),
    (EncoderConfig(), False, "libx264"),
    (EncoderConfig(codec="libx265", pix_fmt="yuv420p10le"), True, "hevc_nvenc"),
    (EncoderConfig(codec="hevc_nvenc", pix_fmt="yuv420p10le"), False, "libx265"),
    (EncoderConfig(qp=0), True, "libx264"),
    (EncoderConfig(codec="ffv1"), True, "ffv1"),
])
def test_recommend_codec_per_preset(monkeypatch: pytest.MonkeyPatch, encoder: EncoderConfig, opens: bool,
                                    expected: str) -> None:
    asked = []

    def fake_opens(codec: str, pix_fmt: str = "yuv420p") -> str | None:
        asked.append((codec, pix_fmt))
        return None if opens else "no CUDA device"

    monkeypatch.setattr(hardware, "encoder_opens", fake_opens)
    save_preset(dataclasses.replace(load_preset("balanced"), encoder=encoder), "mine")
    codec, why = hardware.recommend_codec("mine")
    assert codec == expected and why
    if asked and "10" in encoder.pix_fmt:
        assert asked == [("hevc_nvenc", "p010le")]
    if not opens and asked:
        assert "no CUDA device" in why


def test_exception_unknown_preset() -> None:
    with pytest.raises(ConfigError):
        hardware.recommend_codec("no-such-preset")


def test_app_shim_keeps_the_page_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(BOARDS))
    hw = app_hw.summary(check_nvenc=False)
    assert [g.name for g in hw.gpus] == ["NVIDIA RTX A5000", "Tesla T4"]
    assert hw.gpus[0].memory_total_mb == 24 * 1024 and hw.gpus[0].memory_used_mb == 4 * 1024
    assert hw.nvenc == "not checked" and len(hw.warnings) == 1 and hw.disk_free_gb > 0
    assert "NVIDIA RTX A5000 (24 GB)" in app_hw.one_line(hw)


def test_cli_hardware(no_nvml: None, capsys: pytest.CaptureFixture) -> None:
    assert main(["hardware", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["gpus"] == [] and rep["gpu_note"].startswith("no NVIDIA GPU")
    assert main(["hardware"]) == 0
    assert capsys.readouterr().out.startswith("GPU: no NVIDIA GPU")
