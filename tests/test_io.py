"""Video I/O details: encoder fallback, audio re-encode, CLI listings, the demo."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from core.io import encoder_opens, probe, resolve_codec
from core.job import build_job
from core.pipeline import render
from core.presets import EncoderConfig
from core.samples import ClipSpec, make_clip
from scripts import demo
from scripts.cli import main
from stylizers import READY_STYLES, STYLIZERS

from .test_render import assert_same_timing


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
