"""Delivery formats: ProRes 422 HQ, DNxHR HQ (.mxf, .mov), 10-bit H.265 and PNG/TIFF image sequences.

Each format is rendered once (module fixtures) and checked for what the H.264 path guarantees: the input's
frame count and frame times, its audio (as PCM beside ProRes, DNxHR and frame files, sample-aligned to the
first frame), ffprobe's facts (codec, profile, pixel format, bit depth), a resume after ``kill -9`` that
gives the bytes of an uninterrupted render, and a one-line error for a codec the output cannot hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from core.errors import ConfigError, OutputError
from core.presets import EncoderConfig
from core.render.pipeline import render
from core.render.publish import atomic_folder
from core.render.spec import build_job
from core.video.probe import probe
from core.video.synthetic import ClipSpec, make_clip
from core.video.writer import pixel_format
from scripts.cli import main
from tests.conftest import decode_all, kill_after_chunks, psnr

ROOT = Path(__file__).resolve().parents[2]

#: format -> (output name, --set, ffprobe facts of its picture, its audio codec). DNxHR needs 256x120 at least.
FORMATS = {
    "prores": ("out.mov", {"encoder.codec": "prores_ks"},
               {"codec_name": "prores", "profile": "HQ", "pix_fmt": "yuv422p10le", "bits_per_raw_sample": "10"},
               "pcm_s24le"),
    "dnxhr_mxf": ("out.mxf", {"encoder.codec": "dnxhd"},
                  {"codec_name": "dnxhd", "profile": "DNXHR HQ", "pix_fmt": "yuv422p", "bits_per_raw_sample": "8"},
                  "pcm_s24le"),
    "dnxhr_mov": ("out.mov", {"encoder.codec": "dnxhd"},
                  {"codec_name": "dnxhd", "profile": "DNXHR HQ", "pix_fmt": "yuv422p", "bits_per_raw_sample": "8"},
                  "pcm_s24le"),
    "x265_10_mp4": ("out.mp4", {"encoder.codec": "libx265", "encoder.pix_fmt": "yuv420p10le"},
                    {"codec_name": "hevc", "profile": "Main 10", "pix_fmt": "yuv420p10le"}, "aac"),
    "x265_10_mov": ("out.mov", {"encoder.codec": "libx265", "encoder.profile": "main10"},
                    {"codec_name": "hevc", "profile": "Main 10", "pix_fmt": "yuv420p10le"}, "aac"),
    "png": ("frames", {"encoder.codec": "png"}, {"codec_name": "png", "pix_fmt": "rgb24"}, "pcm_s24le"),
    "tiff": ("frames", {"encoder.codec": "tiff"}, {"codec_name": "tiff", "pix_fmt": "rgb24"}, "pcm_s24le"),
}
SEQUENCES = {"png": ".png", "tiff": ".tif"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One studio home for the module's renders (the autouse per-test home comes too late for them)."""
    path = tmp_path_factory.mktemp("delivery_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VP_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("delivery_src") / "src.mp4",
                     ClipSpec(width=256, height=144, frames=50, gop=10, audio=True, seed=7))


