"""Bad input: one clear line naming the file, exit code 2, nothing at the output path, no crash."""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

from core.errors import RenderError
from core.render.pipeline import render
from core.render.spec import build_job
from core.video.synthetic import ClipSpec, make_clip
from scripts.cli import main
from stylizers import STYLIZERS
from stylizers.base import Styled, Stylizer


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


def _truncated(tmp: Path, good: Path) -> Path:
    p = tmp / "truncated.mp4"
    p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return p


def _undecodable(tmp: Path, good: Path) -> Path:
    """Intact container, every video sample zeroed: packets demux but nothing decodes."""
    data = bytearray(good.read_bytes())
    i = data.find(b"mdat")
    size = int.from_bytes(data[i - 4:i], "big")
    data[i + 4:i - 4 + size] = bytes(size - 8)
    p = tmp / "zero_frames.mp4"
    p.write_bytes(bytes(data))
    return p


def _audio_only(tmp: Path) -> Path:
    p = tmp / "audio_only.mp4"
    with av.open(str(p), "w") as out:
        s = out.add_stream("aac", rate=48000)
        s.codec_context.layout = "stereo"
        for n in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            f.sample_rate, f.pts = 48000, n * 1024
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)
    return p


def _png(tmp: Path) -> Path:
    import cv2

    p = tmp / "picture.mp4"
    _ok, buf = cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))
    p.write_bytes(buf.tobytes())
    return p


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


CASES = {
    "missing": (lambda t, g: t / "nope.mp4", "no such file"),
    "directory": (lambda t, g: t, "is a directory"),
    "empty": (lambda t, g: _write(t / "empty.mp4", b""), "file is empty"),
    "text": (lambda t, g: _write(t / "notes.mp4", b"hello\n" * 50), "not a video file"),
    "png": (lambda t, g: _png(t), "still image"),
    "truncated": (_truncated, "not a video file"),
    "audio_only": (lambda t, g: _audio_only(t), "no video stream (audio only)"),
    "zero_frames": (_undecodable, "no decodable video frames"),
}


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "good.mp4", ClipSpec(frames=12))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_file(case: str, tmp_path: Path, good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = CASES[case]
    bad_dir = tmp_path / "in"
    bad_dir.mkdir()
    src = make(bad_dir, good)
    out = tmp_path / "out" / "render.mp4"
    code, err = run_cli(capsys, "render", str(src), "-o", str(out), "--style", "pencil")
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert expected in err and str(src) in err
    assert not out.exists()
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize(("args", "expected"), [
    (["--style", "watercolour"], "unknown style 'watercolour'"),
    (["--style", "pencil", "--set", "blur_sigma=soft"], "blur_sigma=soft: expected a number"),
    (["--style", "pencil", "--set", "blur_sigma=-3"], "below the minimum"),
    (["--style", "pencil", "--set", "nokey"], "expected key=value"),
    (["--set", "encoder.crf=99"], "encoder.crf=99"),
    (["--preset", "nosuchpreset"], "unknown preset 'nosuchpreset'"),
])
def test_bad_settings(args: list[str], expected: str, tmp_path: Path, good: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.mp4"
    code, err = run_cli(capsys, "render", str(good), "-o", str(out), *args)
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()


def test_output_equal_to_input(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = good.read_bytes()
    code, err = run_cli(capsys, "render", str(good), "-o", str(good))
    assert code == 2 and "output path is the input file" in err
    assert good.read_bytes() == before


def test_unwritable_output_dir(tmp_path: Path, good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: use a folder no one can create files in
        target = Path("/proc/1/studio-test/out.mp4")
    else:
        locked.chmod(0o500)
        target = locked / "out.mp4"
    code, err = run_cli(capsys, "render", str(good), "-o", str(target))
    assert code == 2 and "cannot write to folder" in err and str(target) in err
    assert not target.exists()


def test_unsupported_output_container(tmp_path: Path, good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "render", str(good), "-o", str(tmp_path / "o.avi"))
    assert code == 2 and "unsupported output container '.avi'" in err


class _Segfault(Stylizer):
    """A style whose worker dies the way PyAV can on a corrupt file."""

    name = "segfault"
    description = "test only"

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        if index == 5:
            faulthandler.disable()  # pytest's dump of the dying child is noise here
            os.kill(os.getpid(), signal.SIGSEGV)
        return Styled(base=rgb)


def test_dead_worker_is_a_failed_chunk_not_a_crash(tmp_path: Path, good: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STYLIZERS, "segfault", _Segfault)
    out = tmp_path / "o.mp4"
    spec = build_job(good, out, "segfault")
    # fork so the workers see the test-only style registered above
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as ex, pytest.raises(RenderError) as err:
        render(spec, executor=ex)
    assert "worker process died" in str(err.value) and str(good) in str(err.value)
    assert not out.exists()


def test_preview_bad_time(good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "preview", str(good), "--at", "99", "-o", str(tmp_path / "f.png"))
    assert code == 2 and "outside the clip" in err
    code, err = run_cli(capsys, "preview", str(good), "--at", "0", "-o", str(tmp_path / "f.gif"))
    assert code == 2 and "unsupported image type" in err


@pytest.mark.parametrize(("w", "h", "pix_fmt", "why"), [
    (2, 2, "yuv420p", "too small for style 'cartoon' (at least 16x16)"),
    (4, 4, "yuv420p", "too small for style 'cartoon' (at least 16x16)"),
    (1, 32, "yuv444p", "too small for style 'cartoon' (at least 16x16)"),
    (32, 1, "yuv444p", "too small for style 'cartoon' (at least 16x16)"),
    (2048, 40, "yuv420p", "too thin for style 'cartoon' (at 2048 px on the longer side, at least 45 px"),
])
@pytest.mark.parametrize("command", ["render", "preview"])
def test_frames_too_small_for_the_style(w: int, h: int, pix_fmt: str, why: str, command: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A 2x2, 1xN or very thin clip: refused before a chunk starts with the file, its size and the style's
    minimum, not OpenCV's or scikit-image's message from deep in a stage."""
    src = make_clip(tmp_path / f"tiny_{w}x{h}.mp4", ClipSpec(width=w, height=h, frames=4, pix_fmt=pix_fmt))
    out = tmp_path / "out" / ("o.mp4" if command == "render" else "o.png")
    code, err = run_cli(capsys, command, str(src), "-o", str(out), "--style", "cartoon")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {src}: {w}x{h} frames are {why}"), err
    assert "OpenCV" not in err and not out.exists()


@pytest.mark.parametrize(("w", "h"), [(128, 24), (16, 200), (640, 16)])
def test_thin_clips_render(w: int, h: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Thin but not too thin: the optical flow pads what DIS cannot take (a 128x24 frame crashed it), so the
    stabilised styles render every frame instead of refusing or crashing a worker."""
    src = make_clip(tmp_path / f"thin_{w}x{h}.mp4", ClipSpec(width=w, height=h, frames=10, gop=5))
    out = tmp_path / "o.mp4"
    code, err = run_cli(capsys, "render", str(src), "-o", str(out), "--style", "pencil", "--workers", "1", "-q")
    assert code == 0, err
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (w, h) and sum(1 for _ in c.decode(s)) == 10
