"""The reader against FFmpeg itself: files in the forms users have (AVI with B-frames, MPEG-TS, raw streams,
remuxed copies, damaged data) decode to the frames FFmpeg decodes, in its order, from any starting frame."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from core.video.probe import probe
from core.video.reader import Reader
from core.video.synthetic import ClipSpec, make_clip, scene_frame
from scripts.cli import main
from tests.conftest import psnr

SPEC = ClipSpec(width=160, height=96, frames=40, gop=12, audio=True)


def remux(src: Path, dst: Path) -> Path:
    """``ffmpeg -i src -c copy dst`` done with PyAV: packets copied, the target muxer's stamps. (PyAV's AVI
    muxer refuses an mp4's H.264 packets; the ffmpeg CLI test below makes that copy.)"""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        copied = (*i.streams.video, *i.streams.audio)
        streams = {s.index: o.add_stream_from_template(s) for s in copied}
        for p in i.demux(*copied):
            if p.size == 0 or p.dts is None:
                continue
            p.stream = streams[p.stream.index]
            o.mux(p)
    return dst


def decoded_in_order(path: Path) -> list[int]:
    """What FFmpeg's decoder gives, in its output order, kept as ``ffmpeg -f null`` keeps it: frames whose
    time does not go back (a damaged reorder buffer can return a stale frame late: it is dropped)."""
    out: list[int] = []
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        n = 0
        for packet in c.demux(vs):
            try:
                frames = vs.decode(packet)
            except av.error.FFmpegError:
                continue
            for f in frames:
                out.append(n if f.pts is None else f.pts)
                n += 1
    return out


def ffmpeg_count(path: Path) -> int:
    """Frames ``ffmpeg -i X -map 0:v:0 -f null -`` decodes (the Debian CLI: another FFmpeg build than PyAV's)."""
    res = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True)
    return int(res.stdout.split()[0])  # MPEG-TS prints its program too: the first number is the stream


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("forms")
    mp4 = make_clip(root / "clip.mp4", SPEC)
    return {
        "mp4": mp4,
        "avi_bframes": make_clip(root / "bframes.avi", SPEC),  # x264 veryfast: 3 B-frames, AVI's decode stamps
        "mkv_copy": remux(mp4, root / "copy.mkv"),
        "mov_copy": remux(mp4, root / "copy.mov"),
        "ts": make_clip(root / "clip.ts", SPEC),
        "raw_h264": make_clip(root / "clip.h264", ClipSpec(width=160, height=96, frames=40, gop=12)),
        "mpeg4_avi": make_clip(root / "mpeg4.avi", ClipSpec(width=160, height=96, frames=40, gop=12,
                                                              codec="mpeg4")),
        "mjpeg_avi": make_clip(root / "mjpeg.avi", ClipSpec(width=160, height=96, frames=40, codec="mjpeg",
                                                             pix_fmt="yuvj420p")),
    }


@pytest.mark.parametrize("form", ["mp4", "avi_bframes", "mkv_copy", "mov_copy", "ts", "raw_h264",
                                  "mpeg4_avi", "mjpeg_avi"])
def test_frames_are_the_clips_in_order_from_any_start(forms: dict[str, Path], form: str) -> None:
    info = probe(forms[form])
    assert info.frame_count == SPEC.frames == len(decoded_in_order(forms[form]))
    assert info.pts == tuple(sorted(info.pts)) and len(set(info.pts)) == info.frame_count
    assert info.fps == SPEC.fps and abs(info.duration - SPEC.frames / 25) < 1e-6
    with Reader(info) as r:
        full = [(f.index, f.rgb, f.pts) for f in r.frames()]
        assert [i for i, _, _ in full] == list(range(SPEC.frames)) and not r.lost
        assert [p for _, _, p in full] == list(info.pts)
        for i, rgb, _ in full:  # frame i shows scene i (the burnt-in counter), not a neighbour
            want = scene_frame(SPEC, i)
            assert psnr(rgb, want) > 24  # MPEG-4 part 2 at its default quality reads ~28 dB
            if 0 < i < SPEC.frames - 1:
                assert psnr(rgb, want) > max(psnr(rgb, scene_frame(SPEC, i - 1)), psnr(rgb, scene_frame(SPEC, i + 1)))
        for start, stop in ((5, 9), (12, 13), (13, 30), (39, 40)):  # mid-GOP, on a keyframe, the last frame
            part = [(f.index, f.rgb) for f in r.frames(start, stop)]
            assert [i for i, _ in part] == list(range(start, stop))
            assert all(np.array_equal(a, full[i][1]) for i, a in part)