@pytest.fixture(scope="module")
def rendered(home: Path, source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every format rendered once, in chunks of 0.5 s on two workers."""
    out = {}
    for name, (file, sets, _, _) in FORMATS.items():
        path = tmp_path_factory.mktemp(name) / file
        res = render(build_job(source, path, "none", "balanced", sets, chunk_seconds=0.5), workers=2)
        assert res.chunks >= 2 and Path(res.output) == path
        out[name] = path
    return out


def ffprobe(path: Path) -> list[dict]:
    run = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout)["streams"]


def channel0(path: Path, index: int = 0) -> np.ndarray:
    """Audio track ``index``'s first channel as float64 in [-1, 1]."""
    with av.open(str(path)) as c:
        s = c.streams.audio[index]
        resampler = av.AudioResampler(format="dblp", layout=s.codec_context.layout.name, rate=s.sample_rate)
        parts = [rf.to_ndarray()[0] for f in c.decode(s) for rf in resampler.resample(f)]
    return np.concatenate(parts)


def frame_files(folder: Path, ext: str) -> list[Path]:
    return sorted(folder.glob(f"frame_*{ext}"))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_sha(path: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(path.iterdir())} if path.is_dir() else {path.name: sha(path)}


# ---------------------------------------------------------------------------------------------- each format

@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_ffprobe_facts(fmt: str, rendered: dict[str, Path]) -> None:
    out, facts, audio = rendered[fmt], FORMATS[fmt][2], FORMATS[fmt][3]
    picture = frame_files(out, SEQUENCES[fmt])[0] if fmt in SEQUENCES else out
    video = [s for s in ffprobe(picture) if s["codec_type"] == "video"]
    assert len(video) == 1 and {k: video[0].get(k) for k in facts} == facts
    if fmt not in SEQUENCES:
        assert video[0]["r_frame_rate"] == "25/1"
    sound = [s for s in ffprobe(out / "audio.wav" if fmt in SEQUENCES else out) if s["codec_type"] == "audio"]
    assert len(sound) == 1 and sound[0]["codec_name"] == audio
    assert sound[0]["sample_rate"] == "48000" and sound[0]["channels"] == 2
    if audio == "pcm_s24le":
        assert sound[0]["bits_per_raw_sample"] == "24"


@pytest.mark.parametrize("fmt", sorted(set(FORMATS) - set(SEQUENCES)))
def test_frame_exact_files(fmt: str, rendered: dict[str, Path], source: Path) -> None:
    a, b = probe(source), probe(rendered[fmt])
    assert b.frame_count == a.frame_count
    assert [p * a.time_base for p in a.pts] == [p * b.time_base for p in b.pts]
    assert b.fps == a.fps and abs(b.duration - a.duration) <= float(a.time_base)
    (x,), (y,) = a.audio, b.audio
    assert y.sample_rate == x.sample_rate and y.channels == x.channels
    assert abs(y.duration - x.duration) <= 1 / 25
    assert min(psnr(u, v) for u, v in zip(decode_all(source), decode_all(rendered[fmt]), strict=True)) > 35


@pytest.mark.parametrize("fmt", sorted(SEQUENCES))
def test_frame_exact_sequence(fmt: str, rendered: dict[str, Path], source: Path) -> None:
    """One lossless RGB file per input frame (the frames the stages made, bit for bit), the frame times in
    timestamps.txt, the audio beside them; nothing else in the folder, nothing left beside it."""
    out, ext, info = rendered[fmt], SEQUENCES[fmt], probe(source)
    files = frame_files(out, ext)
    assert [f.name for f in files] == [f"frame_{i:06d}{ext}" for i in range(info.frame_count)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f.name for f in files), "audio.wav", "timestamps.txt"])
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    for f, rgb in zip(files, decode_all(source), strict=True):
        with av.open(str(f)) as c:
            assert np.array_equal(next(c.decode(video=0)).to_ndarray(format="rgb24"), rgb)
    lines = (out / "timestamps.txt").read_text().splitlines()
    assert lines[0] == "# timestamp format v2"
    assert [float(t) for t in lines[1:]] == [float((p - info.pts[0]) * info.time_base * 1000) for p in info.pts]


@pytest.mark.parametrize("fmt", ["prores", "dnxhr_mxf", "png"])
def test_audio_sample_aligned(fmt: str, rendered: dict[str, Path], source: Path) -> None:
    """The PCM is the source's decoded audio from the first frame on: sample for sample, to 24-bit rounding."""
    out = rendered[fmt] / "audio.wav" if fmt in SEQUENCES else rendered[fmt]
    want, got = channel0(source), channel0(out)
    assert abs(len(got) - len(want)) <= 1024 and np.abs(want).max() > 0.1
    n = min(len(got), len(want))
    assert np.abs(got[:n] - want[:n]).max() < 1e-5


def test_vfr_into_mov_keeps_frame_times(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "vfr.mp4", ClipSpec(width=256, height=144, frames=30, vfr=True, audio=True))
    out = tmp_path / "vfr.mov"
    render(build_job(src, out, "none", "balanced", {"encoder.codec": "prores_ks"}, chunk_seconds=0.5), workers=2)
    a, b = probe(src), probe(out)
    assert [p * a.time_base for p in a.pts] == [p * b.time_base for p in b.pts] and b.vfr
    assert list(a.durations) == list(b.durations)


# ---------------------------------------------------------------------------------------------- settings

@pytest.mark.parametrize(("cfg", "expected"), [
    (EncoderConfig(), ("yuv420p", "")),
    (EncoderConfig(codec="prores_ks"), ("yuv422p10le", "hq")),
    (EncoderConfig(codec="prores_ks", pix_fmt="yuv444p10le"), ("yuv444p10le", "4444")),
    (EncoderConfig(codec="dnxhd"), ("yuv422p", "dnxhr_hq")),
    (EncoderConfig(codec="dnxhd", profile="dnxhr_hqx"), ("yuv422p10le", "dnxhr_hqx")),
    (EncoderConfig(codec="libx265"), ("yuv420p", "main")),
    (EncoderConfig(codec="libx265", pix_fmt="yuv420p10le"), ("yuv420p10le", "main10")),
    (EncoderConfig(codec="libx265", profile="main10"), ("yuv420p10le", "main10")),
    (EncoderConfig(codec="png"), ("rgb24", "")),
    (EncoderConfig(codec="ffv1"), ("bgr0", "")),
])
def test_pixel_format_per_codec(cfg: EncoderConfig, expected: tuple[str, str]) -> None:
    assert pixel_format(cfg.codec, cfg) == expected


