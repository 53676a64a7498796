"""Issue 16's hostile-file corpus through the CLI: every file FFmpeg decodes renders frame-exact with all its
streams, everything else is refused with exit 2 and one line; never a traceback, never a hang past 120 s,
never exit 1 for a user's file. The corpus is made by ``tests/system/corpus.py`` (no downloads)."""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import pytest

from tests.system.corpus import CASES, FFMPEG, PENCIL, PREVIEW, Case, Sources, build, expected_frames, frame_period

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120
LOST = re.compile(r"(\d+) of (\d+) input frames lost|(\d+) (?:input )?frames? (?:were )?lost")
CROSS_CHECK = ("avi_h264_bframes", "avi_h264_copy_rate_mismatch", "raw_h264_bframes", "raw_h264_no_timestamps",
               "ts_h264_bframes", "mkv_duplicate_timestamps", "mp4_vfr", "webm_vp9_opus", "bitflips_mp4",
               "bitflips_avi", "trunc_mkv_50", "trunc_ts_10", "trunc_faststart_90", "one_frame_avi_mjpeg")


@dataclass(frozen=True)
class Run:
    """One CLI run: exit code (None: killed after ``TIMEOUT_S``), its output streams and its output folder."""

    code: int | None
    stdout: str
    stderr: str
    out_dir: Path
    output: Path


