"""What every benchmark section shares: one way to time a command, one set of inputs, one render command.

A section's figures are only comparable with another's when both were taken the same way, so the sampling
of a command's process tree (CPU time and RSS summed over every child, read from ``/proc`` every 20 ms),
the input clips and the CLI render command live here once, with the :class:`Bench` each section reads its
options and inputs from and writes its figures into.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

#: the checkout: every command runs from here, so ``-m scripts.cli`` resolves as in a user's shell
ROOT = Path(__file__).resolve().parents[2]
SHARED_CLIP = ROOT.parent / "shared" / "media" / "paulromeo_slow_traffic_small.mp4"
#: the project's own packages, compiled to bytecode before anything is timed (:func:`compile_sources`)
PACKAGES = ("app", "core", "scripts", "stylizers", "trainer")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Run:
    """One measured command: wall and CPU seconds (its whole process tree), peak summed RSS in bytes, and
    the frames it rendered."""

    wall: float
    cpu: float
    peak_rss: int
    frames: int

    @property
    def fps(self) -> float:
        return self.frames / self.wall

    def busy(self, cores: int) -> float:
        return self.cpu / (self.wall * cores)


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def _sample(pid: int) -> tuple[dict[int, float], int]:
    cpu, rss = {}, 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            cpu[p] = (int(fields[11]) + int(fields[12])) / TICKS
            rss += int(fields[21]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return cpu, rss


def measure(cmd: list[str], frames: int) -> Run:
    """Run ``cmd``; sample its process tree's CPU time and summed RSS every 20 ms."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last_cpu: dict[int, float] = {}
    peak = 0
    stop = threading.Event()

    def sampler() -> None:
        nonlocal peak
        while not stop.is_set():
            cpu, rss = _sample(proc.pid)
            last_cpu.update(cpu)
            peak = max(peak, rss)
            stop.wait(0.02)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode()[-2000:]}")
    return Run(wall=wall, cpu=sum(last_cpu.values()), peak_rss=peak, frames=frames)


def compile_sources(root: Path = ROOT) -> int:
    """Write the bytecode of the project's modules (``__pycache__``) that is missing or stale; return how many
    modules had none. The studio runs from bytecode from its second start on, as any Python program does, but where
    ``PYTHONDONTWRITEBYTECODE`` is set (the machines these figures come from set it) each process compiles
    every module it imports from source, each time: ~140 of them in a render's CLI and its forkserver, which
    cost a 300-frame identity render 0.18-0.34 s (means of two sets of 5-6 alternating pairs: 3.62 -> 3.44 s,
    3.96 -> 3.62 s). That is set-up, not render work, so the benchmark times renders as they run installed.
    ``py_compile`` writes regardless of the flag."""
    import compileall

    before = sum(1 for pkg in PACKAGES for _ in (root / pkg).rglob("__pycache__/*.pyc"))
    for pkg in PACKAGES:
        compileall.compile_dir(root / pkg, quiet=1)  # prints only what fails to compile
    return sum(1 for pkg in PACKAGES for _ in (root / pkg).rglob("__pycache__/*.pyc")) - before


def make_input(path: Path, width: int, height: int, frames: int, loops: int = 1) -> Path:
    """An H.264 clip at width x height: the real traffic clip upscaled when ../shared is there, else synthetic."""
    import cv2

    from core.presets import EncoderConfig
    from core.video.frames import ColorTags
    from core.video.probe import probe
    from core.video.reader import Reader
    from core.video.synthetic import ClipSpec, make_clip
    from core.video.writer import Writer

    if not SHARED_CLIP.is_file():
        return make_clip(path, ClipSpec(width=width, height=height, frames=frames * loops, gop=250))
    info = probe(SHARED_CLIP)
    tb = Fraction(1001, 30000)
    tags = ColorTags(matrix=1, full_range=False, primaries=1, trc=1)
    enc = EncoderConfig(crf=18, preset="veryfast")
    with Reader(info) as r:
        src = [cv2.resize(f.rgb, (width, height), interpolation=cv2.INTER_CUBIC) for f in r.frames(0, frames)]
    with Writer(path, width=width, height=height, fps=1 / tb, time_base=tb, color=tags, encoder=enc) as w:
        for i in range(frames * loops):
            w.write(src[i % frames], i)
    return path


def cli_render(src: Path, out: Path, style: str, workers: int, home: Path, extra: list[str] | None = None) -> list[str]:
    """The CLI render command; ``workers`` 0: the render's own default (how many chunks at once)."""
    return [sys.executable, "-m", "scripts.cli", "render", str(src), "-o", str(out), "--style", style,
            "--preset", "balanced", *(["--workers", str(workers)] if workers else []), "-q", *(extra or [])]


def median_pair(ours_cmd: list[str], ffmpeg_cmd: list[str], frames: int, repeat: int) -> tuple[Run, Run]:
    """Alternate the two commands ``repeat`` times; the runs with the median fps of each."""
    ours, theirs = [], []
    for _ in range(repeat):
        ours.append(measure(ours_cmd, frames))
        theirs.append(measure(ffmpeg_cmd, frames))
    pick = lambda runs: sorted(runs, key=lambda r: r.fps)[len(runs) // 2]  # noqa: E731
    return pick(ours), pick(theirs)


@dataclass
class Bench:
    """One run's options and inputs, handed to every section, and the report the sections fill.

    ``clips`` maps 720 and 1080 to ``frames``-frame H.264 clips at that height and ``"tiny"`` to a 2-frame
    320x180 one; ``tmp`` is the run's scratch folder and ``home`` the ``VP_HOME`` the renders use (fresh: no
    render resumes from a previous one). ``report`` collects each section's figures under its keys (see
    :data:`scripts.bench.run.SECTIONS`).
    """

    frames: int
    repeat: int
    stage_loops: int
    styles: list[str]
    cores: int
    clips: dict
    tmp: Path
    home: Path
    report: dict
    quick: bool = False  # CI's reduced form (``--quick``): fewer frames, 720p only, printed not published
    baseline: str = ""  # a git ref whose stage costs the ``profile`` section measures beside this checkout's