@pytest.mark.parametrize(("cfg", "key"), [
    (EncoderConfig(codec="prores_ks", pix_fmt="yuv420p"), "encoder.pix_fmt=yuv420p"),
    (EncoderConfig(codec="prores_ks", profile="main10"), "encoder.profile=main10"),
    (EncoderConfig(codec="libx265", profile="main", pix_fmt="yuv420p10le"), "encoder.pix_fmt=yuv420p10le"),
    (EncoderConfig(codec="libx264", profile="hq"), "encoder.profile=hq"),
    (EncoderConfig(codec="nosuchcodec"), "encoder.codec=nosuchcodec"),
])
def test_exception_bad_pixel_format_or_profile(cfg: EncoderConfig, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        pixel_format(cfg.codec, cfg)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(("out", "sets", "expected"), [
    ("o.mp4", ["encoder.codec=prores_ks"], "a .mp4 file cannot hold prores_ks (ProRes) video; use .mov"),
    ("o.mp4", ["encoder.codec=png"], "png makes an image sequence, written into a folder, not a .mp4 file"),
    ("o.mp4", ["encoder.codec=dnxhd"], "a .mp4 file cannot hold dnxhd (DNxHR) video; use .mxf or .mov"),
    ("o.mxf", [], "a .mxf file cannot hold libx264 (H.264) video"),
    ("o.mov", ["encoder.codec=ffv1"], "a .mov file cannot hold ffv1 (FFV1) video; use .mkv"),
    ("frames", [], "unsupported output container '(none)'"),
    ("o.mov", ["encoder.codec=prores_ks", "encoder.pix_fmt=yuv420p"], "encoder.pix_fmt=yuv420p: prores_ks encodes"),
])
def test_mismatch_is_one_line(out: str, sets: list[str], expected: str, tmp_path: Path, source: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / out
    code, err = run_cli(capsys, "render", str(source), "-o", str(target), "--style", "none",
                        *(a for s in sets for a in ("--set", s)))
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err and (str(target) in err or "encoder." in err)
    assert [p.name for p in tmp_path.iterdir()] == ["home"]  # the studio home only


def test_input_the_output_refuses(tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What only the probed input tells, refused before any frame is encoded: DNxHR under 256x120, and VFR
    or an odd frame rate in MXF (which keeps no timestamps)."""
    small = make_clip(tmp_path / "small.mp4", ClipSpec(width=96, height=64, frames=4))
    vfr = make_clip(tmp_path / "vfr.mp4", ClipSpec(width=256, height=144, frames=6, vfr=True))
    slow = make_clip(tmp_path / "slow.mp4", ClipSpec(width=256, height=144, frames=4, fps=Fraction(15)))
    for src, out, expected in [(small, "a.mov", "at least 256x120"), (vfr, "b.mxf", "constant-frame-rate video only"),
                               (slow, "c.mxf", "MXF has no 15.000 fps frame rate")]:
        code, err = run_cli(capsys, "render", str(src), "-o", str(tmp_path / out), "--style", "none",
                            "--set", "encoder.codec=dnxhd")
        assert code == 2 and len(err.splitlines()) == 1 and expected in err and str(tmp_path / out) in err, err
        assert not (tmp_path / out).exists()


def test_sequence_folder_replaces_only_a_sequence(tmp_path: Path) -> None:
    final = tmp_path / "frames"
    final.mkdir()
    (final / "frame_000000.png").write_bytes(b"old")
    (final / "audio.wav").write_bytes(b"old")
    stale = tmp_path / ".frames.999999999.partial"  # a killed writer's (no such pid)
    stale.mkdir()
    with atomic_folder(final) as tmp:
        (tmp / "frame_000000.png").write_bytes(b"new")
    assert tree_sha(final) == {"frame_000000.png": hashlib.sha256(b"new").hexdigest()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
    (final / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"notes\.txt"), atomic_folder(final) as tmp:
        (tmp / "frame_000000.png").write_bytes(b"newer")
    assert (final / "notes.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


# ---------------------------------------------------------------------------------------------- kill -9

@pytest.mark.parametrize(("codec", "name"), [("prores_ks", "out.mov"), ("png", "frames")])
def test_resume_after_sigkill(codec: str, name: str, tmp_path: Path, studio_home: Path) -> None:
    """Killed after two of four chunks, a re-run keeps them and gives the bytes of an uninterrupted render."""
    src = make_clip(tmp_path / "src.mp4", ClipSpec(width=320, height=192, frames=100, gop=25, audio=True, seed=5))
    args = ["--style", "pencil", "--chunk-seconds", "1", "--workers", "1", "--set", f"encoder.codec={codec}", "-q"]
    ref = tmp_path / "ref" / name
    render(build_job(src, ref, "pencil", "balanced", {"encoder.codec": codec}, chunk_seconds=1), workers=1)
    out = tmp_path / "out" / name
    env = {**os.environ, "VP_HOME": str(studio_home)}
    cmd = [sys.executable, "-m", "scripts.cli", "render", str(src), "-o", str(out), *args]
    done = kill_after_chunks(cmd, env, ROOT)
    assert 2 <= len(done) < 4
    assert not out.exists(), "a killed render must not leave anything at the output path"
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)}/4 chunks reused" in rerun.stdout and "resuming" in rerun.stderr
    assert tree_sha(out) == tree_sha(ref)
    assert sorted(p.name for p in out.parent.iterdir()) == [name]