class Corpus:
    """Builds the cases a session selected, then runs their CLI commands two at a time (the machines that
    run this have two cores; each render also starts its own workers)."""

    def __init__(self, root: Path, names: set[str]) -> None:
        self.root = root
        self.cases: dict[str, Case] = {}
        self.skipped: dict[str, str] = {}
        sources = Sources(root)
        for name in CASES:
            if name not in names:
                continue
            try:
                self.cases[name] = build(root, name, sources)
            except LookupError as e:
                self.skipped[name] = str(e)
        self.expected = {n: expected_frames(c.path) if c.path.is_file() else [] for n, c in self.cases.items()}
        self._pool = ThreadPoolExecutor(2)
        self._runs: dict[tuple[str, str], Future[Run]] = {}
        self._lock = threading.Lock()
        for name, case in self.cases.items():
            for command in ("render", *case.commands):
                self.run(name, command)

    def case(self, name: str) -> Case:
        if name in self.skipped:
            pytest.skip(f"{name}: {self.skipped[name]}")
        return self.cases[name]

    def run(self, name: str, command: str) -> Future[Run]:
        with self._lock:
            if (name, command) not in self._runs:
                self._runs[(name, command)] = self._pool.submit(self._cli, self.cases[name], command)
            return self._runs[(name, command)]

    def _cli(self, case: Case, command: str) -> Run:
        out_dir = self.root / "runs" / f"{case.name}.{command}"
        out_dir.mkdir(parents=True)
        output = Path(case.output) if Path(case.output).is_absolute() else out_dir / case.output
        args = {
            "render": ["render", str(case.path), "-o", str(output), "--style", "none"],
            "render_pencil": ["render", str(case.path), "-o", str(output), "--style", "pencil"],
            "probe": ["probe", str(case.path)],
            "preview": ["preview", str(case.path), "--at", "0", "-o", str(out_dir / "frame.png"), "--style", "none"],
        }[command]
        env = {**os.environ, "VP_HOME": str(self.root / "home" / f"{case.name}.{command}")}
        try:
            res = subprocess.run([sys.executable, "-m", "scripts.cli", *args], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as e:
            return Run(None, str(e.stdout or ""), str(e.stderr or ""), out_dir, output)
        return Run(res.returncode, res.stdout, res.stderr, out_dir, output)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Corpus:
    """The corpus, cached per session: only the cases the session's selected tests name are made and run."""
    names = {item.callspec.params["name"] for item in request.session.items
             if item.module is sys.modules[__name__] and hasattr(item, "callspec")
             and "name" in item.callspec.params}
    c = Corpus(tmp_path_factory.mktemp("corpus"), names)
    request.addfinalizer(c.close)
    return c


def expected_code(case: Case, decoded: int) -> set[int]:
    """The exit codes the issue allows for ``case`` given how many of its frames FFmpeg decodes."""
    if case.expect == "ok":
        return {0}
    if case.expect == "refuse":
        return {2}
    if case.expect == "decodable":
        return {0} if decoded else {2}
    return {0, 2}


def assert_refused(run: Run, case: Case) -> None:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in run.stderr, f"{case.name}: stderr is not one line: {run.stderr!r}"
    if run.output.parent == run.out_dir:
        left = sorted(p.name for p in run.out_dir.iterdir())
        assert left == [], f"{case.name}: refused, yet left {left} in the output folder"


def video_facts(path: Path) -> tuple[int, list[float], int, int, int]:
    """(frames, times in s, audio streams, subtitle streams, chapters) of one of our outputs."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        times = [float(f.pts * f.time_base) for f in c.decode(vs) if f.pts is not None]
        frames = len(times)
    with av.open(str(path)) as c:
        return frames, times, len(c.streams.audio), len(c.streams.subtitles), len(c.chapters())


def _readable(c: av.container.InputContainer) -> set[int]:
    """Indices of the audio and subtitle streams with at least one readable packet: a track whose every packet
    lies past a truncation has nothing to keep (FFmpeg's own ``-c copy`` and transcode leave it out too)."""
    readable: set[int] = set()
    try:
        for packet in c.demux([*c.streams.audio, *c.streams.subtitles]):
            if packet.size:
                readable.add(packet.stream.index)
    except av.FFmpegError:
        pass  # damage: what was read before it counts
    return readable


def streams_of(path: Path) -> tuple[int, int, int]:
    """Audio and subtitle tracks with at least one readable packet (:func:`_readable`), and chapters."""
    with av.open(str(path)) as c:
        readable = _readable(c)
        audio = sum(s.index in readable for s in c.streams.audio)
        return audio, sum(s.index in readable for s in c.streams.subtitles), len(c.chapters())


def languages(path: Path) -> list[str | None]:
    """The language tag of each audio track with a readable packet, in order (None where untagged or "und"):
    the tracks a render can keep (the flake of trunc_faststart_10, a cut before the audio's first packet,
    compared an untagged track in the input's header with none in the output)."""
    with av.open(str(path)) as c:
        readable = _readable(c)
        return [None if s.metadata.get("language", "und") == "und" else s.metadata["language"]
                for s in c.streams.audio if s.index in readable]


def step(times: list[float | None], fallback: float) -> float:
    """One frame's duration as the stamps show it (their median gap; ``fallback`` with fewer than two): the
    stated rate can disagree (an mp4 copied into AVI states 50 fps for 25)."""
    known = sorted({t for t in times if t is not None})
    gaps = [b - a for a, b in itertools.pairwise(known)]
    return float(statistics.median(gaps)) if gaps else fallback


def span(times: list[float | None], frames: int, period: float) -> float:
    """How long a video lasts: its first to last stamp plus one frame (frames x period with no stamps)."""
    known = [t for t in times if t is not None]
    return (max(known) - min(known) + period) if len(known) == frames and known else frames * period


def assert_rendered(run: Run, case: Case, expected: list[float | None]) -> None:
    assert "Traceback" not in run.stderr, f"{case.name}: {run.stderr}"
    assert run.output.is_file(), f"{case.name}: exit 0 but no {run.output.name}"
    left = sorted(p.name for p in run.out_dir.iterdir() if p != run.output)
    assert left == [], f"{case.name}: left {left} beside the output"
    frames, times, audio, subs, chapters = video_facts(run.output)
    if case.name.startswith(("trunc_", "bitflips_")):
        # damage can make the decoder hand back a stale frame after later ones (its reorder buffer broken):
        # `-f null` counts it, but it cannot be shown in order, so the render drops it as lost; a few at most
        assert len(expected) - max(2, len(expected) // 10) <= frames <= len(expected), \
            f"{case.name}: {frames} frames out, FFmpeg decodes {len(expected)}"
    else:
        assert frames == len(expected), f"{case.name}: {frames} frames out, FFmpeg decodes {len(expected)}"
    assert all(b > a for a, b in itertools.pairwise(times)), f"{case.name}: output timestamps not increasing"
    period = step(expected, float(frame_period(case.path)))
    want = span(expected, len(expected), period)
    got = span(list(times), frames, step(list(times), float(frame_period(run.output))))
    dropped = len(expected) - frames  # damaged input: stale frames dropped, at most a few (above)
    assert abs(got - want) <= period * (1 + dropped) + 1e-3, f"{case.name}: lasts {got:.3f} s, input {want:.3f} s"
    in_audio, in_subs, in_chapters = streams_of(case.path)
    assert audio == in_audio, f"{case.name}: {audio} audio tracks out of {in_audio}"
    if run.output.suffix in (".mkv", ".mp4", ".mov"):
        assert subs == in_subs, f"{case.name}: {subs} subtitle tracks out of {in_subs}"
        assert languages(run.output) == languages(case.path), f"{case.name}: audio languages not kept"
    if run.output.suffix == ".mkv":
        assert chapters == in_chapters, f"{case.name}: {chapters} chapters out of {in_chapters}"
    if case.frames is not None and frames < case.frames and case.knows:
        said = LOST.search(run.stdout)
        assert said, f"{case.name}: {case.frames - frames} frames lost and the closing line says nothing: " \
                     f"{run.stdout.strip().splitlines()[:1]}"
        lost = int(said.group(1) or said.group(3))
        if case.knows == "count":  # the container indexes every frame: the loss is known exactly
            assert lost == case.frames - frames, f"{case.name}: says {lost} lost, {case.frames - frames} were"
        assert lost >= 1


def check(corpus: Corpus, name: str, command: str) -> None:
    case = corpus.case(name)
    expected = corpus.expected[name]
    run = corpus.run(name, command).result()
    assert run.code is not None, f"{name}: {command} still running after {TIMEOUT_S} s"
    allowed = expected_code(case, len(expected))
    assert run.code in allowed, f"{name}: {command} exit {run.code}, expected {sorted(allowed)}: " \
                                f"{run.stderr.strip()[-400:]}"
    if run.code == 2:
        assert_refused(run, case)
        return
    if command == "probe":
        facts = json.loads(run.stdout)
        if case.expect != "decodable":
            assert facts["frame_count"] == len(expected), f"{name}: probe says {facts['frame_count']} frames"
        else:
            # the probe counts the packets of a stream it need not decode whole; a damaged one may hold a few
            # that give no frame, which the render then reports as lost
            assert abs(facts["frame_count"] - len(expected)) <= max(2, len(expected) // 10), \
                f"{name}: probe says {facts['frame_count']} frames, {len(expected)} decode"
    elif command == "preview":
        image = cv2.imread(str(run.out_dir / "frame.png"))
        assert image is not None and image.size > 0, f"{name}: no preview image"
    else:
        assert_rendered(run, case, expected)


def test_cardinality() -> None:
    """At least 60 hostile or odd files and faults, each with an outcome the harness knows."""
    assert len(CASES) >= 60
    assert set(PENCIL) <= set(CASES) and set(PREVIEW) <= set(CASES) and set(CROSS_CHECK) <= set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_render(corpus: Corpus, name: str) -> None:
    check(corpus, name, "render")


@pytest.mark.parametrize("name", PENCIL)
def test_render_pencil(corpus: Corpus, name: str) -> None:
    check(corpus, name, "render_pencil")


@pytest.mark.parametrize("name", [n for n in CASES if n not in ("missing_input", "directory_as_input",
                                                                "symlink_loop_input", "output_is_a_directory",
                                                                "output_unknown_extension")])
def test_probe(corpus: Corpus, name: str) -> None:
    check(corpus, name, "probe")


@pytest.mark.parametrize("name", PREVIEW)
def test_preview(corpus: Corpus, name: str) -> None:
    check(corpus, name, "preview")


@pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI is not installed")
@pytest.mark.parametrize("name", CROSS_CHECK)
def test_expected_count_is_ffmpegs(corpus: Corpus, name: str) -> None:
    """The harness's expected count (PyAV) is what ``ffmpeg -f null`` and ``ffprobe -count_frames`` decode."""
    case = corpus.case(name)
    res = subprocess.run([str(FFMPEG), "-v", "error", "-nostdin", "-i", str(case.path), "-map", "0:v:0", "-f", "null",
                          "-", "-progress", "pipe:1"], capture_output=True, text=True, timeout=TIMEOUT_S)
    counted = [int(v) for v in re.findall(r"^frame=(\d+)", res.stdout, re.M)]
    assert counted and counted[-1] == len(corpus.expected[name])
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames", "-of", "csv=p=0", str(case.path)], capture_output=True,
                           text=True, timeout=TIMEOUT_S)
    assert int(probe.stdout.split()[0]) == len(corpus.expected[name])