@pytest.mark.parametrize("form", ["mp4", "avi_bframes", "mkv_copy", "mov_copy", "ts"])
def test_a_seek_decodes_from_the_keyframe_not_a_gop_early(forms: dict[str, Path], form: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading frames after the last keyframe decodes about one GOP, not the clip: an MP4/MOV seek on a B-frame
    stream's dts landed a whole GOP early (correct frames, but a 1080p sample for the cartoon palette cost 1.2 s)."""
    import core.video.reader as reader

    decoded = []
    tolerant = reader.decode_tolerant

    def counting(*args, **kwargs):
        for frame in tolerant(*args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(reader, "decode_tolerant", counting)
    info = probe(forms[form])
    last_key = max(i for i, p in enumerate(info.frame_ids or info.pts) if p in set(info.keyframes))
    assert last_key >= SPEC.gop  # the clip has a keyframe to seek to past its first GOP
    with Reader(info) as r:
        got = [f.index for f in r.frames(last_key + 1, last_key + 3)]
    assert got == [last_key + 1, last_key + 2]
    # the keyframe, the two, B-frames in flight; Matroska's seek lands on the cue before (one GOP more, as before)
    assert len(decoded) <= 3 + 4 + (SPEC.gop if form == "mkv_copy" else 0), (form, last_key, len(decoded))


def test_avi_stamps_are_not_taken_for_presentation_times(forms: dict[str, Path]) -> None:
    """The AVI demuxer numbers packets in decode order; with B-frames the decoder returns them reordered, so
    those numbers name frames but do not time them: the times come from the decode stamps."""
    info = probe(forms["avi_bframes"])
    assert info.timestamps == "dts" and info.frame_ids and info.frame_ids != tuple(sorted(info.frame_ids))
    assert info.seekable and info.keyframe_indices == (0, 12, 24, 36)
    raw = probe(forms["raw_h264"])
    assert raw.timestamps == "rate" and not raw.seekable and raw.fps == 25


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="the ffmpeg CLI is not installed (apt install ffmpeg)")
@pytest.mark.parametrize("form", ["avi_bframes", "ts", "raw_h264", "mpeg4_avi"])
def test_frame_count_agrees_with_the_ffmpeg_cli(forms: dict[str, Path], form: str) -> None:
    assert probe(forms[form]).frame_count == ffmpeg_count(forms[form])


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg CLI is not installed (apt install ffmpeg)")
def test_stream_copy_into_avi_with_a_rate_mismatch(tmp_path: Path, forms: dict[str, Path]) -> None:
    """``ffmpeg -c copy`` of an mp4 with B-frames into AVI doubles the time base's rate (60000/1001 for 29.97
    fps footage): the rate is measured from the frames, the times from the decode stamps."""
    src = make_clip(tmp_path / "ntsc.mp4", ClipSpec(width=160, height=96, frames=30, fps=Fraction(30000, 1001)))
    avi = tmp_path / "copy.avi"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", str(avi)], check=True)
    info = probe(avi)
    assert info.frame_count == 30 == ffmpeg_count(avi)
    assert info.fps == Fraction(30000, 1001)
    with Reader(info) as r:
        assert [f.index for f in r.frames(7, 20)] == list(range(7, 20))


def _damaged(src: Path, dst: Path) -> Path:
    """Zero a band in the middle of the media data: a few packets no longer decode, the container is intact."""
    data = bytearray(src.read_bytes())
    start = data.find(b"mdat") + (len(data) - data.find(b"mdat")) // 2
    data[start:start + 3000] = bytes(3000)
    dst.write_bytes(bytes(data))
    return dst


def test_damaged_frames_are_skipped_reported_and_the_rest_rendered(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "good.mp4", ClipSpec(width=160, height=96, frames=48, gop=48, audio=True))
    bad = _damaged(src, tmp_path / "damaged.mp4")
    expected = decoded_in_order(bad)
    kept = [p for n, p in enumerate(expected) if all(p > q for q in expected[:n])]  # time never goes back
    assert len(kept) < 48  # the damage is real
    out = tmp_path / "out.mp4"
    code = main(["render", str(bad), "-o", str(out), "--style", "pencil", "--chunk-seconds", "0.5", "-q"])
    stdout = capsys.readouterr().out
    assert code == 0
    lost = 48 - len(kept)
    assert f"rendered {len(kept)} frames" in stdout and f"{lost} of 48 input frames lost" in stdout
    info = probe(out)
    assert info.frame_count == len(kept)
    assert list(info.pts) == kept  # the frames that decoded keep their own times
    assert len(info.audio) == 1


def test_a_cluster_the_demuxer_skips_is_counted_lost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Matroska file missing one GOP of packets (a damaged cluster that FFmpeg's demuxer skips whole) states
    the duration it has, and its frames keep their times: the gap of 13 frame steps is 12 frames lost, and the
    render says so, where it used to say nothing (seen on bit-flipped files, by chance of where the flips fell)."""
    src = make_clip(tmp_path / "good.mkv", ClipSpec(width=64, height=48, frames=48, gop=12))
    holey = tmp_path / "holey.mkv"
    with av.open(str(src)) as i, av.open(str(holey), "w") as o:
        vs = o.add_stream_from_template(i.streams.video[0])
        stamps = sorted(p.pts for p in i.demux(i.streams.video[0]) if p.size)
        i.seek(0)
        for p in i.demux(i.streams.video[0]):
            if p.size == 0 or stamps[12] <= p.pts < stamps[24]:
                continue  # frames 12..23: the second GOP, keyframe and all
            p.stream = vs
            o.mux(p)
    assert probe(holey).undecodable == 12
    code = main(["render", str(holey), "-o", str(tmp_path / "out.mp4"), "--style", "none", "-q"])
    assert code == 0
    assert "rendered 36 frames" in (out := capsys.readouterr().out) and "12 of 48 input frames lost" in out


def test_nothing_decodes_is_refused_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "good.mp4", ClipSpec(width=160, height=96, frames=12))
    data = bytearray(src.read_bytes())
    i = data.find(b"mdat")
    data[i + 4:] = bytes(len(data) - i - 4)
    bad = tmp_path / "zeroed.mp4"
    bad.write_bytes(bytes(data))
    code = main(["render", str(bad), "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and str(bad) in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("form", ["avi_bframes", "raw_h264", "ts"])
def test_cli_renders_every_form_frame_exact(forms: dict[str, Path], form: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mkv"
    assert main(["render", str(forms[form]), "-o", str(out), "--style", "pencil", "--chunk-seconds", "0.5",
                 "--workers", "2", "-q"]) == 0
    src, got = probe(forms[form]), probe(out)
    assert got.frame_count == src.frame_count
    assert abs(got.duration - src.duration) <= float(1 / src.fps)
    assert got.pts == tuple(sorted(got.pts))
    assert main(["preview", str(forms[form]), "--style", "pencil", "--at", "1.0", "-o", str(tmp_path / "p.png")]) == 0
    capsys.readouterr()


def test_a_frame_larger_than_the_studio_renders_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A header may declare 16384x16384 (800 MB a frame as RGB): one line, exit 2, before a chunk starts."""
    huge = make_clip(tmp_path / "wide.mp4", ClipSpec(width=8200, height=16, frames=3, gop=3))
    code = main(["render", str(huge), "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "8200x16" in err and "8192 pixels a side" in err


def test_a_stream_that_cannot_be_sought_renders_in_one_pass(forms: dict[str, Path]) -> None:
    """Each chunk of a raw stream would decode it from the top: n chunks, n^2/2 frames decoded."""
    from core.render.plan import plan_chunks

    info = probe(forms["raw_h264"])
    assert [(c.start, c.stop) for c in plan_chunks(info, 0.5, 0)] == [(0, info.frame_count)]
    assert len(plan_chunks(probe(forms["ts"]), 0.5, 0)) > 1


def test_a_garbled_audio_packet_costs_only_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bit flips in an MPEG-TS can break an AAC frame's ADTS header: the mp4 muxer refuses that packet, and the
    render must leave it out (as FFmpeg does), not fail at the stitch."""
    src = make_clip(tmp_path / "clip.ts", ClipSpec(width=96, height=64, frames=50, audio=True))
    data = bytearray(src.read_bytes())
    headers = [i for i in range(len(data) - 7) if data[i] == 0xFF and data[i + 1] & 0xF6 == 0xF0]
    assert len(headers) > 20
    data[headers[20] + 2] |= 0x3C  # sampling-frequency index 15: no such rate
    bad = tmp_path / "garbled.ts"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    assert main(["render", str(bad), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    info = probe(out)
    assert info.frame_count == 50 and len(info.audio) == 1


def _faststart(src: Path, dst: Path) -> Path:
    """``ffmpeg -i src -c copy -movflags +faststart dst`` done with PyAV: the index first, then the media."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "+faststart"}) as o:
        vs = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.size:
                p.stream = vs
                o.mux(p)
    return dst


def test_a_truncated_file_decodes_the_same_frames_as_a_single_thread(tmp_path: Path) -> None:
    """A faststart mp4 cut short (a download stopped early): with frame threads, whether the keyframe held in
    flight comes out once the next packet fails depended on the threads' timing (a clean-clone CI run lost
    it, and with it the only frame, by chance). The reader gives what a single-threaded decode gives, at every
    cut point."""
    src = _faststart(make_clip(tmp_path / "src.mp4", ClipSpec(width=96, height=64, frames=50)),
                     tmp_path / "faststart.mp4")
    data = src.read_bytes()
    tried = 0
    for n, fraction in enumerate(np.arange(0.06, 0.30, 0.005)):
        cut = tmp_path / f"cut{n}.mp4"
        cut.write_bytes(data[:int(len(data) * fraction)])
        expected = decoded_in_order(cut)
        kept = [p for k, p in enumerate(expected) if all(p > q for q in expected[:k])]
        if not kept:
            continue
        info = probe(cut)
        with Reader(info) as r:
            got = [f.pts for _, f in r.decoded()]
            assert got == kept, f"cut at {fraction:.3f}: decoded {got}, a single thread decodes {kept}"
            assert len(r.lost) == info.frame_count - len(kept)
        tried += 1
    assert tried >= 20


def test_a_chunk_whose_every_frame_is_lost_leaves_the_others_to_render(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Frames 24..47 (the plan's second chunk) zeroed in place: that chunk writes nothing (its muxer never opens
    a file), which used to fail the render with a FileNotFoundError on the chunk's temp file."""
    src = make_clip(tmp_path / "src.mp4", ClipSpec(width=96, height=64, frames=48, gop=12))
    with av.open(str(src)) as c:
        vs = c.streams.video[0]
        packets = sorted(((p.pts, p.pos, p.size) for p in c.demux(vs) if p.size), key=lambda t: t[0])
    data = bytearray(src.read_bytes())
    for _, pos, size in packets[24:]:
        data[pos:pos + size] = bytes(size)
    bad = tmp_path / "gop_zeroed.mp4"
    bad.write_bytes(bytes(data))
    kept = decoded_in_order(bad)
    assert len(kept) == 24
    out = tmp_path / "out.mp4"
    code = main(["render", str(bad), "-o", str(out), "--style", "none", "--chunk-seconds", "0.5", "-q"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "rendered 24 frames" in stdout and "24 of 48 input frames lost" in stdout
    assert list(probe(out).pts) == kept
