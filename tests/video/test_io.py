"""Video I/O details: encoder fallback, audio re-encode, CLI listings, the demo."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from core.errors import ConfigError
from core.hardware import decoder_opens, encoder_opens
from core.presets import EncoderConfig
from core.render.pipeline import render
from core.render.spec import build_job
from core.video.probe import probe
from core.video.reader import Reader, _as_stream_format
from core.video.synthetic import ClipSpec, make_clip
from core.video.writer import resolve_codec
from scripts import demo
from scripts.cli import main
from stylizers import READY_STYLES, STYLIZERS
from tests.render.test_render import assert_same_timing


def test_nvenc_falls_back_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    why = encoder_opens("h264_nvenc")
    if why is None:
        pytest.skip("NVENC opens on this machine (a GPU is present); the fallback is not exercised")
    assert why  # FFmpeg's own reason, e.g. no CUDA device
    with caplog.at_level(logging.WARNING):
        assert resolve_codec(EncoderConfig(codec="h264_nvenc")) == "libx264"
        assert resolve_codec(EncoderConfig(codec="auto")) == "libx264"
    assert "h264_nvenc unavailable" in caplog.text
    assert encoder_opens("libx264") is None


@pytest.mark.parametrize("clip", ["cut", "p10"])
def test_decoding_on_cuda_gives_the_cpu_frames_or_says_why_not(clips: dict[str, Path], clip: str) -> None:
    """``decode="cuda"``: NVDEC where it opens (frames rearranged to the stream's format), else the CPU with
    the reason; either way the frames (RGB and the decoder's own, for pass-through) are a CPU decode's."""
    info = probe(clips[clip])
    with Reader(info) as cpu, Reader(info, decode="cuda") as dev:
        if dev.decode_note:
            assert dev.decode == "cpu" and dev.decode_note.startswith("cuda decoding unavailable (")
        else:
            assert dev.decode == "cuda"
        if clip == "cut":  # H.264 8-bit, what the hardware report's trial decodes
            assert (dev.decode == "cuda") == (decoder_opens("cuda") is None)
        for (i, a), (j, b) in zip(cpu.decoded(3, 12), dev.decoded(3, 12), strict=True):
            assert i == j and a.pts == b.pts and a.format.name == b.format.name == info.pix_fmt
            assert all(bytes(p) == bytes(q) for p, q in zip(a.planes, b.planes, strict=True))
        assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(cpu.frames(0, 5), dev.frames(0, 5), strict=True))
    with pytest.raises(ValueError, match="'vulkan' is not one of cpu, cuda"):
        Reader(info, decode="vulkan")
    with pytest.raises(ConfigError, match="decode: 'vulkan' is not one of cpu, cuda"):
        render(build_job(clips[clip], clips[clip].with_suffix(".out.mp4"), "none"), decode="vulkan")


def test_a_device_without_a_decoder_for_the_codec_is_reported(clips: dict[str, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The device opens but has no decoder for the stream's codec (PyAV then decodes in software, quietly):
    the reader says so rather than claim the GPU decoded. Simulated: the open ignores the device."""
    real = av.open
    monkeypatch.setattr(av, "open", lambda *a, hwaccel=None, **kw: real(*a, **kw))
    with Reader(probe(clips["cut"]), decode="cuda") as r:
        assert r.decode == "cpu" and r.decode_note == "cuda decoding unavailable (no cuda decoder for h264)"
        assert len(list(r.frames(0, 3))) == 3


@pytest.mark.parametrize(("stream", "device"), [("yuv420p", "nv12"), ("yuv420p10le", "p010le")])
def test_device_frames_return_to_the_stream_format_exactly(stream: str, device: str) -> None:
    """NVDEC hands back NV12 (8-bit) or P010 (10-bit); rearranged to planar 4:2:0 they are the samples a
    software decoder gives, bit for bit, with the timestamp kept (checked here without a GPU)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
    sw = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=stream)
    hw = sw.reformat(format=device)
    hw.pts, hw.time_base = 1234, Fraction(1, 12800)
    back = _as_stream_format(hw, stream)
    assert back.format.name == stream and back.pts == 1234 and back.time_base == Fraction(1, 12800)
    assert all(bytes(p) == bytes(q) for p, q in zip(sw.planes, back.planes, strict=True))


def test_nvenc_renders_where_it_opens(tmp_path: Path) -> None:
    """Where NVENC opens (a GPU machine): a render asking for it is encoded by it, every frame there."""
    why = encoder_opens("h264_nvenc")
    if why is not None:
        pytest.skip(f"h264_nvenc does not open here ({why}): the NVENC path is checked on a GPU machine")
    clip = make_clip(tmp_path / "c.mp4", ClipSpec(frames=24))
    out = tmp_path / "nvenc.mp4"
    result = render(build_job(clip, out, "pencil", sets={"encoder.codec": "h264_nvenc"}), workers=1)
    assert result.codec == "h264_nvenc" and probe(out).frame_count == 24


def test_audio_reencoded_when_container_cannot_hold_it(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "pcm.mkv", ClipSpec(frames=25, audio=True, audio_codec="pcm_s16le"))
    assert probe(src).audio[0].codec == "pcm_s16le"
    out = tmp_path / "out.mp4"
    render(build_job(src, out, "none"), workers=1)
    a, b = probe(src), probe(out)
    assert b.audio[0].codec == "aac" and b.audio[0].channels == 2
    assert abs(b.audio[0].duration - a.audio[0].duration) <= float(1 / a.fps)
    assert b.frame_count == a.frame_count


def test_audio_copied_into_mkv(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "pcm.mkv", ClipSpec(frames=25, audio=True, audio_codec="pcm_s16le"))
    out = tmp_path / "out.mkv"
    render(build_job(src, out, "none"), workers=1)
    assert probe(out).audio[0].codec == "pcm_s16le"
    assert_same_timing(src, out)


def test_cli_probe_styles_presets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "c.mp4", ClipSpec(frames=10, audio=True))
    assert main(["probe", str(clip)]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["frame_count"] == 10 and j["fps"] == "25/1" and j["audio"][0]["codec"] == "aac"
    assert main(["styles", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert set(listed) == set(STYLIZERS)
    assert {p["name"] for p in listed["cartoon"]["params"]} >= {"n_colors", "line_width"}
    assert main(["presets", "save", "mine", "--from", "speed", "--set", "encoder.crf=30"]) == 0
    assert main(["presets", "show", "mine"]) == 0
    assert "crf: 30" in capsys.readouterr().out


def test_cli_render_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "c.mp4", ClipSpec(frames=20))
    out = tmp_path / "o.mp4"
    assert main(["render", str(clip), "-o", str(out), "--style", "comic", "-q"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("rendered 20 frames") and "fps" in line and str(out) in line
    again = tmp_path / "o_cuda.mp4"
    assert main(["render", str(clip), "-o", str(again), "--style", "comic", "-q", "--decode", "cuda"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "decoded on cuda" in line or "decoded on the CPU (cuda decoding unavailable (" in line
    assert again.read_bytes() == out.read_bytes()  # the frames, and so the output, of a CPU decode
    png = tmp_path / "f.png"
    assert main(["preview", str(clip), "--style", "pencil", "--at", "0.3", "-o", str(png)]) == 0
    assert png.stat().st_size > 0


def test_demo_renders_every_style(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "c.mp4", ClipSpec(frames=12, audio=True))
    assert demo.main(["--input", str(clip), "--out", str(tmp_path / "demo")]) == 0
    text = capsys.readouterr().out
    for style in READY_STYLES:
        out = tmp_path / "demo" / f"c_{style}.mp4"
        assert out.exists() and probe(out).frame_count == 12
        assert str(out) in text
    assert "neural" in READY_STYLES and "skipped" not in text  # the bundled sketch model needs no download
